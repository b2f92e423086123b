//! Answers at the edges, checked against a naive oracle over the posted events: regrouped and
//! sliding windows (exact, or refused), far-future event times (refused over HTTP, dead letters
//! from Kafka, sessions untouched), `recent` in arrival order, and `/sessions/{user}` for a user
//! whose sessions left retention. On tansu when it is installed, else the embedded broker.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{produce_lines, Serve, Tansu};

const WINDOW_MS: i64 = 10_000;
const MINUTE: i64 = 60_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One event as posted.
#[derive(Clone)]
struct Posted {
    user: String,
    emoji: String,
    ts: i64,
}

impl Posted {
    fn json(&self) -> String {
        json!({ "user_id": self.user, "emoji": self.emoji, "ts": self.ts }).to_string()
    }
}

/// Two hours of events ending now, denser in the last minutes, with ties among emojis.
fn events(now: i64) -> Vec<Posted> {
    let emojis = ["🔥", "👍", "🎉", "😂", "❤️"];
    let start = now - 2 * 60 * MINUTE;
    (0..3_000i64)
        .map(|i| {
            // Quadratic spacing: more events towards the end.
            let f = (i as f64 / 3_000.0).sqrt();
            Posted {
                user: format!("u{}", i % 37),
                emoji: emojis[((i * 7) % 11 % 5) as usize].to_owned(),
                ts: start + (f * (now - start - 1) as f64) as i64,
            }
        })
        .collect()
}

/// The oracle: per-emoji counts of the events with `ts` in `[from, to)`.
fn counts_in(events: &[Posted], from: i64, to: i64) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in events.iter().filter(|e| (from..to).contains(&e.ts)) {
        *out.entry(e.emoji.clone()).or_insert(0) += 1;
    }
    out
}

/// SQL `RANK()` top-k of counts: (emoji, count, rank), by count then emoji.
fn ranked(counts: &BTreeMap<String, i64>, k: i64) -> Vec<(String, i64, i64)> {
    let mut v: Vec<(String, i64)> = counts.iter().map(|(e, n)| (e.clone(), *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let rank = |n: i64| 1 + v.iter().filter(|(_, m)| *m > n).count() as i64;
    v.iter()
        .map(|(e, n)| (e.clone(), *n, rank(*n)))
        .filter(|(_, _, r)| *r <= k)
        .collect()
}

fn as_counts(v: &Value) -> BTreeMap<String, i64> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_i64().unwrap()))
        .collect()
}

fn start_serve(tansu: Option<&Tansu>, topic: &str) -> Serve {
    let mut args = vec![
        "--window",
        "10s",
        "--retention",
        "1h",
        "--partitions",
        "3",
        "--topic",
        topic,
    ];
    if let Some(t) = tansu {
        args.extend(["--brokers", t.brokers.as_str()]);
    }
    Serve::start(&args)
}

#[test]
fn answers_at_the_edges_equal_the_oracle_or_refuse() {
    let tansu = Tansu::start();
    let serve = start_serve(tansu.as_ref(), "edges");
    let now = now_ms();
    let mut posted = events(now);
    // A user seen only long ago: their session leaves the one-hour retention.
    posted.insert(
        0,
        Posted {
            user: "early-bird".into(),
            emoji: "🐦".into(),
            ts: now - 3 * 60 * MINUTE,
        },
    );
    let body: String = posted.iter().map(|e| e.json() + "\n").collect();
    let (status, answer) = serve.post("/events", "application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{answer}");
    serve.wait_for_events(posted.len() as i64);

    check_tumbling(&serve, &posted);
    check_sliding(&serve, &posted);
    check_future(&serve, tansu.as_ref(), &posted);
    check_recent(&serve, posted.len() as i64);

    let (status, early) = serve.get("/sessions/early-bird");
    assert_eq!(status, 200, "a seen user is known: {early}");
    assert_eq!(early["sessions"], json!([]), "{early}");
    let (status, _) = serve.get("/sessions/never-seen");
    assert_eq!(status, 404);
}

