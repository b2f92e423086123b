//! One measured run of the views, in a process of its own (`emoflow bench-run --spec JSON`), so
//! that its peak memory is its own. A run of a cluster is one such process per member, joined on
//! loopback; process 0 holds the views and so the run's figures. Input generation is not
//! timed; decoding is.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use emoflow_dataflow::freshness::Freshness;
use emoflow_dataflow::snapshot::ViewState;
use emoflow_dataflow::{
    run_views, start_kafka, Cluster, Hello, InputData, KafkaInput, KafkaRunOptions, Link,
    RunOptions, ViewConfig,
};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::PartitionRange;
use emoflow_storage::archive::STOP_PATIENCE;
use emoflow_storage::{ArchiveConfig, ArchiveSink};
use serde::{Deserialize, Serialize};

use crate::filters::synthetic_filters;
use crate::GENERATED_EVENT_BYTES;

/// What a run reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RunInput {
    /// `events` generated events of `users` users, generated in memory before the clock starts.
    Memory {
        /// Events.
        events: u64,
        /// Distinct users.
        users: u32,
    },
    /// An NDJSON or Parquet file.
    File(PathBuf),
    /// A topic, drained from `ranges`.
    Kafka {
        /// `bootstrap.servers`.
        brokers: String,
        /// The topic.
        topic: String,
        /// What to read of each partition.
        ranges: Vec<PartitionRange>,
        /// Also archive what is read, below this directory (`process-I` for each process).
        archive: Option<PathBuf>,
    },
}

/// Where this process stands in a cluster run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSeat {
    /// Processes in the cluster.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// The cluster's hostfile (loopback addresses).
    pub hostfile: PathBuf,
}

/// One run, as the parent hands it to a child process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// What to read.
    pub input: RunInput,
    /// Worker threads (in each process).
    pub workers: usize,
    /// Synthetic filters in force.
    pub filters: usize,
    /// The views' parameters.
    pub views: ViewConfig,
    /// The cluster, when the run has several processes.
    pub member: Option<ClusterSeat>,
}

/// The freshness distribution of a run, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct FreshnessMs {
    /// Dataflow times measured.
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl From<&Freshness> for FreshnessMs {
    fn from(f: &Freshness) -> Self {
        FreshnessMs {
            samples: f.len(),
            p50: f.quantile_ms(0.5),
            p90: f.quantile_ms(0.9),
            p99: f.quantile_ms(0.99),
            max: f.max_ms(),
        }
    }
}

/// What one process of a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The process's index (0 alone).
    pub process: usize,
    /// Inputs the whole run handled, accepted or rejected (from process 0's views; 0 in the
    /// other processes).
    pub events: u64,
    /// Events the views accepted (process 0; 0 elsewhere).
    pub accepted: u64,
    /// Wall time from the start of the dataflow to the final views.
    pub seconds: f64,
    /// Peak resident memory of this process.
    pub peak_rss_bytes: u64,
    /// Bytes of input this process held in memory during the run (`Memory`), part of its peak.
    pub input_bytes: u64,
    /// How fresh the views stayed (process 0; empty elsewhere).
    pub freshness: FreshnessMs,
    /// Rows this process's archive wrote, when archiving.
    pub archived: Option<u64>,
}

/// Runs `spec` in this process and prints its [`RunResult`] as one line of JSON.
pub fn run_child(spec_json: &str) -> anyhow::Result<()> {
    let spec: RunSpec = serde_json::from_str(spec_json).context("a malformed run spec")?;
    let result = measure(&spec)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// Joins the cluster `member` describes; every process must be given the same `spec`.
fn join(member: &ClusterSeat, spec: &RunSpec) -> anyhow::Result<Link> {
    let cluster = Cluster::from_hostfile(member.processes, member.process, &member.hostfile)?;
    let hello = Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        process: member.process,
        processes: member.processes,
        workers: spec.workers,
        settings: vec![
            ("command".into(), "bench-run".into()),
            ("input".into(), format!("{:?}", spec.input)),
            ("filters".into(), spec.filters.to_string()),
        ],
        http: None,
    };
    Ok(Link::join(&cluster, hello, Duration::from_secs(60))?)
}

/// Inputs a state has seen: accepted plus rejected.
fn handled(state: &ViewState) -> (u64, u64) {
    let lt = &state.lifetime;
    let accepted = lt.total.max(0) as u64;
    (
        accepted + lt.rejected.values().sum::<i64>().max(0) as u64,
        accepted,
    )
}

