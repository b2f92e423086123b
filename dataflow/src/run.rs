//! Running the views over NDJSON input (a file or bytes in memory) on N worker threads.
//!
//! Workers take turns through the input in chunks of [`CHUNK_BYTES`] (see
//! [`emoflow_ingest::ndjson`]), so decoding runs in parallel while events still reach the views
//! in nearly file order, as from parallel Kafka partitions. Every `batch_lines` lines is one dataflow time; a worker never
//! runs more than [`MAX_TIMES_IN_FLIGHT`] times ahead of the views, which bounds buffered input.
//! Worker 0 also feeds the filters: the initial ones at time 0, scheduled changes later.

use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emoflow_ingest::ndjson::{interleaved_ranges, Line, LineCounter, RangesReader};
use emoflow_ingest::{decode_event, RejectReason, Rejection, MAX_MESSAGE_BYTES};
use timely::dataflow::operators::capture::{Capture as _, Event, EventPusher};
use timely::dataflow::operators::Exchange as _;

use crate::config::ViewConfig;
use crate::feed::Feed;
use crate::filter::FilterSpec;
use crate::snapshot::{CapturedEvent, Collector, ViewState};
use crate::update::ViewUpdate;
use crate::views::build_views;

/// Bytes of input a worker reads before the next worker's turn.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// How many dataflow times a worker may run ahead of the finished views.
pub const MAX_TIMES_IN_FLIGHT: u64 = 4;

/// Where the NDJSON comes from.
#[derive(Debug, Clone)]
pub enum InputData {
    /// A file, read by every worker in its own byte range.
    File(PathBuf),
    /// Bytes already in memory (benchmarks, tests).
    Memory(Arc<[u8]>),
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
    fn open(&self) -> Result<Reader, RunError> {
        match self {
            InputData::File(p) => File::open(p)
                .map(Reader::File)
                .map_err(|e| RunError::Io(format!("cannot open {}: {e}", p.display()))),
            InputData::Memory(b) => Ok(Reader::Memory(Cursor::new(b.clone()))),
        }
    }

    fn len(&self) -> Result<u64, RunError> {
        match self {
            InputData::File(p) => std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| RunError::Io(format!("cannot read {}: {e}", p.display()))),
            InputData::Memory(b) => Ok(b.len() as u64),
        }
    }
}

/// A filter change applied by worker 0 just before the given batch.
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
    /// When given, workers add the bytes of input they have read here (for progress bars).
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
            progress: None,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// The final views.
    pub state: ViewState,
    /// Non-blank lines read.
    pub lines: u64,
    /// Wall time from start to the final views.
    pub elapsed: Duration,
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

/// Sends captured updates to the collector from worker 0; other workers capture nothing (all
/// updates are routed to worker 0 first).
pub(crate) struct ToCollector(pub(crate) Option<mpsc::Sender<CapturedEvent>>);

impl EventPusher<u64, Vec<(ViewUpdate, u64, isize)>> for ToCollector {
    fn push(&mut self, event: Event<u64, Vec<(ViewUpdate, u64, isize)>>) {
        if let Some(tx) = &self.0 {
            // The collector only goes away when the run is abandoned.
            let _ = tx.send(event);
        }
    }
}

/// Runs the views over `input` and returns them once every line is processed. Rejected lines
/// are counted in the views and, when `dead_letters` is given, sent there with their line.
pub fn run_views(
    input: InputData,
    opts: RunOptions,
    dead_letters: Option<mpsc::Sender<DeadLetter>>,
) -> Result<RunOutput, RunError> {
    opts.views.validate()?;
    let started = Instant::now();
    let workers = opts.workers.max(1);
    let ranges = interleaved_ranges(input.len()?, workers, CHUNK_BYTES);
    let (tx, rx) = mpsc::channel::<CapturedEvent>();
    let shared = Arc::new(Shared {
        input,
        ranges,
        opts,
        capture: Mutex::new(Some(tx)),
        dead_letters: Mutex::new(dead_letters),
    });
    let guards = timely::execute(timely::Config::process(workers), {
        let shared = shared.clone();
        move |worker| run_worker(worker, &shared)
    })
    .map_err(RunError::Dataflow)?;
    let mut collector = Collector::default();
    for event in rx {
        collector.push(event);
    }
    let mut lines = 0;
    for result in guards.join() {
        lines += result.map_err(RunError::Dataflow)??;
    }
    if !collector.is_complete() {
        return Err(RunError::Dataflow(
            "the dataflow stopped before finishing".into(),
        ));
    }
    Ok(RunOutput {
        state: collector.into_state(),
        lines,
        elapsed: started.elapsed(),
    })
}

struct Shared {
    input: InputData,
    ranges: Vec<Vec<std::ops::Range<u64>>>,
    opts: RunOptions,
    capture: Mutex<Option<mpsc::Sender<CapturedEvent>>>,
    dead_letters: Mutex<Option<mpsc::Sender<DeadLetter>>>,
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<u64, RunError> {
    let index = worker.index();
    let peers = worker.peers();
    let opts = &shared.opts;
    let pusher = ToCollector(if index == 0 {
        // Taken, not cloned: the channel closes when worker 0's capture is dropped.
        shared.capture.lock().ok().and_then(|mut g| g.take())
    } else {
        None
    });
    let dead_letters = shared.dead_letters.lock().ok().and_then(|g| g.clone());
    let cfg = opts.views;
    let (mut inputs, probe) = worker.dataflow::<u64, _, _>(move |scope| {
        let (inputs, updates) = build_views(scope, cfg);
        let (probe, updates) = updates.probe();
        updates.inner.exchange(|_| 0).capture_into(pusher);
        (inputs, probe)
    });

    if index == 0 {
        for (id, spec) in &opts.filters {
            inputs.filters.update((id.clone(), spec.clone()), 1);
        }
    }
    let open = || {
        shared
            .input
            .open()
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    let mut reader = RangesReader::new(open, shared.ranges[index].clone());
    let mut line_numbers = LineCounter::default();
    let mut feed = Feed::new(cfg, peers);
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
        if index == 0 {
            for c in opts.filter_changes.iter().filter(|c| c.at_time == time) {
                inputs
                    .filters
                    .update((c.id.clone(), c.spec.clone()), c.diff);
            }
        }
        let mut io_error = None;
        let mut bytes = 0u64;
        let read = reader
            .next_batch(opts.batch_lines, |pos, line| {
                bytes += match line {
                    Line::Text(text) => text.len() as u64 + 1,
                    Line::TooLong { len, .. } => len + 1,
                };
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
                    Ok(event) => feed.accept(&event, 0, pos.byte_offset as i64),
                    Err((rejection, bytes)) => {
                        feed.reject(rejection.reason);
                        if let Some(tx) = &dead_letters {
                            let line = open()
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
        lines += read as u64;
        if let Some(progress) = &opts.progress {
            progress.fetch_add(bytes, Ordering::Relaxed);
        }
        feed.flush_into(&mut inputs);
        if read == 0 && time >= last_change {
            break;
        }
        time += 1;
        let lagging = time.saturating_sub(MAX_TIMES_IN_FLIGHT);
        // Park rather than spin while waiting for the other workers.
        while probe.less_than(&lagging) {
            worker.step_or_park(None);
        }
    }
    Ok(lines)
}
