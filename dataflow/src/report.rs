//! What the runner says beside the views, in the same dataflow times as the numbers it
//! concerns: where each partition stands, which filter changes each worker has applied, what
//! was rejected or passed over, and the events for live delivery. These travel with the views'
//! updates ([`crate::update`]) as one captured stream of [`Output`], so a snapshot's positions
//! are exactly those its numbers cover, but they are not views.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::batch::{FilterKey, FilterNo};
use crate::update::{ShownEvent, ViewUpdate};

/// One record the dataflow outputs: a view's change, or a report of the runner's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Output {
    /// A change to a view.
    View(ViewUpdate),
    /// A report beside the views.
    Report(RunReport),
}

/// A report of the runner's, with a multiplicity like a view's record. Its large, rare
/// variants are boxed, so that the frequent small records the dataflow moves and sorts (every
/// session change is an [`Output`]) stay small.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RunReport {
    /// The next offset to read in a Kafka partition: where the views stand in the log.
    Position(i32, i64),
    /// The newest filter change a worker has applied, back-fill included (worker, change
    /// number): a filter change is in the views once every worker reports it.
    FilterApplied(u32, u64),
    /// A rejected message (only ever added; the state keeps the newest few thousand).
    DeadLetter(Box<DeadLetter>),
    /// Offsets `from..to` of a partition passed over without a message: the broker no longer
    /// held them when they were to be read (only ever added).
    Skipped(i32, i64, i64),
    /// An accepted event and the filters its reader matched, for live delivery to subscribers
    /// (only with delivery on; not kept in the state: the collector hands them on,
    /// `Collector::take_outbox` in `snapshot.rs`).
    Accepted(Box<ShownEvent>, Matched),
    /// One of the newest matches of a filter the back-fill found (only with delivery on; not
    /// kept in the state).
    Backfilled(FilterKey, Box<ShownEvent>),
}

/// Which filters an accepted event matched, as the worker that read it matched them: live
/// delivery hands the event to those filters' subscribers without matching it again.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Matched {
    /// The newest filter change the reader had applied when it read the event: a filter added
    /// by a later change was not matched against it (the event is in that filter's back-fill).
    pub applied: u64,
    /// The filters it matched; events of one class share one list.
    pub filters: Arc<[FilterNo]>,
}

/// A rejected input, kept so that it can be listed and explained: by the views' dead-letter
/// store (Kafka) or in `query --dead-letters`' file (files).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Kafka partition (a Parquet row's own; 0 for NDJSON).
    pub partition: i32,
    /// Kafka offset (a Parquet row's own; the line's byte offset for NDJSON).
    pub offset: i64,
    /// The rejection reason's name (docs/events.md).
    pub reason: String,
    /// What exactly was wrong.
    pub detail: String,
    /// The message, cut to 1 KiB, as lossy UTF-8 (a Parquet row: its file and row number).
    pub payload: String,
    /// The 1-based line (NDJSON) or row (Parquet) number in a file's input, for a person
    /// looking for it; `None` for Kafka, whose partition and offset say where it is. Not
    /// encoded: it never leaves the process that read the file.
    #[serde(skip)]
    pub line: Option<u64>,
}

/// Most bytes of a rejected message that are kept.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 1024;

impl DeadLetter {
    /// A record of `payload` rejected for `rejection` at `(partition, offset)`.
    pub fn new(
        partition: i32,
        offset: i64,
        rejection: &emoflow_ingest::Rejection,
        payload: &[u8],
    ) -> Self {
        let cut = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)];
        DeadLetter {
            partition,
            offset,
            reason: rejection.reason.as_str().to_owned(),
            detail: rejection.detail.clone(),
            payload: String::from_utf8_lossy(cut).into_owned(),
            line: None,
        }
    }
}
