//! The command line (docs/commands.md). Every flag can also be set through an `EMOFLOW_*`
//! environment variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use emoflow_dataflow::ViewConfig;
use emoflow_ingest::kafka::OffsetSpec;

use crate::arg_values::{duration_ms, origin, positive_duration_ms, time_ms, whole};

/// Most worker threads: far beyond any machine's cores, low enough to catch a typo.
const MAX_WORKERS: u64 = 1024;
/// Where `serve` listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Most processes in a cluster.
const MAX_PROCESSES: u64 = 256;
/// Most partitions emoflow creates a topic with.
const MAX_PARTITIONS: u64 = 100_000;
const ANY: u64 = u64::MAX;

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
    /// Compute every view over an NDJSON file, a Parquet file or an archive directory, and print
    /// them as one JSON document.
    Query(QueryArgs),
    /// Run the pipeline and the HTTP API over a Kafka topic (or the embedded broker).
    Serve(ServeArgs),
    /// Serve on the embedded broker with a synthetic load; prints the URL.
    Demo(DemoArgs),
    /// Send events (an NDJSON file or the generator) to a Kafka topic, or write them to a file.
    Produce(ProduceArgs),
    /// Compute the views over a range of a Kafka topic and print them as one JSON document;
    /// with `--archive`, also rebuild or complete the Parquet archive of that range.
    Replay(ReplayArgs),
    /// Write the archived events of a time range (and of a filter) as one Parquet file.
    Export(ExportArgs),
    /// Measure throughput, freshness and peak memory of the views for several process and
    /// worker counts.
    Bench(BenchArgs),
    /// Measure freshness: produce at a steady rate and time each event until `/stats` counts it.
    BenchFreshness(FreshnessArgs),
    /// Measure live push: many SSE subscribers over many filters against a running `serve`,
    /// while producing at a steady rate.
    BenchSubscribers(SubscribersBenchArgs),
    /// One benchmark run, in a process of its own (used by `bench`).
    #[command(hide = true)]
    BenchRun(BenchRunArgs),
}

/// Parameters of the views.
#[derive(Debug, Clone, Args)]
pub struct ViewArgs {
    /// K of the ties-aware top-K (1..=1000).
    #[arg(long, default_value_t = 3, env = "EMOFLOW_TOP_K", value_parser = whole::<usize>(1, 1000), allow_negative_numbers = true)]
    pub top_k: usize,
    /// Width of the tumbling event-time windows.
    #[arg(long, default_value = "10s", value_parser = positive_duration_ms, env = "EMOFLOW_WINDOW")]
    pub window: i64,
    /// Largest gap between two events of one session.
    #[arg(long, default_value = "30m", value_parser = duration_ms, env = "EMOFLOW_SESSION_GAP")]
    pub session_gap: i64,
    /// Event time behind the newest event that sessions and filter matches keep.
    #[arg(long, default_value = "7d", value_parser = positive_duration_ms, env = "EMOFLOW_RETENTION")]
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
    /// What to read: an NDJSON file, a Parquet file, or a directory of Parquet files (the
    /// archive).
    #[arg(long, env = "EMOFLOW_INPUT")]
    pub input: PathBuf,
    /// A JSON array of filters; ids are positions from 0 unless a filter gives an `id`.
    #[arg(long, env = "EMOFLOW_FILTERS")]
    pub filters: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 1, env = "EMOFLOW_WORKERS", value_parser = whole::<usize>(1, MAX_WORKERS), allow_negative_numbers = true)]
    pub workers: usize,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
    /// Write rejected lines here as NDJSON (`line`, `reason`, `detail`, `payload`).
    #[arg(long, env = "EMOFLOW_DEAD_LETTERS")]
    pub dead_letters: Option<PathBuf>,
    /// Lines per dataflow time, per worker.
    #[arg(long, default_value_t = 65_536, env = "EMOFLOW_BATCH_LINES", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub batch_lines: usize,
    /// Indent the JSON output.
    #[arg(long, env = "EMOFLOW_PRETTY")]
    pub pretty: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// One process of a timely cluster: the same command runs in every process, each with its own
