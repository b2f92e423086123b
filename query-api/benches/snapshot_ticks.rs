//! What one tick costs the collector and the publisher when the views already hold many keys:
//! applying the tick's updates and publishing a snapshot must cost what changed, not what
//! exists. Run: `cargo bench -p emoflow-query-api --bench snapshot_ticks`.

#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use emoflow_dataflow::snapshot::ViewState;
use emoflow_dataflow::update::{CountKey, ViewUpdate, WindowSlot};
use emoflow_dataflow::ViewConfig;
use emoflow_query_api::Publisher;

/// Emojis whose count changes in one tick.
const CHANGED: usize = 1_000;

fn emoji(i: usize) -> String {
    format!("e{i:07}")
}

/// Views holding `keys` emojis with a lifetime count of 1 each, and their counts.
fn loaded(keys: usize) -> (ViewState, Vec<i64>) {
    let mut state = ViewState::default();
    for i in 0..keys {
        state.apply(ViewUpdate::Count(CountKey::Emoji(emoji(i)), 1), 1);
    }
    state.apply(ViewUpdate::Count(CountKey::Total, keys as i64), 1);
    state.end_time();
    (state, vec![1; keys])
}

fn changed(keys: usize, tick: usize, j: usize) -> usize {
    (tick * CHANGED + j * 7919) % keys
}

/// One tick's updates: `CHANGED` emojis each gain one event, in the lifetime counts and in
/// the tick's window; the previous tick's window leaves (as windows leave the views).
fn tick_updates(counts: &mut [i64], tick: usize) -> Vec<(ViewUpdate, isize)> {
    let mut out = Vec::with_capacity(CHANGED * 4 + 2);
    let keys = counts.len();
    let total: i64 = keys as i64 + (tick as i64 - 1) * CHANGED as i64;
    let window = |tick: usize| tick as i64 * 10_000;
    for j in 0..CHANGED {
        let i = changed(keys, tick, j);
        let key = CountKey::Emoji(emoji(i));
        out.push((ViewUpdate::Count(key.clone(), counts[i]), -1));
        counts[i] += 1;
        out.push((ViewUpdate::Count(key, counts[i]), 1));
        let slot = WindowSlot::Emoji(emoji(i));
        out.push((ViewUpdate::WindowCount(window(tick), slot, 1), 1));
        if tick > 1 {
            let slot = WindowSlot::Emoji(emoji(changed(keys, tick - 1, j)));
            out.push((ViewUpdate::WindowCount(window(tick - 1), slot, 1), -1));
        }
    }
    out.push((ViewUpdate::Count(CountKey::Total, total), -1));
    out.push((
        ViewUpdate::Count(CountKey::Total, total + CHANGED as i64),
        1,
    ));
    out
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_tick");
    group.sample_size(20);
    for keys in [1_000, 1_000_000] {
        let (mut state, mut counts) = loaded(keys);
        let (mut publisher, _rx) = Publisher::new(ViewConfig::default());
        publisher.publish(&state);
        let mut n = 0usize;
        let name = format!("{keys} keys, {CHANGED} changed: apply + publish");
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    n += 1;
                    tick_updates(&mut counts, n)
                },
                |updates| {
                    for (u, d) in updates {
                        state.apply(u, d);
                    }
                    state.end_time();
                    publisher.publish(&state);
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, tick);
criterion_main!(benches);
