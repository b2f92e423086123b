//! The Parquet archive end to end against a real broker (tansu on loopback), read back by
//! readers emoflow did not write (DuckDB and pyarrow): `replay --archive` twice over a topic
//! with malformed messages adds each accepted event exactly once; `query` over the archive
//! equals the oracle; `export` of a time range holds exactly its events; a `serve` killed with
//! SIGKILL while archiving and started again leaves every event exactly once.
//!
//! Without tansu the tests show as ignored, with the reason, unless `EMOFLOW_REQUIRE_BROKER=1`
//! (CI sets it, after installing tansu and the Python readers), which makes them fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use emoflow_fixtures::{diff, expected, Params};
use emoflow_ingest::generator::GeneratorConfig;
use emoflow_ingest::parquet_source::ParquetInput;
use emoflow_ingest::{decode_event, Event};
use serde_json::{json, Value};
use support::{check_with_readers, produce_lines, temp_dir, Serve, Tansu};

const PARTITIONS: i32 = 4;
/// 2026-01-01T00:00:00Z.
const BASE_MS: i64 = 1_767_225_600_000;
const BAD: [&str; 4] = [
    "not json",
    r#"{"emoji":"x","ts":1}"#,
    "[1,2]",
    r#"{"user_id":"u","emoji":"x","ts":"yesterday"}"#,
];

fn lines(n: u64, seed: u64) -> Vec<String> {
    let cfg = GeneratorConfig {
        seed,
        users: 80,
        step_ms: 4_000.0,
        ..Default::default()
    };
    support::lines_with_bad(n, cfg, &BAD, (613, 7))
}

/// Line i's event and position, for the accepted lines.
fn accepted(lines: &[String]) -> Vec<(i64, i64, Event<'_>)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let e = decode_event(l.as_bytes(), None).ok()?;
            let p = i as i64 % PARTITIONS as i64;
            Some((p, i as i64 / PARTITIONS as i64, e))
        })
        .collect()
}

