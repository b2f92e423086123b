//! The Parquet archive sink (docs/archive.md): every accepted event on disk exactly once, in
//! Hive-style hour directories, written while the views run.
//!
//! The worker that reads a partition also archives it: each accepted event goes into that
//! partition's [`PartitionArchiver`] (rejected ones only advance its offset range). A range of
//! offsets becomes one file per hour of event time. Rows go to a single writer thread in
//! chunks as they come, which encodes them in memory (compressed, a few bytes per event), so
//! encoding keeps pace with reading and never holds up the dataflow, and no rows are kept. The
//! range rolls by rows, by age, or where a range already on disk begins or ends; then its
//! files are written under hidden names, fsynced and renamed into place. Exactly-once comes
//! from the file names (see [`coverage`]): at start the archive is read back, half-written
//! files are removed, and an event whose hour already has a file covering its offset is not
//! written again, so a crash, a restart or a replay of an archived range adds nothing and
//! loses nothing.
//!
//! While the writer fails (a full disk, a directory made read-only) it retries every second,
//! the sink reports the error, and [`ArchiveMonitor::must_wait`] tells the readers to stop
//! consuming: events wait in Kafka rather than being dropped.

pub mod coverage;
mod files;
mod rows;
mod tap;

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use emoflow_ingest::archive_format::{archive_schema, hour_of, SegmentName};
use emoflow_ingest::Event;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

pub use coverage::{Coverage, PartitionCoverage};
pub use files::ROW_GROUP_ROWS;
pub use files::{
    create_dir_durably, parquet_properties, publish_bytes, segment_path, sync_dir, write_batch,
    write_parquet_atomically,
};
pub use rows::ArchiveRows;

use rows::HourRows;

/// Jobs handed to the writer and not yet done, beyond which readers pause (about a million
/// rows of chunks).
const MAX_PENDING_JOBS: usize = 64;

/// How long a stopping command waits for a failing writer before giving up on the rows it
/// holds (they stay in Kafka, and the next start archives them): the `patience` of
/// [`ArchiveSink::finish`].
pub const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// How long the writer waits before retrying a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where and how to archive.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The archive directory (created if missing).
    pub dir: PathBuf,
    /// The Kafka log being archived: the topic, or `topic~run` for one run of the embedded
    /// broker. It names the files, so that logs never mix up their offsets.
    pub log: String,
    /// A range rolls into files once it holds this many events.
    pub roll_rows: usize,
    /// A range rolls into files once it is this old.
    pub roll_age: Duration,
}

impl ArchiveConfig {
    /// The defaults for `log` in `dir`: files of up to a million events, or a minute's worth.
    pub fn new(dir: PathBuf, log: String) -> Self {
        ArchiveConfig {
            dir,
            log,
            roll_rows: 1_000_000,
            roll_age: Duration::from_secs(60),
        }
    }
}

/// What the archive has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ArchiveReport {
    /// The archive directory.
    pub dir: String,
    /// Files found at start.
    pub files_at_start: usize,
    /// Half-written files removed at start.
    pub leftovers_removed: usize,
    /// Events written since start (in files that have appeared).
    pub rows_written: u64,
    /// Files written since start.
    pub files_written: u64,
    /// Bytes of the files written since start.
    pub bytes_written: u64,
    /// Events read that were archived already (a replay or restart over an archived range).
    pub rows_already_archived: u64,
    /// Events handed to the writer whose files have not appeared yet.
    pub rows_pending: u64,
    /// Events given up on at shutdown because the writer kept failing (Kafka still has them;
    /// the next start archives them).
    pub rows_abandoned: u64,
    /// The writer's last error, while it keeps failing.
    pub error: Option<String>,
}

/// What archivers hand the writer.
enum Job {
    /// Rows of the range of `partition` that began at `first`, for the hour `hour`.
    Rows {
        partition: i32,
        first: i64,
        hour: i64,
        batch: RecordBatch,
    },
    /// That range ends at `last`: its files are finished and appear.
    Close {
        partition: i32,
        first: i64,
        last: i64,
    },
}

struct Inner {
    cfg: ArchiveConfig,
    coverage: Coverage,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    pending_jobs: AtomicUsize,
    rows_pending: AtomicU64,
    rows_written: AtomicU64,
    files_written: AtomicU64,
    bytes_written: AtomicU64,
    rows_already: AtomicU64,
    rows_abandoned: AtomicU64,
    error: Mutex<Option<String>>,
    abandon: AtomicBool,
}

