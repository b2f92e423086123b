//! Running the views over NDJSON input (a file or bytes in memory) on N worker threads.
//!
//! Workers take turns through the input in chunks of [`CHUNK_BYTES`] (by default; see
//! [`emoflow_ingest::ndjson`]), so decoding runs in parallel while events still reach the views
//! in nearly file order, as from parallel Kafka partitions. Every `batch_lines` lines is one dataflow time; a worker never
//! runs more than [`MAX_TIMES_IN_FLIGHT`] times ahead of the views, which bounds buffered input.
//! Every worker counts filter matches in what it reads; a filter added during the run is
//! back-filled by each worker reading again what it had read before.

use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emoflow_ingest::ndjson::{interleaved_ranges, Line, LineCounter, RangesReader};
use emoflow_ingest::parquet_source::{ParquetInput, RowGroupRef};
use emoflow_ingest::{decode_event, Event, RejectReason, Rejection, MAX_MESSAGE_BYTES};

use crate::capture::{capture_channel, collect, CaptureSlot};
use crate::config::ViewConfig;
use crate::feed::Feed;
use crate::filter::FilterSpec;
use crate::filter_control::FilterChange;
use crate::freshness::{Freshness, OpenTimes};
use crate::snapshot::ViewState;

/// Bytes of input a worker reads before the next worker's turn.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// How many dataflow times a worker may run ahead of the finished views.
pub const MAX_TIMES_IN_FLIGHT: u64 = 4;

/// Where the events come from.
#[derive(Debug, Clone)]
pub enum InputData {
    /// An NDJSON file, read by every worker in its own byte range.
    File(PathBuf),
    /// NDJSON bytes already in memory (benchmarks, tests).
    Memory(Arc<[u8]>),
    /// Parquet files (one, or an archive directory), their row groups shared out among the
    /// workers.
    Parquet(Arc<ParquetInput>),
}

/// A reader over either kind of input.
enum Reader {
    File(File),
    Memory(Cursor<Arc<[u8]>>),
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Reader::File(f) => f.read(buf),
            Reader::Memory(c) => c.read(buf),
        }
    }
}

impl Seek for Reader {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        match self {
            Reader::File(f) => f.seek(pos),
            Reader::Memory(c) => c.seek(pos),
        }
    }
}

impl InputData {
    /// The input at `path`: Parquet (a directory of files, or a file starting with `PAR1`) or
    /// NDJSON.
    pub fn open_path(path: &std::path::Path) -> Result<InputData, RunError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| RunError::Io(format!("cannot read {}: {e}", path.display())))?;
        let mut magic = [0u8; 4];
        let parquet = meta.is_dir()
            || File::open(path)
                .map_err(|e| RunError::Io(format!("cannot open {}: {e}", path.display())))?
                .read_exact(&mut magic)
                .is_ok()
                && &magic == b"PAR1";
        if !parquet {
            return Ok(InputData::File(path.to_owned()));
        }
        let input = ParquetInput::open(path).map_err(|e| RunError::Io(e.to_string()))?;
        if input.file_count() == 0 && !input.problems().is_empty() {
            return Err(RunError::Io(format!(
                "no readable Parquet file in {}: {}",
                path.display(),
                input.problems().join("; ")
            )));
        }
        Ok(InputData::Parquet(Arc::new(input)))
    }

    fn open(&self) -> Result<Reader, RunError> {
        match self {
            InputData::File(p) => File::open(p)
                .map(Reader::File)
                .map_err(|e| RunError::Io(format!("cannot open {}: {e}", p.display()))),
            InputData::Memory(b) => Ok(Reader::Memory(Cursor::new(b.clone()))),
            InputData::Parquet(_) => Err(RunError::Io("Parquet input is not NDJSON".into())),
        }
    }

    fn len(&self) -> Result<u64, RunError> {
        match self {
            InputData::File(p) => std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| RunError::Io(format!("cannot read {}: {e}", p.display()))),
            InputData::Memory(b) => Ok(b.len() as u64),
            InputData::Parquet(p) => Ok(p.total_rows()),
        }
    }

    /// How much of the input (bytes of NDJSON, rows of Parquet) process `process` of
    /// `processes` reads when run with `opts`: the total of its progress bar.
    pub fn process_share(
        &self,
        opts: &RunOptions,
        process: usize,
        processes: usize,
    ) -> Result<u64, RunError> {
        let workers = opts.workers.max(1);
        let shares = self.shares(workers * processes.max(1), opts.chunk_bytes)?;
        Ok(shares
            .iter()
            .skip(process * workers)
            .take(workers)
            .map(Share::size)
            .sum())
    }

    /// What each of `workers` workers reads.
    fn shares(&self, workers: usize, chunk_bytes: u64) -> Result<Vec<Share>, RunError> {
        match self {
            InputData::Parquet(p) => Ok(balance(p.row_groups(), workers)
                .into_iter()
                .map(Share::RowGroups)
                .collect()),
            _ => Ok(interleaved_ranges(self.len()?, workers, chunk_bytes)
                .into_iter()
                .map(Share::Ranges)
                .collect()),
        }
    }
}