/// `--process`, the same `--hostfile` and the same `--workers`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Processes in the cluster (1: this process alone).
    #[arg(long, default_value_t = 1, env = "EMOFLOW_PROCESSES", value_parser = whole::<usize>(1, MAX_PROCESSES), allow_negative_numbers = true)]
    pub processes: usize,
    /// This process's number, from 0. Process 0 answers the HTTP API and prints the views.
    #[arg(long, default_value_t = 0, env = "EMOFLOW_PROCESS", value_parser = whole::<usize>(0, MAX_PROCESSES - 1), allow_negative_numbers = true)]
    pub process: usize,
    /// The processes' cluster addresses, one `host:port` a line, process 0 first (needed with
    /// `--processes` above 1).
    #[arg(long, env = "EMOFLOW_HOSTFILE")]
    pub hostfile: Option<PathBuf>,
    /// How long a process waits for the others to start.
    #[arg(long, default_value = "2m", value_parser = positive_duration_ms, env = "EMOFLOW_JOIN_TIMEOUT")]
    pub join_timeout: i64,
}

/// Where emoflow keeps its state on disk.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// emoflow's directory: the archive (by default) and the lock that keeps other emoflow
    /// processes out.
    #[arg(long, default_value = "./emoflow-data", env = "EMOFLOW_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The Parquet archive [default: <data-dir>/archive].
    #[arg(long, env = "EMOFLOW_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,
    /// An archive file rolls once it holds this many events (per partition).
    #[arg(long, default_value_t = 1_000_000, env = "EMOFLOW_ARCHIVE_ROLL_ROWS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub archive_roll_rows: usize,
    /// An archive file rolls once its first event is this many seconds old.
    #[arg(long, default_value_t = 60, env = "EMOFLOW_ARCHIVE_ROLL_SECS", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub archive_roll_secs: u64,
}

/// How the HTTP server treats requests from browsers and slow requests.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Origins whose pages may call the API from a browser (CORS), comma-separated or
    /// repeated, e.g. `https://show.example.com`; `*` allows any. None by default: only pages
    /// served by emoflow itself (the dashboard) may.
    #[arg(
        long = "cors-origin",
        value_delimiter = ',',
        value_parser = origin,
        env = "EMOFLOW_CORS_ORIGIN"
    )]
    pub cors_origins: Vec<String>,
    /// How long a read request may take before it is answered 408. Streams (SSE, WebSocket)
    /// are exempt, and so are writes, which bound their own waits (`--produce-timeout`).
    #[arg(long, default_value = "30s", value_parser = positive_duration_ms, env = "EMOFLOW_REQUEST_TIMEOUT")]
    pub request_timeout: i64,
}

/// Filters and live push: how many, and what each subscriber may hold.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// Most filters kept (POST /filters past it answers 400).
    #[arg(long, default_value_t = 10_000, env = "EMOFLOW_MAX_FILTERS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub max_filters: usize,
    /// Most live subscribers (SSE and WebSocket) in all; past it, 503 with Retry-After.
    #[arg(long, default_value_t = 16_000, env = "EMOFLOW_MAX_SUBSCRIBERS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub max_subscribers: usize,
    /// Most live subscribers from one client address; past it, 503 with Retry-After.
    #[arg(long, default_value_t = 12_000, env = "EMOFLOW_MAX_SUBSCRIBERS_PER_ADDRESS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub max_subscribers_per_address: usize,
    /// Events that may wait for one subscriber; a subscriber further behind is disconnected
    /// (it resumes with its last event id).
    #[arg(long, default_value_t = 1024, env = "EMOFLOW_SUBSCRIBER_BUFFER", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub subscriber_buffer: usize,
    /// Recent events kept in memory for subscribers that resume (older ones are read back
    /// from Kafka).
    #[arg(long, default_value_t = 100_000, env = "EMOFLOW_PUSH_MEMORY_EVENTS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub push_memory_events: usize,
}