/// A run's input, made ready before the cluster forms.
enum Ready {
    /// Input for the views over a file or memory.
    Views(InputData),
    /// A topic to drain, and the archive's directory when archiving.
    Kafka(KafkaInput, Option<PathBuf>),
}

impl Ready {
    /// Generates or opens what `input` names.
    fn of(input: &RunInput) -> anyhow::Result<Ready> {
        Ok(match input {
            RunInput::Memory { events, users } => {
                Ready::Views(InputData::Memory(generate(*events, *users)?))
            }
            RunInput::File(path) => Ready::Views(InputData::open_path(path)?),
            RunInput::Kafka {
                brokers,
                topic,
                ranges,
                archive,
            } => Ready::Kafka(
                KafkaInput {
                    brokers: brokers.clone(),
                    topic: topic.clone(),
                    ranges: ranges.clone(),
                },
                archive.clone(),
            ),
        })
    }

    /// Bytes of input held in memory during the run.
    fn bytes_in_memory(&self) -> u64 {
        match self {
            Ready::Views(InputData::Memory(bytes)) => bytes.len() as u64,
            _ => 0,
        }
    }
}

/// One run in this process.
fn measure(spec: &RunSpec) -> anyhow::Result<RunResult> {
    let process = spec.member.as_ref().map_or(0, |m| m.process);
    // The input is ready before the cluster forms: joining is every process's barrier, so no
    // process's clock runs while another still generates.
    let ready = Ready::of(&spec.input)?;
    let input_bytes = ready.bytes_in_memory();
    let link = spec.member.as_ref().map(|m| join(m, spec)).transpose()?;
    let (state, seconds, freshness, archived) = match ready {
        Ready::Views(input) => views_over(input, spec, link)?,
        Ready::Kafka(input, archive) => kafka_over(input, archive, spec, process, link)?,
    };
    let (events, accepted) = state.as_ref().map_or((0, 0), handled);
    Ok(RunResult {
        process,
        events,
        accepted,
        seconds: seconds.as_secs_f64(),
        peak_rss_bytes: crate::rss::peak_rss_bytes(),
        input_bytes,
        freshness: FreshnessMs::from(&freshness),
        archived,
    })
}

/// What a run of the views left: the views, the time, the freshness and the archive's rows
/// (when archiving).
type Outcome = (Option<ViewState>, Duration, Freshness, Option<u64>);

/// Runs the views over `input` as `spec` says.
fn views_over(input: InputData, spec: &RunSpec, link: Option<Link>) -> anyhow::Result<Outcome> {
    let opts = RunOptions {
        workers: spec.workers,
        views: spec.views,
        filters: synthetic_filters(spec.filters),
        ..RunOptions::default()
    };
    let out = run_views(input, opts, None, link)?;
    Ok((out.state, out.elapsed, out.freshness, None))
}

/// Drains `input` into the views (and, with `archive`, into this process's part of the
/// archive below it) as `spec` says.
fn kafka_over(
    input: KafkaInput,
    archive: Option<PathBuf>,
    spec: &RunSpec,
    process: usize,
    link: Option<Link>,
) -> anyhow::Result<Outcome> {
    let archive = archive
        .map(|dir| ArchiveConfig::new(dir.join(format!("process-{process}")), input.topic.clone()))
        .map(ArchiveSink::open)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let opts = KafkaRunOptions {
        workers: spec.workers,
        views: spec.views,
        filters: synthetic_filters(spec.filters),
        archive: archive.as_ref().map(ArchiveSink::tap),
        ..KafkaRunOptions::default()
    };
    let out = start_kafka(input, opts, link, |_| {}).and_then(|run| run.wait());
    let archived = archive.map(|a| a.finish(STOP_PATIENCE).rows_written);
    let out = out?;
    Ok((out.state, out.elapsed, out.freshness, archived))
}

/// `events` generated events as NDJSON in memory.
fn generate(events: u64, users: u32) -> anyhow::Result<Arc<[u8]>> {
    let mut buf = Vec::new();
    let bytes = usize::try_from(events.saturating_mul(GENERATED_EVENT_BYTES)).unwrap_or(usize::MAX);
    buf.try_reserve(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{events} events do not fit in memory: use fewer --events, or --source file"
        )
    })?;
    Generator::new(GeneratorConfig {
        users,
        ..GeneratorConfig::default()
    })
    .write_ndjson(events, &mut buf, |_| {})?;
    Ok(Arc::from(buf.into_boxed_slice()))
}

