//! `emoflow bench --source kafka`: drains one pre-filled topic twice per run, side by side in
//! the same process and from the same broker: once with a bare rdkafka consumer that only
//! counts messages (the broker-and-client ceiling), once into the full views. The pipeline is
//! not the bottleneck when its rate is close to the bare consumer's.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use emoflow_dataflow::archive::ArchiveConfig;
use emoflow_dataflow::update::CountKey;
use emoflow_dataflow::{start_kafka, KafkaInput, KafkaRunOptions};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{
    ensure_topic, resolve_range, BulkProducer, EmbeddedBroker, OffsetSpec, PartitionRange,
    PartitionReader,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::synthetic_filters;
use crate::cli::BenchArgs;
use emoflow_ingest::kafka::GeneratedMessages;

/// Bytes a generated event takes in the broker, rounded up (about 95 on average).
const EVENT_BYTES: u64 = 120;

/// What the embedded broker keeps per partition, with a margin below its 5 MiB.
const EMBEDDED_PARTITION_BYTES: u64 = 4 << 20;

/// Fills `topic` with `events` generated events, with a progress bar.
fn fill(brokers: &str, topic: &str, args: &BenchArgs) -> anyhow::Result<()> {
    let producer = BulkProducer::new(brokers, topic)?;
    let bar = ProgressBar::new(args.events).with_style(
        ProgressStyle::with_template("filling {bar:40} {human_pos}/{human_len} events {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut messages = GeneratedMessages::new(Generator::new(GeneratorConfig {
        users: args.users,
        ..GeneratorConfig::default()
    }));
    for n in 0..args.events {
        messages.send(&producer, n)?;
        if n.is_multiple_of(8192) {
            bar.set_position(n);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    bar.finish_and_clear();
    Ok(())
}

/// Drains `ranges` with `workers` bare consumers (static assignment, as the pipeline does);
/// returns the messages read and the seconds it took.
fn bare_drain(
    brokers: &str,
    topic: &str,
    ranges: &[PartitionRange],
    workers: usize,
) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let mine: Vec<PartitionRange> = ranges
                .iter()
                .filter(|r| emoflow_dataflow::kafka_run::reader_of(r.partition, workers) == w)
                .copied()
                .collect();
            let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
            std::thread::spawn(move || -> anyhow::Result<u64> {
                if mine.is_empty() {
                    return Ok(0);
                }
                let mut reader = PartitionReader::new(&brokers, &topic, &mine)?;
                let mut n = 0u64;
                let mut bytes = 0u64;
                while !reader.is_finished() {
                    n += reader.poll_batch(65_536, Duration::from_millis(10), |m| {
                        bytes += m.payload.len() as u64;
                    }) as u64;
                }
                std::hint::black_box(bytes);
                tracing::debug!(worker = w, messages = n, positions = ?reader.positions(), "bare consumer done");
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h
            .join()
            .map_err(|_| anyhow::anyhow!("a bare consumer panicked"))??;
    }
    Ok((total, started.elapsed().as_secs_f64()))
}

/// Drains `ranges` into the views (and the archive in `archive`, when given); returns the
/// messages read and the seconds it took, the archive's last write included.
fn pipeline(
    brokers: &str,
    topic: &str,
    ranges: &[PartitionRange],
    workers: usize,
    args: &BenchArgs,
    archive: Option<&Path>,
) -> anyhow::Result<(u64, f64)> {
    let input = KafkaInput {
        brokers: brokers.to_owned(),
        topic: topic.to_owned(),
        ranges: ranges.to_vec(),
    };
    let opts = KafkaRunOptions {
        workers,
        views: args.views.config(),
        filters: synthetic_filters(args.filters),
        archive: archive.map(|dir| ArchiveConfig::new(dir.to_owned(), topic.to_owned())),
        ..KafkaRunOptions::default()
    };
    let out = start_kafka(input, opts, None, |_| {})?.wait()?;
    let state = out.state.as_ref().context("the run returned no views")?;
    if let Some(a) = &out.archive {
        if a.rows_written + a.rows_already_archived != state.count(&CountKey::Total) as u64 {
            bail!("the archive wrote {} events", a.rows_written);
        }
    }
    let lt = &state.lifetime;
    let n = lt.total as u64 + lt.rejected.values().sum::<i64>() as u64;
    Ok((n, out.elapsed.as_secs_f64()))
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

/// One worker count's medians.
struct Row {
    workers: usize,
    bare: f64,
    piped: f64,
    /// pipeline / bare, paired.
    ratio: f64,
    /// With `--archive`: events/s into views and archive, its cost against the views alone
    /// (paired), and the archive's bytes per event.
    archived: Option<(f64, f64, f64)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the Kafka benchmark and prints its table.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut partitions = args.partitions.max(1);
    let (_embedded, brokers, kind) = match &args.brokers {
        Some(b) => (None, b.clone(), "external"),
        None => {
            let e = EmbeddedBroker::start().context("cannot start the embedded broker")?;
            let b = e.bootstrap_servers().to_owned();
            (Some(e), b, "embedded")
        }
    };
    let topic = format!(
        "emoflow-bench-{}-{}",
        args.events,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    if let Some(e) = &_embedded {
        // The embedded broker keeps at most 5 MiB per partition (a limit compiled into
        // librdkafka's mock cluster): spread the events over enough partitions to keep them all.
        let needed = (args.events * EVENT_BYTES).div_ceil(EMBEDDED_PARTITION_BYTES) as i32;
        if needed > partitions {
            eprintln!(
                "bench: the embedded broker keeps at most {} MiB per partition; using {needed} partitions instead of {partitions}",
                EMBEDDED_PARTITION_BYTES >> 20
            );
            partitions = needed;
        }
        e.create_topic(&topic, partitions)?;
    } else {
        ensure_topic(&brokers, &topic, partitions, Duration::from_secs(10))?;
    }
    eprintln!("bench: filling {topic} ({partitions} partitions) on the {kind} broker {brokers}");
    let fill_started = Instant::now();
    fill(&brokers, &topic, args)?;
    eprintln!(
        "bench: filled {} events in {:.1}s",
        args.events,
        fill_started.elapsed().as_secs_f64()
    );
    let ranges = resolve_range(&brokers, &topic, OffsetSpec::Earliest, OffsetSpec::Latest)?;
    let mut rows = Vec::new();
    let archive_dir = args
        .csv
        .with_file_name(format!("bench-archive-{}", std::process::id()));
    for &workers in &args.workers {
        let (mut bare, mut piped) = (Vec::new(), Vec::new());
        let (mut archived, mut costs, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.runs.max(1) {
            let (n, s) = bare_drain(&brokers, &topic, &ranges, workers)?;
            if n != args.events {
                bail!("the bare consumer read {n} of {} messages", args.events);
            }
            bare.push(n as f64 / s);
            let (n, s) = pipeline(&brokers, &topic, &ranges, workers, args, None)?;
            if n != args.events {
                bail!("the pipeline read {n} of {} messages", args.events);
            }
            piped.push(n as f64 / s);
            eprintln!(
                "bench: {workers} worker(s), run {}: bare {:.0}/s, pipeline {:.0}/s",
                run + 1,
                bare[run],
                piped[run]
            );
            if args.archive {
                let _ = std::fs::remove_dir_all(&archive_dir);
                let (n, s) =
                    pipeline(&brokers, &topic, &ranges, workers, args, Some(&archive_dir))?;
                if n != args.events {
                    bail!(
                        "the pipeline with the archive read {n} of {} messages",
                        args.events
                    );
                }
                let rate = n as f64 / s;
                archived.push(rate);
                costs.push(1.0 - rate / piped[run]);
                sizes.push(dir_bytes(&archive_dir) as f64 / n as f64);
                let _ = std::fs::remove_dir_all(&archive_dir);
                eprintln!(
                    "bench: {workers} worker(s), run {}: pipeline + archive {rate:.0}/s ({:.1} B/event)",
                    run + 1,
                    sizes[run]
                );
            }
        }
        let ratios: Vec<f64> = bare.iter().zip(&piped).map(|(b, p)| p / b).collect();
        rows.push(Row {
            workers,
            bare: median(bare),
            piped: median(piped),
            ratio: median(ratios),
            archived: args
                .archive
                .then(|| (median(archived), median(costs), median(sizes))),
        });
    }
    println!(
        "source=kafka ({kind} broker {brokers}) events={} partitions={} users={} filters={} runs={} (medians)",
        args.events, partitions, args.users, args.filters, args.runs
    );
    println!("| workers | bare consumer msgs/s | pipeline events/s | pipeline / bare (paired) | pipeline + archive events/s | archive cost (paired) | archive bytes/event |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let (a, c, b) = match r.archived {
            Some((a, c, b)) => (
                format!("{a:.0}"),
                format!("{:.1}%", c * 100.0),
                format!("{b:.1}"),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        println!(
            "| {} | {:.0} | {:.0} | {:.0}% | {a} | {c} | {b} |",
            r.workers,
            r.bare,
            r.piped,
            r.ratio * 100.0
        );
    }
    if let Some(dir) = args.csv.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let path = args.csv.with_file_name("bench-kafka.csv");
    let mut f = std::fs::File::create(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(
        f,
        "broker,workers,bare_msgs_per_sec,pipeline_events_per_sec,ratio,archive_events_per_sec,archive_cost,archive_bytes_per_event"
    )?;
    for r in &rows {
        let (a, c, b) = r.archived.map_or(
            (String::new(), String::new(), String::new()),
            |(a, c, b)| (format!("{a:.0}"), format!("{c:.4}"), format!("{b:.2}")),
        );
        writeln!(
            f,
            "{kind},{},{:.0},{:.0},{:.4},{a},{c},{b}",
            r.workers, r.bare, r.piped, r.ratio
        )?;
    }
    eprintln!("bench: wrote {}", path.display());
    let bars: Vec<(String, f64)> = rows
        .iter()
        .flat_map(|r| {
            let w = r.workers;
            let mut v = vec![
                (format!("{w}w bare"), r.bare),
                (format!("{w}w pipeline"), r.piped),
            ];
            if let Some((a, _, _)) = r.archived {
                v.push((format!("{w}w + archive"), a));
            }
            v
        })
        .collect();
    crate::bench::write_bars(
        &path.with_extension("svg"),
        &format!("emoflow bench --source kafka ({kind} broker): messages/s"),
        &bars,
    )
}
