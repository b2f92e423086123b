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
    /// This batch's classes by key: their number in `classes`.
    pending: FxHashMap<ClassKey, u32>,
    /// This batch's classes in the order first seen: key, events, one amount of the class (any
    /// is as good).
    classes: Vec<(ClassKey, i64, Option<f64>)>,
    /// The filters (numbers in the full list) the class being drained matches.
    matched: Vec<usize>,
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
            classes: Vec::new(),
            matched: Vec::new(),
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
    /// `bump`, the others at [`ClassCounter::drain`]. Returns the event's class in this batch
    /// (`None` when only filters listing users are counted), which `drain` names again with
    /// the filters it matched.
    pub fn add(
        &mut self,
        e: &Event<'_>,
        bucket: i64,
        mut bump: impl FnMut(usize, i64),
    ) -> Option<ClassId> {
        if let Some(listing) = self.by_user.get(e.user_id.as_ref()) {
            for &i in listing {
                if self.rest[i].matches(e) {
                    bump(i, 1);
                }
            }
        }
        if self.general.is_empty() {
            return None;
        }
        let key = (
            bucket,
            self.names.intern(&e.event_type),
            self.names.intern_opt(e.emoji.as_deref()),
            self.names.intern_opt(e.tier.as_deref()),
            self.interval(e.amount),
        );
        let next = self.classes.len() as u32;
        let class = *self.pending.entry(key).or_insert(next);
        if class == next {
            self.classes.push((key, 0, e.amount));
        }
        self.classes[class as usize].1 += 1;
        Some(ClassId(class))
    }

    /// Matches each class counted since the last drain once: hands `bump(filter, bucket,
    /// events)` its count for every filter it matches, and `matched(class, filters)` the
    /// filters (numbers in the full list) each class matched.
    pub fn drain(
        &mut self,
        mut bump: impl FnMut(usize, i64, i64),
        mut matched: impl FnMut(ClassId, &[usize]),
    ) {
        self.pending.clear();
        let mut list = std::mem::take(&mut self.matched);
        for (c, ((bucket, event_type, emoji, tier, _), n, amount)) in
            self.classes.drain(..).enumerate()
        {
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
            list.clear();
            self.index.for_each_match(&class, |g| {
                bump(general[g], bucket, n);
                list.push(general[g]);
            });
            matched(ClassId(c as u32), &list);
        }
        self.matched = list;
    }
}

/// An event's class in the batch being counted (see [`ClassCounter::add`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassId(pub u32);

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
            counter.drain(|i, bucket, n| *got.entry((i, bucket)).or_default() += n, |_, _| {});
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

        /// Each event's class, matched once, names exactly the filters the event matches.
        #[test]
        fn each_event_is_told_the_filters_it_matches(
            specs in prop::collection::vec(spec(), 0..100),
            events in prop::collection::vec((event(), 0i64..2), 1..60),
        ) {
            let refs: Vec<&FilterSpec> = specs.iter().collect();
            let mut counter = ClassCounter::new(&refs);
            let mut said: Vec<(Option<ClassId>, Vec<usize>)> = Vec::new();
            for (e, bucket) in &events {
                let mut listing = Vec::new();
                let class = counter.add(e, *bucket, |i, _| listing.push(i));
                said.push((class, listing));
            }
            let mut of_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            counter.drain(|_, _, _| {}, |c, list| {
                of_class.insert(c.0, list.to_vec());
            });
            for ((e, _), (class, mut got)) in events.iter().zip(said) {
                got.extend(class.and_then(|c| of_class.get(&c.0)).into_iter().flatten());
                got.sort_unstable();
                let want: Vec<usize> =
                    (0..specs.len()).filter(|&i| specs[i].matches(e)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
