//! Talking to Kafka through librdkafka (rdkafka): shared client settings, the per-worker
//! partition reader, the producer, topic administration and offset ranges, and the embedded
//! in-process broker.
//!
//! Workers read partitions by static assignment (no consumer group, so no rebalance can move a
//! partition between workers) and track their own positions: emoflow keeps offsets with its
//! views rather than committing them to the broker.

mod admin;
mod embedded;
mod generated;
mod producer;
mod reader;

pub use admin::{
    ensure_topic, partitions_of, resolve_range, OffsetSpec, PartitionMarks, PartitionRange,
    RangeEnd, Watermarks,
};
pub use embedded::EmbeddedBroker;
pub use generated::GeneratedMessages;
pub use producer::{
    BulkProducer, Deliveries, DeliveryTally, EventProducer, PartitionOf, ProduceError,
};
pub use reader::{KafkaMessage, PartitionReader, ReaderError};

use std::time::Duration;

use rdkafka::ClientConfig;

/// How long metadata and offset requests may take before they count as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings every emoflow client shares.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "emoflow")
        // librdkafka's own log lines go to stderr through rdkafka's `log` facade; keep them
        // to real problems.
        .set("log_level", "4");
    c
}
