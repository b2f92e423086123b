//! Windowed counts (SPEC section 3): counts per tumbling event-time window, of which the views
//! show the [`WINDOWS_SHOWN`] newest windows that hold events.
//!
//! Workers pre-aggregate their events into `(window, slot) -> delta` before exchanging, so the
//! exchange carries one record per window and emoji per batch, not per event. Each worker then
//! owns the windows that hash to it and keeps only the newest [`WINDOWS_SHOWN`] of them: a
//! window with that many newer non-empty windows on one worker has at least as many globally,
//! and windows never lose events, so it can never be shown again. State is therefore bounded
//! by `WINDOWS_SHOWN x workers x emojis`, whatever the event-time span.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::config::WINDOWS_SHOWN;
use crate::update::WindowSlot;

/// A pre-aggregated change to one window counter.
pub type WindowDelta = ((i64, WindowSlot), i64);

/// The window counters `(window start, slot, count)` of the newest windows, as a collection.
pub fn window_counts<'s>(
    deltas: Stream<'s, u64, Vec<WindowDelta>>,
) -> VecCollection<'s, u64, (i64, WindowSlot, i64), isize> {
    let route = Exchange::new(|d: &WindowDelta| xxhash_rust::xxh3::xxh3_64(&d.0 .0.to_le_bytes()));
    deltas
        .unary_frontier(route, "WindowCounts", |_cap, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, Vec<WindowDelta>)> = BTreeMap::new();
            let mut windows = NewestWindows::default();
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
#[derive(Debug, Default)]
struct NewestWindows {
    windows: BTreeMap<i64, FxHashMap<WindowSlot, i64>>,
}

impl NewestWindows {
    /// Applies one time's deltas, evicts windows beyond the newest [`WINDOWS_SHOWN`], and reports
    /// each counter that changed as `(old, -1)`, `(new, +1)`.
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
        while self.windows.len() > WINDOWS_SHOWN {
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
        let mut w = NewestWindows::default();
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
}
