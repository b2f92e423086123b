//! Test support: runs the whole dataflow over seeded, shuffled events on 1 to 3 workers, each
//! reading part of the input, with small dataflow times, and compares one view's part of the
//! document with the oracle's (`emoflow_fixtures::expected`, a naive computation of the definitions
//! in docs/views.md). Each view's module checks its own part with it, beside its code;
//! `tests/views_vs_oracle.rs` checks them all over random inputs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

use std::sync::Arc;

use emoflow_fixtures::{diff, expected, Params};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};

use crate::ViewsDocument;
use crate::{run_views, FilterSpec, InputData, RunOptions, ScheduledFilterChange, ViewConfig};

/// Filters of every kind of predicate.
fn filters() -> Vec<(String, Value)> {
    vec![
        ("all".into(), json!({})),
        ("party".into(), json!({"emojis": ["🎉", "🔥", "❤️"]})),
        (
            "spenders".into(),
            json!({"event_types": ["purchase"], "min_amount": 5.0, "max_amount": 50.0}),
        ),
        ("vips".into(), json!({"tiers": ["vip"]})),
    ]
}

/// Shuffled generated events (late ones included) and a few bad lines, as NDJSON lines.
fn lines(seed: u64) -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    Generator::new(GeneratorConfig {
        seed,
        users: 40,
        // Sessions split and merge (gap 30 min), windows fill, retention evicts the oldest.
        step_ms: 90_000.0,
        late_fraction: 0.1,
        ..Default::default()
    })
    .write_ndjson(2_000, &mut buf, |_| {})
    .unwrap();
    let mut lines: Vec<Vec<u8>> = buf
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    lines.push(b"not json".to_vec());
    lines.push(br#"{"emoji":"x","ts":1}"#.to_vec());
    lines.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    lines
}

/// The view parameters of the check: retention short enough to evict part of the history.
fn params() -> (ViewConfig, Params) {
    let p = Params {
        retention_ms: 86_400_000,
        ..Params::default()
    };
    let cfg = ViewConfig {
        top_k: p.top_k,
        window_ms: p.window_ms,
        session_gap_ms: p.session_gap_ms,
        retention_ms: p.retention_ms,
    };
    (cfg, p)
}

/// Asserts that the document's `parts` equal the oracle's, on 1, 2 and 3 workers, with half the
/// filters in force from the start and half added mid-run (back-filled).
pub(crate) fn assert_parts_equal_the_oracle(parts: &[&str]) {
    let (cfg, params) = params();
    let all = filters();
    let specs: Vec<(String, FilterSpec)> = all
        .iter()
        .map(|(id, v)| (id.clone(), serde_json::from_value(v.clone()).unwrap()))
        .collect();
    let (initial, later) = specs.split_at(2);
    for seed in [1, 2] {
        let lines = lines(seed);
        let refs: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let want = expected(&refs, &all, params);
        let mut ndjson = lines.join(&b'\n');
        ndjson.push(b'\n');
        let data: Arc<[u8]> = ndjson.into();
        for workers in 1..=3 {
            let opts = RunOptions {
                workers,
                batch_lines: 97,
                chunk_bytes: 4096,
                views: cfg,
                filters: initial.to_vec(),
                filter_changes: later
                    .iter()
                    .map(|(id, spec)| ScheduledFilterChange {
                        at_time: 4,
                        id: id.clone(),
                        spec: spec.clone(),
                        diff: 1,
                    })
                    .collect(),
                ..RunOptions::default()
            };
            let out = run_views(InputData::Memory(data.clone()), opts, None, None).unwrap();
            let ids: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
            let doc = serde_json::to_value(ViewsDocument::render(
                out.state.as_ref().unwrap(),
                &cfg,
                &ids,
            ))
            .unwrap();
            for part in parts {
                if let Some(d) = diff(&doc[*part], &want[*part]) {
                    panic!("{part}, seed {seed}, {workers} workers: {d}");
                }
            }
        }
    }
}
