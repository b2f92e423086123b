//! The views over a Kafka topic on the embedded broker (librdkafka's mock cluster) equal the
//! oracle's, for 1 and 2 workers and 4 partitions, with malformed messages mixed in; rejected
//! messages keep their partition and offset; positions cover every message. (The same is
//! checked against a real broker, tansu, by the binary's end-to-end tests.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

use std::time::Duration;

use emoflow_dataflow::{start_kafka, KafkaInput, KafkaRunOptions, ViewConfig, ViewsDocument};
use emoflow_fixtures::{diff, expected, Params};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{resolve_range, BulkProducer, EmbeddedBroker, OffsetSpec};

const BAD: [&str; 4] = [
    "not json",
    r#"{"emoji":"x","ts":1}"#,
    r#"[1,2]"#,
    r#"{"user_id":"","emoji":"x","ts":1}"#,
];

fn lines() -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    Generator::new(GeneratorConfig {
        users: 50,
        step_ms: 2_000.0,
        ..Default::default()
    })
    .write_ndjson(3000, &mut buf, |_| {})
    .unwrap();
    let mut lines: Vec<Vec<u8>> = buf.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    lines.retain(|l| !l.is_empty());
    for (i, bad) in BAD.iter().enumerate() {
        lines.insert(i * 700 + 3, bad.as_bytes().to_vec());
    }
    lines
}

#[test]
fn views_over_a_topic_equal_the_oracle() {
    let broker = EmbeddedBroker::start().unwrap();
    let brokers = broker.bootstrap_servers().to_owned();
    broker.create_topic("events", 4).unwrap();
    let lines = lines();
    let producer = BulkProducer::new(&brokers, "events").unwrap();
    for (i, line) in lines.iter().enumerate() {
        producer
            .send(&i.to_le_bytes(), line, Some((i % 4) as i32), None)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let ranges =
        resolve_range(&brokers, "events", OffsetSpec::Earliest, OffsetSpec::Latest).unwrap();
    let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
    let want = expected(&refs, &[], Params::default());
    for workers in [1, 2] {
        let input = KafkaInput {
            brokers: brokers.clone(),
            topic: "events".into(),
            ranges: ranges.clone(),
        };
        let opts = KafkaRunOptions {
            workers,
            batch_messages: 500,
            ..Default::default()
        };
        let out = start_kafka(input, opts, None, |_| {})
            .unwrap()
            .wait()
            .unwrap();
        let doc = ViewsDocument::render(out.state.as_ref().unwrap(), &ViewConfig::default(), &[]);
        let actual = serde_json::to_value(&doc).unwrap();
        if let Some(d) = diff(&actual, &want) {
            panic!("{workers} workers: {d}");
        }
        let ends: Vec<(i32, i64)> = (0..4)
            .map(|p| (p, lines.iter().skip(p as usize).step_by(4).count() as i64))
            .collect();
        let positions: Vec<(i32, i64)> = out
            .state
            .as_ref()
            .unwrap()
            .positions
            .clone()
            .into_iter()
            .collect();
        assert_eq!(positions, ends, "{workers} workers");
        let mut dead: Vec<(String, i32, i64)> = out
            .state
            .as_ref()
            .unwrap()
            .dead_letters
            .iter()
            .map(|d| (d.payload.clone(), d.partition, d.offset))
            .collect();
        dead.sort();
        let mut want_dead: Vec<(String, i32, i64)> = BAD
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let index = i * 700 + 3;
                ((*b).to_owned(), (index % 4) as i32, (index / 4) as i64)
            })
            .collect();
        want_dead.sort();
        assert_eq!(dead, want_dead, "{workers} workers");
        assert_eq!(out.state.as_ref().unwrap().recent.len(), 10);
    }
}
