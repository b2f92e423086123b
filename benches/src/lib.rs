//! emoflow's benchmark harness, apart from the product: `emoflow bench` (throughput, freshness
//! and peak memory of the views per process and worker count, from memory, a file or Kafka),
//! and the drivers that load a running `emoflow serve` (`bench-freshness`,
//! `bench-subscribers`). The binary parses the command line into these options and calls them.

pub mod filters;
pub mod freshness;
pub mod http_client;
mod kafka;
mod report;
mod rss;
pub mod run;
pub mod subscribers;
pub mod throughput;

/// Bytes of one generated event, as NDJSON or as a Kafka message, rounded up (about 95 on
/// average): for sizing buffers and partitions ahead.
pub(crate) const GENERATED_EVENT_BYTES: u64 = 120;

/// A running `emoflow serve` that a driver loads: its API and the topic it reads.
#[derive(Debug, Clone)]
pub struct Service {
    /// Its HTTP API, `http://host:port`.
    pub url: String,
    /// The brokers it reads.
    pub brokers: String,
    /// Its topic.
    pub topic: String,
}

impl Service {
    /// `host:port` of the service, from its URL.
    pub fn addr(&self) -> String {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned()
    }
}
