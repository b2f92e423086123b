//! Running the views over a Kafka topic: live (`serve`, until stopped) or over a fixed offset
//! range (`replay`, `bench --source kafka`).
//!
//! Each partition is read by one worker ([`crate::source::kafka`]). Dataflow times are
//! processing-time epochs that worker 0 closes each tick and broadcasts
//! ([`crate::runner::clock`]); each epoch's data is what the workers read during that tick, and
//! each worker reports its partitions' positions into the views, so a snapshot's `as_of` comes
//! with the exact offsets its numbers cover.
//!
//! In a cluster ([`crate::cluster`]) every update goes to worker 0, in process 0, whose
//! collector alone holds the views; the other processes report how far the dataflow has come
//! and where their own readers stand.
//!
//! Filters added while the run reads ([`KafkaRun::filter_control`]) are back-filled by each
//! worker over its partitions from where the run started to its positions, read again from
//! Kafka: the views hold no events, and Kafka's log is the history they were counted from.

use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};

use emoflow_ingest::MaxFuture;

use crate::archive_tap::ArchiveTap;
use crate::cluster::Link;
use crate::config::ViewConfig;
use crate::error::RunError;
use crate::filter::FilterSpec;
use crate::intake::Letters;
use crate::runner::collector::Delivery;
use crate::runner::{Input, Plan, Run, Timing};
use crate::snapshot::ViewState;
use crate::source::kafka::KafkaInput;

/// A running Kafka dataflow.
pub type KafkaRun = Run;

/// What a finished Kafka run produced (`lines`: the messages this process read).
pub type KafkaRunOutput = crate::runner::RunOutput;

/// How to run.
#[derive(Debug, Clone)]
pub struct KafkaRunOptions {
    /// Worker threads.
    pub workers: usize,
    /// Parameters of the views.
    pub views: ViewConfig,
    /// Filters in force from the start.
    pub filters: Vec<(String, FilterSpec)>,
    /// Length of a processing-time epoch, in ms.
    pub tick_ms: u64,
    /// Messages a worker gathers before handing them to the dataflow within an epoch.
    pub batch_messages: usize,
    /// When given, workers add the messages they read here (for progress bars).
    pub progress: Option<Arc<AtomicU64>>,
    /// Run the workers and the collector below normal priority, so that the threads answering
    /// requests go first on a saturated machine (see [`crate::priority`]).
    pub background: bool,
    /// Hand every message read to this keeper (the Parquet archive) as it is read; readers
    /// pause while it must wait (see [`crate::archive_tap`]).
    pub archive: Option<Arc<dyn ArchiveTap>>,
    /// How far an event time may lie ahead of the reader's clock; later ones are dead letters.
    pub max_future: MaxFuture,
    /// When given, every accepted event goes here once its dataflow time is complete, for live
    /// delivery (see [`Delivery`]). A full channel holds the collector back. In a cluster every
    /// process must give one (its workers then send their events to process 0), and only
    /// process 0's receives.
    pub deliver: Option<mpsc::SyncSender<Delivery>>,
}

impl Default for KafkaRunOptions {
    fn default() -> Self {
        KafkaRunOptions {
            workers: 1,
            views: ViewConfig::default(),
            filters: Vec::new(),
            tick_ms: 20,
            batch_messages: 16_384,
            progress: None,
            background: false,
            archive: None,
            max_future: MaxFuture::default(),
            deliver: None,
        }
    }
}

/// Starts the views over `input`, in this process or, with `link`, on every process of a
/// cluster (each runs this with the same input and options); `publish` sees the state each time
/// its `as_of` advances (on the collector thread, so it must be quick). In a cluster, only
/// process 0 holds the views; another process's `publish` sees how far the dataflow has come
/// (`as_of`) and its own readers' positions. Rejected messages are kept in the views'
/// dead-letter store.
pub fn start_kafka(
    input: KafkaInput,
    opts: KafkaRunOptions,
    link: Option<Link>,
    publish: impl FnMut(&ViewState) + Send + 'static,
) -> Result<KafkaRun, RunError> {
    let plan = Plan {
        input: Input::Kafka {
            input,
            archive: opts.archive,
        },
        timing: Timing::Ticks(opts.tick_ms),
        workers: opts.workers,
        views: opts.views,
        filters: opts.filters,
        batch: opts.batch_messages,
        progress: opts.progress,
        background: opts.background,
        letters: Letters::Views,
        max_future: Some(opts.max_future),
        deliver: opts.deliver,
    };
    crate::runner::start(plan, link, publish)
}
