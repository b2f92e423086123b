//! Running the views over a Kafka topic: live (`serve`, until stopped) or over a fixed offset
//! range (`replay`, `bench --source kafka`).
//!
//! Worker `w` of `n` (all workers of all processes, numbered process by process) reads
//! partition `p` when `p % n == w` (static assignment: no consumer group, no rebalance).
//! Dataflow times are processing-time epochs: worker 0 closes one each tick, at wall-clock
//! milliseconds by its own clock, and broadcasts it ([`crate::control`]); the other workers
//! follow, so no two clocks need agree. Each epoch's data is what the workers read during
//! that tick; each worker reports its partitions' positions into the views, so a snapshot's
//! `as_of` comes with the exact offsets its numbers cover.
//!
//! In a cluster ([`crate::cluster`]) every update goes to worker 0, in process 0, whose
//! collector alone holds the views; the other processes report how far the dataflow has come
//! and where their own readers stand.
//!
//! Filters added while the run reads ([`KafkaRun::filter_control`]) are back-filled by each
//! worker over its partitions from where the run started to its positions, read again from
//! Kafka: the views hold no events, and Kafka's log is the history they were counted from.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use emoflow_ingest::kafka::{PartitionRange, PartitionReader, RangeEnd};
use emoflow_ingest::{decode_event, MaxFuture, RejectReason};

use crate::archive_tap::ArchiveTap;
use crate::batch::FilterKey;
use crate::capture::{capture_channel, collect, CaptureSlot};
use crate::cluster::Link;
use crate::config::ViewConfig;
use crate::control::{Control, ControlPlane};
use crate::feed::Feed;
use crate::filter::FilterSpec;
use crate::filter_control::{FilterChange, FilterControl};
use crate::freshness::{Freshness, OpenTimes};
use crate::reader_health::ReaderHealth;
use crate::run::RunError;
use crate::snapshot::{Collector, ViewState};
use crate::update::{DeadLetterRecord, ShownEvent, ViewUpdate};
use crate::views::ViewInputs;

/// The worker, of `workers`, that reads `partition` (see the module documentation).
pub fn reader_of(partition: i32, workers: usize) -> usize {
    partition.rem_euclid(workers.max(1) as i32) as usize
}

/// What to read.
#[derive(Debug, Clone)]
pub struct KafkaInput {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Where each partition starts and ends (the run ends when every partition has, unless
    /// one is open).
    pub ranges: Vec<PartitionRange>,
}

impl KafkaInput {
    /// Messages in the partitions that process `process` of `processes`, each running
    /// `workers` workers, reads, when known up front (its progress bar).
    pub fn process_known_len(
        &self,
        workers: usize,
        process: usize,
        processes: usize,
    ) -> Option<u64> {
        let workers = workers.max(1);
        self.ranges
            .iter()
            .filter(|r| reader_of(r.partition, workers * processes.max(1)) / workers == process)
            .map(PartitionRange::known_len)
            .sum()
    }

    /// True when the run follows the topic rather than ending.
    pub fn is_open(&self) -> bool {
        self.ranges.iter().any(|r| r.end == RangeEnd::Open)
    }
}

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

/// What the views newly cover, for live delivery: sent after each advance of `as_of` that
/// brought events or moved a position.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The dataflow time the views (and these events) are complete up to.
    pub as_of: u64,
    /// Kafka partition -> next offset to read, as of `as_of`.
    pub positions: BTreeMap<i32, i64>,
    /// The events accepted since the last delivery, in offset order per partition.
    pub events: Vec<ShownEvent>,
    /// Newest matches of filters added while running, found by their back-fill (at most
    /// [`crate::feed::RECENT_MATCHES`] per filter incarnation).
    pub backfilled: Vec<(FilterKey, ShownEvent)>,
}