/// Where the live service reads and how it serves.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Kafka bootstrap servers (HOST:PORT,...); without them, an embedded in-process broker.
    #[arg(long, env = "EMOFLOW_BROKERS")]
    pub brokers: Option<String>,
    /// The topic of events.
    #[arg(long, default_value = "emoji-events", env = "EMOFLOW_TOPIC")]
    pub topic: String,
    /// Partitions of the topic when emoflow creates it.
    #[arg(long, default_value_t = 4, env = "EMOFLOW_PARTITIONS", value_parser = whole::<i32>(1, MAX_PARTITIONS), allow_negative_numbers = true)]
    pub partitions: i32,
    /// Worker threads of the dataflow.
    #[arg(long, default_value_t = 2, env = "EMOFLOW_WORKERS", value_parser = whole::<usize>(1, MAX_WORKERS), allow_negative_numbers = true)]
    pub workers: usize,
    /// Address of the HTTP API (by default, process I of a cluster listens on port 8080 + I).
    #[arg(long, default_value = DEFAULT_LISTEN, env = "EMOFLOW_LISTEN")]
    pub listen: String,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
    /// Length of a processing-time epoch: the views advance this often.
    #[arg(long, default_value = "20ms", value_parser = positive_duration_ms, env = "EMOFLOW_TICK")]
    pub tick: i64,
    /// Largest HTTP request body.
    #[arg(long, default_value_t = 16 << 20, env = "EMOFLOW_BODY_LIMIT", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub body_limit: usize,
    /// How long HTTP ingest waits for the broker's acknowledgement before answering 503.
    #[arg(long, default_value = "5s", value_parser = positive_duration_ms, env = "EMOFLOW_PRODUCE_TIMEOUT")]
    pub produce_timeout: i64,
    /// How long HTTP ingest lets the producer gather events into one request to the broker:
    /// longer batches more (more single-event requests per second), at that much latency.
    #[arg(long, default_value = "2ms", value_parser = duration_ms, env = "EMOFLOW_PRODUCE_LINGER")]
    pub produce_linger: i64,
    /// When set, write routes need `Authorization: Bearer TOKEN`.
    #[arg(long, env = "EMOFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// The data directory and the archive.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Do not archive events to Parquet.
    #[arg(long, env = "EMOFLOW_NO_ARCHIVE")]
    pub no_archive: bool,
    /// How far an event time may lie ahead of the clock when it is taken in (over HTTP, or
    /// read from the topic); later events are refused as `future_timestamp`.
    #[arg(long, default_value = "1h", value_parser = duration_ms, env = "EMOFLOW_MAX_FUTURE")]
    pub max_future: i64,
    #[command(flatten)]
    pub push: PushArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `emoflow demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Synthetic events per second.
    #[arg(long, default_value_t = 1000, env = "EMOFLOW_RATE", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub rate: u64,
    /// Distinct users of the synthetic load.
    #[arg(long, default_value_t = 1000, env = "EMOFLOW_USERS", value_parser = whole::<u32>(1, ANY), allow_negative_numbers = true)]
    pub users: u32,
    /// Seed of the generator.
    #[arg(long, default_value_t = 42, env = "EMOFLOW_SEED", value_parser = whole::<u64>(0, ANY), allow_negative_numbers = true)]
    pub seed: u64,
    /// The service.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// `emoflow produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers to produce to.
    #[arg(long, env = "EMOFLOW_BROKERS")]
    pub brokers: Option<String>,
    /// The topic.
    #[arg(long, default_value = "emoji-events", env = "EMOFLOW_TOPIC")]
    pub topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 4, env = "EMOFLOW_PARTITIONS", value_parser = whole::<i32>(1, MAX_PARTITIONS), allow_negative_numbers = true)]
    pub partitions: i32,
    /// Send this NDJSON file's lines (as they are, bad ones too) instead of generated events.
    #[arg(long, env = "EMOFLOW_INPUT")]
    pub input: Option<PathBuf>,
    /// Write the events to this NDJSON file instead of Kafka.
    #[arg(long, env = "EMOFLOW_TO_FILE")]
    pub to_file: Option<PathBuf>,
    /// How many events (generated ones; a file sends all its lines unless this is smaller).
    #[arg(long, env = "EMOFLOW_EVENTS", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub events: Option<u64>,
    /// Events per second (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0, env = "EMOFLOW_RATE", value_parser = whole::<u64>(0, ANY), allow_negative_numbers = true)]
    pub rate: u64,
    /// Seed of the generator: the same seed gives the same events.
    #[arg(long, default_value_t = 42, env = "EMOFLOW_SEED", value_parser = whole::<u64>(0, ANY), allow_negative_numbers = true)]
    pub seed: u64,
    /// Distinct users.
    #[arg(long, default_value_t = 10_000, env = "EMOFLOW_USERS", value_parser = whole::<u32>(1, ANY), allow_negative_numbers = true)]
    pub users: u32,
    /// Mean event-time step between events.
    #[arg(long, default_value = "20ms", value_parser = positive_duration_ms, env = "EMOFLOW_STEP")]
    pub step: i64,
}