impl Inner {
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.error.lock() {
            *g = e;
        }
    }

    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|g| g.clone())
    }

    fn send(&self, job: Job) {
        let rows = match &job {
            Job::Rows { batch, .. } => batch.num_rows() as u64,
            Job::Close { .. } => 0,
        };
        self.pending_jobs.fetch_add(1, Ordering::SeqCst);
        self.rows_pending.fetch_add(rows, Ordering::SeqCst);
        let sent = self
            .tx
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|tx| tx.send(job).is_ok()));
        if sent != Some(true) {
            // Only after finish(): nothing is read any more.
            self.pending_jobs.fetch_sub(1, Ordering::SeqCst);
            self.rows_pending.fetch_sub(rows, Ordering::SeqCst);
            self.rows_abandoned.fetch_add(rows, Ordering::SeqCst);
        }
    }

    /// Runs `attempt` until it succeeds (true) or the sink gives up (false), reporting the
    /// error meanwhile and retrying every second.
    fn retry(&self, mut attempt: impl FnMut() -> Result<(), String>) -> bool {
        loop {
            match attempt() {
                Ok(()) => {
                    if self.error().is_some() {
                        tracing::info!("archive: writing again");
                        self.set_error(None);
                    }
                    return true;
                }
                Err(e) => {
                    if self.error().is_none() {
                        tracing::error!("archive: {e}; reading paused, retrying every second");
                    }
                    self.set_error(Some(e));
                    if self.abandon.load(Ordering::SeqCst) {
                        return false;
                    }
                    std::thread::sleep(RETRY_AFTER);
                }
            }
        }
    }
}

/// One hour's file of a range still open, encoded in memory as rows arrive: compressed, a
/// file is a few bytes per event, so a range can be held until it ends and written to disk in
/// one go, and written again if that fails, without keeping its rows.
type HourFile = ArrowWriter<Vec<u8>>;

/// The writer thread's state: the ranges still open, by `(partition, first offset)`.
struct Writer {
    inner: Arc<Inner>,
    props: WriterProperties,
    open: BTreeMap<(i32, i64), OpenRange>,
}

/// A range being written: its files by hour, and its rows.
#[derive(Default)]
struct OpenRange {
    hours: BTreeMap<i64, HourFile>,
    rows: u64,
    /// Rows that could not be encoded (a bug, not bad input): the range's files never appear.
    broken: bool,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        for job in rx {
            match job {
                Job::Rows {
                    partition,
                    first,
                    hour,
                    batch,
                } => self.append(partition, first, hour, &batch),
                Job::Close {
                    partition,
                    first,
                    last,
                } => self.close(partition, first, last),
            }
            self.inner.pending_jobs.fetch_sub(1, Ordering::SeqCst);
        }
        // Ranges never closed (a worker failed): their files never appear.
        for range in std::mem::take(&mut self.open).into_values() {
            self.inner
                .rows_pending
                .fetch_sub(range.rows, Ordering::SeqCst);
            self.inner
                .rows_abandoned
                .fetch_add(range.rows, Ordering::SeqCst);
        }
    }

    fn append(&mut self, partition: i32, first: i64, hour: i64, batch: &RecordBatch) {
        let range = self.open.entry((partition, first)).or_default();
        range.rows += batch.num_rows() as u64;
        if range.broken {
            return;
        }
        let encoded = match range.hours.entry(hour) {
            Entry::Occupied(mut o) => o.get_mut().write(batch),
            Entry::Vacant(v) => {
                ArrowWriter::try_new(Vec::new(), archive_schema(), Some(self.props.clone()))
                    .and_then(|w| v.insert(w).write(batch))
            }
        };
        if let Err(e) = encoded {
            tracing::error!("archive: cannot encode rows of partition {partition}: {e}");
            range.broken = true;
            range.hours.clear();
        }
    }

    fn close(&mut self, partition: i32, first: i64, last: i64) {
        let range = self.open.remove(&(partition, first)).unwrap_or_default();
        let name = SegmentName {
            log: self.inner.cfg.log.clone(),
            partition,
            first,
            last,
        };
        let mut complete = !range.broken;
        for (hour, file) in range.hours {
            match file.into_inner() {
                Ok(bytes) => complete &= self.write_file(hour, &name, &bytes),
                Err(e) => {
                    tracing::error!("archive: cannot finish a file of partition {partition}: {e}");
                    complete = false;
                }
            }
        }
        self.inner
            .rows_pending
            .fetch_sub(range.rows, Ordering::SeqCst);
        if complete {
            self.inner
                .rows_written
                .fetch_add(range.rows, Ordering::Relaxed);
        } else {
            self.inner
                .rows_abandoned
                .fetch_add(range.rows, Ordering::SeqCst);
        }
    }

    /// Writes one hour's file of a range, retrying while the disk refuses; false when the
    /// sink gave up on it.
    fn write_file(&self, hour: i64, name: &SegmentName, bytes: &[u8]) -> bool {
        let path = segment_path(&self.inner.cfg.dir, hour, name);
        if path.exists() {
            tracing::warn!(file = %path.display(), "already archived; not written again");
            return true;
        }
        let written = self.inner.retry(|| publish_bytes(bytes, &path));
        if written {
            self.inner.files_written.fetch_add(1, Ordering::Relaxed);
            self.inner
                .bytes_written
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        written
    }
}