/// One worker's part of the input.
#[derive(Debug, Clone)]
enum Share {
    /// Byte ranges of NDJSON.
    Ranges(Vec<std::ops::Range<u64>>),
    /// Row groups of Parquet files, in file order.
    RowGroups(Vec<RowGroupRef>),
}

impl Share {
    /// Bytes or rows in this share.
    fn size(&self) -> u64 {
        match self {
            Share::Ranges(ranges) => ranges.iter().map(|r| r.end - r.start).sum(),
            Share::RowGroups(groups) => groups.iter().map(|g| g.rows).sum(),
        }
    }
}

/// Shares row groups out so that every worker gets about as many rows, each worker's in file
/// order.
fn balance(groups: Vec<RowGroupRef>, workers: usize) -> Vec<Vec<RowGroupRef>> {
    let mut shares: Vec<(u64, Vec<RowGroupRef>)> = vec![(0, Vec::new()); workers.max(1)];
    // An empty row group would read as the end of a worker's share.
    let mut by_size: Vec<RowGroupRef> = groups.into_iter().filter(|g| g.rows > 0).collect();
    by_size.sort_by_key(|g| std::cmp::Reverse(g.rows));
    for g in by_size {
        if let Some(least) = shares.iter_mut().min_by_key(|(rows, _)| *rows) {
            least.0 += g.rows;
            least.1.push(g);
        }
    }
    shares
        .into_iter()
        .map(|(_, mut v)| {
            v.sort_by_key(|g| (g.file, g.index));
            v
        })
        .collect()
}

/// A filter change applied by every worker just before the given batch; a filter added is
/// back-filled over what each worker read before.
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

