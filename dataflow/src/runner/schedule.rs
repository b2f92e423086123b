//! The one filter schedule: every worker applies the same numbered filter changes in the same
//! order, whether they were planned for fixed dataflow times (files) or sent while the run
//! reads (a live service, through worker 0). And what a worker tells the views about itself:
//! the changes it has applied, and where its source stands.

use std::collections::BTreeMap;

use crate::feed::Feed;
use crate::filter::FilterSpec;
use crate::filter_control::FilterChange;
use crate::report::RunReport;
use crate::views::ViewInputs;

/// A filter change planned for a dataflow time (a file run's `--filter-changes`, and tests):
/// every worker applies it just before that time's batch, and back-fills a filter added over
/// what it read before.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledFilterChange {
    /// Dataflow time (1 = with the first batch of events).
    pub at_time: u64,
    /// The filter's id.
    pub id: String,
    /// Its predicates.
    pub spec: FilterSpec,
    /// `+1` adds it, `-1` removes it.
    pub diff: isize,
}

impl ScheduledFilterChange {
    /// The change itself.
    fn change(&self) -> FilterChange {
        if self.diff > 0 {
            FilterChange::Add {
                id: self.id.clone(),
                spec: self.spec.clone(),
            }
        } else {
            FilterChange::Remove {
                id: self.id.clone(),
            }
        }
    }
}

/// Planned changes, numbered in the order they apply (by time, then as listed).
#[derive(Debug, Clone, Default)]
pub(crate) struct Planned(Vec<ScheduledFilterChange>);

impl Planned {
    /// The plan of `changes`.
    pub(crate) fn new(mut changes: Vec<ScheduledFilterChange>) -> Self {
        changes.sort_by_key(|c| c.at_time);
        Planned(changes)
    }

    /// The time of the last change (0 without any): a run goes on at least until then.
    pub(crate) fn last_time(&self) -> u64 {
        self.0.last().map_or(0, |c| c.at_time)
    }

    /// Hands the changes planned for `time` to `queue`.
    pub(crate) fn due(&self, time: u64, queue: &mut ChangeQueue) {
        for (i, c) in self.0.iter().enumerate().filter(|(_, c)| c.at_time == time) {
            queue.receive(i as u64 + 1, c.change());
        }
    }
}

/// Filter changes as a worker receives them, applied in their order.
#[derive(Debug, Default)]
pub(crate) struct ChangeQueue {
    /// Received, not yet applied, by number.
    waiting: BTreeMap<u64, FilterChange>,
    /// The newest change applied.
    applied: u64,
}

impl ChangeQueue {
    /// Takes change number `seq` (numbered from 1).
    pub(crate) fn receive(&mut self, seq: u64, change: FilterChange) {
        if seq > self.applied {
            self.waiting.insert(seq, change);
        }
    }

    /// Applies every change whose predecessors are applied; true when it applied any.
    pub(crate) fn apply_ready(&mut self, feed: &mut Feed) -> bool {
        let before = self.applied;
        while let Some(change) = self.waiting.remove(&(self.applied + 1)) {
            self.applied += 1;
            feed.apply_change(self.applied, &change);
        }
        self.applied > before
    }

    /// The newest change applied.
    pub(crate) fn applied(&self) -> u64 {
        self.applied
    }
}

/// The newest filter change a worker has applied, as told to the views (so that process 0
/// knows when every worker of every process has it).
#[derive(Debug, Default)]
pub(crate) struct ReportedAck(u64);

impl ReportedAck {
    /// Tells the views that `worker` has applied every change up to `seq`.
    pub(crate) fn report(&mut self, worker: usize, seq: u64, inputs: &mut ViewInputs) {
        if seq == self.0 {
            return;
        }
        let worker = worker as u32;
        if self.0 > 0 {
            inputs
                .reports
                .update(RunReport::FilterApplied(worker, self.0), -1);
        }
        inputs
            .reports
            .update(RunReport::FilterApplied(worker, seq), 1);
        self.0 = seq;
    }
}

/// The positions a worker has told the views about, to send only changes.
#[derive(Debug, Default)]
pub(crate) struct ReportedPositions(BTreeMap<i32, i64>);

impl ReportedPositions {
    /// Tells the views where the worker's partitions stand now.
    pub(crate) fn report(&mut self, now: &BTreeMap<i32, i64>, inputs: &mut ViewInputs) {
        for (&p, &offset) in now {
            let old = self.0.insert(p, offset);
            if old == Some(offset) {
                continue;
            }
            if let Some(old) = old {
                inputs.reports.update(RunReport::Position(p, old), -1);
            }
            inputs.reports.update(RunReport::Position(p, offset), 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ViewConfig;

    fn planned(at_time: u64, id: &str, diff: isize) -> ScheduledFilterChange {
        ScheduledFilterChange {
            at_time,
            id: id.into(),
            spec: FilterSpec::default(),
            diff,
        }
    }

    #[test]
    fn planned_changes_apply_at_their_time_in_their_order() {
        let plan = Planned::new(vec![
            planned(3, "b", 1),
            planned(1, "a", 1),
            planned(3, "a", -1),
        ]);
        assert_eq!(plan.last_time(), 3);
        let mut queue = ChangeQueue::default();
        let mut feed = Feed::new(ViewConfig::default(), 1);
        plan.due(2, &mut queue);
        assert!(!queue.apply_ready(&mut feed));
        plan.due(1, &mut queue);
        assert!(queue.apply_ready(&mut feed));
        assert_eq!(queue.applied(), 1);
        plan.due(3, &mut queue);
        assert!(queue.apply_ready(&mut feed));
        assert_eq!(queue.applied(), 3);
    }

    #[test]
    fn a_change_waits_for_its_predecessors() {
        let mut queue = ChangeQueue::default();
        let mut feed = Feed::new(ViewConfig::default(), 1);
        queue.receive(2, FilterChange::Remove { id: "a".into() });
        assert!(!queue.apply_ready(&mut feed));
        queue.receive(1, FilterChange::Remove { id: "b".into() });
        assert!(queue.apply_ready(&mut feed));
        assert_eq!(queue.applied(), 2);
        // An old change received again is not applied twice.
        queue.receive(1, FilterChange::Remove { id: "b".into() });
        assert!(!queue.apply_ready(&mut feed));
    }
}
