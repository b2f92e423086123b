//! Counting matches of many filters without matching every event against them: events that no
//! filter can tell apart fall into one class, and each class is matched once per batch.
//!
//! Filters that list users are looked up by the event's user (a handful at most per user).
//! For every other filter, only an event's type, emoji, tier and amount matter, and of the
//! amount only where it falls among the filters' bounds. So a batch's events are counted per
//! class `(retention bucket, type, emoji, tier, amount interval)`, and at the end of the batch
//! each class is matched once ([`FilterIndex`]) and its count added to every filter it
//! matches. With 10,000 filters, thousands of which match a typical event, this turns thousands
//! of increments per event into a few hash look-ups per event.

use emoflow_ingest::Event;
use rustc_hash::FxHashMap;

use crate::filter::FilterSpec;
use crate::filter_index::FilterIndex;
use crate::intern::{Interner, Sym};

/// `(bucket, event type, emoji, tier, amount interval)`; interval -1: no amount.
type ClassKey = (i64, Sym, Sym, Sym, i64);

/// Per-batch match counting for a fixed list of filters (see the module documentation).
#[derive(Debug, Default)]
pub struct ClassCounter {
    /// Filters that list no users, indexed; `general[i]` is their number in the full list.
    index: FilterIndex,
    general: Vec<usize>,
    /// Every amount bound of those filters, sorted, without repeats.
    bounds: Vec<f64>,
    names: Interner,
    /// Events of this batch per class, with one amount of the class (any is as good).
    pending: FxHashMap<ClassKey, (i64, Option<f64>)>,
    /// User -> the filters (numbers in the full list) that list them.
    by_user: FxHashMap<Box<str>, Vec<usize>>,
    /// Each filter's predicates other than `user_ids` (known to hold once looked up by user).
    rest: Vec<FilterSpec>,
}

impl ClassCounter {
    /// A counter for `specs`; filter `i` is the `i`-th of them.
    pub fn new(specs: &[&FilterSpec]) -> Self {
        let mut by_user: FxHashMap<Box<str>, Vec<usize>> = FxHashMap::default();
        let mut general = Vec::new();
        let mut bounds = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            match &spec.user_ids {
                Some(users) => {
                    for u in users {
                        let list = by_user.entry(u.as_str().into()).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                None => {
                    general.push(i);
                    bounds.extend(spec.min_amount.map(|a| a.0));
                    bounds.extend(spec.max_amount.map(|a| a.0));
                }
            }
        }
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let general_specs: Vec<&FilterSpec> = general.iter().map(|&i| specs[i]).collect();
        ClassCounter {
            index: FilterIndex::new(&general_specs),
            general,
            bounds,
            names: Interner::default(),
            pending: FxHashMap::default(),
            by_user,
            rest: specs
                .iter()
                .map(|s| FilterSpec {
                    user_ids: None,
                    ..(*s).clone()
                })
                .collect(),
        }
    }

    /// Where `amount` falls among the bounds: amounts with the same interval satisfy the same
    /// bounds.
    fn interval(&self, amount: Option<f64>) -> i64 {
        let Some(a) = amount else { return -1 };
        let below = self.bounds.partition_point(|b| *b < a);
        let on = self.bounds.get(below) == Some(&a);
        2 * below as i64 + i64::from(on)
    }

    /// Counts `e` (in retention bucket `bucket`): filters listing its user at once through
    /// `bump`, the others at [`ClassCounter::drain`].
    pub fn add(&mut self, e: &Event<'_>, bucket: i64, mut bump: impl FnMut(usize, i64)) {
        if let Some(listing) = self.by_user.get(e.user_id.as_ref()) {
            for &i in listing {
                if self.rest[i].matches(e) {
                    bump(i, 1);
                }
            }
        }
        if self.general.is_empty() {
            return;
        }
        let key = (
            bucket,
            self.names.intern(&e.event_type),
            self.names.intern_opt(e.emoji.as_deref()),
            self.names.intern_opt(e.tier.as_deref()),
            self.interval(e.amount),
        );
        self.pending.entry(key).or_insert((0, e.amount)).0 += 1;
    }

    /// Matches each class counted since the last drain once, and hands `bump(filter, bucket,
    /// events)` its count for every filter it matches.
    pub fn drain(&mut self, mut bump: impl FnMut(usize, i64, i64)) {
        for ((bucket, event_type, emoji, tier, _), (n, amount)) in self.pending.drain() {
            let name = |s: Sym| (s != 0).then(|| std::borrow::Cow::Borrowed(self.names.name(s)));
            let class = Event {
                ts: 0,
                user_id: std::borrow::Cow::Borrowed(""),
                emoji: name(emoji),
                event_type: std::borrow::Cow::Borrowed(self.names.name(event_type)),
                tier: name(tier),
                amount,
            };
            let general = &self.general;
            self.index
                .for_each_match(&class, |g| bump(general[g], bucket, n));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::filter_strategies::{event, spec};

    proptest! {
        /// Counts per (filter, bucket) equal counting each event by the definition.
        #[test]
        fn class_counts_equal_counting_event_by_event(
            specs in prop::collection::vec(spec(), 0..100),
            events in prop::collection::vec((event(), 0i64..2), 1..60),
        ) {
            let refs: Vec<&FilterSpec> = specs.iter().collect();
            let mut counter = ClassCounter::new(&refs);
            let mut got: BTreeMap<(usize, i64), i64> = BTreeMap::new();
            for (e, bucket) in &events {
                counter.add(e, *bucket, |i, n| *got.entry((i, *bucket)).or_default() += n);
            }
            counter.drain(|i, bucket, n| *got.entry((i, bucket)).or_default() += n);
            let mut want: BTreeMap<(usize, i64), i64> = BTreeMap::new();
            for (e, bucket) in &events {
                for (i, s) in specs.iter().enumerate() {
                    if s.matches(e) {
                        *want.entry((i, *bucket)).or_default() += 1;
                    }
                }
            }
            prop_assert_eq!(got, want);
        }
    }
}
