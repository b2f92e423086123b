//! Subscribers end to end: filters created over HTTP after the history is in, their counts and
//! newest matches against the oracle, live push over SSE (a plain-socket client) and WebSocket
//! (tungstenite), clients cut mid-stream that resume with `Last-Event-ID` (also across a
//! `serve` restart), the older broadcast API, and a slow client cut off without loss.
//!
//! The broker test runs on tansu (skipped without it unless `EMOFLOW_REQUIRE_BROKER=1`); the
//! slow-client test on the embedded broker.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use emoflow_fixtures::filter_matches;
use emoflow_ingest::decode_event;
use emoflow_ingest::generator::GeneratorConfig;
use serde_json::{json, Value};
use support::sse::Sse;
use support::{http, Serve, Tansu};

const PARTITIONS: i32 = 3;
/// 2026-01-01T00:00:00Z.
const BASE_MS: i64 = 1_767_225_600_000;

/// An event as the oracle sees it: where it is, its time, its JSON.
#[derive(Debug, Clone)]
struct Placed {
    partition: i32,
    offset: i64,
    ts: i64,
    line: String,
}

/// The log as produced so far: line i of a batch goes to partition i % 3, after what each
/// partition held.
#[derive(Default)]
struct Log {
    next: BTreeMap<i32, i64>,
    placed: Vec<Placed>,
}

impl Log {
    fn produce(&mut self, brokers: &str, topic: &str, lines: &[String]) {
        assert_eq!(lines.len() % PARTITIONS as usize, 0);
        support::produce_lines(brokers, topic, lines, PARTITIONS, BASE_MS);
        for (i, line) in lines.iter().enumerate() {
            let p = i as i32 % PARTITIONS;
            let offset = self.next.get(&p).copied().unwrap_or(0);
            self.next.insert(p, offset + 1);
            if let Ok(e) = decode_event(line.as_bytes(), Some(BASE_MS + i as i64 * 1000)) {
                self.placed.push(Placed {
                    partition: p,
                    offset,
                    ts: e.ts,
                    line: line.clone(),
                });
            }
        }
    }

    /// The events `filter` matches, among those placed from `from` on.
    fn matching(&self, filter: &Value, from: usize) -> Vec<Placed> {
        self.placed[from..]
            .iter()
            .filter(|p| {
                let e = decode_event(p.line.as_bytes(), Some(p.ts)).unwrap();
                filter_matches(filter, &e)
            })
            .cloned()
            .collect()
    }
}

/// `n` lines: generated events with 2 malformed lines among them.
fn generated(n: u64, seed: u64, start_ms: i64) -> Vec<String> {
    let n = n - 2;
    let cfg = GeneratorConfig {
        seed,
        users: 40,
        step_ms: 2_000.0,
        start_ms,
        ..Default::default()
    };
    support::lines_with_bad(
        n,
        cfg,
        &["not json", r#"{"emoji":"x"}"#],
        (n as usize / 3, 5),
    )
}

fn post_json(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    http(
        addr,
        "POST",
        path,
        Some(body.to_string().as_bytes()),
        &[("content-type", "application/json")],
    )
}

fn keys(events: &[Placed]) -> Vec<(i32, i64)> {
    events.iter().map(|e| (e.partition, e.offset)).collect()
}

/// Checks that `got` is exactly `want` once each, in offset order per partition.
fn assert_exactly(got: &[(i32, i64)], want: &[Placed], what: &str) {
    let mut per_partition: BTreeMap<i32, i64> = BTreeMap::new();
    for (p, o) in got {
        let last = per_partition.insert(*p, *o);
        assert!(
            last.is_none_or(|l| l < *o),
            "{what}: partition {p} offset {o} after {last:?} (out of order or twice)"
        );
    }
    let got: BTreeSet<(i32, i64)> = got.iter().copied().collect();
    let want: BTreeSet<(i32, i64)> = keys(want).into_iter().collect();
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} delivered, {} expected; missing {:?}, extra {:?}",
        got.len(),
        want.len(),
        want.difference(&got).take(5).collect::<Vec<_>>(),
        got.difference(&want).take(5).collect::<Vec<_>>()
    );
    assert_eq!(got, want, "{what}");
}

/// Reads SSE events until `n` matches arrived (or 30 s passed); their `(partition, offset)`s.
fn read_matches(sse: &mut Sse, n: usize) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n && Instant::now() < deadline {
        let Some(ev) = sse.next(Duration::from_secs(5)) else {
            continue;
        };
        assert!(
            ev.event.is_empty(),
            "unexpected {} event: {}",
            ev.event,
            ev.data
        );
        let v: Value = serde_json::from_str(&ev.data).unwrap();
        got.push((
            v["partition"].as_i64().unwrap() as i32,
            v["offset"].as_i64().unwrap(),
        ));
    }
    got
}

