//! Cluster mode end to end: two `emoflow` processes of two workers each on loopback, reading a
//! topic on a real Kafka-protocol broker (tansu), against the oracle and against one process
//! of one worker on the same topic: the views, the filter matches (back-filled and live, pushed
//! to a subscriber of process 0 from partitions process 1 reads), the archive (each process
//! archives its own partitions), process 1's `/health`, and a clean stop of both.
//!
//! Without tansu the tests show as ignored, with the reason, unless `EMOFLOW_REQUIRE_BROKER=1`
//! (CI sets it, after installing tansu), which makes them fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use emoflow_fixtures::{diff, expected, filter_matches, Params};
use emoflow_ingest::decode_event;
use emoflow_ingest::generator::GeneratorConfig;
use serde_json::{json, Value};
use support::sse::Sse;
use support::{check_with_readers, free_port, produce_lines, temp_dir, ChildGuard, Serve, Tansu};

const PARTITIONS: i32 = 4;
const BASE_MS: i64 = 1_767_225_600_000;
const BAD: [&str; 3] = ["not json", r#"{"emoji":"x","ts":1}"#, "[1,2]"];
const FIRE: &str = "🔥";

fn lines(n: u64, seed: u64) -> Vec<String> {
    let cfg = GeneratorConfig {
        seed,
        users: 50,
        step_ms: 2_000.0,
        ..Default::default()
    };
    support::lines_with_bad(n, cfg, &BAD, (301, 7))
}

/// A hostfile of `n` free loopback ports.
fn hostfile(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join("hosts");
    let text: String = (0..n)
        .map(|_| format!("127.0.0.1:{}\n", free_port()))
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

/// One `emoflow serve` process of the cluster; its HTTP address once it listens.
fn spawn_serve(
    process: usize,
    hosts: &Path,
    brokers: &str,
    topic: &str,
    data_dir: &Path,
) -> (ChildGuard, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args(["serve", "--brokers", brokers, "--topic", topic])
        .args(["--workers", "2", "--processes", "2"])
        .args(["--process", &process.to_string()])
        .args(["--hostfile", hosts.to_str().unwrap()])
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--join-timeout", "60s"])
        .env("EMOFLOW_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("serving http://").nth(1) {
                let _ = tx.send(rest.split('/').next().unwrap().to_owned());
            }
        }
    });
    (ChildGuard(child), rx)
}

/// The events of `lines` whose filter matches, as `(partition, offset)` (line i is at
/// partition i % 4, offset i / 4).
fn placed_matches(lines: &[String], range: std::ops::Range<usize>, f: &Value) -> Vec<(i32, i64)> {
    range
        .filter(|&i| decode_event(lines[i].as_bytes(), None).is_ok_and(|e| filter_matches(f, &e)))
        .map(|i| ((i % 4) as i32, (i / 4) as i64))
        .collect()
}

/// What `check_archive.py` expects of the archive holding the accepted events of `partitions`.
fn archive_expectation(lines: &[String], partitions: &[i32]) -> Value {
    let mut emoji_counts: BTreeMap<String, i64> = BTreeMap::new();
    let mut positions = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let p = (i % 4) as i32;
        if !partitions.contains(&p) {
            continue;
        }
        if let Ok(e) = decode_event(line.as_bytes(), None) {
            positions.push(json!([p, i / 4]));
            if let Some(emoji) = &e.emoji {
                *emoji_counts.entry(emoji.to_string()).or_default() += 1;
            }
        }
    }
    json!({"rows": positions.len(), "positions": positions, "emoji_counts": emoji_counts, "hive": true})
}

fn check_views(ctx: &str, serve: &Serve, want: &Value) {
    let (_, stats) = serve.get("/stats");
    for key in ["total", "counts", "event_types", "top", "rejected"] {
        if let Some(d) = diff(&stats[key], &want[key]) {
            panic!("{ctx}: /stats {key}: {d}");
        }
    }
    let (_, top) = serve.get("/top?k=3");
    if let Some(d) = diff(&top["top"], &want["top"]) {
        panic!("{ctx}: /top: {d}");
    }
    let (_, summary) = serve.get("/sessions");
    for key in ["users", "sessions", "mean_duration_ms", "mean_events"] {
        if let Some(d) = diff(&summary[key], &want["sessions"]["summary"][key]) {
            panic!("{ctx}: /sessions {key}: {d}");
        }
    }
    let by_user = want["sessions"]["by_user"].as_object().unwrap();
    for user in by_user.keys().take(10) {
        let (status, got) = serve.get(&format!("/sessions/{user}"));
        assert_eq!(status, 200, "{ctx}");
        if let Some(d) = diff(&got["sessions"], &by_user[user]) {
            panic!("{ctx}: /sessions/{user}: {d}");
        }
    }
}