/// `emoflow replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EMOFLOW_BROKERS")]
    pub brokers: String,
    /// The topic.
    #[arg(long, default_value = "emoji-events", env = "EMOFLOW_TOPIC")]
    pub topic: String,
    /// Start: `earliest`, an offset (in every partition) or an RFC 3339 time (the first
    /// message at or after it, by Kafka timestamp).
    #[arg(long, default_value = "earliest", env = "EMOFLOW_FROM")]
    pub from: OffsetSpec,
    /// End, exclusive: `latest` (the end when the replay starts), an offset or a time.
    #[arg(long, default_value = "latest", env = "EMOFLOW_TO")]
    pub to: OffsetSpec,
    /// Worker threads.
    #[arg(long, default_value_t = 2, env = "EMOFLOW_WORKERS", value_parser = whole::<usize>(1, MAX_WORKERS), allow_negative_numbers = true)]
    pub workers: usize,
    /// A JSON array of filters to count matches of.
    #[arg(long, env = "EMOFLOW_FILTERS")]
    pub filters: Option<PathBuf>,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
    /// Write the document here instead of standard output.
    #[arg(long, env = "EMOFLOW_OUT")]
    pub out: Option<PathBuf>,
    /// Indent the JSON output.
    #[arg(long, env = "EMOFLOW_PRETTY")]
    pub pretty: bool,
    /// Also archive the range to Parquet, into DIR (without DIR: `--archive-dir`, or
    /// `<data-dir>/archive`). What is archived already is not written again.
    #[arg(long, value_name = "DIR", num_args = 0..=1, env = "EMOFLOW_ARCHIVE")]
    pub archive: Option<Option<PathBuf>>,
    /// The data directory, used when archiving into it.
    #[command(flatten)]
    pub storage: StorageArgs,
    /// How far an event time may lie ahead of the clock when it is read; later events are dead
    /// letters (`future_timestamp`).
    #[arg(long, default_value = "1h", value_parser = duration_ms, env = "EMOFLOW_MAX_FUTURE")]
    pub max_future: i64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// `emoflow export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The archive to read [default: <data-dir>/archive].
    #[arg(long, env = "EMOFLOW_ARCHIVE_DIR")]
    pub archive_dir: Option<PathBuf>,
    /// emoflow's data directory (its archive is read when --archive-dir is not given).
    #[arg(long, default_value = "./emoflow-data", env = "EMOFLOW_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Events with `ts` at or after this: an RFC 3339 time or ms since 1970 [default: the
    /// beginning].
    #[arg(long, value_parser = time_ms, env = "EMOFLOW_FROM")]
    pub from: Option<i64>,
    /// Events with `ts` before this: an RFC 3339 time or ms since 1970 [default: no end].
    #[arg(long, value_parser = time_ms, env = "EMOFLOW_TO")]
    pub to: Option<i64>,
    /// Only events matching this filter: a JSON file holding one filter object (as in
    /// `--filters`), or the filter itself as JSON.
    #[arg(long, env = "EMOFLOW_FILTER")]
    pub filter: Option<String>,
    /// The Parquet file to write (written aside and renamed, so it appears whole).
    #[arg(long, env = "EMOFLOW_OUT")]
    pub out: PathBuf,
    /// Also write the views over the exported events as Parquet tables beside it
    /// (`OUT-STEM.counts.parquet`, `.event_types`, `.top`, `.windows`, `.sessions`).
    #[arg(long, env = "EMOFLOW_EXPORT_VIEWS")]
    pub views: bool,
    /// The views' parameters (with --views).
    #[command(flatten)]
    pub view_args: ViewArgs,
}

