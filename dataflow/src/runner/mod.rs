//! The one runner: one lifecycle (start the workers and the collector, join them, report
//! errors) and one worker loop ([`worker`]) for every input, NDJSON and Parquet files and
//! Kafka partitions alike. What differs between inputs is given to it as parts: the
//! [`Source`] each worker reads, and the [`clock`] that ends dataflow times (fixed batches for
//! files, processing-time ticks for Kafka).
//!
//! [`run_views`](crate::run_views) and [`start_kafka`](crate::start_kafka) only describe a
//! [`Plan`]. Where a run starts is part of its input: Kafka ranges say each partition's first
//! offset, so a run restarted from saved state is the same plan with that state's positions
//! (and the state to load), not another runner.

pub(crate) mod clock;
pub(crate) mod collector;
pub(crate) mod schedule;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use emoflow_ingest::MaxFuture;
use timely::worker::Worker;

use self::clock::{Batches, Clock, Ticks};
use self::collector::{Collected, Delivery, Listeners, LocalProgress, RunStatus};
use self::schedule::Planned;
use crate::archive_tap::ArchiveTap;
use crate::capture::{capture_channel, CaptureSlot};
use crate::cluster::Link;
use crate::config::ViewConfig;
use crate::control::ControlPlane;
use crate::error::RunError;
use crate::filter::FilterSpec;
use crate::filter_control::FilterControl;
use crate::freshness::{Freshness, OpenTimes};
use crate::intake::Letters;
use crate::reader_health::ReaderHealth;
use crate::snapshot::ViewState;
use crate::source::files::{InputData, Share};
use crate::source::kafka::KafkaInput;
use crate::source::ndjson::NdjsonSource;
use crate::source::parquet::ParquetSource;
use crate::source::Source;

/// What to read.
pub(crate) enum Input {
    /// Files, each worker of every process reading its share.
    Files {
        /// The input.
        data: InputData,
        /// Bytes of NDJSON a worker reads before the next worker's turn.
        chunk_bytes: u64,
    },
    /// Kafka partitions, each read by one worker, every message handed to `archive`.
    Kafka {
        /// The topic and its ranges.
        input: KafkaInput,
        /// The keeper of what is read (the Parquet archive).
        archive: Option<Arc<dyn ArchiveTap>>,
    },
}

/// When dataflow times end.
pub(crate) enum Timing {
    /// One time per batch read, the filter changes applied at the times planned.
    Batches(Planned),
    /// Processing-time epochs of this many ms; filter changes come through the run's
    /// [`FilterControl`].
    Ticks(u64),
}

/// Everything a run is asked to do.
pub(crate) struct Plan {
    pub input: Input,
    pub timing: Timing,
    /// Worker threads (per process).
    pub workers: usize,
    pub views: ViewConfig,
    /// Filters in force from the start.
    pub filters: Vec<(String, FilterSpec)>,
    /// Records a worker gathers before handing them to the dataflow.
    pub batch: usize,
    /// Workers add how much input they read here (bytes, rows or messages).
    pub progress: Option<Arc<AtomicU64>>,
    /// Workers and collector below normal priority (see [`crate::priority`]).
    pub background: bool,
    /// Where rejected inputs are kept.
    pub letters: Letters,
    /// Refuse event times this far ahead of the reader's clock.
    pub max_future: Option<MaxFuture>,
    /// Every accepted event goes here once its time is complete (live delivery).
    pub deliver: Option<mpsc::SyncSender<Delivery>>,
}

/// What the workers share.
pub(crate) struct Shared {
    plan: Plan,
    /// Each worker's share of file input (all workers of all processes).
    shares: Vec<Share>,
    capture: CaptureSlot,
    stop: Arc<AtomicBool>,
    health: Arc<ReaderHealth>,
    filters: FilterControl,
    progress: Arc<LocalProgress>,
    opened: Arc<OpenTimes>,
    /// The time process 0's collector has applied.
    applied: Arc<AtomicU64>,
    /// True in the process that holds the collector.
    collecting: bool,
}

