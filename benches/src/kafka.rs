//! The Kafka side of `emoflow bench --source kafka`: a fresh topic filled with generated events
//! (on the embedded broker or the brokers given), and a bare rdkafka consumer that drains it
//! with the pipeline's own reader and partition assignment, only counting messages: the
//! broker-and-client ceiling the pipeline is paired with.

use std::time::{Duration, Instant};

use anyhow::Context;
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{
    ensure_topic, resolve_range, BulkProducer, EmbeddedBroker, GeneratedMessages, OffsetSpec,
    PartitionRange, PartitionReader,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::GENERATED_EVENT_BYTES;

/// What the embedded broker keeps per partition, with a margin below its 5 MiB.
const EMBEDDED_PARTITION_BYTES: u64 = 4 << 20;

/// A filled benchmark topic; the embedded broker, when used, lives as long as this.
pub struct BenchTopic {
    _embedded: Option<EmbeddedBroker>,
    /// `bootstrap.servers`.
    pub brokers: String,
    /// `embedded` or `external`.
    pub kind: &'static str,
    /// The topic's name.
    pub topic: String,
    /// Its partitions.
    pub partitions: i32,
    /// Everything in it, per partition.
    pub ranges: Vec<PartitionRange>,
}

impl BenchTopic {
    /// Creates a fresh topic of `partitions` partitions (more on the embedded broker when its
    /// per-partition limit needs them) on `brokers` (`None`: the embedded broker) and fills it
    /// with `events` generated events of `users` users.
    pub fn fill(
        brokers: Option<&str>,
        partitions: i32,
        events: u64,
        users: u32,
    ) -> anyhow::Result<BenchTopic> {
        let mut partitions = partitions.max(1);
        let (embedded, brokers, kind) = match brokers {
            Some(b) => (None, b.to_owned(), "external"),
            None => {
                let e = EmbeddedBroker::start().context("cannot start the embedded broker")?;
                let b = e.bootstrap_servers().to_owned();
                (Some(e), b, "embedded")
            }
        };
        let topic = format!(
            "emoflow-bench-{events}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        if let Some(e) = &embedded {
            // The embedded broker keeps at most 5 MiB per partition (a limit compiled into
            // librdkafka's mock cluster): spread the events over enough partitions to keep them.
            let needed = events
                .saturating_mul(GENERATED_EVENT_BYTES)
                .div_ceil(EMBEDDED_PARTITION_BYTES)
                .min(i32::MAX as u64) as i32;
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
        eprintln!(
            "bench: filling {topic} ({partitions} partitions) on the {kind} broker {brokers}"
        );
        let started = Instant::now();
        produce(&brokers, &topic, events, users)?;
        eprintln!(
            "bench: filled {events} events in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        let ranges = resolve_range(&brokers, &topic, OffsetSpec::Earliest, OffsetSpec::Latest)?;
        Ok(BenchTopic {
            _embedded: embedded,
            brokers,
            kind,
            topic,
            partitions,
            ranges,
        })
    }

    /// Drains the topic with `readers` bare consumers, assigned partitions as the pipeline's
    /// workers are; returns the messages read and the seconds it took.
    pub fn bare_drain(&self, readers: usize) -> anyhow::Result<(u64, f64)> {
        let started = Instant::now();
        let handles: Vec<_> = (0..readers)
            .map(|w| {
                let mine: Vec<PartitionRange> = self
                    .ranges
                    .iter()
                    .filter(|r| emoflow_dataflow::reader_of(r.partition, readers) == w)
                    .copied()
                    .collect();
                let (brokers, topic) = (self.brokers.clone(), self.topic.clone());
                std::thread::spawn(move || count_messages(&brokers, &topic, &mine))
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
}

/// Reads `ranges` to their ends, counting messages and their bytes.
fn count_messages(brokers: &str, topic: &str, ranges: &[PartitionRange]) -> anyhow::Result<u64> {
    if ranges.is_empty() {
        return Ok(0);
    }
    let mut reader = PartitionReader::new(brokers, topic, ranges)?;
    let (mut n, mut bytes) = (0u64, 0u64);
    while !reader.is_finished() {
        n += reader.poll_batch(65_536, Duration::from_millis(10), |m| {
            bytes += m.payload.len() as u64;
        }) as u64;
    }
    std::hint::black_box(bytes);
    Ok(n)
}

/// Sends `events` generated events to `topic`, with a progress bar.
fn produce(brokers: &str, topic: &str, events: u64, users: u32) -> anyhow::Result<()> {
    let producer = BulkProducer::new(brokers, topic)?;
    let bar = ProgressBar::new(events).with_style(
        ProgressStyle::with_template("filling {bar:40} {human_pos}/{human_len} events {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut messages = GeneratedMessages::new(Generator::new(GeneratorConfig {
        users,
        ..GeneratorConfig::default()
    }));
    for n in 0..events {
        messages.send(&producer, n)?;
        if n.is_multiple_of(8192) {
            bar.set_position(n);
        }
    }
    producer.flush(Duration::from_secs(300))?;
    bar.finish_and_clear();
    Ok(())
}