/// A running archive: the writer thread and what it knows of the archive.
pub struct ArchiveSink {
    inner: Arc<Inner>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// A handle on a running archive, for health reports and for readers deciding whether to
/// pause.
#[derive(Clone)]
pub struct ArchiveMonitor(Arc<Inner>);

impl ArchiveMonitor {
    /// What the archive has done so far.
    pub fn report(&self) -> ArchiveReport {
        let i = &self.0;
        ArchiveReport {
            dir: i.cfg.dir.display().to_string(),
            files_at_start: i.coverage.files,
            leftovers_removed: i.coverage.removed_tmp,
            rows_written: i.rows_written.load(Ordering::Relaxed),
            files_written: i.files_written.load(Ordering::Relaxed),
            bytes_written: i.bytes_written.load(Ordering::Relaxed),
            rows_already_archived: i.rows_already.load(Ordering::Relaxed),
            rows_pending: i.rows_pending.load(Ordering::Relaxed),
            rows_abandoned: i.rows_abandoned.load(Ordering::Relaxed),
            error: i.error(),
        }
    }

    /// The archiver of one partition, for the worker that reads it.
    pub fn partition(&self, partition: i32) -> PartitionArchiver {
        PartitionArchiver {
            coverage: self.0.coverage.of(&self.0.cfg.log, partition),
            inner: self.0.clone(),
            partition,
            rows: HourRows::default(),
            first: None,
            last: 0,
            boundary: None,
            opened: Instant::now(),
        }
    }

