//! Topic administration and offset look-ups: making sure a topic exists, listing its
//! partitions, reading high watermarks (for lag), and turning a replay's `--from`/`--to` into
//! an exact offset range per partition.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, REQUEST_TIMEOUT};
use crate::decode::parse_rfc3339_ms;

fn metadata_consumer(brokers: &str) -> Result<BaseConsumer, KafkaError> {
    client_config(brokers)
        .set("group.id", "emoflow-metadata")
        .set("enable.auto.commit", "false")
        .create()
}

/// The partitions of `topic`, sorted; empty when the topic does not exist.
pub fn partitions_of(brokers: &str, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let consumer = metadata_consumer(brokers)?;
    partitions_with(&consumer, topic)
}

fn partitions_with(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, KafkaError> {
    let md = consumer.fetch_metadata(Some(topic), REQUEST_TIMEOUT)?;
    let mut parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    parts.sort_unstable();
    Ok(parts)
}

/// Makes sure `topic` exists, creating it with `partitions` partitions when it does not, and
/// returns its partitions. Waits up to `wait` for a new topic to show in the metadata.
pub fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    wait: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let consumer = metadata_consumer(brokers)?;
    let existing = partitions_with(&consumer, topic)?;
    if !existing.is_empty() {
        return Ok(existing);
    }
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics(
        [&new_topic],
        &AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)),
    ))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(topic = name, "cannot create topic: {code}");
                })
            }
        }
    }
    let deadline = Instant::now() + wait;
    loop {
        let parts = partitions_with(&consumer, topic)?;
        if !parts.is_empty() || Instant::now() >= deadline {
            return Ok(parts);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads a topic's watermarks (for lag): which partitions it has, and what each holds.
pub struct Watermarks {
    consumer: BaseConsumer,
    topic: String,
}

/// What one partition holds, as the broker reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionMarks {
    /// The oldest offset still held.
    pub low: i64,
    /// The offset the next message will get.
    pub high: i64,
}

impl Watermarks {
    /// A reader for `topic` on `brokers`.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        Ok(Watermarks {
            consumer: metadata_consumer(brokers)?,
            topic: topic.to_owned(),
        })
    }

    /// `(partition, watermarks)` for every partition the topic has now (partitions added
    /// since the last call included).
    pub fn read(&self, timeout: Duration) -> Result<Vec<(i32, PartitionMarks)>, KafkaError> {
        partitions_with(&self.consumer, &self.topic)?
            .into_iter()
            .map(|p| {
                let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, timeout)?;
                Ok((p, PartitionMarks { low, high }))
            })
            .collect()
    }
}

/// One end of a replay range, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first offset still in the partition.
    Earliest,
    /// The high watermark when the replay starts.
    Latest,
    /// This offset in every partition (clamped to what the partition holds).
    Offset(i64),
    /// The first message whose Kafka timestamp is at or after this time (ms since the epoch).
    Time(i64),
}

impl std::str::FromStr for OffsetSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "earliest" | "beginning" => Ok(OffsetSpec::Earliest),
            "latest" | "end" => Ok(OffsetSpec::Latest),
            _ if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => s
                .parse()
                .map(OffsetSpec::Offset)
                .map_err(|e| format!("offset {s:?}: {e}")),
            _ => parse_rfc3339_ms(s).map(OffsetSpec::Time).map_err(|_| {
                format!(
                    "{s:?} is neither `earliest`, `latest`, an offset nor an RFC 3339 time \
                     such as 2026-11-22T10:00:00Z"
                )
            }),
        }
    }
}

/// Where reading a partition stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RangeEnd {
    /// Never: follow the partition as messages arrive (`serve`).
    Open,
    /// Before this offset (or at the partition's end, if that comes first).
    Offset(i64),
    /// Before the first message whose Kafka timestamp is at or after this time (ms), or at
    /// the partition's end.
    Time(i64),
    /// At the partition's end, once reading has caught up with it.
    Caught,
}

