//! End to end against a real Kafka-protocol broker: tansu on loopback (started once for this
//! test run), `emoflow serve`/`replay` as child processes, events produced by rdkafka and by an
//! independent client (confluent-kafka for Python), every answer checked against the oracle.
//!
//! Without tansu installed the test shows as ignored, with the reason, unless
//! `EMOFLOW_REQUIRE_BROKER=1` (CI sets it, after installing tansu), which makes it fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use emoflow_fixtures::{diff, expected, Params};
use emoflow_ingest::generator::GeneratorConfig;
use emoflow_ingest::kafka::ensure_topic;
use serde_json::{json, Value};
use support::{broker_required, Serve, Tansu};

const PARTITIONS: i32 = 4;
/// 2026-01-01T00:00:00Z: message timestamps of the time-range replay start here.
const BASE_MS: i64 = 1_767_225_600_000;

const BAD: [&str; 5] = [
    "not json",
    r#"{"emoji":"x","ts":1}"#,
    "[1,2]",
    r#"{"user_id":"","emoji":"x","ts":1}"#,
    r#"{"user_id":"u","emoji":"x","ts":"yesterday"}"#,
];

/// Generated events with malformed messages mixed in.
fn lines(n: u64) -> Vec<String> {
    let cfg = GeneratorConfig {
        users: 60,
        step_ms: 3_000.0,
        ..Default::default()
    };
    support::lines_with_bad(n, cfg, &BAD, (397, 11))
}

fn oracle(lines: &[String]) -> Value {
    let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    expected(&refs, &[], Params::default())
}

/// Line i to partition i % 4 (offset i / 4 on a fresh topic), with message time
/// `BASE_MS + i s`.
fn produce_rdkafka(brokers: &str, topic: &str, lines: &[String]) {
    support::produce_lines(brokers, topic, lines, PARTITIONS, BASE_MS);
}

/// The same with confluent-kafka for Python; false when it is not installed (and not required).
fn produce_python(brokers: &str, topic: &str, lines: &[String]) -> bool {
    let has_client = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        assert!(
            !broker_required(),
            "confluent-kafka for Python is required: pip install confluent-kafka"
        );
        eprintln!("SKIPPED the independent client: pip install confluent-kafka");
        return false;
    }
    ensure_topic(brokers, topic, PARTITIONS, Duration::from_secs(10)).unwrap();
    let file = std::env::temp_dir().join(format!("emoflow-{topic}-{}.ndjson", std::process::id()));
    std::fs::write(&file, lines.join("\n")).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/produce_confluent.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            brokers,
            topic,
            file.to_str().unwrap(),
            &PARTITIONS.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python producer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// The serve views of `topic` equal the oracle's over `lines`.
