//! `emoflow produce`: events (generated, or an NDJSON file's lines) to a Kafka topic at a
//! steady rate, or generated events to a file.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{ensure_topic, BulkProducer, GeneratedMessages};
use emoflow_ingest::pacing::Pacer;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ProduceArgs;

fn bar(len: u64) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn generator(args: &ProduceArgs) -> Generator {
    Generator::new(GeneratorConfig {
        seed: args.seed,
        users: args.users,
        step_ms: args.step as f64,
        ..GeneratorConfig::default()
    })
}

/// Produces the events with a progress bar and a closing summary.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    match (&args.kafka.brokers, &args.to_file) {
        (Some(_), Some(_)) => bail!("give either --brokers (Kafka) or --to-file, not both"),
        (None, None) => bail!("say where the events go: --brokers HOST:PORT or --to-file FILE"),
        (None, Some(_)) => to_file(&args),
        (Some(b), None) => to_kafka(&args, b),
    }
}

fn to_file(args: &ProduceArgs) -> anyhow::Result<()> {
    let Some(path) = &args.to_file else {
        bail!("--to-file is missing");
    };
    if args.input.is_some() {
        bail!("--input is for producing a file's lines to Kafka; to copy a file, use cp");
    }
    let events = args.events.unwrap_or(100_000);
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let bar = bar(events);
    let started = Instant::now();
    generator(args)
        .write_ndjson(events, BufWriter::new(file), |n| bar.set_position(n))
        .with_context(|| format!("cannot write {}", path.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "wrote {events} events to {} in {secs:.2}s ({:.0} events/s)",
        path.display(),
        events as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn to_kafka(args: &ProduceArgs, brokers: &str) -> anyhow::Result<()> {
    let parts = ensure_topic(
        brokers,
        &args.kafka.topic,
        args.kafka.partitions,
        Duration::from_secs(10),
    )
    .with_context(|| format!("cannot reach the topic {:?} on {brokers}", args.kafka.topic))?;
    if parts.is_empty() {
        bail!(
            "the topic {:?} does not exist on {brokers} and could not be created",
            args.kafka.topic
        );
    }
    let producer =
        BulkProducer::new(brokers, &args.kafka.topic).context("cannot create the producer")?;
    let pacer = Pacer::new(args.rate);
    let started = Instant::now();
    let sent = match &args.input {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = ProgressBar::new(size).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let limit = args.events.unwrap_or(u64::MAX);
            let mut sent = 0u64;
            let mut read = 0u64;
            let mut line = Vec::new();
            let mut reader = BufReader::with_capacity(1 << 20, file);
            while sent < limit {
                line.clear();
                let n = reader
                    .read_until(b'\n', &mut line)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                read += n as u64;
                let body = line.strip_suffix(b"\n").unwrap_or(&line);
                if body.trim_ascii().is_empty() {
                    continue;
                }
                pacer.wait_for(sent);
                producer.send(&sent.to_le_bytes(), body, None, None)?;
                sent += 1;
                if sent.is_multiple_of(4096) {
                    bar.set_position(read);
                }
            }
            bar.finish_and_clear();
            sent
        }
        None => {
            let events = args.events.unwrap_or(100_000);
            let bar = bar(events);
            let mut messages = GeneratedMessages::new(generator(args));
            for n in 0..events {
                pacer.wait_for(n);
                messages.send(&producer, n)?;
                if n.is_multiple_of(4096) {
                    bar.set_position(n);
                }
            }
            bar.finish_and_clear();
            events
        }
    };
    producer
        .flush(Duration::from_secs(120))
        .context("the broker did not acknowledge every event in time")?;
    let tally = producer.tally();
    let (acked, failed) = (
        tally.acked.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "produced {sent} events to {}/{} in {secs:.2}s ({:.0} events/s): {acked} acknowledged, {failed} failed",
        brokers,
        args.kafka.topic,
        sent as f64 / secs.max(1e-9)
    );
    if failed > 0 {
        let first = tally
            .first_error
            .lock()
            .ok()
            .and_then(|g| g.clone())
            .unwrap_or_default();
        bail!("{failed} events were not acknowledged (first error: {first})");
    }
    Ok(())
}
