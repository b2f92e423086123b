//! What decoding and validating one event costs: generated events as they come from Kafka,
//! and events written with the aliases and RFC 3339 times other producers send.
//! Run: `cargo bench -p emoflow-ingest --bench decode`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emoflow_ingest::decode_event;
use emoflow_ingest::generator::{Generator, GeneratorConfig};

const EVENTS: u64 = 10_000;

/// `EVENTS` generated events, one NDJSON line each.
fn generated() -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    Generator::new(GeneratorConfig::default())
        .write_ndjson(EVENTS, &mut buf, |_| {})
        .unwrap();
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The same number of events in the aliases' spelling, with RFC 3339 times.
fn aliased() -> Vec<Vec<u8>> {
    (0..EVENTS)
        .map(|i| {
            format!(
                r#"{{"user_id":"user-{}","emoji_type":"🔥","event":"emoji","user_tier":"pro","timestamp":"2026-11-22T10:{:02}:{:02}.{:03}Z"}}"#,
                i % 997,
                (i / 60) % 60,
                i % 60,
                i % 1000
            )
            .into_bytes()
        })
        .collect()
}

fn decode_all(lines: &[Vec<u8>]) -> usize {
    lines
        .iter()
        .filter(|l| decode_event(l, None).is_ok())
        .count()
}

fn decode(c: &mut Criterion) {
    for (name, lines) in [("generated", generated()), ("aliases_rfc3339", aliased())] {
        assert_eq!(
            decode_all(&lines),
            lines.len(),
            "{name}: every line is an event"
        );
        let bytes: usize = lines.iter().map(Vec::len).sum();
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.throughput(Throughput::Elements(lines.len() as u64));
        g.bench_function("events", |b| b.iter(|| decode_all(&lines)));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("bytes", |b| b.iter(|| decode_all(&lines)));
        g.finish();
    }
}

criterion_group!(benches, decode);
criterion_main!(benches);