impl Shared {
    fn source(&self, index: usize, peers: usize) -> Result<Box<dyn Source>, RunError> {
        match &self.plan.input {
            Input::Files { data, .. } => match (data, self.shares.get(index)) {
                (InputData::Parquet(input), Some(Share::RowGroups(groups))) => {
                    Ok(Box::new(ParquetSource::new(input.clone(), groups.clone())))
                }
                (_, Some(Share::Ranges(ranges))) => {
                    Ok(Box::new(NdjsonSource::new(data.clone(), ranges.clone())))
                }
                // Shares are made from the input they share: never another kind.
                _ => Err(RunError::Dataflow(format!("no share for worker {index}"))),
            },
            Input::Kafka { input, archive } => {
                Ok(Box::new(input.source(index, peers, archive.as_ref())?))
            }
        }
    }

    fn clock(&self, worker: &mut Worker) -> Box<dyn Clock> {
        let collecting = self.collecting;
        match &self.plan.timing {
            Timing::Batches(planned) => Box::new(Batches::new(
                planned.clone(),
                collecting.then(|| self.applied.clone()),
                collecting.then(|| self.opened.clone()),
            )),
            Timing::Ticks(tick_ms) => Box::new(Ticks::new(
                ControlPlane::build(worker),
                worker.index() == 0,
                *tick_ms,
                self.stop.clone(),
                self.filters.clone(),
                self.opened.clone(),
            )),
        }
    }
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The final views; `None` in a process of a cluster other than process 0 (which holds
    /// them).
    pub state: Option<ViewState>,
    /// Records read by this process: non-blank lines, Parquet rows or Kafka messages.
    pub lines: u64,
    /// Wall time from start to the final views.
    pub elapsed: Duration,
    /// For every dataflow time, from the moment a worker of this process began reading it to
    /// the moment the collector's views included it: how fresh the views stay under load.
    /// Measured in process 0 only (empty elsewhere).
    pub freshness: Freshness,
}

/// A running dataflow.
pub struct Run {
    stop: Arc<AtomicBool>,
    /// Taken by [`Run::wait`]; a run dropped without it is stopped first.
    guards: Option<timely::communication::WorkerGuards<Result<u64, RunError>>>,
    /// Process 0's collector, or another process's reporter (which holds no views).
    collector: Option<std::thread::JoinHandle<Collected>>,
    health: Arc<ReaderHealth>,
    filters: FilterControl,
    progress: Arc<LocalProgress>,
    started: Instant,
}

/// Starts `plan` in this process or, with `link`, on every process of a cluster (each runs
/// it with the same plan); `publish` sees the state each time its `as_of` advances (on the
/// collector's thread, so it must be quick). In a cluster only process 0 holds the views;
/// another process's `publish` sees how far the dataflow has come and its own positions.
pub(crate) fn start(
    plan: Plan,
    link: Option<Link>,
    publish: impl FnMut(&ViewState) + Send + 'static,
) -> Result<Run, RunError> {
    plan.views.validate()?;
    let started = Instant::now();
    let workers = plan.workers.max(1);
    if let Some(l) = link.as_ref().filter(|l| l.workers() != workers) {
        return Err(RunError::Dataflow(format!(
            "the cluster was joined with {} workers, the run asks for {workers}",
            l.workers()
        )));
    }
    let (process, processes) = link
        .as_ref()
        .map_or((0, 1), |l| (l.process(), l.processes()));
    let peers = workers * processes;
    let (shares, partitions) = match &plan.input {
        Input::Files { data, chunk_bytes } => (data.shares(peers, *chunk_bytes)?, Vec::new()),
        Input::Kafka { input, .. } => (
            Vec::new(),
            input.ranges.iter().map(|r| r.partition).collect(),
        ),
    };
    let local = process * workers..(process + 1) * workers;
    let health = Arc::new(ReaderHealth::new(partitions, peers, local));
    let (capture, rx) = capture_channel();
    let shared = Arc::new(Shared {
        shares,
        capture,
        stop: Arc::new(AtomicBool::new(false)),
        health: health.clone(),
        filters: FilterControl::new(peers),
        progress: Arc::new(LocalProgress::new(workers)),
        opened: Arc::default(),
        applied: Arc::default(),
        collecting: process == 0,
        plan,
    });
    let guards = crate::cluster::execute(workers, link, {
        let shared = shared.clone();
        move |worker| run_guarded(worker, &shared)
    })
    .map_err(RunError::Dataflow)?;
    let background = shared.plan.background;
    let spawned = if process == 0 {
        let to = Listeners {
            publish,
            filters: shared.filters.clone(),
            deliver: shared.plan.deliver.clone(),
            opened: shared.opened.clone(),
            applied: shared.applied.clone(),
            views: shared.plan.views,
        };
        collector::spawn_collector(rx, to, background)
    } else {
        drop(rx);
        let period = match shared.plan.timing {
            Timing::Ticks(ms) => Duration::from_millis(ms.max(1)),
            Timing::Batches(_) => Duration::from_millis(20),
        };
        collector::spawn_reporter(shared.progress.clone(), period, publish)
    };
    let collector =
        spawned.map_err(|e| RunError::Dataflow(format!("cannot start the collector: {e}")))?;
    Ok(Run {
        stop: shared.stop.clone(),
        guards: Some(guards),
        collector: Some(collector),
        health,
        filters: shared.filters.clone(),
        progress: shared.progress.clone(),
        started,
    })
}

/// Runs one worker, noting its end and its failure (an error or a panic) for `/health` and
/// [`RunStatus`].
fn run_guarded(worker: &mut Worker, shared: &Shared) -> Result<u64, RunError> {
    let index = worker.index();
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        worker::run_worker(worker, shared)
    }));
    if !matches!(ran, Ok(Ok(_))) {
        shared.progress.failed.store(true, Ordering::Relaxed);
    }
    shared.progress.exited.fetch_add(1, Ordering::Relaxed);
    match ran {
        Ok(result) => result.inspect_err(|e| shared.health.stopped(index, e.to_string())),
        Err(panic) => {
            shared.health.stopped(index, worker_failure(panic.as_ref()));
            // Timely's own threads expect it: the worker's end is a panic.
            std::panic::resume_unwind(panic)
        }
    }
}