impl Delivery {
    /// What `collector` has newly applied, or `None` when nothing moved since `last`.
    fn take(collector: &mut Collector, last: &BTreeMap<i32, i64>) -> Option<Delivery> {
        let outbox = collector.take_outbox();
        let state = collector.state();
        if outbox.is_empty() && state.positions == *last {
            return None;
        }
        let mut out = Delivery {
            as_of: state.as_of,
            positions: state.positions.clone(),
            ..Delivery::default()
        };
        for update in outbox {
            match update {
                ViewUpdate::Accepted(e) => out.events.push(e),
                ViewUpdate::Backfilled(key, e) => out.backfilled.push((key, e)),
                _ => {}
            }
        }
        // A partition is read by one worker in offset order and its times only grow, so this
        // keeps each partition's order whatever order the times' updates arrived in.
        out.events.sort_unstable_by_key(|e| (e.partition, e.offset));
        Some(out)
    }
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

/// How long a bounded read may go without reading anything before it fails: its partitions'
/// ends are found by reaching them, so silence this long means the broker cannot serve the
/// range.
const BOUNDED_SILENCE: Duration = Duration::from_secs(30);

/// Most messages a worker reads into one epoch; then it waits for the epoch to close (Kafka
/// holds the rest: backpressure costs nothing). Bounds the input in flight.
const MAX_EPOCH_MESSAGES: usize = 262_144;

/// A running Kafka dataflow.
pub struct KafkaRun {
    stop: Arc<AtomicBool>,
    /// Taken by [`KafkaRun::wait`]; a run dropped without it is stopped first.
    guards: Option<timely::communication::WorkerGuards<Result<(), RunError>>>,
    /// Process 0's collector, or another process's reporter (which holds no views).
    collector: Option<std::thread::JoinHandle<Option<(Collector, Freshness)>>>,
    health: Arc<ReaderHealth>,
    filters: FilterControl,
    progress: Arc<LocalProgress>,
    started: Instant,
}

/// Whether a run has finished; clones share the run.
#[derive(Debug, Clone)]
pub struct RunStatus(Arc<LocalProgress>);

impl RunStatus {
    /// True once every worker of this process has stopped as asked: the run was stopped
    /// (here, or by another process of the cluster) or its bounded read ended. A run whose
    /// workers failed is not finished: it stays up, reporting the failure, until stopped.
    pub fn is_finished(&self) -> bool {
        self.0.exited.load(Ordering::Relaxed) >= self.0.workers
            && !self.0.failed.load(Ordering::Relaxed)
    }
}

/// What this process's workers report about themselves, for a process that holds no views.
#[derive(Debug, Default)]
struct LocalProgress {
    /// The dataflow time every worker's output is complete up to (`as_of`).
    complete: AtomicU64,
    /// Where this process's readers stand: partition -> next offset.
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Workers of this process that have stopped.
    exited: AtomicUsize,
    /// Set when a worker failed (an error, or a broken connection to another process).
    failed: AtomicBool,
    /// Worker threads in this process.
    workers: usize,
}

impl LocalProgress {
    fn note_positions(&self, now: &BTreeMap<i32, i64>) {
        if let Ok(mut p) = self.positions.lock() {
            p.extend(now.iter().map(|(&k, &v)| (k, v)));
        }
    }

