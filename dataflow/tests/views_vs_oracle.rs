//! The dataflow's views equal the oracle's (a naive computation of docs/views.md) over random
//! event sets: for 1, 2 and 3 workers, shuffled arrival orders, many small dataflow times,
//! filters added and removed mid-stream, and retention horizons that evict part of the history.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

use std::sync::Arc;

use emoflow_dataflow::{
    run_views, write_document, FilterSpec, InputData, RunOptions, ScheduledFilterChange,
    SessionsShown, ViewConfig, ViewsDocument,
};
use emoflow_fixtures::{diff, expected, Params};
use proptest::prelude::*;
use serde_json::{json, Value};

const USERS: [&str; 6] = ["ann", "bob", "cy", "dee", "eve", "fay"];
const EMOJIS: [&str; 5] = ["a", "b", "c", "🔥", "❤️"];

/// One input line: mostly valid events in every spelling, sometimes a bad one.
fn line() -> impl Strategy<Value = String> {
    let event = (
        0..USERS.len(),
        prop::option::weighted(0.8, 0..EMOJIS.len()),
        prop::sample::select(vec!["emoji", "click", "purchase"]),
        prop::option::of(prop::sample::select(vec!["free", "vip"])),
        prop::option::weighted(0.3, 0u32..100),
        // Event times cluster so that windows and sessions both split and merge.
        (0i64..40, 0i64..300),
        any::<bool>(),
        0u8..4,
    )
        .prop_map(
            |(u, emoji, etype, tier, amount, (cluster, jitter), alias, ts_form)| {
                let ts = 1_000_000 + cluster * 700 + jitter;
                let mut o = serde_json::Map::new();
                o.insert("user_id".into(), json!(USERS[u]));
                if let Some(e) = emoji {
                    o.insert(
                        if alias { "emoji_type" } else { "emoji" }.into(),
                        json!(EMOJIS[e]),
                    );
                }
                if emoji.is_none() || etype != "emoji" {
                    o.insert(
                        if alias { "event" } else { "event_type" }.into(),
                        json!(etype),
                    );
                }
                if let Some(t) = tier {
                    o.insert(if alias { "user_tier" } else { "tier" }.into(), json!(t));
                }
                if let Some(a) = amount {
                    o.insert("amount".into(), json!(a as f64 / 4.0));
                }
                match ts_form {
                    0 => o.insert(
                        "timestamp".into(),
                        json!(emoflow_ingest::generator::rfc3339(ts)),
                    ),
                    1 => o.insert("timestamp".into(), json!(ts)),
                    _ => o.insert("ts".into(), json!(ts)),
                };
                Value::Object(o).to_string()
            },
        );
    let bad = prop::sample::select(vec![
        "not json".to_owned(),
        "[1]".to_owned(),
        r#"{"emoji":"a","ts":1}"#.to_owned(),
        r#"{"user_id":"ann","emoji":"a","ts":1.5}"#.to_owned(),
        r#"{"user_id":"ann","emoji":"","ts":1}"#.to_owned(),
    ]);
    prop_oneof![12 => event, 1 => bad]
}

fn filters() -> Vec<(String, Value)> {
    vec![
        ("0".into(), json!({})),
        ("fire".into(), json!({"emojis": ["🔥", "a"]})),
        (
            "vip-buyers".into(),
            json!({"event_types": ["purchase"], "tiers": ["vip"], "min_amount": 5.0}),
        ),
        ("cheap".into(), json!({"max_amount": 10.0})),
        (
            "ann".into(),
            json!({"user_ids": ["ann", "zed"], "event_types": ["click", "emoji"]}),
        ),
    ]
}

fn spec(v: &Value) -> FilterSpec {
    serde_json::from_value(v.clone()).unwrap()
}

#[derive(Debug, Clone)]
struct Case {
    lines: Vec<String>,
    workers: usize,
    batch_lines: usize,
    /// Bytes a worker reads before the next one's turn: small, so that every worker reads.
    chunk_bytes: u64,
    params: Params,
    /// Filters present from the start, and changes: (time, filter index, add?).
    initial: Vec<usize>,
    changes: Vec<(u64, usize, bool)>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(line(), 0..160).prop_shuffle(),
        (1usize..=3, 1u64..600),
        1usize..9,
        (
            1usize..4,
            prop::sample::select(vec![50i64, 700, 5000]),
            0i64..900,
        ),
        prop::sample::select(vec![600_000i64, 20_000, 3_000]),
        prop::collection::vec(0usize..5, 0..3),
        prop::collection::vec((1u64..12, 0usize..5, any::<bool>()), 0..5),
    )
        .prop_map(
            |(
                lines,
                (workers, chunk_bytes),
                batch_lines,
                (top_k, window_ms, gap),
                retention_ms,
                initial,
                changes,
            )| Case {
                lines,
                workers,
                batch_lines,
                chunk_bytes,
                params: Params {
                    top_k,
                    window_ms,
                    session_gap_ms: gap,
                    retention_ms,
                },
                initial,
                changes,
            },
        )
}

/// Filters at the start, filters at the end, and the changes between.
type Schedule = (
    Vec<(String, Value)>,
    Vec<(String, Value)>,
    Vec<ScheduledFilterChange>,
);