/// Reads SSE matches until `n` arrived (or 30 s passed).
fn read_matches(sse: &mut Sse, n: usize) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n && Instant::now() < deadline {
        let Some(ev) = sse.next(Duration::from_secs(5)) else {
            continue;
        };
        if !ev.event.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        got.push((
            v["partition"].as_i64().unwrap() as i32,
            v["offset"].as_i64().unwrap(),
        ));
    }
    got
}

fn wait_until(what: &str, mut ok: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Some(problem) = ok() else { return };
        assert!(Instant::now() < deadline, "{what}: {problem}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_processes_of_two_workers_serve_what_one_process_computes() {
    let Some(tansu) = Tansu::start() else { return };
    let b = tansu.brokers.as_str();
    let topic = "cluster-serve";
    let dir = temp_dir("cluster-serve");
    let all = lines(2400, 11);
    // A multiple of 4: the second batch keeps line i at partition i % 4.
    let split = 1600;
    produce_lines(b, topic, &all[..split], PARTITIONS, BASE_MS);

    let hosts = hostfile(&dir, 2);
    // One --data-dir for both: each process holds its own `process-I` in it.
    let data = dir.join("data");
    let (p1, p1_addr) = spawn_serve(1, &hosts, b, topic, &data);
    let (p0, p0_addr) = spawn_serve(0, &hosts, b, topic, &data);
    let wait = Duration::from_secs(60);
    let zero = Serve {
        child: p0,
        embedded: None,
        addr: p0_addr.recv_timeout(wait).expect("process 0 listens"),
    };
    let one = Serve {
        child: p1,
        embedded: None,
        addr: p1_addr.recv_timeout(wait).expect("process 1 listens"),
    };

    // A filter added on process 0 counts what both processes read before (back-filled)...
    zero.wait_for_events(split as i64);
    let fire = json!({"emojis": [FIRE]});
    let (status, created) = support::http(
        &zero.addr,
        "POST",
        "/filters",
        Some(
            json!({"id": "fire", "emojis": [FIRE]})
                .to_string()
                .as_bytes(),
        ),
        &[("content-type", "application/json")],
    );
    assert_eq!(status, 201, "{created}");
    let (status, mut sse) = Sse::open(&zero.addr, "/filters/fire/stream", None);
    assert_eq!(status, 200);

    // ...and a subscriber of process 0 gets every later match, process 1's partitions too.
    let second = &all[split..];
    produce_lines(b, topic, second, PARTITIONS, BASE_MS + split as i64 * 1000);
    let want_live = placed_matches(&all, split..all.len(), &fire);
    assert!(
        want_live.iter().any(|(p, _)| *p >= 2),
        "process 1 reads partitions 2 and 3"
    );
    let mut got = read_matches(&mut sse, want_live.len());
    got.sort_unstable();
    let mut want_sorted = want_live.clone();
    want_sorted.sort_unstable();
    assert_eq!(got, want_sorted, "live matches pushed by process 0");

    zero.wait_for_events(all.len() as i64);
    let refs: Vec<&[u8]> = all.iter().map(|l| l.as_bytes()).collect();
    let want = expected(&refs, &[("fire".into(), fire.clone())], Params::default());
    check_views("2 x 2 against the oracle", &zero, &want);
    let (_, matches) = zero.get("/filters/fire/matches?limit=5");
    assert_eq!(
        matches["count"], want["filters"]["fire"]["count"],
        "{matches}"
    );

    // Every process answers /health; process 0 reports process 1.
    wait_until("process 1 healthy", || {
        let (status, h) = one.get("/health");
        (status != 200 || h["status"] != "ok" || h["cluster"]["partitions_read"] != json!([2, 3]))
            .then(|| format!("{status} {h}"))
    });
    wait_until("process 0 reports process 1", || {
        let (_, h) = zero.get("/health");
        (h["status"] != "ok" || h["cluster"]["members"][1]["status"] != "ok").then(|| h.to_string())
    });
    let (status, body) = one.get("/stats");
    assert_eq!(status, 421, "process 1 points at process 0: {body}");
    assert_eq!(one.get("/metrics").0, 200);

    // One process of one worker over the same topic computes the same views.
    let filters = dir.join("filters.json");
    std::fs::write(
        &filters,
        json!([{"id": "fire", "emojis": [FIRE]}]).to_string(),
    )
    .unwrap();
    let single = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args(["replay", "--brokers", b, "--topic", topic, "--workers", "1"])
        .args(["--filters", filters.to_str().unwrap()])
        .env("EMOFLOW_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        single.status.success(),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );
    let single: Value = serde_json::from_slice(&single.stdout).unwrap();
    let (_, stats) = zero.get("/stats");
    for key in ["total", "counts", "event_types", "top", "rejected"] {
        if let Some(d) = diff(&stats[key], &single[key]) {
            panic!("2 x 2 against 1 x 1: {key}: {d}");
        }
    }
    assert_eq!(matches["count"], single["filters"]["fire"]["count"]);

    // Stopping process 0 stops process 1 too; each archived its own partitions.
    let (mut p0, mut p1) = (zero.child, one.child);
    let killed = Command::new("kill")
        .args(["-TERM", &p0.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    for (name, child) in [("process 0", &mut p0), ("process 1", &mut p1)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{name} did not stop");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{name} stops cleanly: {status}");
    }
    check_with_readers(
        &data.join("process-0/archive"),
        &archive_expectation(&all, &[0, 1]),
    );
    check_with_readers(
        &data.join("process-1/archive"),
        &archive_expectation(&all, &[2, 3]),
    );
    // Together they are the archive of the whole topic, read as one tree.
    let whole = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args(["query", "--input", data.to_str().unwrap()])
        .env("EMOFLOW_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let whole: Value = serde_json::from_slice(&whole.stdout).unwrap();
    for key in ["total", "counts", "event_types", "top", "sessions"] {
        if let Some(d) = diff(&whole[key], &want[key]) {
            panic!("query over both archives: {key}: {d}");
        }
    }
}

/// Checks a views document (`query`, `replay`) against the oracle's.
fn check_document(ctx: &str, doc: &str, want: &Value) {
    let doc: Value = serde_json::from_str(doc).unwrap();
    for key in [
        "total",
        "counts",
        "event_types",
        "top",
        "windows",
        "sessions",
        "filters",
        "rejected",
    ] {
        if let Some(d) = diff(&doc[key], &want[key]) {
            panic!("{ctx}: {key}: {d}");
        }
    }
}

/// Runs the same command as both processes of a cluster; their outputs (stdout, stderr).
fn run_pair(args: &[&str], hosts: &Path, workers: [&str; 2]) -> [(bool, String, String); 2] {
    let spawn = |process: usize| {
        Command::new(env!("CARGO_BIN_EXE_emoflow"))
            .args(args)
            .args(["--processes", "2", "--process", &process.to_string()])
            .args([
                "--hostfile",
                hosts.to_str().unwrap(),
                "--join-timeout",
                "30s",
            ])
            .args(["--workers", workers[process]])
            .env("EMOFLOW_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, zero) = (spawn(1), spawn(0));
    [zero, one].map(|c| {
        let out = c.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}

#[test]
fn replay_and_query_in_a_cluster_equal_the_oracle() {
    let dir = temp_dir("cluster-batch");
    let all = lines(3000, 5);
    let refs: Vec<&[u8]> = all.iter().map(|l| l.as_bytes()).collect();
    let fire = json!({"emojis": [FIRE]});
    let want = expected(&refs, &[("fire".into(), fire.clone())], Params::default());
    let filters = dir.join("filters.json");
    std::fs::write(
        &filters,
        json!([{"id": "fire", "emojis": [FIRE]}]).to_string(),
    )
    .unwrap();

    // query: every process reads its share of the same file; process 0 prints the views.
    let file = dir.join("events.ndjson");
    std::fs::write(&file, all.join("\n") + "\n").unwrap();
    let hosts = hostfile(&dir, 2);
    let query = [
        "query",
        "--input",
        file.to_str().unwrap(),
        "--filters",
        filters.to_str().unwrap(),
        "--batch-lines",
        "100",
    ];
    let [(ok0, doc, err0), (ok1, out1, err1)] = run_pair(&query, &hosts, ["2", "2"]);
    assert!(ok0 && ok1, "{err0}\n{err1}");
    assert!(out1.is_empty(), "process 1 prints no views: {out1}");
    check_document("query, 2 x 2", &doc, &want);

    // Processes started with different --workers are told so, both of them.
    let hosts = hostfile(&dir, 2);
    let [(ok0, _, err0), (ok1, _, err1)] = run_pair(&query, &hosts, ["2", "1"]);
    assert!(!ok0 && !ok1);
    assert!(
        err0.contains("every process must run the same number of workers"),
        "{err0}"
    );
    assert!(
        err1.contains("it runs --workers 2, this process --workers 1"),
        "{err1}"
    );

    // A hostfile that does not match --processes is named.
    let short = dir.join("short-hosts");
    std::fs::write(&short, format!("127.0.0.1:{}\n", free_port())).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args(query)
        .args(["--processes", "2", "--process", "0"])
        .args(["--hostfile", short.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("lists 1 addresses, and --processes is 2"),
        "{err}"
    );

    // replay: process 0 resolves the range and sends it, with the filters, to process 1.
    let Some(tansu) = Tansu::start() else { return };
    let topic = "cluster-replay";
    produce_lines(&tansu.brokers, topic, &all, PARTITIONS, BASE_MS);
    let hosts = hostfile(&dir, 2);
    let replay = [
        "replay",
        "--brokers",
        tansu.brokers.as_str(),
        "--topic",
        topic,
        "--filters",
        filters.to_str().unwrap(),
    ];
    let [(ok0, doc, err0), (ok1, out1, err1)] = run_pair(&replay, &hosts, ["2", "2"]);
    assert!(ok0 && ok1, "{err0}\n{err1}");
    assert!(out1.is_empty(), "process 1 prints no views: {out1}");
    check_document("replay, 2 x 2", &doc, &want);
}
