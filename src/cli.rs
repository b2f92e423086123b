//! The command line (SPEC section 5). Every flag can also be set through an `EMOFLOW_*`
//! environment variable.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use emoflow_dataflow::ViewConfig;

/// Exact real-time analytics for reaction and activity events.
#[derive(Debug, Parser)]
#[command(name = "emoflow", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute every view over an NDJSON file and print them as one JSON document.
    Query(QueryArgs),
    /// Generate a seeded synthetic event stream (NDJSON).
    Produce(ProduceArgs),
    /// Measure throughput and peak memory of the views for several worker counts.
    Bench(BenchArgs),
    /// One benchmark run, in a process of its own (used by `bench`).
    #[command(hide = true)]
    BenchRun(BenchRunArgs),
}

/// A duration such as `30m`, `10s`, `500ms` or `7d`.
fn duration_ms(s: &str) -> Result<i64, String> {
    let d: Duration = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    i64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// Parameters of the views.
#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    /// K of the ties-aware top-K (1..=1000).
    #[arg(long, default_value_t = 3, env = "EMOFLOW_TOP_K")]
    pub top_k: usize,
    /// Width of the tumbling event-time windows.
    #[arg(long, default_value = "10s", value_parser = duration_ms, env = "EMOFLOW_WINDOW")]
    pub window: i64,
    /// Largest gap between two events of one session.
    #[arg(long, default_value = "30m", value_parser = duration_ms, env = "EMOFLOW_SESSION_GAP")]
    pub session_gap: i64,
    /// Event time behind the newest event that sessions and filter matches keep.
    #[arg(long, default_value = "7d", value_parser = duration_ms, env = "EMOFLOW_RETENTION")]
    pub retention: i64,
}

impl ViewArgs {
    /// The views' configuration.
    pub fn config(&self) -> ViewConfig {
        ViewConfig {
            top_k: self.top_k,
            window_ms: self.window,
            session_gap_ms: self.session_gap,
            retention_ms: self.retention,
        }
    }
}

/// `emoflow query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The NDJSON file to read.
    #[arg(long, env = "EMOFLOW_INPUT")]
    pub input: PathBuf,
    /// A JSON array of filters; ids are positions from 0 unless a filter gives an `id`.
    #[arg(long, env = "EMOFLOW_FILTERS")]
    pub filters: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 1, env = "EMOFLOW_WORKERS")]
    pub workers: usize,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
    /// Write rejected lines here as NDJSON (`line`, `reason`, `detail`, `payload`).
    #[arg(long, env = "EMOFLOW_DEAD_LETTERS")]
    pub dead_letters: Option<PathBuf>,
    /// Lines per dataflow time, per worker.
    #[arg(long, default_value_t = 65_536, env = "EMOFLOW_BATCH_LINES")]
    pub batch_lines: usize,
    /// Indent the JSON output.
    #[arg(long)]
    pub pretty: bool,
}

/// `emoflow produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Write the events to this NDJSON file.
    #[arg(long, env = "EMOFLOW_TO_FILE")]
    pub to_file: Option<PathBuf>,
    /// How many events.
    #[arg(long, default_value_t = 100_000, env = "EMOFLOW_EVENTS")]
    pub events: u64,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 42, env = "EMOFLOW_SEED")]
    pub seed: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 10_000, env = "EMOFLOW_USERS")]
    pub users: u32,
    /// Mean event-time step between events.
    #[arg(long, default_value = "20ms", value_parser = duration_ms, env = "EMOFLOW_STEP")]
    pub step: i64,
}

/// `emoflow bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where events come from: `memory` (generated in memory, then decoded) or `file`.
    #[arg(long, default_value = "memory", env = "EMOFLOW_BENCH_SOURCE")]
    pub source: String,
    /// An NDJSON file, for `--source file`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Worker counts to measure, comma-separated.
    #[arg(
        long,
        default_value = "1,2",
        value_delimiter = ',',
        env = "EMOFLOW_BENCH_WORKERS"
    )]
    pub workers: Vec<usize>,
    /// Events per run (generated sources).
    #[arg(long, default_value_t = 2_000_000, env = "EMOFLOW_BENCH_EVENTS")]
    pub events: u64,
    /// Distinct users (generated sources).
    #[arg(long, default_value_t = 10_000)]
    pub users: u32,
    /// Runs per worker count; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Synthetic filters in force during the runs.
    #[arg(long, default_value_t = 10)]
    pub filters: usize,
    /// Write the results as CSV here.
    #[arg(long, default_value = "bench-out/bench.csv")]
    pub csv: PathBuf,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
}

/// `emoflow bench-run`.
#[derive(Debug, Args)]
pub struct BenchRunArgs {
    /// `memory` or `file`.
    #[arg(long)]
    pub source: String,
    /// The file, for `file`.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Worker threads.
    #[arg(long)]
    pub workers: usize,
    /// Events, for `memory`.
    #[arg(long)]
    pub events: u64,
    /// Users, for `memory`.
    #[arg(long)]
    pub users: u32,
    /// Synthetic filters.
    #[arg(long)]
    pub filters: usize,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
}