fn check_tumbling(serve: &Serve, posted: &[Posted]) {
    let newest_ts = posted.iter().map(|e| e.ts).max().unwrap();
    let newest_window = newest_ts - newest_ts.rem_euclid(WINDOW_MS);
    for (width, label) in [(MINUTE, "1m"), (20 * MINUTE, "20m"), (60 * MINUTE, "1h")] {
        let (status, got) = serve.get(&format!("/counts?window={label}"));
        assert_eq!(status, 200, "{got}");
        let groups = got["windows"].as_array().unwrap();
        assert!(!groups.is_empty(), "{label}: {got}");
        let newest_group = newest_window - newest_window.rem_euclid(width);
        assert_eq!(groups[0]["start_ms"], newest_group, "{label}");
        for g in groups {
            let (from, to) = (
                g["start_ms"].as_i64().unwrap(),
                g["end_ms"].as_i64().unwrap(),
            );
            assert_eq!(to - from, width);
            let want = counts_in(posted, from, to);
            assert_eq!(as_counts(&g["counts"]), want, "{label} group at {from}");
            assert_eq!(
                g["total"],
                want.values().sum::<i64>(),
                "{label} group at {from}"
            );
        }
        let (status, top) = serve.get(&format!("/top?window={label}&k=2"));
        assert_eq!(status, 200, "{top}");
        let want = ranked(&counts_in(posted, newest_group, newest_group + width), 2);
        let got: Vec<(String, i64, i64)> = top["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["emoji"].as_str().unwrap().to_owned(),
                    e["count"].as_i64().unwrap(),
                    e["rank"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "/top?window={label}");
    }
    for refused in ["/counts?window=2h", "/top?window=61m", "/counts?window=15s"] {
        let (status, body) = serve.get(refused);
        assert_eq!(status, 400, "{refused}: {body}");
        assert!(body["error"].as_str().is_some(), "{refused}: {body}");
    }
}

fn check_sliding(serve: &Serve, posted: &[Posted]) {
    let newest_ts = posted.iter().map(|e| e.ts).max().unwrap();
    let end = newest_ts - newest_ts.rem_euclid(WINDOW_MS) + WINDOW_MS;
    let (status, got) = serve.get("/counts?last=5m");
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["end_ms"], end);
    assert_eq!(got["start_ms"], end - 5 * MINUTE);
    assert_eq!(
        as_counts(&got["counts"]),
        counts_in(posted, end - 5 * MINUTE, end)
    );
    let (status, top) = serve.get("/top?last=5m&k=1");
    assert_eq!(status, 200, "{top}");
    let want = ranked(&counts_in(posted, end - 5 * MINUTE, end), 1);
    assert_eq!(top["top"][0]["emoji"], want[0].0, "{top}");
    assert_eq!(top["top"][0]["count"], want[0].1, "{top}");
}

fn check_future(serve: &Serve, tansu: Option<&Tansu>, posted: &[Posted]) {
    let (_, before) = serve.get("/sessions");
    let two_days = Posted {
        user: "u1".into(),
        emoji: "🚀".into(),
        ts: now_ms() + 2 * 24 * 60 * MINUTE,
    };
    let (status, answer) = serve.post("/events", "application/json", two_days.json().as_bytes());
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["detail"]["reason"], "future_timestamp", "{answer}");

    // Straight into the topic: a dead letter, and nothing else changes.
    let brokers = tansu
        .map(|t| t.brokers.clone())
        .or_else(|| serve.embedded.clone())
        .unwrap();
    produce_lines(&brokers, "edges", &[two_days.json()], 3, now_ms());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, dead) = serve.get("/dead-letters");
        if dead["total"] == 1 {
            assert_eq!(dead["items"][0]["reason"], "future_timestamp", "{dead}");
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter: {dead}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, after) = serve.get("/sessions");
    for key in ["users", "sessions", "mean_duration_ms", "mean_events"] {
        assert_eq!(before[key], after[key], "{key}: {before} then {after}");
    }
    let (_, stats) = serve.get("/stats");
    assert_eq!(stats["total"], posted.len(), "{stats}");
    assert_eq!(stats["rejected"]["future_timestamp"], 1, "{stats}");
}

fn check_recent(serve: &Serve, already: i64) {
    // Posted one at a time, each after the last was acknowledged and a tick later (arrival
    // order is exact between dataflow times; within one, message timestamps of the same
    // millisecond on different partitions cannot be told apart); older event times last, so
    // that arrival order and event-time order disagree.
    let now = now_ms();
    let users: Vec<String> = (0..12).map(|i| format!("late-{i}")).collect();
    for (i, user) in users.iter().enumerate() {
        let e = Posted {
            user: user.clone(),
            emoji: "⏱️".into(),
            ts: now - i as i64 * MINUTE,
        };
        let (status, answer) = serve.post("/emoji", "application/json", e.json().as_bytes());
        assert_eq!(status, 202, "{answer}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The dead letter counts as one more message.
    let stats = serve.wait_for_events(already + users.len() as i64 + 1);
    let recent: Vec<&str> = stats["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = users.iter().rev().take(10).map(String::as_str).collect();
    assert_eq!(
        recent, want,
        "recent is the last 10 accepted, the last first"
    );
}