/// A rejected input line, kept with where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// 1-based line number in the input.
    pub line: u64,
    /// Why it was refused.
    pub rejection: Rejection,
    /// The line, cut to 1 KiB, as lossy UTF-8.
    pub payload: String,
}

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

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The final views; `None` in a process of a cluster other than process 0 (which holds
    /// them).
    pub state: Option<ViewState>,
    /// Non-blank lines read (by this process).
    pub lines: u64,
    /// Wall time from start to the final views.
    pub elapsed: Duration,
    /// For every dataflow time, from the moment a worker of this process began reading its
    /// input to the moment the collector's views included it: how fresh the views stay under
    /// full load. Measured in process 0 only (empty elsewhere).
    pub freshness: Freshness,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// Reading the input failed.
    #[error("input: {0}")]
    Io(String),
    /// A parameter is out of range.
    #[error("invalid configuration")]
    Config(#[from] crate::config::ConfigError),
    /// The dataflow itself failed (a worker panicked or could not start).
    #[error("dataflow: {0}")]
    Dataflow(String),
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
    opts.views.validate()?;
    let started = Instant::now();
    let workers = opts.workers.max(1);
    let (process, processes) = link
        .as_ref()
        .map_or((0, 1), |l| (l.process(), l.processes()));
    let shares = input.shares(workers * processes, opts.chunk_bytes)?;
    let (capture, rx) = capture_channel();
    let shared = Arc::new(Shared {
        input,
        shares,
        opts,
        capture,
        applied: AtomicU64::new(0),
        opened: OpenTimes::default(),
        // Only process 0 has a collector to wait for.
        collecting: process == 0,
        dead_letters: Mutex::new(dead_letters),
    });
    let guards = crate::cluster::execute(workers, link, {
        let shared = shared.clone();
        move |worker| run_worker(worker, &shared)
    })
    .map_err(RunError::Dataflow)?;
    let mut freshness = Freshness::default();
    let collector = if process == 0 {
        Some(collect(rx, |c| {
            let as_of = c.state().as_of;
            shared.applied.store(as_of, Ordering::Relaxed);
            shared.opened.complete(as_of, &mut freshness);
        }))
    } else {
        drop(rx);
        None
    };
    let mut lines = 0;
    for result in guards.join() {
        lines += result.map_err(RunError::Dataflow)??;
    }
    if collector.as_ref().is_some_and(|c| !c.is_complete()) {
        return Err(RunError::Dataflow(
            "the dataflow stopped before finishing".into(),
        ));
    }
    Ok(RunOutput {
        state: collector.map(crate::snapshot::Collector::into_state),
        lines,
        elapsed: started.elapsed(),
        freshness,
    })
}

struct Shared {
    input: InputData,
    shares: Vec<Share>,
    opts: RunOptions,
    capture: CaptureSlot,
    /// The last time the collector has applied: workers wait for it too, so that updates do
    /// not pile up between the dataflow and a slower collector.
    applied: AtomicU64,
    /// False in a process without the collector (its workers wait for the others only).
    collecting: bool,
    dead_letters: Mutex<Option<mpsc::Sender<DeadLetter>>>,
    /// When a worker of this process first began reading each dataflow time.
    opened: OpenTimes,
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<u64, RunError> {
    let index = worker.index();
    let peers = worker.peers();
    let opts = &shared.opts;
    let dead_letters = shared.dead_letters.lock().ok().and_then(|g| g.clone());
    let cfg = opts.views;
    let (mut inputs, probe) = shared.capture.build_views(worker, cfg);

    let mut feed = Feed::new(cfg, peers);
    feed.add_initial_filters(&opts.filters);
    let mut source = Source::new(shared, index, dead_letters);
    let mut lines = 0u64;
    let mut time = 1u64;
    let last_change = opts
        .filter_changes
        .iter()
        .map(|c| c.at_time)
        .max()
        .unwrap_or(0);
    loop {
        inputs.advance_to(time);
        if shared.collecting {
            shared.opened.open(time);
        }
        for c in opts.filter_changes.iter().filter(|c| c.at_time == time) {
            feed.apply_change(time, &c.change());
        }
        if feed.needs_backfill() {
            // One pass over this worker's history for every filter added now.
            source.replay_history(|e| feed.count_history(e))?;
            feed.end_backfill();
        }
        let (read, amount) = source.next_batch(&mut feed, opts.batch_lines)?;
        lines += read as u64;
        if let Some(progress) = &opts.progress {
            progress.fetch_add(amount, Ordering::Relaxed);
        }
        feed.flush_into(&mut inputs);
        if read == 0 && time >= last_change {
            break;
        }
        time += 1;
        let lagging = time.saturating_sub(MAX_TIMES_IN_FLIGHT);
        // Park rather than spin while waiting for the other workers and the collector.
        while probe.less_than(&lagging) {
            worker.step_or_park(None);
        }
        while shared.collecting
            && shared.applied.load(Ordering::Relaxed) < lagging.saturating_sub(1)
        {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    }
    Ok(lines)
}

/// Opens the NDJSON input again (each range is read through its own handle).
type OpenFn = Box<dyn FnMut() -> std::io::Result<Reader> + Send>;

/// One worker's reader of its share of the input.
struct Source<'a> {
    shared: &'a Shared,
    dead_letters: Option<mpsc::Sender<DeadLetter>>,
    kind: SourceKind,
}

enum SourceKind {
    Ndjson {
        reader: RangesReader<Reader, OpenFn>,
        line_numbers: LineCounter,
        /// The byte spans whose lines were read so far: the history to back-fill from.
        read: Vec<Range<u64>>,
    },
    Parquet {
        input: Arc<ParquetInput>,
        groups: std::vec::IntoIter<RowGroupRef>,
        /// The row groups read so far.
        read: Vec<RowGroupRef>,
    },
}

impl<'a> Source<'a> {
    fn new(
        shared: &'a Shared,
        index: usize,
        dead_letters: Option<mpsc::Sender<DeadLetter>>,
    ) -> Self {
        let kind = match (&shared.input, &shared.shares[index]) {
            (InputData::Parquet(input), Share::RowGroups(groups)) => SourceKind::Parquet {
                input: input.clone(),
                groups: groups.clone().into_iter(),
                read: Vec::new(),
            },
            (_, share) => {
                let ranges = match share {
                    Share::Ranges(r) => r.clone(),
                    Share::RowGroups(_) => Vec::new(),
                };
                let input = shared.input.clone();
                let open: OpenFn = Box::new(move || {
                    input
                        .open()
                        .map_err(|e| std::io::Error::other(e.to_string()))
                });
                SourceKind::Ndjson {
                    reader: RangesReader::new(open, ranges),
                    line_numbers: LineCounter::default(),
                    read: Vec::new(),
                }
            }
        };
        Source {
            shared,
            dead_letters,
            kind,
        }
    }

    /// Feeds the next batch to `feed`: returns the inputs read and how much of the input that
    /// was (bytes of NDJSON, rows of Parquet).
    fn next_batch(
        &mut self,
        feed: &mut Feed,
        batch_lines: usize,
    ) -> Result<(usize, u64), RunError> {
        match &mut self.kind {
            SourceKind::Ndjson {
                reader,
                line_numbers,
                read,
            } => ndjson_batch(
                &self.shared.input,
                reader,
                line_numbers,
                read,
                self.dead_letters.as_ref(),
                feed,
                batch_lines,
            ),
            SourceKind::Parquet {
                input,
                groups,
                read: groups_read,
            } => {
                let dead_letters = self.dead_letters.as_ref();
                // A row group that cannot be decoded is reported and skipped (no row of it is
                // counted: it is decoded whole before any row is handed over).
                for group in groups.by_ref() {
                    groups_read.push(group);
                    let mut read = 0usize;
                    let result = input.read(group, |row| {
                        read += 1;
                        match row.event {
                            Ok(event) => feed.accept(&event, row.partition, row.offset, 0),
                            Err(rejection) => {
                                feed.reject(rejection.reason);
                                if let Some(tx) = dead_letters {
                                    let _ = tx.send(DeadLetter {
                                        line: row.row + 1,
                                        rejection,
                                        payload: format!("{} row {}", row.path.display(), row.row),
                                    });
                                }
                            }
                        }
                    });
                    match result {
                        Ok(()) => return Ok((read, read as u64)),
                        Err(e) => tracing::warn!("skipped: {e}"),
                    }
                }
                Ok((0, 0))
            }
        }
    }
}

impl Source<'_> {
    /// Hands every accepted event read so far to `f`, reading it again.
    fn replay_history(&mut self, mut f: impl FnMut(&Event<'_>)) -> Result<(), RunError> {
        match &self.kind {
            SourceKind::Ndjson { read, .. } => {
                let input = self.shared.input.clone();
                let open = move || {
                    input
                        .open()
                        .map_err(|e| std::io::Error::other(e.to_string()))
                };
                let mut again = RangesReader::new(open, read.clone());
                loop {
                    let n = again
                        .next_batch(65_536, |_, line| {
                            if let Line::Text(bytes) = line {
                                if let Ok(e) = decode_event(bytes, None) {
                                    f(&e);
                                }
                            }
                        })
                        .map_err(|e| RunError::Io(e.to_string()))?;
                    if n == 0 {
                        return Ok(());
                    }
                }
            }
            SourceKind::Parquet { input, read, .. } => {
                for &group in read {
                    let result = input.read(group, |row| {
                        if let Ok(e) = &row.event {
                            f(e);
                        }
                    });
                    if let Err(e) = result {
                        tracing::warn!("skipped in the back-fill: {e}");
                    }
                }
                Ok(())
            }
        }
    }
}

/// Notes that the line at `offset`, `len` bytes with its newline, was read.
fn note_read(spans: &mut Vec<Range<u64>>, offset: u64, len: u64) {
    match spans.last_mut() {
        Some(last) if last.end == offset => last.end = offset + len,
        _ => spans.push(offset..offset + len),
    }
}

/// Reads and feeds up to `batch_lines` NDJSON lines.
fn ndjson_batch(
    input: &InputData,
    reader: &mut RangesReader<Reader, OpenFn>,
    line_numbers: &mut LineCounter,
    spans: &mut Vec<Range<u64>>,
    dead_letters: Option<&mpsc::Sender<DeadLetter>>,
    feed: &mut Feed,
    batch_lines: usize,
) -> Result<(usize, u64), RunError> {
    let mut io_error = None;
    let mut bytes = 0u64;
    let read = reader
        .next_batch(batch_lines, |pos, line| {
            let len = match line {
                Line::Text(text) => text.len() as u64 + 1,
                Line::TooLong { len, .. } => len + 1,
            };
            bytes += len;
            note_read(spans, pos.byte_offset, len);
            let result = match line {
                Line::Text(bytes) => decode_event(bytes, None).map_err(|r| (r, bytes)),
                Line::TooLong { len, head } => Err((
                    Rejection::new(
                        RejectReason::TooLarge,
                        format!("line is {len} bytes, the limit is {MAX_MESSAGE_BYTES}"),
                    ),
                    head,
                )),
            };
            match result {
                Ok(event) => feed.accept(&event, 0, pos.byte_offset as i64, 0),
                Err((rejection, bytes)) => {
                    feed.reject(rejection.reason);
                    if let Some(tx) = dead_letters {
                        let line = input
                            .open()
                            .map_err(|e| std::io::Error::other(e.to_string()))
                            .and_then(|input| line_numbers.line_number(input, pos))
                            .unwrap_or_else(|e| {
                                io_error = Some(format!("cannot count lines: {e}"));
                                0
                            });
                        let payload = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]);
                        let _ = tx.send(DeadLetter {
                            line,
                            rejection,
                            payload: payload.into_owned(),
                        });
                    }
                }
            }
        })
        .map_err(|e| RunError::Io(e.to_string()))?;
    if let Some(e) = io_error {
        return Err(RunError::Io(e));
    }
    Ok((read, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize) -> InputData {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    r#"{{"user_id":"u{}","event_type":"emoji","emoji":"🔥","ts":{}}}"#,
                    i % 7,
                    1_700_000_000_000i64 + i as i64
                ) + "\n"
            })
            .collect();
        InputData::Memory(Arc::from(text.into_bytes()))
    }

    #[test]
    fn process_shares_split_the_input_among_the_processes() {
        let input = lines(500);
        let len = input.len().unwrap_or(0);
        for workers in 1..=3 {
            for processes in 1..=3 {
                let opts = RunOptions {
                    workers,
                    chunk_bytes: 1000,
                    ..RunOptions::default()
                };
                let shares: Vec<u64> = (0..processes)
                    .map(|p| input.process_share(&opts, p, processes).unwrap_or(0))
                    .collect();
                assert_eq!(shares.iter().sum::<u64>(), len, "{workers}x{processes}");
                assert!(
                    shares.iter().all(|s| *s > 0),
                    "{workers}x{processes}: {shares:?}"
                );
            }
        }
    }

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
