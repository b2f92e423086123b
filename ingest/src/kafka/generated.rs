//! Generated events as Kafka messages, for the load generators.

use crate::generator::Generator;
use rdkafka::error::KafkaError;

use crate::kafka::BulkProducer;

/// Generated events as Kafka messages: event `n` keyed by `n` (which spreads them evenly over
/// the partitions), without the NDJSON newline.
pub struct GeneratedMessages {
    generator: Generator,
    line: Vec<u8>,
}

impl GeneratedMessages {
    /// Messages from `generator`.
    pub fn new(generator: Generator) -> Self {
        GeneratedMessages {
            generator,
            line: Vec::with_capacity(256),
        }
    }

    /// Generates the next event and queues it on `producer` as message `n`.
    pub fn send(&mut self, producer: &BulkProducer, n: u64) -> Result<(), KafkaError> {
        self.line.clear();
        self.generator.write_event(&mut self.line);
        let body = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        producer.send(&n.to_le_bytes(), body, None, None)
    }
}