    /// True while readers should not read more: the writer is failing, or behind.
    pub fn must_wait(&self) -> bool {
        self.0.pending_jobs.load(Ordering::SeqCst) >= MAX_PENDING_JOBS
            || self.0.error.lock().is_ok_and(|g| g.is_some())
    }
}

impl ArchiveSink {
    /// Reads what the archive in `cfg.dir` holds (removing half-written files) and starts the
    /// writer.
    pub fn open(cfg: ArchiveConfig) -> Result<ArchiveSink, String> {
        let coverage = Coverage::scan(&cfg.dir)
            .map_err(|e| format!("cannot read the archive {}: {e}", cfg.dir.display()))?;
        if coverage.removed_tmp > 0 {
            tracing::info!(
                removed = coverage.removed_tmp,
                "archive: removed the leftovers of interrupted writes"
            );
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let inner = Arc::new(Inner {
            cfg,
            coverage,
            tx: Mutex::new(Some(tx)),
            pending_jobs: AtomicUsize::new(0),
            rows_pending: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            files_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            rows_already: AtomicU64::new(0),
            rows_abandoned: AtomicU64::new(0),
            error: Mutex::new(None),
            abandon: AtomicBool::new(false),
        });
        let writer = std::thread::Builder::new()
            .name("emoflow-archive".into())
            .spawn({
                let writer = Writer {
                    inner: inner.clone(),
                    props: parquet_properties(),
                    open: BTreeMap::new(),
                };
                move || writer.run(rx)
            })
            .map_err(|e| format!("cannot start the archive writer: {e}"))?;
        Ok(ArchiveSink {
            inner,
            writer: Some(writer),
        })
    }

    /// A handle for reports.
    pub fn monitor(&self) -> ArchiveMonitor {
        ArchiveMonitor(self.inner.clone())
    }

    /// The archive as a Kafka run's tap: every worker archives the partitions it reads.
    pub fn tap(&self) -> std::sync::Arc<dyn emoflow_dataflow::archive_tap::ArchiveTap> {
        Arc::new(self.monitor())
    }

    /// Waits for the writer to write everything handed to it (giving up after `patience`
    /// while it keeps failing) and reports. Archivers must have been flushed.
    pub fn finish(mut self, patience: Duration) -> ArchiveReport {
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        let deadline = Instant::now() + patience;
        if let Some(w) = self.writer.take() {
            while !w.is_finished() {
                if self.inner.error().is_some() && Instant::now() >= deadline {
                    self.inner.abandon.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = w.join();
        }
        self.monitor().report()
    }
}

/// Gathers one partition's accepted events into offset ranges and hands each full range to
/// the writer.
pub struct PartitionArchiver {
    inner: Arc<Inner>,
    partition: i32,
    coverage: PartitionCoverage,
    rows: HourRows,
    /// First offset of the range being gathered, once a message was read.
    first: Option<i64>,
    /// Last offset read.
    last: i64,
    /// Where the current range must end, so as not to straddle a range already archived.
    boundary: Option<i64>,
    opened: Instant,
}

impl PartitionArchiver {
    /// Takes the message at `offset`: its event when accepted, `None` when rejected (it still
    /// belongs to the range, but never to the archive).
    pub fn read(&mut self, offset: i64, event: Option<&Event<'_>>) {
        if self.boundary.is_some_and(|b| offset >= b) {
            self.roll();
        }
        if self.first.is_none() {
            self.first = Some(offset);
            self.boundary = self.coverage.boundary_after(offset);
            self.opened = Instant::now();
        }
        self.last = offset;
        if let Some(e) = event {
            if self.coverage.holds(offset, hour_of(e.ts)) {
                self.inner.rows_already.fetch_add(1, Ordering::Relaxed);
            } else {
                match self.rows.push(e, self.partition, offset) {
                    Ok(Some((hour, batch))) => self.send_rows(hour, batch),
                    Ok(None) => {}
                    Err(e) => self.unbuildable(&e),
                }
                if self.rows.len() >= self.inner.cfg.roll_rows {
                    self.roll();
                }
            }
        }
    }

    /// Rolls the range when it has grown old.
    pub fn tick(&mut self) {
        if self.first.is_some() && self.opened.elapsed() >= self.inner.cfg.roll_age {
            self.roll();
        }
    }

    fn send_rows(&self, hour: i64, batch: RecordBatch) {
        if let Some(first) = self.first {
            self.inner.send(Job::Rows {
                partition: self.partition,
                first,
                hour,
                batch,
            });
        }
    }

    /// The builders always match the schema: this would be a bug, not bad input.
    fn unbuildable(&self, e: &arrow_schema::ArrowError) {
        tracing::error!("archive: cannot build a batch: {e}");
        self.inner.rows_abandoned.fetch_add(1, Ordering::SeqCst);
    }

    /// Hands the rest of the range gathered so far to the writer, closes it (its files appear),
    /// and starts a new one.
    pub fn roll(&mut self) {
        if self.first.is_none() {
            return;
        }
        self.boundary = None;
        if self.rows.is_empty() {
            self.first = None;
            return;
        }
        match self.rows.take() {
            Ok(hours) => {
                for (hour, batch) in hours {
                    self.send_rows(hour, batch);
                }
            }
            Err(e) => self.unbuildable(&e),
        }
        if let Some(first) = self.first.take() {
            self.inner.send(Job::Close {
                partition: self.partition,
                first,
                last: self.last,
            });
        }
    }
}

/// The archivers of one worker's partitions.
#[derive(Default)]
pub struct WorkerArchive {
    parts: BTreeMap<i32, PartitionArchiver>,
    monitor: Option<ArchiveMonitor>,
}

impl WorkerArchive {
    /// Archivers for `partitions`, writing through the sink of `monitor`.
    pub fn new(monitor: &ArchiveMonitor, partitions: impl IntoIterator<Item = i32>) -> Self {
        WorkerArchive {
            parts: partitions
                .into_iter()
                .map(|p| (p, monitor.partition(p)))
                .collect(),
            monitor: Some(monitor.clone()),
        }
    }

    /// Takes the message at `(partition, offset)` (see [`PartitionArchiver::read`]).
    pub fn read(&mut self, partition: i32, offset: i64, event: Option<&Event<'_>>) {
        if let Some(a) = self.parts.get_mut(&partition) {
            a.read(offset, event);
        }
    }

    /// Rolls ranges that have grown old.
    pub fn tick(&mut self) {
        self.parts.values_mut().for_each(PartitionArchiver::tick);
    }

    /// Hands everything gathered to the writer.
    pub fn flush(&mut self) {
        self.parts.values_mut().for_each(PartitionArchiver::roll);
    }

    /// True while the reader should pause (see [`ArchiveMonitor::must_wait`]).
    pub fn must_wait(&self) -> bool {
        self.monitor.as_ref().is_some_and(ArchiveMonitor::must_wait)
    }
}
