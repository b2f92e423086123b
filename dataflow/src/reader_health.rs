//! What a running Kafka dataflow's readers tell `/health` while they run: which partitions
//! they read, and their failures, as they happen (not only when the run ends).

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::source::kafka::reader_of;

/// A poll error older than this no longer makes the readers unhealthy (librdkafka retries by
/// itself; an error that persists is reported again).
pub const ERROR_FRESH_FOR: Duration = Duration::from_secs(10);

/// One worker's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderProblem {
    /// The worker whose reader failed.
    pub worker: usize,
    /// The partitions that worker reads.
    pub partitions: Vec<i32>,
    /// What went wrong.
    pub error: String,
    /// True when the worker stopped (its partitions are no longer read); false for an error
    /// the reader retries.
    pub stopped: bool,
}

#[derive(Debug)]
struct Kept {
    problem: ReaderProblem,
    at: Instant,
}

/// Shared between the workers of a run and whoever reports on it.
#[derive(Debug)]
pub struct ReaderHealth {
    partitions: BTreeSet<i32>,
    /// The partitions this process's workers read (all of them outside a cluster).
    local_partitions: BTreeSet<i32>,
    workers: usize,
    problems: Mutex<Vec<Kept>>,
}

impl ReaderHealth {
    /// The health of `workers` readers sharing `partitions` (each read by [`reader_of`] it),
    /// of which this process runs the workers numbered `local`.
    pub fn new(
        partitions: impl IntoIterator<Item = i32>,
        workers: usize,
        local: std::ops::Range<usize>,
    ) -> Self {
        let workers = workers.max(1);
        let partitions: BTreeSet<i32> = partitions.into_iter().collect();
        let local_partitions = partitions
            .iter()
            .copied()
            .filter(|&p| local.contains(&reader_of(p, workers)))
            .collect();
        ReaderHealth {
            partitions,
            local_partitions,
            workers,
            problems: Mutex::new(Vec::new()),
        }
    }

    /// The partitions the run reads (those the topic had when it started), in all processes.
    pub fn partitions(&self) -> &BTreeSet<i32> {
        &self.partitions
    }

    /// The partitions this process's workers read.
    pub fn local_partitions(&self) -> &BTreeSet<i32> {
        &self.local_partitions
    }

    fn partitions_of(&self, worker: usize) -> Vec<i32> {
        self.partitions
            .iter()
            .copied()
            .filter(|&p| reader_of(p, self.workers) == worker)
            .collect()
    }

    fn keep(&self, worker: usize, error: String, stopped: bool) {
        let Ok(mut problems) = self.problems.lock() else {
            return;
        };
        // One entry per worker: the newest; a stop is never replaced by a later retry error.
        if let Some(k) = problems.iter_mut().find(|k| k.problem.worker == worker) {
            if k.problem.stopped && !stopped {
                return;
            }
            k.problem.error = error;
            k.problem.stopped = stopped;
            k.at = Instant::now();
            return;
        }
        problems.push(Kept {
            problem: ReaderProblem {
                worker,
                partitions: self.partitions_of(worker),
                error,
                stopped,
            },
            at: Instant::now(),
        });
    }

    /// Worker `worker`'s reader hit an error it retries.
    pub fn poll_error(&self, worker: usize, error: String) {
        self.keep(worker, error, false);
    }

    /// Worker `worker` stopped with `error`: its partitions are no longer read.
    pub fn stopped(&self, worker: usize, error: String) {
        self.keep(worker, error, true);
    }

    /// The problems that stand now: every stop, and retried errors newer than
    /// [`ERROR_FRESH_FOR`]; by worker.
    pub fn problems(&self) -> Vec<ReaderProblem> {
        let Ok(problems) = self.problems.lock() else {
            return Vec::new();
        };
        let mut out: Vec<ReaderProblem> = problems
            .iter()
            .filter(|k| k.problem.stopped || k.at.elapsed() < ERROR_FRESH_FOR)
            .map(|k| k.problem.clone())
            .collect();
        out.sort_by_key(|p| p.worker);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_stands_and_names_the_workers_partitions() {
        let h = ReaderHealth::new(0..5, 2, 0..2);
        assert!(h.problems().is_empty());
        h.poll_error(1, "broker down".into());
        h.stopped(1, "consumer: gone".into());
        h.poll_error(1, "later retry".into());
        let p = h.problems();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].partitions, [1, 3]);
        assert_eq!(p[0].error, "consumer: gone");
        assert!(p[0].stopped);
    }
}
