//! `emoflow bench`: throughput, freshness and peak memory of the full set of views, for every
//! number of processes and workers asked, from generated events in memory, a file, or a Kafka
//! topic. Every run is fresh child processes (see [`crate::run`]); the table shows the median
//! run of each configuration.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use emoflow_dataflow::ViewConfig;

use crate::kafka::BenchTopic;
use crate::report::{self, Row};
use crate::run::{spawn, FreshnessMs, RunInput, RunResult, RunSpec};

/// Where the events come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Generated in memory by each run's processes before the clock starts; decoded in the run.
    Memory,
    /// An NDJSON or Parquet file (or archive directory).
    File(PathBuf),
    /// A fresh topic filled with generated events, drained by each run.
    Kafka {
        /// The brokers (`None`: the embedded broker).
        brokers: Option<String>,
        /// The topic's partitions.
        partitions: i32,
        /// Also drain into the Parquet archive, paired with the views alone.
        archive: bool,
    },
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the events come from.
    pub source: Source,
    /// Worker counts (threads per process).
    pub workers: Vec<usize>,
    /// Process counts (a cluster on loopback when above 1).
    pub processes: Vec<usize>,
    /// Events per run (generated sources).
    pub events: u64,
    /// Distinct user counts to measure (generated sources), each over the same number of events.
    pub users: Vec<u32>,
    /// Runs per configuration.
    pub runs: usize,
    /// Synthetic filters in force.
    pub filters: usize,
    /// The views' parameters.
    pub views: ViewConfig,
    /// Where the CSV goes; the SVG plot goes beside it.
    pub csv: PathBuf,
    /// The `emoflow` executable, which runs each measurement as `bench-run`.
    pub exe: PathBuf,
}

/// One run of one configuration, all its processes together.
#[derive(Debug, Clone)]
struct Sample {
    views: Combined,
    /// The bare consumer's messages/s, for Kafka.
    bare: Option<f64>,
    /// Views and archive: events/s and bytes per event.
    archive: Option<(f64, f64)>,
}

/// A run's processes' results as one.
#[derive(Debug, Clone)]
struct Combined {
    events: u64,
    accepted: u64,
    seconds: f64,
    peak_rss_bytes: u64,
    input_bytes: u64,
    freshness: FreshnessMs,
    archived: u64,
}

impl Combined {
    /// Process 0's counts, time and freshness (it holds the views and finishes last); every
    /// process's memory.
    fn of(results: &[RunResult]) -> anyhow::Result<Combined> {
        let first = results
            .iter()
            .find(|r| r.process == 0)
            .context("process 0 gave no result")?;
        Ok(Combined {
            events: first.events,
            accepted: first.accepted,
            seconds: first.seconds,
            peak_rss_bytes: results.iter().map(|r| r.peak_rss_bytes).sum(),
            input_bytes: results.iter().map(|r| r.input_bytes).sum(),
            freshness: first.freshness,
            archived: results.iter().filter_map(|r| r.archived).sum(),
        })
    }

    fn rate(&self) -> f64 {
        report::per_second(self.events, self.seconds)
    }
}

/// One input to measure: generated with a number of users, or a file.
struct Prepared {
    /// The generated users (`None` for a file).
    users: Option<u32>,
    input: RunInput,
    topic: Option<BenchTopic>,
}

/// The inputs to measure: one per user count for generated sources, the file otherwise.
fn prepare(opts: &Options) -> anyhow::Result<Vec<Prepared>> {
    if let Source::File(path) = &opts.source {
        if !path.exists() {
            bail!("--input {} does not exist", path.display());
        }
        return Ok(vec![Prepared {
            users: None,
            input: RunInput::File(path.clone()),
            topic: None,
        }]);
    }
    if opts.users.is_empty() {
        bail!("give at least one user count");
    }
    opts.users
        .iter()
        .map(|&users| {
            let (input, topic) = match &opts.source {
                Source::Kafka {
                    brokers,
                    partitions,
                    ..
                } => {
                    let t = BenchTopic::fill(brokers.as_deref(), *partitions, opts.events, users)?;
                    let input = RunInput::Kafka {
                        brokers: t.brokers.clone(),
                        topic: t.topic.clone(),
                        ranges: t.ranges.clone(),
                        archive: None,
                    };
                    (input, Some(t))
                }
                _ => (
                    RunInput::Memory {
                        events: opts.events,
                        users,
                    },
                    None,
                ),
            };
            Ok(Prepared {
                users: Some(users),
                input,
                topic,
            })
        })
        .collect()
}

