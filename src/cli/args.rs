//! The arguments of the product's commands and the groups of flags they share.

use std::path::PathBuf;

use clap::Args;
use emoflow_dataflow::ViewConfig;
use emoflow_ingest::kafka::OffsetSpec;

use crate::arg_values::{duration_ms, origin, positive_duration_ms, time_ms, whole};

/// Most worker threads: far beyond any machine's cores, low enough to catch a typo.
pub const MAX_WORKERS: u64 = 1024;
/// Where `serve` listens by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Most processes in a cluster.
pub const MAX_PROCESSES: u64 = 256;
/// Most partitions emoflow creates a topic with.
pub const MAX_PARTITIONS: u64 = 100_000;
/// No upper bound.
pub const ANY: u64 = u64::MAX;

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
    #[command(flatten)]
    pub document: DocumentArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// How the views document is printed (`query`, `replay`).
#[derive(Debug, Clone, Args)]
pub struct DocumentArgs {
    /// Indent the JSON output.
    #[arg(long, env = "EMOFLOW_PRETTY")]
    pub pretty: bool,
    /// Sessions to print: `all` (the summary and every user's, `by_user`) or `summary` (the
    /// summary alone: with a million users `by_user` is hundreds of MB).
    #[arg(long, value_enum, default_value_t = SessionsArg::All, env = "EMOFLOW_SESSIONS")]
    pub sessions: SessionsArg,
}

/// The sessions a printed document shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SessionsArg {
    /// The summary and every user's sessions.
    All,
    /// The summary alone.
    Summary,
}

impl SessionsArg {
    /// As the dataflow's document writer takes it.
    pub fn shown(self) -> emoflow_dataflow::SessionsShown {
        match self {
            SessionsArg::All => emoflow_dataflow::SessionsShown::All,
            SessionsArg::Summary => emoflow_dataflow::SessionsShown::Summary,
        }
    }
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

/// The Kafka topic a command reads or writes, and where: the flags `serve`, `demo` and
/// `produce` share.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (HOST:PORT,...); without them, `serve` and `demo` start an
    /// embedded in-process broker.
    #[arg(long, env = "EMOFLOW_BROKERS")]
    pub brokers: Option<String>,
    /// The topic of events.
    #[arg(long, default_value = "emoji-events", env = "EMOFLOW_TOPIC")]
    pub topic: String,
    /// Partitions of the topic when emoflow creates it.
    #[arg(long, default_value_t = 4, env = "EMOFLOW_PARTITIONS", value_parser = whole::<i32>(1, MAX_PARTITIONS), allow_negative_numbers = true)]
    pub partitions: i32,
}

/// Where the live service reads and how it serves.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The topic: without `--brokers`, on an embedded in-process broker.
    #[command(flatten)]
    pub kafka: KafkaArgs,
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
    /// The topic to produce to (`--brokers`), unless `--to-file`.
    #[command(flatten)]
    pub kafka: KafkaArgs,
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
    #[command(flatten)]
    pub document: DocumentArgs,
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
