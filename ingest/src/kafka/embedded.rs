//! The embedded broker: librdkafka's in-process mock cluster, so that `emoflow serve` and
//! `emoflow demo` run with no Kafka installed. It speaks the Kafka protocol on a loopback
//! port, so any Kafka client can produce to it; it keeps everything in memory and is gone when
//! the process ends.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// A running in-process Kafka-protocol broker. It is tied to the thread that made it.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl EmbeddedBroker {
    /// Starts a one-broker cluster.
    pub fn start() -> Result<Self, rdkafka::error::KafkaError> {
        let cluster = MockCluster::new(1)?;
        let bootstrap = cluster.bootstrap_servers();
        Ok(EmbeddedBroker { cluster, bootstrap })
    }

    /// The address to give Kafka clients as `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
    ) -> Result<(), rdkafka::error::KafkaError> {
        self.cluster.create_topic(topic, partitions, 1)
    }
}