/// Runs every configuration `runs` times, prints the table and writes the CSV and the plot.
/// Runs alternate between the configurations (run 1 of each, then run 2 of each, ...), so
/// that a slow spell of the machine falls on all of them alike and their ratios are paired.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    if opts.workers.is_empty() || opts.processes.is_empty() {
        bail!("give at least one worker count and one process count");
    }
    let inputs = prepare(opts)?;
    let mut configs = Vec::new();
    for (i, _) in inputs.iter().enumerate() {
        for &processes in &opts.processes {
            for &workers in &opts.workers {
                configs.push((i, processes, workers));
            }
        }
    }
    let runs = opts.runs.max(1);
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); configs.len()];
    for run in 0..runs {
        for (c, &(i, processes, workers)) in configs.iter().enumerate() {
            let at = &inputs[i];
            let users = at.users.map_or(String::new(), |u| format!(", {u} users"));
            eprintln!(
                "bench: {processes} process(es) × {workers} worker(s){users}, run {}/{runs}",
                run + 1
            );
            samples[c].push(sample(
                opts,
                &at.input,
                at.topic.as_ref(),
                processes,
                workers,
            )?);
        }
    }
    let paired = paired_by_users(&configs, &inputs, &samples);
    let rows: Vec<Row> = configs
        .iter()
        .zip(samples)
        .map(|(&(i, processes, workers), s)| row(processes, workers, inputs[i].users, s))
        .collect();
    let title = heading(opts, inputs[0].topic.as_ref());
    println!("{title}");
    print!("{}", report::table(&rows));
    for line in paired {
        println!("{line}");
    }
    for warning in report::implausible(&rows, cores()) {
        println!("note: {warning}");
    }
    println!(
        "freshness: for every dataflow time (a batch of input; an epoch of a Kafka read), from the moment its input began to be read to the moment the views included it, under full load"
    );
    report::write(&opts.csv, &report::csv(&rows))?;
    eprintln!("bench: wrote {}", opts.csv.display());
    let svg_path = opts.csv.with_extension("svg");
    report::write(&svg_path, &report::plot(&title, &rows)?)?;
    eprintln!("bench: wrote {}", svg_path.display());
    Ok(())
}

/// With several user counts: for each processes × workers, the time of each user count against
/// the first, as the median of the ratios of runs made one after the other.
fn paired_by_users(
    configs: &[(usize, usize, usize)],
    inputs: &[Prepared],
    samples: &[Vec<Sample>],
) -> Vec<String> {
    let mut lines = Vec::new();
    for (c, &(i, processes, workers)) in configs.iter().enumerate() {
        if i == 0 {
            continue;
        }
        let Some(base) = configs
            .iter()
            .position(|&(j, p, w)| j == 0 && p == processes && w == workers)
        else {
            continue;
        };
        let ratios: Vec<f64> = samples[c]
            .iter()
            .zip(&samples[base])
            .map(|(s, b)| s.views.seconds / b.views.seconds.max(f64::MIN_POSITIVE))
            .collect();
        let (Some(u), Some(u0)) = (inputs[i].users, inputs[0].users) else {
            continue;
        };
        lines.push(format!(
            "paired: {processes}×{workers}, {u} users take {:.2}x the time of {u0} users (median of {} runs; each {:?})",
            median(ratios.clone()),
            ratios.len(),
            ratios.iter().map(|r| (r * 100.0).round() / 100.0).collect::<Vec<_>>()
        ));
    }
    lines
}

/// What the table measured, in one line.
fn heading(opts: &Options, topic: Option<&BenchTopic>) -> String {
    let source = match (&opts.source, topic) {
        (Source::File(p), _) => format!("file {}", p.display()),
        (Source::Kafka { .. }, Some(t)) => format!(
            "kafka ({} broker {}, {} partitions)",
            t.kind, t.brokers, t.partitions
        ),
        _ => "memory".to_owned(),
    };
    let generated = match opts.source {
        Source::File(_) => String::new(),
        _ => {
            let users: Vec<String> = opts.users.iter().map(u32::to_string).collect();
            format!(" events={} users={}", opts.events, users.join(","))
        }
    };
    format!(
        "emoflow bench: source={source}{generated} filters={} runs={} cores={} (median run)",
        opts.filters,
        opts.runs,
        cores()
    )
}