fn ws_matches(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    n: usize,
) -> Vec<(i32, i64)> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < n && Instant::now() < deadline {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert!(v["type"].is_null(), "unexpected message {v}");
                assert!(v["id"].is_string(), "every message has its resume id: {v}");
                got.push((
                    v["partition"].as_i64().unwrap() as i32,
                    v["offset"].as_i64().unwrap(),
                ));
            }
            Ok(_) => {}
            Err(e) => panic!("websocket: {e}"),
        }
    }
    got
}

/// The events of `events` at or past the resume point `id` (`0:15,1:7`).
fn after(id: &str, events: &[Placed]) -> Vec<Placed> {
    let next: BTreeMap<i32, i64> = id
        .split(',')
        .map(|p| {
            let (p, o) = p.split_once(':').unwrap();
            (p.parse().unwrap(), o.parse().unwrap())
        })
        .collect();
    events
        .iter()
        .filter(|e| e.offset >= next.get(&e.partition).copied().unwrap_or(0))
        .cloned()
        .collect()
}

/// The oracle's `recent`: the newest `limit` matches by time, then partition and offset.
fn newest(matching: &[Placed], limit: usize) -> Vec<(i32, i64)> {
    let mut all = matching.to_vec();
    all.sort_by_key(|e| std::cmp::Reverse((e.ts, e.partition, e.offset)));
    keys(&all[..limit.min(all.len())])
}