/// `emoflow bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Where events come from: `memory` (generated in memory, then decoded), `file`, or
    /// `kafka` (a pre-filled topic, drained side by side with a bare consumer).
    #[arg(long, default_value = "memory", env = "EMOFLOW_BENCH_SOURCE")]
    pub source: String,
    /// An NDJSON or Parquet file (or archive directory), for `--source file`.
    #[arg(long, env = "EMOFLOW_INPUT")]
    pub input: Option<PathBuf>,
    /// Worker counts to measure, comma-separated.
    #[arg(
        long,
        default_value = "1,2",
        value_delimiter = ',',
        env = "EMOFLOW_BENCH_WORKERS",
        value_parser = whole::<usize>(1, MAX_WORKERS),
        allow_negative_numbers = true
    )]
    pub workers: Vec<usize>,
    /// Process counts to measure, comma-separated: above 1, each run is a cluster of that many
    /// processes on loopback, each with the worker count.
    #[arg(
        long,
        default_value = "1",
        value_delimiter = ',',
        env = "EMOFLOW_BENCH_PROCESSES",
        value_parser = whole::<usize>(1, MAX_PROCESSES),
        allow_negative_numbers = true
    )]
    pub processes: Vec<usize>,
    /// Events per run (generated sources).
    #[arg(long, default_value_t = 2_000_000, env = "EMOFLOW_BENCH_EVENTS", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub events: u64,
    /// Distinct users (generated sources).
    #[arg(long, default_value_t = 10_000, env = "EMOFLOW_BENCH_USERS", value_parser = whole::<u32>(1, ANY), allow_negative_numbers = true)]
    pub users: u32,
    /// Runs per worker count; the table shows the median.
    #[arg(long, default_value_t = 3, env = "EMOFLOW_BENCH_RUNS", value_parser = whole::<usize>(1, 1000), allow_negative_numbers = true)]
    pub runs: usize,
    /// Synthetic filters in force during the runs.
    #[arg(long, default_value_t = 10, env = "EMOFLOW_BENCH_FILTERS", value_parser = whole::<usize>(0, 100_000), allow_negative_numbers = true)]
    pub filters: usize,
    /// Kafka bootstrap servers, for `--source kafka` (default: the embedded broker).
    #[arg(long, env = "EMOFLOW_BROKERS")]
    pub brokers: Option<String>,
    /// Partitions of the benchmark topic, for `--source kafka`.
    #[arg(long, default_value_t = 4, env = "EMOFLOW_BENCH_PARTITIONS", value_parser = whole::<i32>(1, MAX_PARTITIONS), allow_negative_numbers = true)]
    pub partitions: i32,
    /// For `--source kafka`: also drain the topic into the views and the Parquet archive
    /// (paired with the views alone), and report the archive's cost and bytes per event.
    #[arg(long, env = "EMOFLOW_BENCH_ARCHIVE")]
    pub archive: bool,
    /// Write the results as CSV here.
    #[arg(long, default_value = "bench-out/bench.csv", env = "EMOFLOW_BENCH_CSV")]
    pub csv: PathBuf,
    /// The views' parameters.
    #[command(flatten)]
    pub views: ViewArgs,
}

/// A running `emoflow serve` that a benchmark drives: its API and the topic it reads.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// The running service (`emoflow serve`).
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "EMOFLOW_URL")]
    pub url: String,
    /// The brokers it reads (the embedded broker's address is printed by `serve`).
    #[arg(long, env = "EMOFLOW_BROKERS")]
    pub brokers: String,
    /// Its topic.
    #[arg(long, default_value = "emoji-events", env = "EMOFLOW_TOPIC")]
    pub topic: String,
}

impl ServiceArgs {
    /// `host:port` of the service, from `--url`.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    }
}

/// `emoflow bench-freshness`.
#[derive(Debug, Args)]
pub struct FreshnessArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Events per second.
    #[arg(long, default_value_t = 100_000, env = "EMOFLOW_RATE", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub rate: u64,
    /// How long to produce, in seconds.
    #[arg(long, default_value_t = 20, env = "EMOFLOW_SECONDS", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub seconds: u64,
    /// The producer's linger (batching delay) in ms, part of the measured time.
    #[arg(long, default_value_t = 5, env = "EMOFLOW_LINGER_MS", value_parser = whole::<u64>(0, 10_000), allow_negative_numbers = true)]
    pub linger_ms: u64,
}

