//! A 202 from HTTP ingest means counted and archived, on the embedded broker too: that broker
//! keeps only 5 MiB per partition and drops the oldest messages beyond, so one NDJSON batch
//! larger than that must still reach the views and the archive whole (ingest holds chunks back
//! until the readers have read), and no reader may skip an offset.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::time::{Duration, Instant};

use support::{temp_dir, Serve};

#[test]
fn a_batch_larger_than_the_embedded_log_is_counted_and_archived_whole() {
    const EVENTS: i64 = 600_000;
    let data = temp_dir("ingest-window");
    // One worker on one-second epochs reads at most 262,144 messages an epoch: it falls behind
    // the producer, as a busy pipeline would.
    let serve = Serve::start(&[
        "--partitions",
        "2",
        "--workers",
        "1",
        "--tick",
        "1s",
        "--body-limit",
        "40000000",
        "--data-dir",
        data.to_str().unwrap(),
        "--archive-roll-secs",
        "1",
        "--produce-timeout",
        "120s",
    ]);
    // 23 MB of NDJSON; about 26 MiB per partition once normalised (the server adds
    // `event_type` and `ts`): five times what the embedded broker keeps.
    let body: String = (0..EVENTS)
        .map(|i| format!("{{\"user_id\":\"user-{}\",\"emoji\":\"🔥\"}}\n", i % 5000))
        .collect();
    let (status, answer) = serve.post("/events", "application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["accepted"], EVENTS);
    let stats = serve.wait_for_events(EVENTS);
    assert_eq!(stats["counts"]["🔥"], EVENTS);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = serve.get("/health");
        assert_eq!(health["skipped_offsets"]["total"], 0, "{health}");
        if health["archive"]["rows_written"] == EVENTS {
            break;
        }
        assert!(Instant::now() < deadline, "archive incomplete: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_dir_all(&data);
}
