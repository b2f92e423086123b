//! The views' hot paths, each alone: pre-aggregating a worker's events (counters, windows,
//! routing users' events) with and without filters, matching events against many filters,
//! extending one user's sessions, and the whole views dataflow on one worker per batch of
//! events (counts, top-K, windows, sessions, filter buckets).
//! Run: `cargo bench -p emoflow-dataflow --bench hot_paths`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use emoflow_dataflow::feed::Feed;
use emoflow_dataflow::filter_index::FilterIndex;
use emoflow_dataflow::sessions::UserSessions;
use emoflow_dataflow::views::build_views;
use emoflow_dataflow::{FilterSpec, ViewConfig};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::{decode_event, Event};

const EVENTS: usize = 10_000;

fn lines() -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    Generator::new(GeneratorConfig::default())
        .write_ndjson(EVENTS as u64, &mut buf, |_| {})
        .unwrap();
    buf.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn events(lines: &[Vec<u8>]) -> Vec<Event<'_>> {
    lines
        .iter()
        .map(|l| decode_event(l, None).unwrap())
        .collect()
}

/// `n` filters of the kinds users make: an emoji, a tier, an event type with an amount bound.
fn filters(n: usize) -> Vec<(String, FilterSpec)> {
    let emojis = ["🔥", "❤️", "😂", "👍", "🎉", "😮", "👏", "😢"];
    (0..n)
        .map(|i| {
            let json = match i % 3 {
                0 => format!(r#"{{"emojis":["{}"]}}"#, emojis[i % emojis.len()]),
                1 => format!(
                    r#"{{"tiers":["pro"],"emojis":["{}"]}}"#,
                    emojis[(i / 3) % 8]
                ),
                _ => format!(r#"{{"event_types":["purchase"],"min_amount":{}}}"#, i % 50),
            };
            (format!("f{i}"), serde_json::from_str(&json).unwrap())
        })
        .collect()
}

fn feed(c: &mut Criterion) {
    let lines = lines();
    let events = events(&lines);
    let mut g = c.benchmark_group("feed_accept");
    g.throughput(Throughput::Elements(events.len() as u64));
    for n in [0, 10, 100] {
        let fs = filters(n);
        g.bench_function(format!("{n}_filters"), |b| {
            b.iter_batched(
                || {
                    let mut feed = Feed::new(ViewConfig::default(), 2);
                    feed.add_initial_filters(&fs);
                    feed
                },
                |mut feed| {
                    for (i, e) in events.iter().enumerate() {
                        feed.accept(e, 0, i as i64, 0);
                    }
                    feed
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn filter_index(c: &mut Criterion) {
    let lines = lines();
    let events = events(&lines);
    let mut g = c.benchmark_group("filter_index");
    g.throughput(Throughput::Elements(events.len() as u64));
    for n in [10, 1_000] {
        let fs = filters(n);
        let specs: Vec<&FilterSpec> = fs.iter().map(|(_, s)| s).collect();
        let mut index = FilterIndex::new(&specs);
        g.bench_function(format!("{n}_filters"), |b| {
            b.iter(|| {
                let mut matches = 0usize;
                for e in &events {
                    index.for_each_match(e, |_| matches += 1);
                }
                matches
            })
        });
    }
    g.finish();
}

fn sessions(c: &mut Criterion) {
    // One heavy user: an event every 20 s on average, every 50th one late by 10 minutes.
    let times: Vec<i64> = (0..EVENTS as i64)
        .map(|i| i * 20_000 - if i % 50 == 0 { 600_000 } else { 0 })
        .collect();
    let gap = ViewConfig::default().session_gap_ms;
    let mut g = c.benchmark_group("sessions");
    g.throughput(Throughput::Elements(times.len() as u64));
    g.bench_function("insert_one_user", |b| {
        b.iter(|| {
            let mut s = UserSessions::default();
            let mut changes = 0usize;
            for &t in &times {
                s.insert(t, gap, |t| t / 3_600_000, &mut |_, _| changes += 1);
            }
            changes
        })
    });
    g.finish();
}

/// The whole views dataflow on one worker: per iteration, one batch of events pre-aggregated,
/// handed over at a new time, and run until the views are complete for it.
fn views_dataflow(c: &mut Criterion) {
    let lines = lines();
    let decoded = events(&lines);
    let mut g = c.benchmark_group("views_dataflow");
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.sample_size(20);
    let alloc = timely::communication::Allocator::Thread(Default::default());
    let mut worker = timely::worker::Worker::new(
        timely::WorkerConfig::default(),
        alloc,
        Some(std::time::Instant::now()),
    );
    let cfg = ViewConfig::default();
    let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
        let (inputs, updates) = build_views(scope, cfg);
        let (probe, _) = updates.probe();
        (inputs, probe)
    });
    let mut feed = Feed::new(cfg, 1);
    feed.add_initial_filters(&filters(10));
    let mut time = 1u64;
    // Event times move on with each batch, as a live stream's do.
    let shift = 10 * 60 * 1000;
    g.bench_function("batch_of_10000_events_10_filters", |b| {
        b.iter(|| {
            for (i, e) in decoded.iter().enumerate() {
                let mut e = e.clone();
                e.ts += time as i64 * shift;
                feed.accept(&e, 0, i as i64, 0);
            }
            feed.flush_into(&mut inputs);
            time += 1;
            inputs.advance_to(time);
            while probe.less_than(&time) {
                worker.step();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, feed, filter_index, sessions, views_dataflow);
criterion_main!(benches);
