//! One worker's reader of its Kafka partitions: static assignment, batched polling, positions
//! tracked per partition, and each partition's [`RangeEnd`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, PartitionRange, RangeEnd};

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

/// How long a partition may stay silent (no message, no end) before the reader assumes the
/// broker cannot fetch from the requested offset and fetches from the partition's start.
const SEEK_GRACE: Duration = Duration::from_secs(1);

/// How far one partition has been read.
#[derive(Debug, Clone, Copy)]
struct PartitionState {
    /// The next offset to deliver.
    position: i64,
    /// Messages before this offset are skipped.
    start: i64,
    /// Where to fetch from if fetching at `start` yields nothing.
    low: i64,
    /// A message or the partition's end was seen (or the fallback was taken).
    heard: bool,
    /// Still skipping messages older than the range's start time.
    skip_before_ms: Option<i64>,
    end: RangeEnd,
    finished: bool,
}

/// Client callbacks of the reader: reaching a partition's end is expected, not an error;
/// other errors are kept (the newest) for [`PartitionReader::take_error`].
#[derive(Default)]
struct ReaderContext {
    error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let end_of_partition = matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        );
        if !end_of_partition {
            tracing::warn!("kafka consumer: {error}: {reason}");
            if let Ok(mut kept) = self.error.lock() {
                *kept = Some(format!("{error}: {reason}"));
            }
        }
    }
}

impl ConsumerContext for ReaderContext {}

/// Reads a fixed set of partitions, each from a start offset to its [`RangeEnd`].
///
/// A partition's end is found by reaching it: librdkafka reports the end of a partition when
/// its fetcher gets there, which can be before the application has read the messages fetched
/// so far, so a partition counts as ended only once the end was reported and the local queue
/// has run dry.
pub struct PartitionReader {
    consumer: BaseConsumer<ReaderContext>,
    /// Partitions whose end the fetcher has reached.
    ends_reported: Vec<i32>,
    topic: String,
    partitions: BTreeMap<i32, PartitionState>,
    positions: BTreeMap<i32, i64>,
    unfinished: usize,
    bounded: bool,
    assigned_at: Instant,
    /// Poll errors seen (transient: librdkafka retries by itself).
    pub errors: u64,
    /// Offsets passed over without a message (see the warning where it happens).
    pub skipped: u64,
    /// Ranges passed over since [`PartitionReader::take_skips`] last took them.
    skips: Vec<(i32, i64, i64)>,
    /// The newest poll error since [`PartitionReader::take_error`] last took it.
    error: Option<String>,
}

impl PartitionReader {
    /// Reads `ranges` of `topic` on `brokers`.
    pub fn new(brokers: &str, topic: &str, ranges: &[PartitionRange]) -> Result<Self, ReaderError> {
        let bounded = ranges.iter().any(|r| r.end != RangeEnd::Open);
        let consumer: BaseConsumer<ReaderContext> = client_config(brokers)
            .set("group.id", "emoflow")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A start offset the broker no longer holds: read from the oldest one it does.
            .set("auto.offset.reset", "earliest")
            // A bounded read learns where each partition ends by reaching it.
            .set(
                "enable.partition.eof",
                if bounded { "true" } else { "false" },
            )
            // Freshness: a fetch waits at most this long for data before returning.
            .set("fetch.wait.max.ms", "10")
            // Throughput: keep enough fetched messages in hand to feed whole batches (per partition;
            // more only costs memory, measured with `emoflow replay`).
            .set("queued.min.messages", "50000")
            .set("fetch.max.bytes", "67108864")
            .set("max.partition.fetch.bytes", "16777216")
            // When the queue above is full, fetch again soon after it drains, not after the
            // default second: a reader busy with a burst must not then starve for a second.
            .set("fetch.queue.backoff.ms", "5")
            // After a failed fetch (an offset the broker no longer holds, reset to its new start),
            // fetch again at once: with the default half second, a broker that drops old
            // messages quickly (the embedded one, under load) has moved its start again by then,
            // and the reader never catches up.
            .set("fetch.error.backoff.ms", "10")
            .create_with_context(ReaderContext::default())?;
        let mut tpl = TopicPartitionList::new();
        let mut partitions = BTreeMap::new();
        let mut positions = BTreeMap::new();
        for r in ranges {
            let empty = matches!(r.end, RangeEnd::Offset(e) if e <= r.start);
            if !empty {
                tpl.add_partition_offset(topic, r.partition, Offset::Offset(r.start))?;
            }
            partitions.insert(
                r.partition,
                PartitionState {
                    position: r.start,
                    start: r.start,
                    low: r.low,
                    heard: r.low >= r.start,
                    skip_before_ms: r.from_ms,
                    end: r.end,
                    finished: empty,
                },
            );
            positions.insert(r.partition, r.start);
        }
        consumer.assign(&tpl)?;
        Ok(PartitionReader {
            consumer,
            ends_reported: Vec::new(),
            topic: topic.to_owned(),
            unfinished: partitions.values().filter(|p| !p.finished).count(),
            partitions,
            positions,
            bounded,
            assigned_at: Instant::now(),
            errors: 0,
            skipped: 0,
            skips: Vec::new(),
            error: None,
        })
    }

