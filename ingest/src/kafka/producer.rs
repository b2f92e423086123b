//! Producing events to Kafka: the acknowledged producer behind HTTP ingest (every event
//! acknowledged by the broker, acks=all, idempotent) and a delivery tally for bulk producing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::future_producer::DeliveryFuture;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    ThreadedProducer,
};
use rdkafka::ClientConfig;

use super::client_config;

/// Why events were not produced.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The producer's local queue is full: the broker cannot keep up.
    #[error("the producer queue is full; retry later")]
    QueueFull,
    /// The broker did not acknowledge an event (down, unreachable, or it refused it).
    #[error("the broker did not acknowledge the events: {0}")]
    Broker(String),
}

/// Producer settings that make every acknowledged event durable exactly once in the log.
fn acked_config(brokers: &str, linger: Duration, timeout: Duration) -> ClientConfig {
    let mut c = client_config(brokers);
    c.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", linger.as_millis().to_string())
        .set("message.timeout.ms", timeout.as_millis().max(1).to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .set("batch.num.messages", "10000");
    c
}

/// Picks the partition of a record by its key.
pub type PartitionOf<'a> = dyn Fn(&[u8]) -> i32 + 'a;

/// Produces events and waits for the broker's acknowledgement of each.
pub struct EventProducer {
    producer: FutureProducer,
    topic: String,
}

impl EventProducer {
    /// A producer to `topic` that gathers events for up to `linger` into one request. An
    /// event not acknowledged within `timeout` fails.
    pub fn new(
        brokers: &str,
        topic: &str,
        linger: Duration,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let producer = acked_config(brokers, linger, timeout).create()?;
        Ok(EventProducer {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Hands every `(key, value)` to the producer without waiting (a large batch can do this
    /// off the async runtime); the result resolves once the broker acknowledged them. Events
    /// are keyed (by user) so that one user's events keep their order; `partition_of`, when
    /// given, picks each key's partition instead of the client's partitioner.
    pub fn enqueue_all<K, V>(
        &self,
        records: &[(K, V)],
        partition_of: Option<&PartitionOf<'_>>,
    ) -> Result<Deliveries, ProduceError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut pending = Vec::with_capacity(records.len());
        for (key, value) in records {
            let mut record = FutureRecord::to(&self.topic)
                .key(key.as_ref())
                .payload(value.as_ref());
            if let Some(f) = partition_of {
                record = record.partition(f(key.as_ref()));
            }
            match self.producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(ProduceError::QueueFull)
                }
                Err((e, _)) => return Err(ProduceError::Broker(e.to_string())),
            }
        }
        Ok(Deliveries(pending))
    }
}

/// Events handed to an [`EventProducer`], not yet acknowledged.
#[must_use = "events count as produced only once acknowledged"]
pub struct Deliveries(Vec<DeliveryFuture>);

impl Deliveries {
    /// Resolves once the broker acknowledged every event, with the highest offset acknowledged
    /// per partition; fails if it refused any, or did not acknowledge it within the producer's
    /// timeout.
    pub async fn acknowledged(self) -> Result<BTreeMap<i32, i64>, ProduceError> {
        let mut highest = BTreeMap::new();
        let mut failure = None;
        for delivery in futures::future::join_all(self.0).await {
            match delivery {
                Ok(Ok(d)) => {
                    let h = highest.entry(d.partition).or_insert(d.offset);
                    *h = (*h).max(d.offset);
                }
                Ok(Err((e, _))) => {
                    failure.get_or_insert_with(|| ProduceError::Broker(e.to_string()));
                }
                Err(_) => {
                    failure.get_or_insert_with(|| {
                        ProduceError::Broker("the producer shut down".into())
                    });
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(highest),
        }
    }
}

/// Counts deliveries of a bulk producer (`emoflow produce`): acknowledged and failed events,
/// and the first failure's reason.
#[derive(Debug, Default)]
pub struct DeliveryTally {
    /// Events the broker acknowledged.
    pub acked: AtomicU64,
    /// Events that failed for good.
    pub failed: AtomicU64,
    /// The first failure, to explain the others.
    pub first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryTally {}

impl ProducerContext for DeliveryTally {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_error.lock() {
                    first.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
}

/// Produces many events as fast as the broker takes them (`emoflow produce`, tests,
/// benchmarks), acknowledged like HTTP ingest but batching longer; deliveries are tallied.
pub struct BulkProducer {
    producer: ThreadedProducer<DeliveryTally>,
    topic: String,
}

impl BulkProducer {
    /// A producer to `topic`.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, KafkaError> {
        Self::with_linger(brokers, topic, Duration::from_millis(20))
    }

    /// A producer to `topic` that waits up to `linger` to fill a batch.
    pub fn with_linger(brokers: &str, topic: &str, linger: Duration) -> Result<Self, KafkaError> {
        let producer = acked_config(brokers, linger, Duration::from_secs(60))
            .create_with_context(DeliveryTally::default())?;
        Ok(BulkProducer {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Queues one message, waiting while the local queue is full. `partition` picks one
    /// explicitly (otherwise the key decides); `timestamp_ms` sets the message time (otherwise
    /// the producer's clock).
    pub fn send(
        &self,
        key: &[u8],
        value: &[u8],
        partition: Option<i32>,
        timestamp_ms: Option<i64>,
    ) -> Result<(), KafkaError> {
        let mut record = BaseRecord::to(&self.topic).key(key).payload(value);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(t) = timestamp_ms {
            record = record.timestamp(t);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Deliveries so far.
    pub fn tally(&self) -> &DeliveryTally {
        self.producer.context()
    }

    /// Waits until every queued message is acknowledged or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}
