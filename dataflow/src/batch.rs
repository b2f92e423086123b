//! The unit the dataflow moves between workers: a batch bound for one worker, carrying the
//! `(user, ts)` pairs of the users it owns and the filter-match counts of the filters it owns.
//!
//! Events travel in columnar batches rather than one record each, so routing costs one
//! allocation per batch, not per event, and the same bytes serialise cheaply when workers sit in
//! different processes. Only what the receiving views need travels: sessions need a user and a
//! time; filter matches are counted where events are read and travel as counts per retention
//! bucket. Each batch also carries its sender's newest event time, so that every receiver learns
//! the global event-time high-water mark (and with it the retention horizon) without a separate
//! broadcast.

use serde::{Deserialize, Serialize};

/// Strings stored back to back, addressed by index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StrColumn {
    text: String,
    ends: Vec<u32>,
}

impl StrColumn {
    /// Appends `s`.
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    /// The `i`-th string.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }

    fn with_capacity_of(like: &StrColumn) -> Self {
        StrColumn {
            text: String::with_capacity(like.text.len()),
            ends: Vec::with_capacity(like.ends.len()),
        }
    }
}

/// One incarnation of a filter: its id and when it was added (a filter deleted and added again
/// under the same id is a new incarnation, whose counts start afresh).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct FilterKey {
    /// The filter's id.
    pub id: String,
    /// When it was added: a number every worker agrees on (the dataflow time of the change).
    pub since: u64,
}

/// A filter incarnation's number in a run, the same in every worker of every process and in the
/// push hub, so that an event can say which filters it matched without naming them: a filter
/// in force at the start is numbered by its place in the run's list of them, one added while
/// running by its change's number (see `filter_control.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FilterNo {
    /// The `n`-th (from 0) of the filters the run started with.
    Initial(u32),
    /// Added by filter change `seq` (numbered from 1).
    Added(u64),
}

/// Matching events of one filter in one retention bucket, counted by one reading worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterDelta {
    /// The filter.
    pub key: FilterKey,
    /// The retention bucket of the events' times.
    pub bucket: i64,
    /// How many matched.
    pub matches: i64,
}

/// A batch for one destination worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The worker this batch is for.
    pub dest: u32,
    /// The newest event time the sender has seen so far (`i64::MIN` when none).
    pub sender_max_ts: i64,
    ts: Vec<i64>,
    users: StrColumn,
    /// Match counts of filters this worker owns.
    pub filter_deltas: Vec<FilterDelta>,
    /// Filters the sender stopped counting (deleted): their counts leave the views.
    pub filters_removed: Vec<FilterKey>,
}

impl EventBatch {
    /// An empty batch for worker `dest`.
    pub fn new(dest: u32) -> Self {
        EventBatch {
            dest,
            sender_max_ts: i64::MIN,
            ts: Vec::new(),
            users: StrColumn::default(),
            filter_deltas: Vec::new(),
            filters_removed: Vec::new(),
        }
    }

    /// Appends an event of `user_id` at `ts`.
    pub fn push(&mut self, user_id: &str, ts: i64) {
        self.ts.push(ts);
        self.users.push(user_id);
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when the batch carries nothing but, perhaps, `sender_max_ts`.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty() && self.filter_deltas.is_empty() && self.filters_removed.is_empty()
    }

    /// An empty batch for `dest` with room for as many events and bytes as `like` holds.
    pub fn with_capacity_of(dest: u32, like: &EventBatch) -> Self {
        EventBatch {
            dest,
            sender_max_ts: i64::MIN,
            ts: Vec::with_capacity(like.len()),
            users: StrColumn::with_capacity_of(&like.users),
            filter_deltas: Vec::new(),
            filters_removed: Vec::new(),
        }
    }

    /// The events in order, as `(user_id, ts)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        (0..self.len()).map(|i| (self.users.get(i), self.ts[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let mut b = EventBatch::new(3);
        b.push("ann", 9);
        b.push("", 7);
        b.push("bob", -1);
        let got: Vec<_> = b.iter().collect();
        assert_eq!(got, [("ann", 9), ("", 7), ("bob", -1)]);
        assert!(!b.is_empty());
        assert!(EventBatch::with_capacity_of(1, &b).is_empty());
    }
}
