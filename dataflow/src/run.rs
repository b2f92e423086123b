//! Running the views over files: an NDJSON file, NDJSON bytes in memory, or Parquet (a file
//! or the archive's directory), on N worker threads, once, to the end.
//!
//! Workers take turns through NDJSON in chunks of [`CHUNK_BYTES`] (by default; see
//! [`emoflow_ingest::ndjson`]), so decoding runs in parallel while events still reach the views
//! in nearly file order, as from parallel Kafka partitions; Parquet's row groups are shared out
//! by size. Every `batch_lines` lines is one dataflow time; a worker never runs more than
//! [`MAX_TIMES_IN_FLIGHT`](crate::runner::clock::MAX_TIMES_IN_FLIGHT) times ahead of the views, which bounds buffered input. A filter
//! change planned for a time is back-filled by each worker reading again what it had read
//! before. The run itself is [`crate::runner`]'s, as for Kafka.

use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};

use crate::config::ViewConfig;
use crate::error::RunError;
use crate::filter::FilterSpec;
use crate::intake::Letters;
use crate::report::DeadLetter;
use crate::runner::schedule::{Planned, ScheduledFilterChange};
use crate::runner::{Input, Plan, RunOutput, Timing};
use crate::source::files::{InputData, CHUNK_BYTES};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads.
    pub workers: usize,
    /// Lines per dataflow time, per worker.
    pub batch_lines: usize,
    /// Parameters of the views.
    pub views: ViewConfig,
    /// Filters in force from the start, `(id, spec)`.
    pub filters: Vec<(String, FilterSpec)>,
    /// Filter changes during the run.
    pub filter_changes: Vec<ScheduledFilterChange>,
    /// Bytes of NDJSON a worker reads before the next worker's turn ([`CHUNK_BYTES`]; tests
    /// use a few hundred, so that every worker reads part of a small input).
    pub chunk_bytes: u64,
    /// When given, workers add the bytes (NDJSON) or rows (Parquet) of input they have read
    /// here (for progress bars).
    pub progress: Option<Arc<AtomicU64>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 1,
            batch_lines: 65_536,
            views: ViewConfig::default(),
            filters: Vec::new(),
            filter_changes: Vec::new(),
            chunk_bytes: CHUNK_BYTES,
            progress: None,
        }
    }
}

impl InputData {
    /// How much of the input (bytes of NDJSON, rows of Parquet) process `process` of
    /// `processes` reads when run with `opts`: the total of its progress bar.
    pub fn process_share(
        &self,
        opts: &RunOptions,
        process: usize,
        processes: usize,
    ) -> Result<u64, RunError> {
        self.share_of_process(opts.workers, opts.chunk_bytes, process, processes)
    }
}

/// Runs the views over `input` and returns them once every line is processed. Rejected lines
/// are counted in the views and, when `dead_letters` is given, sent there with their line.
///
/// With `link`, every process of the cluster runs this over the same input (each reads its
/// workers' shares of it); process 0's output holds the views, the others' `None`.
pub fn run_views(
    input: InputData,
    opts: RunOptions,
    dead_letters: Option<mpsc::Sender<DeadLetter>>,
    link: Option<crate::cluster::Link>,
) -> Result<RunOutput, RunError> {
    let plan = Plan {
        input: Input::Files {
            data: input,
            chunk_bytes: opts.chunk_bytes,
        },
        timing: Timing::Batches(Planned::new(opts.filter_changes)),
        workers: opts.workers,
        views: opts.views,
        filters: opts.filters,
        batch: opts.batch_lines,
        progress: opts.progress,
        background: false,
        letters: dead_letters.map_or(Letters::Counted, Letters::Channel),
        // A file's events were accepted whenever they were written.
        max_future: None,
        deliver: None,
    };
    crate::runner::start(plan, link, |_| {})?.wait()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::files::tests::lines;
    use std::sync::atomic::Ordering;

    #[test]
    fn progress_ends_at_the_process_share() {
        for workers in 1..=2 {
            let input = lines(300);
            let progress = Arc::new(AtomicU64::new(0));
            let opts = RunOptions {
                workers,
                chunk_bytes: 700,
                batch_lines: 16,
                progress: Some(progress.clone()),
                ..RunOptions::default()
            };
            let share = input.process_share(&opts, 0, 1).unwrap_or(0);
            let out = run_views(input, opts, None, None);
            assert!(out.is_ok(), "{:?}", out.err());
            assert_eq!(progress.load(Ordering::Relaxed), share, "{workers} workers");
        }
    }
}