/// What `check_archive.py` expects of the archive (`hive`) or an export holding `events`.
fn expectation(events: &[&(i64, i64, Event<'_>)], hive: bool) -> Value {
    let mut emoji_counts: BTreeMap<&str, i64> = BTreeMap::new();
    for (_, _, e) in events {
        if let Some(emoji) = &e.emoji {
            *emoji_counts.entry(emoji).or_default() += 1;
        }
    }
    json!({
        "rows": events.len(),
        "positions": events.iter().map(|(p, o, _)| [*p, *o]).collect::<Vec<_>>(),
        "emoji_counts": emoji_counts,
        "hive": hive,
    })
}

fn emoflow(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args(args)
        .env("EMOFLOW_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "emoflow {args:?}: {stderr}");
    (stdout, stderr)
}

#[test]
#[cfg_attr(
    not(emoflow_broker),
    ignore = "needs tansu (cargo install tansu --locked --features dynostore,libsql); EMOFLOW_REQUIRE_BROKER=1 fails it instead"
)]
fn replayed_twice_the_archive_holds_each_accepted_event_once() {
    let Some(tansu) = Tansu::start() else { return };
    let b = tansu.brokers.as_str();
    let lines = lines(3000, 11);
    produce_lines(b, "archive-replay", &lines, PARTITIONS, BASE_MS);
    let dir = temp_dir("archive-replay");
    let archive = dir.join("archive");
    let a = archive.to_str().unwrap();
    let replay = [
        "replay",
        "--brokers",
        b,
        "--topic",
        "archive-replay",
        "--archive",
        a,
        "--archive-roll-rows",
        "400",
    ];
    let accepted_events = accepted(&lines);
    let n = accepted_events.len();
    let (_, first) = emoflow(&replay);
    assert!(first.contains(&format!("{n} events written")), "{first}");
    let (_, second) = emoflow(&replay);
    assert!(
        second.contains(&format!(
            "0 events written in 0 files, {n} already archived"
        )),
        "{second}"
    );
    let all: Vec<_> = accepted_events.iter().collect();
    check_with_readers(&archive, &expectation(&all, true));

    // The views over the archive equal the oracle's over the accepted lines.
    let kept: Vec<&[u8]> = lines
        .iter()
        .filter(|l| decode_event(l.as_bytes(), None).is_ok())
        .map(|l| l.as_bytes())
        .collect();
    let want = expected(&kept, &[], Params::default());
    for workers in ["1", "2"] {
        let (doc, _) = emoflow(&["query", "--input", a, "--workers", workers]);
        let doc: Value = serde_json::from_str(&doc).unwrap();
        if let Some(d) = diff(&doc, &want) {
            panic!("query over the archive, {workers} workers: {d}");
        }
    }

    // An export of a time range holds exactly the events whose ts is in it.
    let mut times: Vec<i64> = accepted_events.iter().map(|(_, _, e)| e.ts).collect();
    times.sort_unstable();
    let (from, to) = (times[n / 4], times[n / 2]);
    let out = dir.join("range.parquet");
    emoflow(&[
        "export",
        "--archive-dir",
        a,
        "--from",
        &from.to_string(),
        "--to",
        &to.to_string(),
        "--out",
        out.to_str().unwrap(),
        "--views",
    ]);
    let inside: Vec<_> = accepted_events
        .iter()
        .filter(|(_, _, e)| e.ts >= from && e.ts < to)
        .collect();
    check_with_readers(&out, &expectation(&inside, false));
    for table in ["counts", "event_types", "top", "windows", "sessions"] {
        assert!(
            dir.join(format!("range.{table}.parquet")).is_file(),
            "{table}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn archived_rows(archive: &Path) -> u64 {
    ParquetInput::open(archive).map_or(0, |i| i.total_rows())
}

#[test]
#[cfg_attr(
    not(emoflow_broker),
    ignore = "needs tansu (cargo install tansu --locked --features dynostore,libsql); EMOFLOW_REQUIRE_BROKER=1 fails it instead"
)]
fn a_serve_killed_while_archiving_leaves_every_event_once_after_restart() {
    let dir = temp_dir("archive-kill");
    let Some(tansu) = Tansu::start_sqlite(&dir.join("broker")) else {
        return;
    };
    let b = tansu.brokers.clone();
    let lines = lines(40_000, 12);
    produce_lines(&b, "archive-kill", &lines, PARTITIONS, BASE_MS);
    let accepted_events = accepted(&lines);
    let data = dir.join("data");
    let archive = data.join("archive");
    let args = [
        "--brokers",
        b.as_str(),
        "--topic",
        "archive-kill",
        "--data-dir",
        data.to_str().unwrap(),
        "--archive-roll-rows",
        "150",
        "--archive-roll-secs",
        "1",
    ];
    let mut serve = Serve::start(&args);
    // Kill it as soon as the archive is being written, in the middle of its work.
    let deadline = Instant::now() + Duration::from_secs(60);
    while archived_rows(&archive) == 0 {
        assert!(Instant::now() < deadline, "nothing archived");
        std::thread::sleep(Duration::from_millis(5));
    }
    serve.child.0.kill().unwrap();
    serve.child.0.wait().unwrap();
    let at_kill = archived_rows(&archive);
    assert!(
        (at_kill as usize) < accepted_events.len(),
        "killed too late to test anything: {at_kill} rows archived"
    );

    let restarted = Serve::start(&args);
    restarted.wait_for_events(lines.len() as i64);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, health) = restarted.get("/health");
        let a = &health["archive"];
        if a["rows_pending"] == 0 && archived_rows(&archive) >= accepted_events.len() as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "archive not complete: {health}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A clean stop writes nothing more, and nothing is left half-written.
    let pid = restarted.child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = restarted.child;
    let status = child.0.wait().unwrap();
    assert!(status.success(), "serve did not stop cleanly: {status}");
    let all: Vec<_> = accepted_events.iter().collect();
    if !check_with_readers(&archive, &expectation(&all, true)) {
        // Without the Python readers, count with our own.
        assert_eq!(archived_rows(&archive) as usize, accepted_events.len());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