fn check_serve(brokers: &str, topic: &str, lines: &[String], workers: usize) {
    let want = oracle(lines);
    let serve = Serve::start(&[
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--workers",
        &workers.to_string(),
    ]);
    let stats = serve.wait_for_events(lines.len() as i64);
    let ctx = format!("{topic}, {workers} workers");
    for key in ["total", "counts", "event_types", "top", "rejected"] {
        if let Some(d) = diff(&stats[key], &want[key]) {
            panic!("{ctx}: /stats {key}: {d}");
        }
    }
    assert_eq!(stats["recent"].as_array().unwrap().len(), 10, "{ctx}");

    let (_, summary) = serve.get("/sessions");
    let ws = &want["sessions"]["summary"];
    for key in [
        "users",
        "sessions",
        "mean_duration_ms",
        "mean_events",
        "mean_rate_per_min",
    ] {
        if let Some(d) = diff(&summary[key], &ws[key]) {
            panic!("{ctx}: /sessions {key}: {d}");
        }
    }
    let by_user = want["sessions"]["by_user"].as_object().unwrap();
    for user in by_user.keys().take(8) {
        let (status, got) = serve.get(&format!("/sessions/{user}"));
        assert_eq!(status, 200, "{ctx}");
        if let Some(d) = diff(&got["sessions"], &by_user[user]) {
            panic!("{ctx}: /sessions/{user}: {d}");
        }
    }
    assert_eq!(serve.get("/sessions/nobody-at-all").0, 404, "{ctx}");

    let (_, dead) = serve.get("/dead-letters?limit=100");
    assert_eq!(dead["total"], json!(BAD.len()), "{ctx}: {dead}");
    let got: BTreeSet<(String, i64, i64)> = dead["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["payload"].as_str().unwrap().to_owned(),
                d["partition"].as_i64().unwrap(),
                d["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    let want_dead: BTreeSet<(String, i64, i64)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| BAD.contains(&l.as_str()))
        .map(|(i, l)| (l.clone(), (i % 4) as i64, (i / 4) as i64))
        .collect();
    assert_eq!(got, want_dead, "{ctx}");

    // Caught up: no lag, healthy, positions at each partition's end.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, health) = serve.get("/health");
        let ends: Vec<i64> = (0..4)
            .map(|p| lines.iter().skip(p).step_by(4).count() as i64)
            .collect();
        let positions: Vec<i64> = (0..4)
            .map(|p| health["positions"][p.to_string()].as_i64().unwrap_or(-1))
            .collect();
        if health["status"] == "ok" && health["lag"] == 0 && positions == ends {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ctx}: not healthy: {health}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn replay(brokers: &str, topic: &str, from: &str, to: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args([
            "replay",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--from",
            from,
            "--to",
            to,
        ])
        .args(["--workers", "2"])
        .env("EMOFLOW_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_replay(brokers: &str, topic: &str, lines: &[String]) {
    let all = replay(brokers, topic, "earliest", "latest");
    if let Some(d) = diff(&all, &oracle(lines)) {
        panic!("replay of everything: {d}");
    }
    // Offsets 5..17 of every partition: line i is at offset i / 4.
    let by_offset: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| (5..17).contains(&(i / 4)))
        .map(|(_, l)| l.clone())
        .collect();
    if let Some(d) = diff(&replay(brokers, topic, "5", "17"), &oracle(&by_offset)) {
        panic!("replay by offset: {d}");
    }
    // Message times: line i at BASE + i s. From 100.5 s (line 101) to 1000 s (line 1000, excluded).
    let rfc = |ms: i64| emoflow_ingest::generator::rfc3339(ms);
    let by_time: Vec<String> = lines[101..1000].to_vec();
    let got = replay(
        brokers,
        topic,
        &rfc(BASE_MS + 100_500),
        &rfc(BASE_MS + 1_000_000),
    );
    if let Some(d) = diff(&got, &oracle(&by_time)) {
        panic!("replay by time: {d}");
    }
}

fn check_ingest(brokers: &str) {
    let serve = Serve::start(&[
        "--brokers",
        brokers,
        "--topic",
        "ingest",
        "--workers",
        "2",
        "--body-limit",
        "200000",
    ]);
    let good: Vec<String> = lines(2000)
        .into_iter()
        .filter(|l| !BAD.contains(&l.as_str()))
        .take(400)
        .collect();
    let (nd, arr) = good.split_at(300);
    let (status, body) = serve.post("/events", "application/x-ndjson", nd.join("\n").as_bytes());
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 300);
    let array = format!("[{}]", arr.join(","));
    assert_eq!(
        serve
            .post("/events", "application/json", array.as_bytes())
            .0,
        202
    );
    let singles = ["🦀", "🦀", "🔥"];
    for e in singles {
        let body = json!({"user_id": "http-user", "emoji": e}).to_string();
        assert_eq!(
            serve.post("/emoji", "application/json", body.as_bytes()).0,
            202
        );
    }
    let n = good.len() as i64 + singles.len() as i64;
    let stats = serve.wait_for_events(n);
    let mut all = good.clone();
    all.extend(
        singles
            .iter()
            .map(|e| json!({"user_id": "http-user", "emoji": e, "ts": 0}).to_string()),
    );
    let want = oracle(&all);
    for key in ["total", "counts", "event_types"] {
        if let Some(d) = diff(&stats[key], &want[key]) {
            panic!("ingest /stats {key}: {d}");
        }
    }
    // A bad batch produces nothing and names the bad event.
    let bad_batch = format!(
        "[{},{},{},{{\"emoji\":\"x\"}},{}]",
        good[0], good[1], good[2], good[3]
    );
    let (status, body) = serve.post("/events", "application/json", bad_batch.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["detail"]["index"], 3, "{body}");
    assert_eq!(body["detail"]["reason"], "missing_field", "{body}");
    // The same for a batch large enough to be validated off the async runtime.
    let mut large: Vec<String> = good[..300].to_vec();
    large[250] = "{\"user_id\":\"u\",\"emoji\":\"\\u0007\"}".to_owned();
    let body_bytes = large.join("\n");
    assert!(
        body_bytes.len() > 16 * 1024,
        "the batch must take the large-body path"
    );
    let (status, body) = serve.post("/events", "application/x-ndjson", body_bytes.as_bytes());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["detail"]["index"], 250, "{body}");
    assert_eq!(body["detail"]["reason"], "control_character", "{body}");
    assert_eq!(serve.post("/events", "application/xml", b"<e/>").0, 415);
    let big = format!("[{}]", vec![good[0].clone(); 5000].join(","));
    let (status, body) = serve.post("/events", "application/json", big.as_bytes());
    assert_eq!(status, 413, "{body}");
    // One more good event: the total moves by exactly one, so nothing of the refused ones went in.
    let one = json!({"user_id": "http-user", "emoji": "🦀"}).to_string();
    assert_eq!(
        serve.post("/emoji", "application/json", one.as_bytes()).0,
        202
    );
    let stats = serve.wait_for_events(n + 1);
    assert_eq!(stats["total"], json!(want["total"].as_i64().unwrap() + 1));
}

#[test]
#[cfg_attr(
    not(emoflow_broker),
    ignore = "needs tansu (cargo install tansu --locked --features dynostore,libsql); EMOFLOW_REQUIRE_BROKER=1 fails it instead"
)]
fn against_a_real_broker() {
    let Some(tansu) = Tansu::start() else { return };
    let brokers = tansu.brokers.clone();
    let events = lines(2000);
    produce_rdkafka(&brokers, "views-rdkafka", &events);
    for workers in [1, 2] {
        check_serve(&brokers, "views-rdkafka", &events, workers);
    }
    if produce_python(&brokers, "views-python", &events) {
        check_serve(&brokers, "views-python", &events, 2);
    }
    check_replay(&brokers, "views-rdkafka", &events);
    check_ingest(&brokers);
}