    /// Hands up to `max` messages to `f`, waiting at most `wait` for the first. Returns how many
    /// it handed over (skipped and dropped messages do not count).
    pub fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
        mut f: impl FnMut(KafkaMessage<'_>),
    ) -> usize {
        self.fall_back_if_silent();
        let mut n = 0;
        let mut timeout = wait;
        while n < max && !self.is_finished() {
            let message = match self.consumer.poll(timeout) {
                None => {
                    // Nothing left in hand: partitions whose end was reported are read out.
                    for p in std::mem::take(&mut self.ends_reported) {
                        tracing::debug!(partition = p, position = ?self.positions.get(&p), "queue dry: partition finished");
                        self.finish(p);
                    }
                    break;
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    tracing::debug!(partition = p, position = ?self.positions.get(&p), "end of partition reported");
                    if let Some(state) = self.partitions.get_mut(&p) {
                        state.heard = true;
                    }
                    if self.bounded {
                        self.ends_reported.push(p);
                    }
                    continue;
                }
                Some(Err(e)) => {
                    self.errors += 1;
                    if self.errors.is_power_of_two() {
                        tracing::warn!(errors = self.errors, "kafka poll: {e}");
                    }
                    self.error = Some(e.to_string());
                    break;
                }
                Some(Ok(m)) => m,
            };
            timeout = Duration::ZERO;
            let (partition, offset) = (message.partition(), message.offset());
            let timestamp_ms = message.timestamp().to_millis();
            let Some(state) = self.partitions.get_mut(&partition) else {
                continue;
            };
            state.heard = true;
            if state.finished || offset < state.start {
                continue;
            }
            let past_end = match state.end {
                RangeEnd::Offset(e) => offset >= e,
                RangeEnd::Time(t) => timestamp_ms.is_some_and(|ts| ts >= t),
                RangeEnd::Open | RangeEnd::Caught => false,
            };
            if past_end {
                self.finish(partition);
                continue;
            }
            // A gap, also before the first message: the broker dropped what was asked for
            // before it could be read.
            if offset > state.position {
                self.skipped += (offset - state.position) as u64;
                self.skips.push((partition, state.position, offset));
                tracing::warn!(
                    partition,
                    from = state.position,
                    to = offset,
                    "offsets skipped: the broker no longer holds them (retention) or they are not messages (compaction, transaction markers)"
                );
            }
            state.position = state.position.max(offset + 1);
            self.positions.insert(partition, state.position);
            if let Some(from) = state.skip_before_ms {
                if timestamp_ms.is_some_and(|ts| ts < from) {
                    continue;
                }
                state.skip_before_ms = None;
            }
            let reached = matches!(state.end, RangeEnd::Offset(e) if offset + 1 >= e);
            f(KafkaMessage {
                partition,
                offset,
                payload: message.payload().unwrap_or_default(),
                timestamp_ms,
            });
            n += 1;
            if reached {
                self.finish(partition);
            }
        }
        n
    }

    /// Re-fetches from the partition's start every partition that has been silent since it
    /// was assigned at an offset past its start.
    fn fall_back_if_silent(&mut self) {
        if self.assigned_at.elapsed() < SEEK_GRACE {
            return;
        }
        for (&p, state) in self.partitions.iter_mut() {
            if state.heard || state.finished {
                continue;
            }
            state.heard = true;
            tracing::info!(
                partition = p,
                offset = state.start,
                "nothing fetched from this offset; fetching from the partition's start {} and skipping ahead",
                state.low
            );
            if let Err(e) = self.consumer.seek(
                &self.topic,
                p,
                Offset::Offset(state.low),
                Duration::from_secs(5),
            ) {
                tracing::warn!(partition = p, "cannot seek: {e}");
            }
        }
    }

    fn finish(&mut self, partition: i32) {
        let Some(state) = self.partitions.get_mut(&partition) else {
            return;
        };
        if state.finished {
            return;
        }
        state.finished = true;
        self.unfinished -= 1;
        // Stop fetching what will not be read.
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition(&self.topic, partition)
            .set_offset(Offset::Invalid)
            .is_ok()
        {
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// `(partition, from, to)`: offsets `from..to` passed over without a message since the
    /// last call (the broker dropped them before they were read, or they are not messages).
    pub fn take_skips(&mut self) -> Vec<(i32, i64, i64)> {
        std::mem::take(&mut self.skips)
    }

    /// The newest poll error since the last call, if any (librdkafka retries by itself; the
    /// caller decides whom to tell).
    pub fn take_error(&mut self) -> Option<String> {
        let client = self
            .consumer
            .context()
            .error
            .lock()
            .ok()
            .and_then(|mut e| e.take());
        self.error.take().or(client)
    }

    /// partition -> the next offset this reader will deliver.
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.positions
    }

    /// True when a bounded read has reached every partition's end (never for an open one).
    pub fn is_finished(&self) -> bool {
        self.bounded && self.unfinished == 0
    }
}