    /// The state a process without views shows: how far the dataflow is, and its positions.
    fn state(&self) -> ViewState {
        let mut state = ViewState::default();
        state.as_of = self.complete.load(Ordering::Relaxed);
        state.positions = self.positions.lock().map(|p| p.clone()).unwrap_or_default();
        state
    }
}

/// What a finished run produced.
#[derive(Debug)]
pub struct KafkaRunOutput {
    /// The final views; `None` in a process of a cluster other than process 0 (process 0
    /// holds them).
    pub state: Option<ViewState>,
    /// Wall time from start to the final views.
    pub elapsed: Duration,
    /// For every epoch, from worker 0 opening it to the collector's views including it
    /// (process 0 only; empty elsewhere).
    pub freshness: Freshness,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The end of the tick holding `ms`.
fn tick_end(ms: u64, tick: u64) -> u64 {
    (ms / tick + 1) * tick
}

/// Starts the views over `input`, in this process or, with `link`, on every process of a
/// cluster (each runs this with the same input and options); `publish` sees the state each time
/// its `as_of` advances (on the collector thread, so it must be quick). In a cluster, only
/// process 0 holds the views; another process's `publish` sees how far the dataflow has come
/// (`as_of`) and its own readers' positions.
pub fn start_kafka(
    input: KafkaInput,
    opts: KafkaRunOptions,
    link: Option<Link>,
    mut publish: impl FnMut(&ViewState) + Send + 'static,
) -> Result<KafkaRun, RunError> {
    opts.views.validate()?;
    let started = Instant::now();
    let workers = opts.workers.max(1);
    if let Some(l) = &link {
        if l.workers() != workers {
            return Err(RunError::Dataflow(format!(
                "the cluster was joined with {} workers, the run asks for {workers}",
                l.workers()
            )));
        }
    }
    let (process, processes) = link
        .as_ref()
        .map_or((0, 1), |l| (l.process(), l.processes()));
    let peers = workers * processes;
    let (capture, rx) = capture_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let background = opts.background;
    let local = process * workers..(process + 1) * workers;
    let health = Arc::new(ReaderHealth::new(
        input.ranges.iter().map(|r| r.partition),
        peers,
        local,
    ));
    let filters = FilterControl::new(peers);
    let deliver = opts.deliver.clone();
    let tick = Duration::from_millis(opts.tick_ms.max(1));
    let progress = Arc::new(LocalProgress {
        workers,
        ..LocalProgress::default()
    });
    let opened = Arc::new(OpenTimes::default());
    let shared = Arc::new(Shared {
        filters: filters.clone(),
        health: health.clone(),
        input,
        opts,
        capture,
        stop: stop.clone(),
        progress: progress.clone(),
        opened: opened.clone(),
    });
    let guards = crate::cluster::execute(workers, link, move |worker| {
        let index = worker.index();
        let ran =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_worker(worker, &shared)));
        if !matches!(ran, Ok(Ok(()))) {
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
    })
    .map_err(RunError::Dataflow)?;
    let spawned = if process == 0 {
        let control = filters.clone();
        std::thread::Builder::new()
            .name("emoflow-collector".into())
            .spawn(move || {
                if background {
                    crate::priority::lower_this_thread();
                }
                let mut delivered = BTreeMap::new();
                let mut acks = BTreeMap::new();
                let mut freshness = Freshness::default();
                let collector = collect(rx, |c| {
                    opened.complete(c.state().as_of, &mut freshness);
                    publish(c.state());
                    if c.state().filter_acks != acks {
                        acks.clone_from(&c.state().filter_acks);
                        control.acknowledged(&acks, c.state().as_of);
                    }
                    if let Some(tx) = &deliver {
                        if let Some(d) = Delivery::take(c, &delivered) {
                            delivered.clone_from(&d.positions);
                            // Delivery only goes away when the service stops.
                            let _ = tx.send(d);
                        }
                    }
                });
                Some((collector, freshness))
            })
    } else {
        drop(rx);
        let progress = progress.clone();
        std::thread::Builder::new()
            .name("emoflow-reporter".into())
            .spawn(move || {
                let mut last = None;
                while progress.exited.load(Ordering::Relaxed) < progress.workers {
                    let state = progress.state();
                    if last.as_ref() != Some(&(state.as_of, state.positions.clone())) {
                        publish(&state);
                        last = Some((state.as_of, state.positions));
                    }
                    std::thread::sleep(tick);
                }
                None
            })
    };
    let collector =
        spawned.map_err(|e| RunError::Dataflow(format!("cannot start the collector: {e}")))?;
    Ok(KafkaRun {
        stop,
        guards: Some(guards),
        collector: Some(collector),
        health,
        filters,
        progress,
        started,
    })
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

impl KafkaRun {
    /// Asks the workers to stop reading; [`KafkaRun::wait`] then returns the views as of what
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

