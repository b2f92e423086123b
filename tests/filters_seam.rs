//! Snapshots of a Kafka run on several workers, while events keep arriving, never go back, and
//! each equals the oracle over exactly the messages its positions cover. Filters added while
//! the run reads are back-filled exactly: at every snapshot after the change, each filter's
//! count equals the oracle's over those messages (the seam between back-fill and live counting
//! loses and doubles nothing). An event refused for a time too far ahead of the clock when read stays refused in
//! the back-fill, though the clock has caught up with it by then. On the embedded broker, and
//! on a real one (tansu on loopback).
//!
//! Without tansu its test shows as ignored, with the reason, unless `EMOFLOW_REQUIRE_BROKER=1`
//! (CI sets it), which makes it fail instead.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use emoflow_dataflow::snapshot::ViewState;
use emoflow_dataflow::{
    start_kafka, FilterSpec, KafkaInput, KafkaRunOptions, ViewConfig, ViewsDocument,
};
use emoflow_fixtures::{diff, expected, Params};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{ensure_topic, BulkProducer, EmbeddedBroker, PartitionRange};
use emoflow_ingest::MaxFuture;
use serde_json::{json, Value};

const PARTITIONS: i32 = 4;

/// Messages as produced: `(partition, offset, payload)`, and those emoflow refuses when it
/// reads them (which the oracle, without a clock, cannot tell).
#[derive(Default)]
struct Log {
    next: BTreeMap<i32, i64>,
    messages: Vec<(i32, i64, Vec<u8>)>,
    refused: Vec<(i32, i64)>,
}

impl Log {
    fn send(&mut self, producer: &BulkProducer, partition: i32, line: Vec<u8>) {
        let offset = self.next.entry(partition).or_default();
        producer
            .send(&offset.to_le_bytes(), &line, Some(partition), None)
            .unwrap();
        self.messages.push((partition, *offset, line));
        *offset += 1;
    }
}

fn generated(events: u64) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    Generator::new(GeneratorConfig {
        users: 50,
        step_ms: 2_000.0,
        ..Default::default()
    })
    .write_ndjson(events, &mut buf, |_| {})
    .unwrap();
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The oracle's document over the messages `positions` cover, with `filters`.
fn oracle(log: &Log, positions: &BTreeMap<i32, i64>, filters: &[(String, Value)]) -> Value {
    let is_covered = |p: &i32, o: &i64| positions.get(p).is_some_and(|pos| o < pos);
    let covered: Vec<&[u8]> = log
        .messages
        .iter()
        .filter(|(p, o, _)| is_covered(p, o) && !log.refused.contains(&(*p, *o)))
        .map(|(_, _, l)| l.as_slice())
        .collect();
    let mut doc = expected(&covered, filters, Params::default());
    let refused = log.refused.iter().filter(|(p, o)| is_covered(p, o)).count();
    if refused > 0 {
        doc["rejected"]["future_timestamp"] = json!(refused);
    }
    doc
}

/// The oracle's count of filter `spec` over the messages `positions` cover.
fn oracle_count(log: &Log, positions: &BTreeMap<i32, i64>, spec: &Value) -> i64 {
    let doc = oracle(log, positions, &[("f".into(), spec.clone())]);
    doc["filters"]["f"]["count"].as_i64().unwrap()
}

fn wait_for(states: &Mutex<Vec<ViewState>>, what: &str, done: impl Fn(&ViewState) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if states.lock().unwrap().last().is_some_and(&done) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn covered(state: &ViewState) -> i64 {
    state.positions.values().sum()
}

#[test]
fn on_the_embedded_broker_snapshots_equal_their_prefix_and_filters_back_fill_at_the_seam() {
    let broker = EmbeddedBroker::start().unwrap();
    broker.create_topic("events", PARTITIONS).unwrap();
    back_filled_exactly_at_the_seam(broker.bootstrap_servers());
}

#[test]
#[cfg_attr(
    not(emoflow_broker),
    ignore = "needs tansu (cargo install tansu --locked --features dynostore,libsql); EMOFLOW_REQUIRE_BROKER=1 fails it instead"
)]
fn on_tansu_snapshots_equal_their_prefix_and_filters_back_fill_at_the_seam() {
    let Some(tansu) = support::Tansu::start() else {
        return;
    };
    ensure_topic(
        &tansu.brokers,
        "events",
        PARTITIONS,
        Duration::from_secs(10),
    )
    .unwrap();
    back_filled_exactly_at_the_seam(&tansu.brokers);
}

