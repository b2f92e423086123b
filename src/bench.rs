//! The benchmark commands (built with the `bench` feature, on by default): their command-line
//! arguments and how they become the options of the benchmark harness (`emoflow-bench`), which
//! does the work. A build without the feature (`--no-default-features --features mimalloc`, as
//! the Docker image is built) does not link the harness.

use anyhow::{bail, Context};
use emoflow_bench::throughput::{self, Source};
use emoflow_bench::{freshness, subscribers, Service};

use crate::cli::{BenchArgs, FreshnessArgs, ServiceArgs, SubscribersBenchArgs};

/// `emoflow bench`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    throughput::run(&options(args)?)
}

/// The options `emoflow bench`'s arguments ask for.
fn options(args: BenchArgs) -> anyhow::Result<throughput::Options> {
    let source = match (args.source.as_str(), args.input) {
        ("memory", _) => Source::Memory,
        ("file", Some(path)) => Source::File(path),
        ("file", None) => bail!("--source file needs --input FILE"),
        ("kafka", _) => Source::Kafka {
            brokers: args.brokers,
            partitions: args.partitions,
            archive: args.archive,
        },
        (other, _) => bail!("--source must be memory, file or kafka, not {other:?}"),
    };
    if args.archive && !matches!(source, Source::Kafka { .. }) {
        bail!("--archive measures a Kafka drain: it needs --source kafka");
    }
    Ok(throughput::Options {
        source,
        workers: args.workers,
        processes: args.processes,
        events: args.events,
        users: args.users,
        runs: args.runs,
        filters: args.filters,
        views: args.views.config(),
        csv: args.csv,
        exe: std::env::current_exe().context("cannot find this executable")?,
    })
}

impl From<ServiceArgs> for Service {
    fn from(s: ServiceArgs) -> Self {
        Service {
            url: s.url,
            brokers: s.brokers,
            topic: s.topic,
        }
    }
}

/// `emoflow bench-freshness`.
pub fn freshness(args: FreshnessArgs) -> anyhow::Result<()> {
    freshness::run(&freshness::Options {
        service: args.service.into(),
        rate: args.rate,
        seconds: args.seconds,
        linger_ms: args.linger_ms,
        users: args.users,
        probes: args.probe,
        serve_pid: args.serve_pid,
    })
}

/// `emoflow bench-subscribers`.
pub fn subscribers(args: SubscribersBenchArgs) -> anyhow::Result<()> {
    subscribers::run(&subscribers::Options {
        service: args.service.into(),
        serve_pid: args.serve_pid,
        subscribers: args.subscribers,
        filters: args.filters,
        users_per_filter: args.users_per_filter,
        users: args.users,
        rate: args.rate,
        seconds: args.seconds,
    })
}