/// `emoflow bench-subscribers`.
#[derive(Debug, Args)]
pub struct SubscribersBenchArgs {
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The service's process id, to report its memory.
    #[arg(long, env = "EMOFLOW_SERVE_PID")]
    pub serve_pid: Option<u32>,
    /// SSE subscribers.
    #[arg(long, default_value_t = 1000, env = "EMOFLOW_BENCH_SUBSCRIBERS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub subscribers: usize,
    /// Distinct filters (subscriber s follows filter s % filters).
    #[arg(long, default_value_t = 100, env = "EMOFLOW_BENCH_FILTERS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub filters: usize,
    /// Users each filter lists.
    #[arg(long, default_value_t = 5, env = "EMOFLOW_BENCH_USERS_PER_FILTER", value_parser = whole::<usize>(1, 1000), allow_negative_numbers = true)]
    pub users_per_filter: usize,
    /// Distinct users the producer picks from.
    #[arg(long, default_value_t = 10_000, env = "EMOFLOW_BENCH_USERS", value_parser = whole::<usize>(1, ANY), allow_negative_numbers = true)]
    pub users: usize,
    /// Events per second.
    #[arg(long, default_value_t = 20_000, env = "EMOFLOW_RATE", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub rate: u64,
    /// How long to produce, in seconds.
    #[arg(long, default_value_t = 20, env = "EMOFLOW_SECONDS", value_parser = whole::<u64>(1, ANY), allow_negative_numbers = true)]
    pub seconds: u64,
}

/// `emoflow bench-run`: one measured run, as `emoflow bench` starts it.
#[derive(Debug, Args)]
pub struct BenchRunArgs {
    /// The run, as JSON (`emoflow_bench::run::RunSpec`).
    #[arg(long)]
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn every_flag_reads_its_environment_variable() {
        let cli = Cli::command();
        for cmd in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
                assert!(
                    env.as_deref().is_some_and(|e| e.starts_with("EMOFLOW_")),
                    "{} --{id} has no EMOFLOW_* variable",
                    cmd.get_name()
                );
            }
        }
    }

    fn refused(args: &[&str]) -> String {
        match Cli::try_parse_from(args) {
            Ok(cli) => panic!("{args:?} was accepted: {cli:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn senseless_values_get_a_clear_error() {
        let cases: &[(&[&str], &str)] = &[
            (&["emoflow", "produce", "--step", "0ms"], "at least 1ms"),
            (&["emoflow", "serve", "--workers", "0"], "from 1 to"),
            (&["emoflow", "serve", "--partitions", "0"], "from 1 to"),
            (&["emoflow", "serve", "--tick", "0ms"], "at least 1ms"),
            (
                &["emoflow", "serve", "--produce-timeout", "0s"],
                "at least 1ms",
            ),
            (
                &["emoflow", "query", "--input", "x", "--batch-lines", "0"],
                "at least 1",
            ),
            (&["emoflow", "demo", "--rate", "0"], "at least 1"),
            (&["emoflow", "demo", "--users", "0"], "at least 1"),
            (&["emoflow", "bench", "--runs", "0"], "from 1 to"),
            (&["emoflow", "bench", "--events", "0"], "at least 1"),
            (&["emoflow", "bench", "--events", "-1"], "at least 1"),
            (&["emoflow", "bench", "--workers", "1,0"], "from 1 to"),
            (
                &["emoflow", "query", "--input", "x", "--window", "0s"],
                "at least 1ms",
            ),
            (
                &["emoflow", "query", "--input", "x", "--top-k", "0"],
                "from 1 to 1000",
            ),
        ];
        for (args, says) in cases {
            let e = refused(args);
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }

    #[test]
    fn environment_variables_are_read() {
        // Only this test sets these variables.
        std::env::set_var("EMOFLOW_BENCH_RUNS", "7");
        let cli = Cli::try_parse_from(["emoflow", "bench"]);
        std::env::remove_var("EMOFLOW_BENCH_RUNS");
        match cli.map(|c| c.command) {
            Ok(Command::Bench(b)) => assert_eq!(b.runs, 7),
            other => panic!("{other:?}"),
        }
    }
}