/// The messages of one partition to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionRange {
    /// The partition.
    pub partition: i32,
    /// First offset to read.
    pub start: i64,
    /// The partition's first offset: where to fetch from instead if fetching at `start`
    /// yields nothing (some brokers, such as tansu with memory storage, cannot fetch from
    /// inside a stored batch). Messages before `start` are then skipped.
    pub low: i64,
    /// Skip messages before the first one whose Kafka timestamp is at or after this (ms).
    pub from_ms: Option<i64>,
    /// Where to stop.
    pub end: RangeEnd,
}

impl PartitionRange {
    /// Everything from `start` on, following the partition.
    pub fn open(partition: i32, start: i64) -> Self {
        PartitionRange {
            partition,
            start,
            low: start,
            from_ms: None,
            end: RangeEnd::Open,
        }
    }

    /// Messages in the range when that is known up front.
    pub fn known_len(&self) -> Option<u64> {
        match (self.end, self.from_ms) {
            (RangeEnd::Offset(e), None) => Some((e - self.start).max(0) as u64),
            _ => None,
        }
    }
}

/// Resolves `from..to` for every partition of `topic`. The range is half-open: `--from 10
/// --to 20` reads offsets 10 to 19, and `--to TIME` stops before the first message at or
/// after TIME.
///
/// Only the start leans on the broker's offsets-for-times, as a hint: the reader checks
/// message timestamps itself, and finds each partition's end by reading up to it, so a broker
/// that reports stale high watermarks (tansu's memory storage does) cannot shorten a replay.
pub fn resolve_range(
    brokers: &str,
    topic: &str,
    from: OffsetSpec,
    to: OffsetSpec,
) -> Result<Vec<PartitionRange>, KafkaError> {
    let consumer = metadata_consumer(brokers)?;
    let parts = partitions_with(&consumer, topic)?;
    let mut lows = Vec::with_capacity(parts.len());
    for &p in &parts {
        lows.push(consumer.fetch_watermarks(topic, p, REQUEST_TIMEOUT)?.0);
    }
    let hints = match from {
        OffsetSpec::Time(ms) => Some(offsets_for_time(&consumer, topic, &parts, ms)?),
        _ => None,
    };
    let end = match to {
        OffsetSpec::Earliest => None,
        OffsetSpec::Latest => Some(RangeEnd::Caught),
        OffsetSpec::Offset(o) => Some(RangeEnd::Offset(o)),
        OffsetSpec::Time(ms) => Some(RangeEnd::Time(ms)),
    };
    Ok(parts
        .iter()
        .enumerate()
        .map(|(i, &partition)| {
            let low = lows[i];
            let start = match from {
                OffsetSpec::Earliest | OffsetSpec::Latest => low,
                OffsetSpec::Offset(o) => o.max(low),
                OffsetSpec::Time(_) => hints
                    .as_ref()
                    .and_then(|h| h[i])
                    .map_or(low, |o| o.max(low)),
            };
            PartitionRange {
                partition,
                start,
                low,
                from_ms: match from {
                    OffsetSpec::Time(ms) => Some(ms),
                    _ => None,
                },
                // `--to earliest` is an empty range.
                end: end.unwrap_or(RangeEnd::Offset(low)),
            }
        })
        .collect())
}

/// The broker's answer to offsets-for-times per partition (`None`: no message at or after).
fn offsets_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    parts: &[i32],
    ms: i64,
) -> Result<Vec<Option<i64>>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
    }
    let found = consumer.offsets_for_times(tpl, REQUEST_TIMEOUT)?;
    Ok(parts
        .iter()
        .map(
            |p| match found.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_specs_parse() {
        assert_eq!("earliest".parse(), Ok(OffsetSpec::Earliest));
        assert_eq!("latest".parse(), Ok(OffsetSpec::Latest));
        assert_eq!("42".parse(), Ok(OffsetSpec::Offset(42)));
        assert_eq!("1970-01-01T00:00:01Z".parse(), Ok(OffsetSpec::Time(1000)));
        assert!("yesterday".parse::<OffsetSpec>().is_err());
        assert!("-3".parse::<OffsetSpec>().is_err());
    }
}
