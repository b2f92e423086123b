//! The arguments of the benchmark commands (the `bench` feature).

use std::path::PathBuf;

use clap::Args;

use super::args::{ViewArgs, ANY, MAX_PARTITIONS, MAX_PROCESSES, MAX_WORKERS};
use crate::arg_values::whole;

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
    /// Distinct user counts to measure (generated sources), comma-separated: each is a run of
    /// the same number of events, alternated with the others and paired with the first (for
    /// example `10000,1000000` to see what a million users cost).
    #[arg(
        long,
        default_value = "10000",
        value_delimiter = ',',
        env = "EMOFLOW_BENCH_USERS",
        value_parser = whole::<u32>(1, ANY),
        allow_negative_numbers = true
    )]
    pub users: Vec<u32>,
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
    /// Distinct users of the produced events.
    #[arg(long, default_value_t = 10_000, env = "EMOFLOW_BENCH_USERS", value_parser = whole::<u32>(1, ANY), allow_negative_numbers = true)]
    pub users: u32,
    /// Read routes to request meanwhile, comma-separated, each every ~10 ms (for example
    /// `/top,/stats,/sessions,/sessions/user-1`).
    #[arg(
        long,
        default_value = "/top",
        value_delimiter = ',',
        env = "EMOFLOW_BENCH_PROBE",
        value_parser = route
    )]
    pub probe: Vec<String>,
    /// The service's process id, to report its memory over the run.
    #[arg(long, env = "EMOFLOW_SERVE_PID")]
    pub serve_pid: Option<u32>,
}

/// A read route to probe: a path from the root.
fn route(s: &str) -> Result<String, String> {
    if s.starts_with('/') && !s.contains(char::is_whitespace) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a route: give a path such as /sessions"
        ))
    }
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