    /// Waits for the run to end (a bounded read's end, or [`KafkaRun::stop`]). Every worker
    /// has flushed its archive tap by then.
    pub fn wait(mut self) -> Result<KafkaRunOutput, RunError> {
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
        for result in joined {
            result.map_err(RunError::Dataflow)??;
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
        Ok(KafkaRunOutput {
            state,
            freshness,
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for KafkaRun {
    /// A run dropped without [`KafkaRun::wait`] (a caller that failed) stops its workers
    /// rather than leaving them reading, or hanging the drop that joins them.
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    input: KafkaInput,
    opts: KafkaRunOptions,
    capture: CaptureSlot,
    stop: Arc<AtomicBool>,
    health: Arc<ReaderHealth>,
    filters: FilterControl,
    progress: Arc<LocalProgress>,
    /// The epochs worker 0 opened and the collector has not yet seen complete.
    opened: Arc<OpenTimes>,
}

/// The positions a worker has told the views about, to send only changes.
#[derive(Default)]
struct ReportedPositions(BTreeMap<i32, i64>);

impl ReportedPositions {
    fn report(&mut self, now: &BTreeMap<i32, i64>, inputs: &mut ViewInputs) {
        for (&p, &offset) in now {
            let old = self.0.insert(p, offset);
            if old == Some(offset) {
                continue;
            }
            if let Some(old) = old {
                inputs.extras.update(ViewUpdate::Position(p, old), -1);
            }
            inputs.extras.update(ViewUpdate::Position(p, offset), 1);
        }
    }
}

/// Sends what the worker gathered into the dataflow at the current time, with the positions
/// it covers.
fn flush(
    feed: &mut Feed,
    reader: Option<&PartitionReader>,
    reported: &mut ReportedPositions,
    inputs: &mut ViewInputs,
    progress: &LocalProgress,
) {
    feed.flush_into(inputs);
    if let Some(r) = reader {
        reported.report(r.positions(), inputs);
        progress.note_positions(r.positions());
    }
}

/// The newest filter change a worker has applied, as told to the views (so that process 0
/// knows when every worker of every process has it).
struct ReportedAck(u64);

impl ReportedAck {
    fn report(&mut self, worker: usize, seq: u64, inputs: &mut ViewInputs) {
        if seq == self.0 {
            return;
        }
        let worker = worker as u32;
        if self.0 > 0 {
            inputs
                .extras
                .update(ViewUpdate::FilterApplied(worker, self.0), -1);
        }
        inputs
            .extras
            .update(ViewUpdate::FilterApplied(worker, seq), 1);
        self.0 = seq;
    }
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<(), RunError> {
    let (index, peers) = (worker.index(), worker.peers());
    let leader = index == 0;
    let opts = &shared.opts;
    if opts.background {
        crate::priority::lower_this_thread();
    }
    let input = &shared.input;
    let cfg = opts.views;
    let (mut inputs, probe) = shared.capture.build_views(worker, cfg);
    let mut control = ControlPlane::build(worker);
    let mine: Vec<PartitionRange> = input
        .ranges
        .iter()
        .filter(|r| reader_of(r.partition, peers) == index)
        .copied()
        .collect();
    let mut reader = if mine.is_empty() {
        None
    } else {
        Some(
            PartitionReader::new(&input.brokers, &input.topic, &mine)
                .map_err(|e| RunError::Io(e.to_string()))?,
        )
    };
    let partitions: Vec<i32> = mine.iter().map(|r| r.partition).collect();
    let mut archive = opts.archive.as_ref().map(|a| a.worker(&partitions));
    let tick = opts.tick_ms.max(1);
    // Worker 0 chooses the epochs by its clock; the others start at 0 and follow it.
    let mut epoch = 0;
    if leader {
        epoch = tick_end(now_ms(), tick);
        inputs.advance_to(epoch);
        shared.opened.open(epoch);
        control.send(Control::Epoch(epoch));
    }
    let mut feed = Feed::new(cfg, peers);
    feed.add_initial_filters(&opts.filters);
    if opts.deliver.is_some() {
        feed.deliver_events();
    }
    let mut reported = ReportedPositions::default();
    let mut refusals = ClockRefusals::default();
    let mut changes = ChangeQueue::default();
    let mut ack = ReportedAck(0);
    if let Some(r) = &reader {
        reported.report(r.positions(), &mut inputs);
        shared.progress.note_positions(r.positions());
    }
    let mut gathered = 0usize;
    let mut in_epoch = 0usize;
    // The epoch closed last: a new one closes only once it is complete, so that under load
    // epochs grow (fewer, larger batches) instead of queueing up.
    let mut closed = 0u64;
    // Worker 0 finished a bounded read: the others close epochs themselves, a tick apart.
    let mut self_clocked = false;
    let mut last_close = Instant::now();
    let (mut stopping, mut stop_sent) = (false, false);
    let (mut t_poll, mut t_step, mut idle_steps, mut epoch_count) =
        (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    let bounded = !input.is_open();
    let mut last_read = Instant::now();
    loop {
        for message in control.take() {
            match message {
                Control::Epoch(e) if !leader && e > epoch => {
                    flush(
                        &mut feed,
                        reader.as_ref(),
                        &mut reported,
                        &mut inputs,
                        &shared.progress,
                    );
                    (gathered, in_epoch) = (0, 0);
                    epoch = e;
                    epoch_count += 1;
                    inputs.advance_to(epoch);
                }
                Control::Epoch(_) => {}
                Control::Filter(seq, json) => changes.receive(seq, &json)?,
                Control::Stop => stopping = true,
                Control::LeaderDone => self_clocked = true,
            }
        }
        let finished = bounded && reader.as_ref().is_none_or(|r| r.is_finished());
        if shared.stop.load(Ordering::Relaxed) && !stop_sent {
            // Every worker of every process stops with this one.
            control.send(Control::Stop);
            stop_sent = true;
        }
        if finished || stop_sent || stopping {
            flush(
                &mut feed,
                reader.as_ref(),
                &mut reported,
                &mut inputs,
                &shared.progress,
            );
            if let Some(a) = archive.as_mut() {
                a.flush();
            }
            if leader {
                control.send(Control::LeaderDone);
            }
            break;
        }
        let now = now_ms();
        let due = if leader {
            now >= epoch
        } else {
            self_clocked && last_close.elapsed() >= Duration::from_millis(tick)
        };
        if due && !probe.less_than(&closed) {
            flush(
                &mut feed,
                reader.as_ref(),
                &mut reported,
                &mut inputs,
                &shared.progress,
            );
            gathered = 0;
            in_epoch = 0;
            closed = epoch;
            epoch_count += 1;
            epoch = tick_end(now, tick).max(epoch + 1);
            inputs.advance_to(epoch);
            last_close = Instant::now();
            if leader {
                shared.opened.open(epoch);
                control.send(Control::Epoch(epoch));
            }
        }
        if leader {
            for (seq, change) in shared.filters.changes_after(changes.sent) {
                let json = serde_json::to_string(&change)
                    .map_err(|e| RunError::Dataflow(format!("cannot send a filter change: {e}")))?;
                control.send(Control::Filter(seq, json));
                changes.sent = seq;
            }
        }
        if changes.apply_ready(&mut feed) {
            if feed.needs_backfill() {
                if let Some(r) = &reader {
                    backfill(&mut feed, input, &mine, r.positions(), &refusals)?;
                }
                feed.end_backfill();
            }
            // The next flush sends the back-fill, and tells process 0 it is done, at the
            // current time at the latest.
            ack.report(index, changes.applied, &mut inputs);
        }
        let mut read = 0;
        // Kafka holds what is not read yet: stop reading while the epoch is full, or while the
        // archive cannot keep up (a full disk), rather than drop anything.
        let full =
            in_epoch >= MAX_EPOCH_MESSAGES || archive.as_ref().is_some_and(|a| a.must_wait());
        if let (Some(r), false) = (reader.as_mut(), full) {
            let budget = opts.batch_messages.saturating_sub(gathered).max(1);
            let t0 = Instant::now();
            let clock = now_ms() as i64;
            read = r.poll_batch(budget, Duration::from_millis(1), |m| {
                let decoded = decode_event(m.payload, m.timestamp_ms)
                    .and_then(|e| opts.max_future.check(e.ts, clock).map(|()| e));
                match decoded {
                    Ok(event) => {
                        refusals.accepted(m.partition);
                        feed.accept(&event, m.partition, m.offset, m.timestamp_ms.unwrap_or(0));
                        if let Some(a) = archive.as_mut() {
                            a.read(m.partition, m.offset, Some(&event));
                        }
                    }
                    Err(rejection) => {
                        if rejection.reason == RejectReason::FutureTimestamp {
                            refusals.refused(m.partition, m.offset);
                        }
                        if let Some(a) = archive.as_mut() {
                            a.read(m.partition, m.offset, None);
                        }
                        feed.reject_kept(
                            DeadLetterRecord::new(m.partition, m.offset, &rejection, m.payload),
                            rejection.reason,
                        )
                    }
                }
            });
            if let Some(a) = archive.as_mut() {
                a.tick();
            }
            if let Some(e) = r.take_error() {
                shared.health.poll_error(index, e);
            }
            for (p, from, to) in r.take_skips() {
                inputs.extras.update(ViewUpdate::Skipped(p, from, to), 1);
            }
            t_poll += t0.elapsed();
            gathered += read;
            in_epoch += read;
            if let Some(progress) = &opts.progress {
                progress.fetch_add(read as u64, Ordering::Relaxed);
            }
        }
        if read > 0 {
            last_read = Instant::now();
        } else if bounded && !full && last_read.elapsed() > BOUNDED_SILENCE {
            if let Some(a) = archive.as_mut() {
                a.flush();
            }
            let waiting: Vec<i32> = mine.iter().map(|r| r.partition).collect();
            return Err(RunError::Io(format!(
                "nothing could be read from partitions {waiting:?} for {}s: the broker no longer serves the range (see the warnings above)",
                BOUNDED_SILENCE.as_secs()
            )));
        }
        if gathered >= opts.batch_messages {
            flush(
                &mut feed,
                reader.as_ref(),
                &mut reported,
                &mut inputs,
                &shared.progress,
            );
            gathered = 0;
        }
        let t1 = Instant::now();
        if read == 0 {
            idle_steps += 1;
            let until_tick = if leader {
                Duration::from_millis(epoch.saturating_sub(now_ms()).min(tick))
            } else {
                Duration::from_millis(tick)
            };
            let nap = if reader.is_some() && !full {
                until_tick.min(Duration::from_millis(1))
            } else {
                until_tick
            };
            worker.step_or_park(Some(nap));
        } else {
            worker.step();
        }
        t_step += t1.elapsed();
        let complete = probe.with_frontier(|f| f.first().map_or(u64::MAX, |t| t.saturating_sub(1)));
        shared
            .progress
            .complete
            .fetch_max(complete, Ordering::Relaxed);
    }
    // Where the worker's time went: reading and decoding, or running the dataflow.
    tracing::debug!(
        index,
        ?t_poll,
        ?t_step,
        idle_steps,
        epochs = epoch_count,
        "worker done"
    );
    Ok(())
}

/// Filter changes as a worker receives them from worker 0, applied in their order.
#[derive(Default)]
struct ChangeQueue {
    /// Received, not yet applied, by number.
    waiting: BTreeMap<u64, FilterChange>,
    /// The newest change applied.
    applied: u64,
    /// Worker 0 only: the newest change broadcast.
    sent: u64,
}

impl ChangeQueue {
    fn receive(&mut self, seq: u64, json: &str) -> Result<(), RunError> {
        let change = serde_json::from_str(json).map_err(|e| {
            RunError::Dataflow(format!("filter change {seq} could not be read: {e}"))
        })?;
        if seq > self.applied {
            self.waiting.insert(seq, change);
        }
        Ok(())
    }

    /// Applies every change whose predecessors are applied; true when it applied any.
    fn apply_ready(&mut self, feed: &mut Feed) -> bool {
        let before = self.applied;
        while let Some(change) = self.waiting.remove(&(self.applied + 1)) {
            self.applied += 1;
            feed.apply_change(self.applied, &change);
        }
        self.applied > before
    }
}

/// Offsets a worker refused because their time lay too far ahead of its clock when it read
/// them. Whether such an event is refused depends on when it is read, so a back-fill that reads
/// it again must be told. Kept as ranges per partition, each closed by the next accepted event:
/// a burst of refusals costs one range, and every offset inside a range was refused.
#[derive(Default)]
struct ClockRefusals(BTreeMap<i32, (Vec<Range<i64>>, bool)>);

impl ClockRefusals {
    fn refused(&mut self, partition: i32, offset: i64) {
        let (ranges, open) = self.0.entry(partition).or_default();
        match ranges.last_mut() {
            Some(last) if *open => last.end = offset + 1,
            _ => ranges.push(offset..offset + 1),
        }
        *open = true;
    }

    fn accepted(&mut self, partition: i32) {
        if let Some((_, open)) = self.0.get_mut(&partition) {
            *open = false;
        }
    }

    fn holds(&self, partition: i32, offset: i64) -> bool {
        let Some((ranges, _)) = self.0.get(&partition) else {
            return false;
        };
        let after = ranges.partition_point(|r| r.start <= offset);
        after > 0 && ranges[after - 1].end > offset
    }
}

/// Counts, for the filters added since the last back-fill, every event this worker handed to
/// the views: its partitions read again from where the run started up to its positions (the
/// seam: what is read from there on is counted live).
fn backfill(
    feed: &mut Feed,
    input: &KafkaInput,
    mine: &[PartitionRange],
    positions: &BTreeMap<i32, i64>,
    refusals: &ClockRefusals,
) -> Result<(), RunError> {
    let ranges: Vec<PartitionRange> = mine
        .iter()
        .filter_map(|r| {
            let seam = *positions.get(&r.partition)?;
            (seam > r.start).then_some(PartitionRange {
                end: RangeEnd::Offset(seam),
                ..*r
            })
        })
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut reader = PartitionReader::new(&input.brokers, &input.topic, &ranges)
        .map_err(|e| RunError::Io(format!("cannot read the history to back-fill filters: {e}")))?;
    let (mut events, mut last_read) = (0u64, Instant::now());
    while !reader.is_finished() {
        let n = reader.poll_batch(65_536, Duration::from_millis(100), |m| {
            if refusals.holds(m.partition, m.offset) {
                return;
            }
            if let Ok(e) = decode_event(m.payload, m.timestamp_ms) {
                events += 1;
                feed.count_history_at(&e, Some((m.partition, m.offset)));
            }
        });
        if n > 0 {
            last_read = Instant::now();
        } else if last_read.elapsed() > BOUNDED_SILENCE {
            return Err(RunError::Io(format!(
                "back-filling filters: nothing could be read from {:?} for {}s",
                ranges.iter().map(|r| r.partition).collect::<Vec<_>>(),
                BOUNDED_SILENCE.as_secs()
            )));
        }
    }
    let gone: i64 = reader
        .take_skips()
        .iter()
        .map(|(_, from, to)| to - from)
        .sum();
    if gone > 0 {
        tracing::warn!(
            offsets = gone,
            "back-filling filters: offsets passed over without a message (markers, or events Kafka dropped since they were read: the new filters' counts then miss them)"
        );
    }
    tracing::info!(events, elapsed = ?started.elapsed(), "filters back-filled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_known_lens_split_the_partitions_among_the_processes() {
        let input = KafkaInput {
            brokers: String::new(),
            topic: "t".into(),
            ranges: (0..7)
                .map(|p| PartitionRange {
                    end: RangeEnd::Offset(10 * (i64::from(p) + 1)),
                    ..PartitionRange::open(p, 0)
                })
                .collect(),
        };
        for (workers, processes) in [(1, 1), (1, 2), (2, 2), (3, 2), (2, 3)] {
            let lens: Vec<Option<u64>> = (0..processes)
                .map(|p| input.process_known_len(workers, p, processes))
                .collect();
            let sum: u64 = lens.iter().map(|l| l.unwrap_or(0)).sum();
            let whole: Option<u64> = input.ranges.iter().map(PartitionRange::known_len).sum();
            assert_eq!(Some(sum), whole, "{workers}x{processes}");
            // Each process counts exactly the partitions its workers read.
            for (p, len) in lens.iter().enumerate() {
                let expected: u64 = input
                    .ranges
                    .iter()
                    .filter(|r| {
                        (p * workers..(p + 1) * workers)
                            .contains(&reader_of(r.partition, workers * processes))
                    })
                    .map(|r| r.known_len().unwrap_or(0))
                    .sum();
                assert_eq!(*len, Some(expected), "{workers}x{processes} process {p}");
            }
        }
    }

    #[test]
    fn clock_refusals_cover_bursts_up_to_the_next_accepted_event() {
        let mut r = ClockRefusals::default();
        r.refused(0, 5);
        r.refused(0, 7); // 6 was refused for another reason: inside the burst
        r.accepted(0);
        r.refused(0, 9);
        r.refused(1, 3);
        for (p, o, held) in [
            (0, 4, false),
            (0, 5, true),
            (0, 6, true),
            (0, 7, true),
            (0, 8, false),
            (0, 9, true),
            (0, 10, false),
            (1, 3, true),
            (2, 3, false),
        ] {
            assert_eq!(r.holds(p, o), held, "partition {p} offset {o}");
        }
    }
}