/// This machine's cores (0 when unknown).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, usize::from)
}

/// One run of a configuration: the views (and, for Kafka, the bare consumer first and the
/// archive after, paired with it).
fn sample(
    opts: &Options,
    input: &RunInput,
    topic: Option<&BenchTopic>,
    processes: usize,
    workers: usize,
) -> anyhow::Result<Sample> {
    let bare = match topic {
        Some(t) => {
            let (n, seconds) = t.bare_drain(processes * workers)?;
            if n != opts.events {
                bail!("the bare consumer read {n} of {} messages", opts.events);
            }
            Some(n as f64 / seconds)
        }
        None => None,
    };
    let spec = RunSpec {
        input: input.clone(),
        workers,
        filters: opts.filters,
        views: opts.views,
        member: None,
    };
    let views = Combined::of(&spawn(&opts.exe, &spec, processes)?)?;
    if !matches!(opts.source, Source::File(_)) && views.events != opts.events {
        bail!(
            "the views handled {} of {} events: a run lost events",
            views.events,
            opts.events
        );
    }
    let archive = match (&opts.source, input) {
        (Source::Kafka { archive: true, .. }, RunInput::Kafka { .. }) => {
            Some(archived_sample(opts, input, processes, workers)?)
        }
        _ => None,
    };
    Ok(Sample {
        views,
        bare,
        archive,
    })
}

/// A Kafka run into the views and the archive: events/s and the archive's bytes per event.
fn archived_sample(
    opts: &Options,
    input: &RunInput,
    processes: usize,
    workers: usize,
) -> anyhow::Result<(f64, f64)> {
    let dir = opts
        .csv
        .with_file_name(format!("bench-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut input = input.clone();
    if let RunInput::Kafka { archive, .. } = &mut input {
        *archive = Some(dir.clone());
    }
    let spec = RunSpec {
        input,
        workers,
        filters: opts.filters,
        views: opts.views,
        member: None,
    };
    let archived = Combined::of(&spawn(&opts.exe, &spec, processes)?)?;
    let bytes = dir_bytes(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    if archived.archived != archived.accepted {
        bail!(
            "the archive wrote {} of {} accepted events",
            archived.archived,
            archived.accepted
        );
    }
    Ok((
        archived.rate(),
        bytes as f64 / archived.events.max(1) as f64,
    ))
}

/// Bytes of every file below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => dir_bytes(&e.path()),
                _ => e.metadata().map_or(0, |m| m.len()),
            })
            .sum()
    })
}

/// The median of `v` (0 when empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A configuration's row: the median run by time, and the paired medians for Kafka.
fn row(processes: usize, workers: usize, users: Option<u32>, mut samples: Vec<Sample>) -> Row {
    let bare = samples
        .iter()
        .map(|s| s.bare.map(|b| (b, s.views.rate() / b)))
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
        .map(|v| {
            (
                median(v.iter().map(|p| p.0).collect()),
                median(v.iter().map(|p| p.1).collect()),
            )
        });
    let archive = samples
        .iter()
        .map(|s| {
            s.archive
                .map(|(rate, bytes)| (rate, 1.0 - rate / s.views.rate(), bytes))
        })
        .collect::<Option<Vec<_>>>()
        .filter(|v| !v.is_empty())
        .map(|v| {
            (
                median(v.iter().map(|a| a.0).collect()),
                median(v.iter().map(|a| a.1).collect()),
                median(v.iter().map(|a| a.2).collect()),
            )
        });
    samples.sort_by(|a, b| a.views.seconds.total_cmp(&b.views.seconds));
    let mid = &samples[samples.len() / 2].views;
    Row {
        processes,
        workers,
        users,
        events: mid.events,
        seconds: mid.seconds,
        peak_rss_bytes: mid.peak_rss_bytes,
        input_bytes: mid.input_bytes,
        freshness: mid.freshness,
        bare,
        archive,
    }
}
