//! One worker's reader of its Kafka partitions: static assignment, batched polling, positions
//! tracked per partition, and (for replay) an end offset per partition.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, PartitionRange};

/// One message as the views need it, borrowed from the consumer's buffer.
#[derive(Debug, Clone, Copy)]
pub struct KafkaMessage<'a> {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its value; empty for a message without one.
    pub payload: &'a [u8],
    /// The message's Kafka timestamp in ms, when it has one.
    pub timestamp_ms: Option<i64>,
}

/// Why a reader failed.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    /// The consumer could not be created or assigned.
    #[error("kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
}

/// Reads a fixed set of partitions from given offsets, optionally up to an end offset each.
pub struct PartitionReader {
    consumer: BaseConsumer,
    /// partition -> next offset to deliver.
    positions: BTreeMap<i32, i64>,
    /// partition -> first offset not to deliver (bounded reads only).
    ends: Option<BTreeMap<i32, i64>>,
    /// Partitions of a bounded read not yet at their end.
    unfinished: usize,
    /// Poll errors seen (transient: librdkafka retries by itself).
    pub errors: u64,
}

impl PartitionReader {
    /// Reads `ranges` of `topic`: from each `start`, and up to each `end` when `bounded`
    /// (otherwise `end` is ignored and reading goes on as messages arrive).
    pub fn new(
        brokers: &str,
        topic: &str,
        ranges: &[PartitionRange],
        bounded: bool,
    ) -> Result<Self, ReaderError> {
        let consumer: BaseConsumer = client_config(brokers)
            .set("group.id", "emoflow")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            // Freshness: a fetch waits at most this long for data before returning.
            .set("fetch.wait.max.ms", "10")
            // Throughput: keep enough fetched messages in hand to feed a whole batch.
            .set("queued.min.messages", "200000")
            .set("fetch.max.bytes", "67108864")
            .set("max.partition.fetch.bytes", "16777216")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        let mut positions = BTreeMap::new();
        let mut ends = BTreeMap::new();
        for r in ranges {
            if bounded && r.start >= r.end {
                continue;
            }
            tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.start))?;
            positions.insert(r.partition, r.start);
            ends.insert(r.partition, r.end);
        }
        consumer.assign(&tpl)?;
        Ok(PartitionReader {
            consumer,
            unfinished: positions.len(),
            positions,
            ends: bounded.then_some(ends),
            errors: 0,
        })
    }

    /// Hands up to `max` messages to `f`, waiting at most `wait` for the first. Returns how many
    /// it handed over. Messages at or past a bounded read's end are dropped.
    pub fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        mut f: impl FnMut(KafkaMessage<'_>),
    ) -> usize {
        let mut n = 0;
        let mut timeout = wait;
        while n < max && !self.is_finished() {
            let message = match self.consumer.poll(timeout) {
                None => break,
                Some(Err(e)) => {
                    self.errors += 1;
                    if self.errors.is_power_of_two() {
                        tracing::warn!(errors = self.errors, "kafka poll: {e}");
                    }
                    break;
                }
                Some(Ok(m)) => m,
            };
            timeout = Duration::ZERO;
            let (partition, offset) = (message.partition(), message.offset());
            if let Some(end) = self.ends.as_ref().and_then(|e| e.get(&partition)) {
                if offset >= *end {
                    continue;
                }
            }
            f(KafkaMessage {
                partition,
                offset,
                payload: message.payload().unwrap_or_default(),
                timestamp_ms: message.timestamp().to_millis(),
            });
            n += 1;
            self.advance(partition, offset + 1);
        }
        n
    }

    fn advance(&mut self, partition: i32, next: i64) {
        let Some(pos) = self.positions.get_mut(&partition) else {
            return;
        };
        let before = *pos;
        *pos = next.max(before);
        if let Some(end) = self.ends.as_ref().and_then(|e| e.get(&partition)) {
            if before < *end && *pos >= *end {
                self.unfinished -= 1;
            }
        }
    }

    /// partition -> the next offset this reader will deliver.
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// True when a bounded read has delivered every message of its range (always false for
    /// an unbounded one).
    pub fn is_finished(&self) -> bool {
        self.ends.is_some() && self.unfinished == 0
    }
}
