//! Windowed counts (docs/views.md): counts per tumbling event-time window, of which the views
//! show the [`WINDOWS_SHOWN`] newest windows that hold events, and HTTP regroups those of the
//! last hour into wider windows.
//!
//! Workers pre-aggregate their events into `(window, slot) -> delta` before exchanging, so the
//! exchange carries one record per window and emoji per batch, not per event. Each worker then
//! owns the windows that hash to it and keeps a window while it is among its [`WINDOWS_SHOWN`]
//! newest, or starts less than [`ViewConfig::widest_window_ms`] before its newest window. Both
//! only ever exclude more as windows arrive, and a worker's newest window is never newer than
//! the newest of all, so an evicted window is never needed again, and every window that starts
//! less than the widest width before the newest of all is held whole: regrouping those is
//! exact. State is bounded by `(WINDOWS_SHOWN + an hour of windows) x emojis`, whatever the
//! event-time span.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::config::{ViewConfig, WINDOWS_SHOWN};
use crate::update::WindowSlot;

/// A pre-aggregated change to one window counter.
pub type WindowDelta = ((i64, WindowSlot), i64);

/// The window counters `(window start, slot, count)` of the newest windows, as a collection.
pub fn window_counts<'s>(
    deltas: Stream<'s, u64, Vec<WindowDelta>>,
    cfg: ViewConfig,
) -> VecCollection<'s, u64, (i64, WindowSlot, i64), isize> {
    let route = Exchange::new(|d: &WindowDelta| xxhash_rust::xxh3::xxh3_64(&d.0 .0.to_le_bytes()));
    deltas
        .unary_frontier(route, "WindowCounts", |_cap, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, Vec<WindowDelta>)> = BTreeMap::new();
            let mut windows = NewestWindows::new(cfg.widest_window_ms());
            move |(input, frontier), output| {
                input.for_each_stamp(|cap, data| {
                    let Some(cap) = cap.retain_least(output.output_index()) else {
                        return;
                    };
                    let entry = pending
                        .entry(*cap.time())
                        .or_insert_with(|| (cap, Vec::new()));
                    for batch in data {
                        entry.1.append(batch);
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.frontier().less_equal(entry.key()) {
                        break;
                    }
                    let (time, (cap, deltas)) = entry.remove_entry();
                    let mut session = output.session(&cap);
                    windows.apply(deltas, |rec, diff| session.give((rec, time, diff)));
                }
            }
        })
        .as_collection()
}

/// The window counters one worker owns.
#[derive(Debug)]
struct NewestWindows {
    windows: BTreeMap<i64, FxHashMap<WindowSlot, i64>>,
    /// Windows starting less than this before the newest are kept whatever their number.
    keep_ms: i64,
}

impl NewestWindows {
    fn new(keep_ms: i64) -> Self {
        NewestWindows {
            windows: BTreeMap::new(),
            keep_ms,
        }
    }

    /// True when the oldest window is neither among the newest [`WINDOWS_SHOWN`] nor within
    /// `keep_ms` of the newest.
    fn oldest_is_done(&self) -> bool {
        match (
            self.windows.first_key_value(),
            self.windows.last_key_value(),
        ) {
            (Some((&oldest, _)), Some((&newest, _))) => {
                self.windows.len() > WINDOWS_SHOWN && oldest <= newest - self.keep_ms
            }
            _ => false,
        }
    }

    /// Applies one time's deltas, evicts the windows no view needs any more, and reports each
    /// counter that changed as `(old, -1)`, `(new, +1)`.
    fn apply(
        &mut self,
        deltas: Vec<WindowDelta>,
        mut emit: impl FnMut((i64, WindowSlot, i64), isize),
    ) {
        let mut old: FxHashMap<(i64, WindowSlot), i64> = FxHashMap::default();
        for ((window, slot), delta) in deltas {
            let counters = self.windows.entry(window).or_default();
            let count = counters.entry(slot.clone()).or_insert(0);
            old.entry((window, slot)).or_insert(*count);
            *count += delta;
        }
        while self.oldest_is_done() {
            let Some((window, counters)) = self.windows.pop_first() else {
                break;
            };
            for (slot, count) in counters {
                old.entry((window, slot)).or_insert(count);
            }
        }
        for ((window, slot), before) in old {
            let after = self
                .windows
                .get(&window)
                .and_then(|c| c.get(&slot))
                .copied()
                .unwrap_or(0);
            if before == after {
                continue;
            }
            if before != 0 {
                emit((window, slot.clone(), before), -1);
            }
            if after != 0 {
                emit((window, slot, after), 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn keeps_only_the_newest_windows_and_retracts_the_rest() {
        let mut w = NewestWindows::new(10);
        let mut live: HashMap<(i64, WindowSlot, i64), isize> = HashMap::new();
        for start in 0..(WINDOWS_SHOWN as i64 + 5) {
            let deltas = vec![
                ((start * 10, WindowSlot::Total), 2),
                ((start * 10, WindowSlot::Total), 1),
            ];
            w.apply(deltas, |r, d| *live.entry(r).or_insert(0) += d);
        }
        // A late delta for an evicted window changes nothing.
        w.apply(vec![((0, WindowSlot::Total), 1)], |r, d| {
            *live.entry(r).or_insert(0) += d
        });
        live.retain(|_, d| *d != 0);
        assert_eq!(live.len(), WINDOWS_SHOWN);
        assert!(live
            .iter()
            .all(|((s, _, c), d)| *s >= 50 && *c == 3 && *d == 1));
    }

    #[test]
    fn keeps_every_window_of_the_last_hour() {
        // 10 ms windows, kept for 1,000 ms: 100 windows, more than the 60 shown.
        let mut w = NewestWindows::new(1_000);
        let mut live: HashMap<(i64, WindowSlot, i64), isize> = HashMap::new();
        for start in 0..300i64 {
            w.apply(vec![((start * 10, WindowSlot::Total), 1)], |r, d| {
                *live.entry(r).or_insert(0) += d
            });
        }
        live.retain(|_, d| *d != 0);
        let starts: Vec<i64> = live.keys().map(|(s, _, _)| *s).collect();
        assert_eq!(starts.len(), 100);
        assert!(starts.iter().all(|s| *s > 2_990 - 1_000));
    }
}

#[cfg(test)]
mod oracle_tests {
    #[test]
    fn windows_equal_the_oracle() {
        crate::oracle_check::assert_parts_equal_the_oracle(&["windows"]);
    }
}