/// Runs `spec` as `processes` child processes of `exe` (`exe bench-run --spec JSON`), joined on
/// loopback when more than one; returns each process's result, process 0's first. When one
/// fails, the others are stopped and its log is in the error.
pub fn spawn(exe: &Path, spec: &RunSpec, processes: usize) -> anyhow::Result<Vec<RunResult>> {
    let mut runs = Runs::new()?;
    let hostfile = runs.dir.join("hostfile");
    if processes > 1 {
        std::fs::write(&hostfile, loopback_hostfile(processes)?)
            .with_context(|| format!("cannot write {}", hostfile.display()))?;
    }
    for process in 0..processes {
        let mut spec = spec.clone();
        if processes > 1 {
            spec.member = Some(ClusterSeat {
                processes,
                process,
                hostfile: hostfile.clone(),
            });
        }
        runs.start(exe, &spec, process)?;
    }
    let mut results = Vec::with_capacity(processes);
    for process in 0..processes {
        results.push(runs.wait(process)?);
    }
    Ok(results)
}

/// The child processes of one run, and their scratch directory (the hostfile and each one's
/// log): whatever is still running when this goes is killed, and the directory removed.
struct Runs {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Runs {
    fn new() -> anyhow::Result<Runs> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "emoflow-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Runs {
            dir,
            children: Vec::new(),
        })
    }

    fn log(&self, process: usize) -> PathBuf {
        self.dir.join(format!("process-{process}.log"))
    }

    /// Starts process `process`; its log goes to a file (a pipe nobody reads could fill up
    /// and stall the whole cluster).
    fn start(&mut self, exe: &Path, spec: &RunSpec, process: usize) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.log(process))
            .with_context(|| format!("cannot create {}", self.log(process).display()))?;
        let child = Command::new(exe)
            .arg("bench-run")
            .arg("--spec")
            .arg(serde_json::to_string(spec)?)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start a benchmark run")?;
        self.children.push(child);
        Ok(())
    }

    /// Waits for process `process` and reads its result (one line of JSON).
    fn wait(&mut self, process: usize) -> anyhow::Result<RunResult> {
        let child = self
            .children
            .get_mut(process)
            .context("no such benchmark process")?;
        let mut stdout = String::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_string(&mut stdout)
                .context("cannot read a benchmark run's result")?;
        }
        let status = child.wait().context("cannot wait for a benchmark run")?;
        if !status.success() {
            let log = std::fs::read_to_string(self.log(process)).unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            bail!(
                "benchmark process {process} failed ({status}): {}",
                tail.trim()
            );
        }
        serde_json::from_str(&stdout)
            .with_context(|| format!("benchmark process {process} printed no result"))
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        for child in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A hostfile of `n` free loopback ports (the kernel's choice; released just before use).
fn loopback_hostfile(n: usize) -> anyhow::Result<String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free loopback ports")?;
    let mut text = String::new();
    for l in &listeners {
        text += &format!("{}\n", l.local_addr()?);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_the_command_line() {
        let spec = RunSpec {
            input: RunInput::Kafka {
                brokers: "127.0.0.1:9092".into(),
                topic: "t".into(),
                ranges: vec![PartitionRange::open(3, 5)],
                archive: Some("a".into()),
            },
            workers: 2,
            filters: 10,
            views: ViewConfig::default(),
            member: Some(ClusterSeat {
                processes: 2,
                process: 1,
                hostfile: "h".into(),
            }),
        };
        let back: RunSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(format!("{back:?}"), format!("{spec:?}"));
    }

    #[test]
    fn a_run_counts_what_it_reads_and_how_fresh_it_stayed() {
        let spec = RunSpec {
            input: RunInput::Memory {
                events: 20_000,
                users: 100,
            },
            workers: 2,
            filters: 3,
            views: ViewConfig::default(),
            member: None,
        };
        let r = measure(&spec).unwrap();
        assert_eq!(r.events, 20_000);
        assert!(r.accepted <= r.events && r.accepted > 19_000, "{r:?}");
        assert!(r.freshness.samples >= 1, "{r:?}");
        assert!(r.freshness.max >= r.freshness.p50);
        assert!(r.input_bytes > 0 && r.peak_rss_bytes >= r.input_bytes);
    }

    #[test]
    fn a_hostfile_lists_distinct_loopback_ports() {
        let text = loopback_hostfile(3).unwrap();
        let lines: std::collections::BTreeSet<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.starts_with("127.0.0.1:")));
    }
}
