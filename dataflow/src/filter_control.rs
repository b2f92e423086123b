//! Filters added and removed while a Kafka run reads: one ordered list of changes that every
//! worker applies between two reads of its partitions, and the dataflow time from which each
//! change shows in the views.
//!
//! A worker applies every change it has not applied yet at once, then back-fills the filters
//! added over what it read before (one pass for all of them, however many), so the seam between
//! back-fill and live counting is the worker's position in each of its partitions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::filter::FilterSpec;

/// One change to the filters a run counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum FilterChange {
    /// Start counting `id` (replacing a filter of that id), back-filled over the history read.
    Add {
        /// The filter's id.
        id: String,
        /// Its predicates.
        spec: FilterSpec,
    },
    /// Stop counting `id`; its counts leave the views.
    Remove {
        /// The filter's id.
        id: String,
    },
}

/// What one worker has applied.
#[derive(Debug, Clone, Copy, Default)]
struct Applied {
    /// The newest change applied.
    seq: u64,
    /// The dataflow time its counts (and every earlier change's) are sent at, at the latest.
    time: u64,
}

#[derive(Debug)]
struct Inner {
    /// The newest change's number (changes are numbered from 1).
    latest: AtomicU64,
    changes: Mutex<Vec<(u64, FilterChange)>>,
    applied: Mutex<Vec<Applied>>,
}

/// Sends filter changes to a running Kafka dataflow (see `Run::filter_control`);
/// clones share the run.
#[derive(Debug, Clone)]
pub struct FilterControl(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked while holding the lock left the list whole (pushes only).
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FilterControl {
    /// A control for `workers` workers (of every process of a cluster).
    pub(crate) fn new(workers: usize) -> Self {
        FilterControl(Arc::new(Inner {
            latest: AtomicU64::new(0),
            changes: Mutex::new(Vec::new()),
            applied: Mutex::new(vec![Applied::default(); workers.max(1)]),
        }))
    }

    /// Queues `change`; returns its number, for [`FilterControl::visible_from`].
    pub fn send(&self, change: FilterChange) -> u64 {
        let mut changes = lock(&self.0.changes);
        // Numbered from the latest, not the list's last: applied changes leave the list.
        let seq = self.0.latest.load(Ordering::Acquire) + 1;
        changes.push((seq, change));
        self.0.latest.store(seq, Ordering::Release);
        seq
    }

    /// Adds filter `id`: its count covers everything read so far (back-filled) and everything
    /// read from now on. Returns the change's number.
    pub fn add(&self, id: impl Into<String>, spec: FilterSpec) -> u64 {
        self.send(FilterChange::Add {
            id: id.into(),
            spec,
        })
    }

    /// Removes filter `id`. Returns the change's number.
    pub fn remove(&self, id: impl Into<String>) -> u64 {
        self.send(FilterChange::Remove { id: id.into() })
    }

    /// The dataflow time from which views show change `seq` whole (back-fill included) on
    /// every worker: a snapshot whose `as_of` is at least this has it. `None` while some worker
    /// has not applied it yet.
    pub fn visible_from(&self, seq: u64) -> Option<u64> {
        let applied = lock(&self.0.applied);
        if applied.iter().all(|a| a.seq >= seq) {
            applied.iter().map(|a| a.time).max()
        } else {
            None
        }
    }

    /// The changes after `seq` (none when there are none, without locking).
    pub(crate) fn changes_after(&self, seq: u64) -> Vec<(u64, FilterChange)> {
        if self.0.latest.load(Ordering::Acquire) <= seq {
            return Vec::new();
        }
        let changes = lock(&self.0.changes);
        let from = changes.partition_point(|(s, _)| *s <= seq);
        changes[from..].to_vec()
    }

    /// Records what the views say every worker has applied (worker -> newest change), as of
    /// the dataflow time `as_of` (process 0's collector tells, in a cluster too).
    pub(crate) fn acknowledged(&self, acks: &std::collections::BTreeMap<u32, u64>, as_of: u64) {
        for (&worker, &seq) in acks {
            self.applied(worker as usize, seq, as_of);
        }
    }

    /// Records that `worker` has applied every change up to `seq`, and that their counts are
    /// sent at dataflow time `time` at the latest.
    /// Changes every worker has applied are dropped, so the list stays as short as the slowest
    /// worker is behind.
    pub(crate) fn applied(&self, worker: usize, seq: u64, time: u64) {
        let everywhere = {
            let mut applied = lock(&self.0.applied);
            if let Some(a) = applied.get_mut(worker) {
                *a = Applied { seq, time };
            }
            applied.iter().map(|a| a.seq).min().unwrap_or(0)
        };
        let mut changes = lock(&self.0.changes);
        let done = changes.partition_point(|(s, _)| *s <= everywhere);
        changes.drain(..done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_visible_once_every_worker_applied_it() {
        let control = FilterControl::new(2);
        let a = control.add("a", FilterSpec::default());
        let b = control.remove("a");
        assert_eq!((a, b), (1, 2));
        assert_eq!(control.changes_after(0).len(), 2);
        assert_eq!(control.changes_after(1).len(), 1);
        assert!(control.changes_after(2).is_empty());
        assert_eq!(control.visible_from(a), None);
        control.applied(0, 2, 40);
        assert_eq!(control.visible_from(a), None, "worker 1 has not applied it");
        control.applied(1, 1, 60);
        assert_eq!(control.visible_from(a), Some(60));
        assert_eq!(control.visible_from(b), None);
        control.applied(1, 2, 80);
        assert_eq!(control.visible_from(b), Some(80));
        assert!(
            lock(&control.0.changes).is_empty(),
            "changes every worker applied are dropped"
        );
        assert_eq!(control.add("c", FilterSpec::default()), 3);
        assert_eq!(control.changes_after(2).len(), 1);
    }
}