/// Replays the filter schedule the way the dataflow sees it and returns the final filter set,
/// plus the changes as the run should apply them (only effective ones: no double add/remove).
fn schedule(c: &Case) -> Schedule {
    let all = filters();
    let mut present: Vec<usize> = Vec::new();
    for &i in &c.initial {
        if !present.contains(&i) {
            present.push(i);
        }
    }
    let initial: Vec<_> = present.iter().map(|&i| all[i].clone()).collect();
    let mut changes = Vec::new();
    let mut sorted = c.changes.clone();
    sorted.sort_by_key(|ch| ch.0);
    for (time, i, add) in sorted {
        let here = present.contains(&i);
        if add == here {
            continue;
        }
        if add {
            present.push(i);
        } else {
            present.retain(|&p| p != i);
        }
        changes.push(ScheduledFilterChange {
            at_time: time,
            id: all[i].0.clone(),
            spec: spec(&all[i].1),
            diff: if add { 1 } else { -1 },
        });
    }
    let last: Vec<_> = present.iter().map(|&i| all[i].clone()).collect();
    (initial, last, changes)
}

fn check(c: &Case) -> Result<(), TestCaseError> {
    let (initial, last, changes) = schedule(c);
    let text = c.lines.join("\n");
    let cfg = ViewConfig {
        top_k: c.params.top_k,
        window_ms: c.params.window_ms,
        session_gap_ms: c.params.session_gap_ms,
        retention_ms: c.params.retention_ms,
    };
    let opts = RunOptions {
        workers: c.workers,
        batch_lines: c.batch_lines,
        views: cfg,
        filters: initial
            .iter()
            .map(|(id, v)| (id.clone(), spec(v)))
            .collect(),
        filter_changes: changes,
        chunk_bytes: c.chunk_bytes,
        progress: None,
    };
    let out = run_views(
        InputData::Memory(Arc::from(text.into_bytes().into_boxed_slice())),
        opts,
        None,
        None,
    )
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ids: Vec<String> = last.iter().map(|(id, _)| id.clone()).collect();
    let state = out.state.as_ref().unwrap();
    let rendered = ViewsDocument::render(state, &cfg, &ids);
    // `query` writes the document streaming: the same bytes, made one user at a time.
    let mut streamed = Vec::new();
    write_document(state, &cfg, &ids, SessionsShown::All, false, &mut streamed).unwrap();
    prop_assert_eq!(
        String::from_utf8_lossy(&streamed),
        serde_json::to_string(&rendered).unwrap()
    );
    let actual = serde_json::to_value(rendered).unwrap();
    let lines: Vec<&[u8]> = c.lines.iter().map(|l| l.as_bytes()).collect();
    let want = expected(&lines, &last, c.params);
    if let Some(d) = diff(&actual, &want) {
        return Err(TestCaseError::fail(format!(
            "{d}\nactual: {actual}\nexpected: {want}"
        )));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn views_equal_the_oracle(c in case()) {
        check(&c)?;
    }
}

/// `events` lines of the seeded generator, for `users` users about `step_ms` apart.
fn generated_lines(users: u32, step_ms: f64, events: u64) -> Vec<String> {
    let mut buf = Vec::new();
    emoflow_ingest::generator::Generator::new(emoflow_ingest::generator::GeneratorConfig {
        users,
        step_ms,
        ..Default::default()
    })
    .write_ndjson(events, &mut buf, |_| {})
    .unwrap();
    let text = String::from_utf8(buf).unwrap();
    text.lines().map(str::to_owned).collect()
}

/// The same events in any order and on any number of workers give the same views.
#[test]
fn worker_counts_and_orders_agree_on_generated_data() {
    let mut lines = generated_lines(40, 5_000.0, 3000);
    for (workers, seed) in [(1, 0u64), (2, 1), (3, 2)] {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        lines.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let c = Case {
            lines: lines.clone(),
            workers,
            batch_lines: 97,
            chunk_bytes: 2048,
            params: Params {
                retention_ms: 4 * 3_600_000,
                ..Params::default()
            },
            initial: vec![0, 1, 2, 3, 4],
            changes: vec![(3, 1, false), (5, 1, true), (7, 2, false)],
        };
        check(&c).unwrap();
    }
}

/// An event exactly `retention` behind the newest stays; one a millisecond older leaves, also
/// when it was retained first and only evicted by a later, newer event.
#[test]
fn retention_keeps_the_boundary_and_evicts_past_it() {
    let ev = |user: &str, ts: i64| format!(r#"{{"user_id":"{user}","emoji":"a","ts":{ts}}}"#);
    let params = Params {
        retention_ms: 1000,
        session_gap_ms: 5000,
        ..Params::default()
    };
    let cases = [
        vec![ev("ann", 0), ev("ann", 1000)],
        vec![
            ev("ann", 0),
            ev("bob", 500),
            ev("ann", 1000),
            ev("bob", 1001),
        ],
        vec![ev("ann", 1001), ev("ann", 0), ev("bob", 1), ev("ann", 2)],
    ];
    for lines in cases {
        for batch_lines in [1, 2, 10] {
            for workers in [1, 2] {
                let c = Case {
                    lines: lines.clone(),
                    workers,
                    batch_lines,
                    chunk_bytes: 40,
                    params,
                    initial: vec![0],
                    changes: vec![],
                };
                check(&c).unwrap();
            }
        }
    }
}

/// A filter added at any dataflow time counts every retained event exactly once: what each
/// worker read before the seam is back-filled, what it reads from then on is counted live.
#[test]
fn a_filter_added_at_any_time_counts_each_event_once() {
    let lines = generated_lines(7, 1_000.0, 400);
    for workers in 1..=3 {
        for at in 1..=12u64 {
            let c = Case {
                lines: lines.clone(),
                workers,
                batch_lines: 13,
                chunk_bytes: 512,
                params: Params {
                    retention_ms: 200_000,
                    ..Params::default()
                },
                initial: vec![],
                changes: vec![(at, 0, true), (at, 1, true), (at, 4, true)],
            };
            check(&c).unwrap();
        }
    }
}
