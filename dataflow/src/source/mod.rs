//! Where a worker's events come from, behind one small trait: NDJSON byte ranges
//! ([`ndjson`]), Parquet row groups ([`parquet`]), Kafka partitions ([`kafka`]). The runner's
//! one worker loop (`runner/worker.rs`) reads batches from a [`Source`] into its feed, reports
//! its positions, and asks it for its history when a filter is added.

pub mod files;
pub mod kafka;
pub(crate) mod ndjson;
pub(crate) mod parquet;

use std::collections::BTreeMap;

use emoflow_ingest::Event;

use crate::error::RunError;
use crate::feed::Feed;
use crate::intake::Intake;

/// Receives the events of a source's history, with where each was read when the source has
/// positions.
pub(crate) type History<'f> = dyn FnMut(&Event<'_>, Option<(i32, i64)>) + 'f;

/// What one read brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Records read (accepted or rejected).
    pub records: usize,
    /// How much of the input that was, in the unit of its progress bar (bytes of NDJSON,
    /// rows of Parquet, Kafka messages).
    pub amount: u64,
}

/// One worker's share of the input.
pub(crate) trait Source {
    /// Reads up to `budget` records into `feed`, each through `intake`.
    fn read(
        &mut self,
        budget: usize,
        feed: &mut Feed,
        intake: &mut Intake,
    ) -> Result<Batch, RunError>;

    /// True once this worker's share is read to its end (never, for a live topic).
    fn is_finished(&self) -> bool;

    /// Hands every event accepted so far to `f` again, with where it was read when the source
    /// has positions: the history a filter added during the run is back-filled from (the
    /// views keep no events).
    fn history(&mut self, f: &mut History<'_>) -> Result<(), RunError>;

    /// Partition -> next offset, for a source read by position: what the views' numbers
    /// cover.
    fn positions(&self) -> Option<&BTreeMap<i32, i64>> {
        None
    }

    /// True while reading more must wait (the archive is behind): the source holds the rest.
    fn must_wait(&self) -> bool {
        false
    }

    /// False for a worker that has nothing to read (more workers than partitions).
    fn has_input(&self) -> bool {
        true
    }

    /// Offsets `from..to` passed over without a message since the last call, per partition.
    fn take_skips(&mut self) -> Vec<(i32, i64, i64)> {
        Vec::new()
    }

    /// The newest error the source recovers from by itself, for `/health`.
    fn take_error(&mut self) -> Option<String> {
        None
    }

    /// The run ends: hands on whatever the source still holds (the archive's rows).
    fn finish(&mut self) {}
}