fn check_matches(serve: &Serve, id: &str, filter: &Value, log: &Log) {
    let want = log.matching(filter, 0);
    let (status, m) = serve.get(&format!("/filters/{id}/matches?limit=100"));
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["backfill_done"], true, "{m}");
    assert_eq!(m["count"], want.len(), "count of {id}: {m}");
    let recent: Vec<(i32, i64)> = m["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["partition"].as_i64().unwrap() as i32,
                e["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(recent, newest(&want, 100), "recent of {id}");
}

/// Waits until the views have read everything produced.
fn wait_caught_up(serve: &Serve, log: &Log) {
    let want: i64 = log.next.values().sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, h) = serve.get("/health");
        let read: i64 = h["positions"]
            .as_object()
            .map_or(0, |p| p.values().filter_map(Value::as_i64).sum());
        if read >= want {
            return;
        }
        assert!(Instant::now() < deadline, "the views did not catch up: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn filters_over_http_deliver_every_match_once_across_cuts_and_restarts() {
    let Some(tansu) = Tansu::start() else { return };
    let topic = format!("subscribers-{}", std::process::id());
    let dir = support::temp_dir("subscribers");
    let data = dir.to_str().unwrap();
    let args = [
        "--brokers",
        &tansu.brokers,
        "--topic",
        &topic,
        "--partitions",
        "3",
        "--workers",
        "2",
        "--data-dir",
        data,
        "--no-archive",
    ];
    let mut log = Log::default();
    log.produce(&tansu.brokers, &topic, &generated(600, 1, BASE_MS));
    let serve = Serve::start(&args);
    wait_caught_up(&serve, &log);

    // Filters made after the history is in: back-filled, exact.
    let first = decode_event(log.placed[0].line.as_bytes(), None).unwrap();
    let tier = first.tier.as_deref().unwrap().to_owned();
    let by_emoji = json!({"emojis": [log.placed.iter().find_map(|p| {
        decode_event(p.line.as_bytes(), None).unwrap().emoji.map(|e| e.into_owned())
    }).unwrap()]});
    let rich = json!({"tiers": [tier.clone()], "min_amount": 10});
    let users = json!({"user_ids": [first.user_id.to_string(), "nobody"], "event_types": [first.event_type.to_string()]});
    let everything = json!({});
    let mut ids = Vec::new();
    for (id, f) in [
        (Some("by-emoji"), &by_emoji),
        (Some("rich"), &rich),
        (Some("users"), &users),
        (None, &everything),
    ] {
        let mut body = f.clone();
        if let Some(id) = id {
            body["id"] = json!(id);
        }
        let (status, created) = post_json(&serve.addr, "/filters", &body);
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["backfill_done"], true, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        check_matches(&serve, &id, f, &log);
        ids.push((id, f.clone()));
    }
    let (_, listed) = serve.get("/filters");
    assert_eq!(listed["total"], 4, "{listed}");
    let (status, one) = serve.get("/filters/rich");
    assert_eq!((status, &one["tiers"]), (200, &json!([tier])), "{one}");

    // Mistakes are refused, naming the field.
    for (body, field) in [
        (json!({"emojis": []}), "emojis"),
        (json!({"emojiz": ["x"]}), "emojiz"),
        (json!({"min_amount": 5, "max_amount": 1}), "min_amount"),
        (json!({"tiers": "gold"}), "tiers"),
    ] {
        let (status, e) = post_json(&serve.addr, "/filters", &body);
        assert_eq!((status, &e["detail"]["field"]), (400, &json!(field)), "{e}");
    }
    let (status, _) = post_json(&serve.addr, "/filters", &json!({"id": "rich"}));
    assert_eq!(status, 409);
    let (status, e) = http(&serve.addr, "PUT", "/filters/rich", None, &[]);
    assert_eq!(status, 405, "{e}");
    assert!(
        e["error"].is_string(),
        "a wrong method is answered in JSON: {e}"
    );

    // Live: an SSE client and a WebSocket client receive exactly the new matches; a second
    // SSE client is cut after 3 events and resumes with Last-Event-ID.
    let (status, mut sse_a) = Sse::open(&serve.addr, "/filters/by-emoji/stream", None);
    assert_eq!(status, 200, "{}", sse_a.head);
    let (mut sse_b_status, mut sse_b) = Sse::open(&serve.addr, "/filters/by-emoji/stream", None);
    assert_eq!(sse_b_status, 200);
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/ws?filter=rich", serve.addr)).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    let live_from = log.placed.len();
    log.produce(
        &tansu.brokers,
        &topic,
        &generated(300, 2, BASE_MS + 1_300_000),
    );
    let want_a = log.matching(&by_emoji, live_from);
    let want_ws = log.matching(&rich, live_from);
    assert!(
        want_a.len() > 6 && !want_ws.is_empty(),
        "the test needs matches"
    );
    let first_two = read_matches(&mut sse_a, 2);
    let mid_id = sse_a.last_id.clone().unwrap();
    let mut got_a = first_two;
    got_a.extend(read_matches(&mut sse_a, want_a.len() - 2));
    assert_exactly(&got_a, &want_a, "SSE client");
    assert_exactly(
        &ws_matches(&mut ws, want_ws.len()),
        &want_ws,
        "WebSocket client",
    );

    let mut got_b = read_matches(&mut sse_b, 3);
    let cut_at = sse_b.last_id.clone().unwrap();
    drop(sse_b);
    (sse_b_status, sse_b) = Sse::open(&serve.addr, "/filters/by-emoji/stream", Some(&cut_at));
    assert_eq!(sse_b_status, 200);
    got_b.extend(read_matches(&mut sse_b, want_a.len() - 3));
    assert_exactly(&got_b, &want_a, "SSE client cut and resumed");
    drop((sse_a, sse_b, ws));

    // A restart: filters, counts and resumption survive.
    drop(serve);
    let serve = Serve::start(&args);
    // Resumed at once, while the views may still be reading the topic again from its start:
    // what the client had must not come again.
    let (status, mut resumed) = Sse::open(&serve.addr, "/filters/by-emoji/stream", Some(&mid_id));
    assert_eq!(status, 200);
    wait_caught_up(&serve, &log);
    let (_, listed) = serve.get("/filters");
    assert_eq!(listed["total"], 4, "filters survive a restart: {listed}");
    for (id, f) in &ids {
        check_matches(&serve, id, f, &log);
    }
    let after_restart = log.placed.len();
    log.produce(
        &tansu.brokers,
        &topic,
        &generated(90, 3, BASE_MS + 2_000_000),
    );
    let mut want_resumed = after(&mid_id, &want_a);
    want_resumed.extend(log.matching(&by_emoji, after_restart));
    let got = read_matches(&mut resumed, want_resumed.len());
    assert_exactly(
        &got,
        &want_resumed,
        "SSE client resumed across a serve restart",
    );
    drop(resumed);

    // The older broadcast API.
    let (status, reg) = post_json(
        &serve.addr,
        "/register",
        &json!({"client_id": "phone-1", "tiers": [tier.clone()], "app_version": "2.1"}),
    );
    assert_eq!(status, 201, "{reg}");
    let (_, clients) = serve.get("/clients");
    assert_eq!(clients["clients"][0]["client_id"], "phone-1", "{clients}");
    let (status, mut phone) = Sse::open(&serve.addr, "/clients/phone-1/stream", None);
    assert_eq!(status, 200);
    let from = log.placed.len();
    log.produce(
        &tansu.brokers,
        &topic,
        &generated(60, 4, BASE_MS + 2_500_000),
    );
    let want = log.matching(&json!({"tiers": [tier]}), from);
    assert_exactly(
        &read_matches(&mut phone, want.len()),
        &want,
        "registered client",
    );
    let (status, gone) = http(
        &serve.addr,
        "DELETE",
        "/deregister",
        Some(br#"{"client_id":"phone-1"}"#),
        &[("content-type", "application/json")],
    );
    assert_eq!(status, 200, "{gone}");
    let last = phone.next(Duration::from_secs(10)).unwrap();
    assert_eq!(
        last.event, "closed",
        "a deregistered client is told: {last:?}"
    );
    let (_, clients) = serve.get("/clients");
    assert_eq!(clients["total"], 0, "{clients}");

    // Deleting a filter.
    let (status, _) = http(&serve.addr, "DELETE", "/filters/users", None, &[]);
    assert_eq!(status, 204);
    assert_eq!(serve.get("/filters/users").0, 404);
    assert_eq!(
        http(&serve.addr, "DELETE", "/filters/users", None, &[]).0,
        404
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Posts `n` events as NDJSON; returns how many were accepted.
fn post_events(serve: &Serve, n: usize, seq: &mut usize) -> usize {
    let body: String = (0..n)
        .map(|_| {
            *seq += 1;
            format!(
                "{{\"user_id\":\"u{}\",\"emoji\":\"e{}\",\"ts\":{}}}\n",
                *seq % 50,
                *seq % 7,
                BASE_MS + *seq as i64
            )
        })
        .collect();
    let (status, r) = serve.post("/events", "application/x-ndjson", body.as_bytes());
    assert_eq!(status, 202, "{r}");
    n
}

/// Reads every event of `path` until `n` arrived, reconnecting with the last id whenever the
/// server ends the stream; the events, and the reasons it was ended.
fn read_resuming(addr: &str, path: &str, first: Sse, n: usize) -> (Vec<(i32, i64)>, Vec<String>) {
    let mut sse = first;
    let (mut got, mut closes) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} events arrived",
            got.len()
        );
        match sse.next(Duration::from_secs(5)) {
            Some(ev) if ev.event == "closed" => {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                closes.push(v["reason"].as_str().unwrap().to_owned());
                let resume = v["resume"].as_str().unwrap().to_owned();
                assert_eq!(Some(&resume), sse.last_id.as_ref(), "resume is the last id");
                let (status, again) = Sse::open(addr, path, Some(&resume));
                assert_eq!(status, 200);
                sse = again;
            }
            Some(ev) => {
                let v: Value = serde_json::from_str(&ev.data).unwrap();
                got.push((
                    v["partition"].as_i64().unwrap() as i32,
                    v["offset"].as_i64().unwrap(),
                ));
            }
            None => {}
        }
    }
    (got, closes)
}

/// Events posted in the slow-client test: about 8 MB of SSE, more than the loopback socket
/// buffers hold for a client that reads nothing.
const FLOOD: usize = 120_000;

#[test]
fn a_slow_client_is_cut_off_and_resumes_without_loss() {
    // Memory holds few events: the slow client's resume reads the Kafka log back.
    let serve = Serve::start(&[
        "--subscriber-buffer",
        "256",
        "--push-memory-events",
        "5000",
        "--workers",
        "1",
    ]);
    let (status, _) = post_json(&serve.addr, "/filters", &json!({"id": "all"}));
    assert_eq!(status, 201);
    let path = "/filters/all/stream";
    let (_, slow) = Sse::open(&serve.addr, path, None);
    let (_, fast) = Sse::open(&serve.addr, path, None);
    let addr = serve.addr.clone();
    // The fast client reads as events come (resuming when cut off in a burst); the slow one
    // reads nothing until everything is posted.
    let fast_reader = std::thread::spawn(move || read_resuming(&addr, path, fast, FLOOD));
    let mut seq = 0;
    let mut sent = 0;
    while sent < FLOOD {
        sent += post_events(&serve, 2000, &mut seq);
    }
    let (_, h) = serve.get("/health");
    assert!(
        h["subscribers"]["cut_off"].as_u64().unwrap_or(0) >= 1,
        "a client that reads nothing is cut off: {h}"
    );
    assert_eq!(h["status"], "ok", "the views carry on: {h}");
    let (got, closes) = read_resuming(&serve.addr, path, slow, FLOOD);
    assert!(
        closes.iter().any(|r| r.contains("too slowly")),
        "the slow client is told why: {closes:?}"
    );
    assert_unique_and_complete(&got, FLOOD, "slow client");
    let (fast_got, _) = fast_reader.join().unwrap();
    assert_unique_and_complete(&fast_got, FLOOD, "fast client");
}

fn assert_unique_and_complete(got: &[(i32, i64)], n: usize, what: &str) {
    let set: BTreeSet<&(i32, i64)> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "{what}: an event came twice");
    assert_eq!(got.len(), n, "{what}");
    // The embedded topic is fresh: offsets 0.. in every partition, none missing.
    let mut per: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (p, o) in got {
        per.entry(*p).or_default().push(*o);
    }
    for (p, offsets) in per {
        let want: Vec<i64> = (0..offsets.len() as i64).collect();
        assert_eq!(
            offsets, want,
            "{what}: partition {p} in order, none missing"
        );
    }
}
