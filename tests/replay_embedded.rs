//! `replay` ends or fails fast against a broker that drops old messages while it reads (the
//! embedded broker of a running `serve`, under load): it finishes, and says which offsets were
//! gone; a backwards range is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emoflow_ingest::kafka::BulkProducer;
use support::Serve;

fn replay(args: &[&str]) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .arg("replay")
        .args(args)
        .env("EMOFLOW_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn replay_of_a_log_being_dropped_under_it_ends_and_says_what_was_gone() {
    let serve = Serve::start(&["--partitions", "1", "--no-archive"]);
    let brokers = serve.embedded.clone().expect("no embedded broker address");
    // Keep producing about 8 MB/s into the one partition: the broker keeps 5 MiB and drops
    // the oldest messages within a second.
    let stop = Arc::new(AtomicBool::new(false));
    let load = std::thread::spawn({
        let (brokers, stop) = (brokers.clone(), stop.clone());
        move || {
            let p = BulkProducer::new(&brokers, "emoji-events").unwrap();
            let value = format!(
                r#"{{"user_id":"u","emoji":"x","pad":"{}"}}"#,
                "p".repeat(200)
            );
            let mut n = 0u64;
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                p.send(b"u", value.as_bytes(), None, None).unwrap();
                n += 1;
                // 32,000 messages of ~250 bytes a second.
                while n as f64 > started.elapsed().as_secs_f64() * 32_000.0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            p.flush(Duration::from_secs(10)).unwrap();
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    let (ok, stderr, took) = replay(&["--brokers", &brokers, "--from", "earliest"]);
    assert!(ok, "{stderr}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {stderr}");
    // Asked from offset 0, long gone: said so.
    let (ok, stderr, _) = replay(&["--brokers", &brokers, "--from", "0", "--to", "latest"]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("no longer holds offsets 0.."), "{stderr}");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let (ok, stderr, _) = replay(&["--brokers", &brokers, "--from", "20", "--to", "10"]);
    assert!(!ok);
    assert!(stderr.contains("--from is after --to"), "{stderr}");
}