/// Why a worker failed, from its panic, worded for `/health`.
fn worker_failure(panic: &(dyn std::any::Any + Send)) -> String {
    let message = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "it panicked".to_owned());
    if message.contains("MergeQueue poisoned") {
        // Timely's networking threads stop when a connection breaks, and the workers then.
        "the connection to another process of the cluster broke (it stopped without a clean stop); restart the cluster".to_owned()
    } else {
        format!("the worker failed: {message}")
    }
}

impl Run {
    /// Asks the workers to stop reading; [`Run::wait`] then returns the views as of what
    /// they had read.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// A handle that stops the run from elsewhere (a signal handler, say).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Tells whether the run has finished, from elsewhere (the HTTP server's shutdown).
    pub fn status(&self) -> RunStatus {
        RunStatus(self.progress.clone())
    }

    /// What the readers report while they run: their partitions and failures.
    pub fn reader_health(&self) -> Arc<ReaderHealth> {
        self.health.clone()
    }

    /// Adds and removes filters while the run reads.
    pub fn filter_control(&self) -> FilterControl {
        self.filters.clone()
    }

    /// Waits for the run to end (the input's end, or [`Run::stop`]). Every worker has
    /// flushed its archive tap by then.
    pub fn wait(mut self) -> Result<RunOutput, RunError> {
        // Timely's networking panics when its threads did (a connection to another process
        // broke): that is this run's failure, not the caller's.
        let joined: Vec<_> = match self
            .guards
            .take()
            .map(|g| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.join())))
        {
            None => Vec::new(),
            Some(Ok(joined)) => joined,
            Some(Err(_)) => {
                return Err(RunError::Dataflow(
                    "the connections between the cluster's processes broke".into(),
                ))
            }
        };
        let mut lines = 0;
        for result in joined {
            lines += result.map_err(RunError::Dataflow)??;
        }
        let collector = self
            .collector
            .take()
            .ok_or_else(|| RunError::Dataflow("the collector is gone".into()))?
            .join()
            .map_err(|_| RunError::Dataflow("the collector failed".into()))?;
        if collector.as_ref().is_some_and(|(c, _)| !c.is_complete()) {
            return Err(RunError::Dataflow(
                "the dataflow stopped before finishing".into(),
            ));
        }
        let (state, freshness) = match collector {
            Some((c, f)) => (Some(c.into_state()), f),
            None => (None, Freshness::default()),
        };
        Ok(RunOutput {
            state,
            lines,
            freshness,
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for Run {
    /// A run dropped without [`Run::wait`] (a caller that failed) stops its workers rather
    /// than leaving them reading, or hanging the drop that joins them.
    fn drop(&mut self) {
        self.stop();
    }
}