fn back_filled_exactly_at_the_seam(brokers: &str) {
    let brokers = brokers.to_owned();
    let producer = BulkProducer::new(&brokers, "events").unwrap();
    let lines = generated(4_000);
    let (first, second) = lines.split_at(2_000);
    let mut log = Log::default();
    for (i, line) in first.iter().enumerate() {
        log.send(&producer, i as i32 % PARTITIONS, line.clone());
    }
    // Refused when read (3.5 s ahead, 2 s allowed), acceptable by the time of the back-fill.
    let future =
        json!({"user_id": "visitor-from-the-future", "emoji": "🚀", "ts": now_ms() + 3_500});
    log.refused
        .push((0, log.next.get(&0).copied().unwrap_or(0)));
    log.send(&producer, 0, future.to_string().into_bytes());
    producer.flush(Duration::from_secs(30)).unwrap();

    let states = Arc::new(Mutex::new(Vec::<ViewState>::new()));
    let input = KafkaInput {
        brokers: brokers.clone(),
        topic: "events".into(),
        ranges: (0..PARTITIONS)
            .map(|p| PartitionRange::open(p, 0))
            .collect(),
    };
    let opts = KafkaRunOptions {
        workers: 2,
        batch_messages: 100,
        max_future: MaxFuture(2_000),
        ..Default::default()
    };
    let run = start_kafka(input, opts, None, {
        let states = states.clone();
        move |s| states.lock().unwrap().push(s.clone())
    })
    .unwrap();
    let read_first = log.messages.len() as i64;
    wait_for(&states, "the first half", |s| covered(s) == read_first);
    assert_eq!(
        states.lock().unwrap().last().unwrap().dead_letters.len(),
        1,
        "the event from the future is refused when read"
    );
    // Let the clock catch up with the refused event, so that only the record of the refusal
    // keeps it out of the back-fill.
    std::thread::sleep(Duration::from_millis(2_500));

    let specs: Vec<(&str, Value)> = vec![
        ("party", json!({"emojis": ["🎉", "🔥"]})),
        ("future", json!({"user_ids": ["visitor-from-the-future"]})),
        (
            "purchases",
            json!({"event_types": ["purchase"], "min_amount": 10.0}),
        ),
    ];
    let control = run.filter_control();
    // Events keep coming while the filters are added: the seam falls mid-stream.
    let mut seqs = Vec::new();
    for (i, chunk) in second.chunks(100).enumerate() {
        for (j, line) in chunk.iter().enumerate() {
            log.send(&producer, (i * 100 + j) as i32 % PARTITIONS, line.clone());
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        if i == 3 {
            for (id, spec) in &specs {
                let spec: FilterSpec = serde_json::from_value(spec.clone()).unwrap();
                seqs.push(control.add(*id, spec));
            }
        }
        std::thread::sleep(Duration::from_millis(15));
    }
    let all = log.messages.len() as i64;
    let last = *seqs.last().unwrap();
    wait_for(&states, "every message and the filters", |s| {
        covered(s) == all && control.visible_from(last).is_some_and(|t| s.as_of >= t)
    });
    let visible = control.visible_from(last).unwrap();

    // Snapshots never go back, and each one's views (all of them) equal the oracle's over
    // exactly the messages its positions cover; those that show the filters show them exact.
    let states = states.lock().unwrap().clone();
    for pair in states.windows(2) {
        assert!(pair[0].as_of < pair[1].as_of, "as_of went back or stood");
        for (p, pos) in &pair[0].positions {
            assert!(
                pair[1].positions.get(p).is_some_and(|q| q >= pos),
                "partition {p} went back"
            );
        }
    }
    let cfg = ViewConfig::default();
    let step = (states.len() / 16).max(1);
    let mut checked = 0;
    for (n, s) in states.iter().enumerate() {
        if n % step != 0 && n + 1 != states.len() {
            continue;
        }
        let filters: Vec<(String, Value)> = if s.as_of >= visible {
            specs
                .iter()
                .map(|(id, v)| ((*id).to_owned(), v.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let ids: Vec<String> = filters.iter().map(|(id, _)| id.clone()).collect();
        let actual = serde_json::to_value(ViewsDocument::render(s, &cfg, &ids)).unwrap();
        if let Some(d) = diff(&actual, &oracle(&log, &s.positions, &filters)) {
            panic!(
                "snapshot at as_of {} covering {:?}: {d}",
                s.as_of, s.positions
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "checked {checked} snapshots");
    let showing: Vec<&ViewState> = states.iter().filter(|s| s.as_of >= visible).collect();
    let last_state = showing.last().unwrap();
    assert_eq!(last_state.filter_matches("future"), 0);
    assert!(last_state.filter_matches("party") > 0);
    assert!(last_state.filter_matches("purchases") > 0);

    // Removed, then added again under the same id with other predicates: counted afresh.
    control.remove("party");
    let again = control.add(
        "party",
        serde_json::from_value(json!({"emojis": ["👍"]})).unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while control.visible_from(again).is_none() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the change"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let applied = control.visible_from(again).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    run.stop();
    let out = run.wait().unwrap();
    assert!(
        out.state.as_ref().unwrap().as_of >= applied,
        "the final views include the change"
    );
    let thumbs = oracle_count(
        &log,
        &out.state.as_ref().unwrap().positions,
        &json!({"emojis": ["👍"]}),
    );
    assert!(thumbs > 0);
    assert_eq!(out.state.as_ref().unwrap().filter_matches("party"), thumbs);
}
