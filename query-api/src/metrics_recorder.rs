//! One service's metrics recorder (no process-wide state, so several services in one process,
//! as in tests, keep their numbers apart): every metric described once, the names the code
//! records under, and the Prometheus text a scrape renders.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// Histogram buckets for every `_seconds` metric: 100 µs to 30 s.
const SECONDS_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 30.0,
];

/// Requests answered, by method, route and status.
pub const HTTP_REQUESTS: &str = "emoflow_http_requests_total";
/// Time to answer a request (to its headers, for streams).
pub const HTTP_DURATION: &str = "emoflow_http_request_duration_seconds";
/// Events produced through HTTP ingest and acknowledged by the broker, by route.
pub const INGEST_EVENTS: &str = "emoflow_http_ingest_events_total";
/// How long after its newest epoch began (the earliest its newest data can have been read) a
/// snapshot was published.
pub const VIEW_LATENCY: &str = "emoflow_view_update_latency_seconds";

/// One service's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A recorder with every metric described.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("metrics: histogram buckets refused ({e}); summaries instead");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics { recorder, handle };
        metrics.record(describe);
        metrics
    }

    /// Runs `f` with this service's recorder as the one the `metrics` macros record to.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// The text of a scrape: `read` records what is read at scrape time, then everything is
    /// rendered.
    pub fn render(&self, read: impl FnOnce()) -> String {
        self.record(read);
        self.handle.render()
    }

    /// Drains the histograms' buckets into their summaries, so that memory stays bounded
    /// between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

fn describe() {
    describe_counter!(
        "emoflow_events_consumed_total",
        "Messages the views consumed from each partition, counted by offset (their position: the next offset to read), so offsets the broker dropped unread count too"
    );
    describe_counter!(
        "emoflow_events_accepted_total",
        "Events accepted into the views (GET /stats total)"
    );
    describe_counter!(
        "emoflow_events_rejected_total",
        "Messages rejected, by reason (GET /stats rejected)"
    );
    describe_counter!(
        INGEST_EVENTS,
        "Events produced through HTTP ingest and acknowledged by the broker, by route"
    );
    describe_counter!(
        "emoflow_http_ingest_failures_total",
        "Ingest requests the broker did not acknowledge in time (nothing more was produced)"
    );
    describe_counter!(
        "emoflow_archive_rows_total",
        "Events written to the Parquet archive since start"
    );
    describe_counter!(
        "emoflow_archive_bytes_total",
        Unit::Bytes,
        "Bytes of Parquet archive files written since start"
    );
    describe_counter!(
        "emoflow_archive_files_total",
        "Parquet archive files written since start"
    );
    describe_gauge!(
        "emoflow_consumer_lag_messages",
        "Messages in each partition not yet in the views (high watermark minus position)"
    );
    describe_gauge!(
        "emoflow_snapshot_age_seconds",
        Unit::Seconds,
        "Age of the newest snapshot's as_of at scrape time"
    );
    describe_histogram!(
        VIEW_LATENCY,
        Unit::Seconds,
        "How long after its newest epoch began (when its newest data could first be read) each snapshot was published"
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route and status"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (to the response's headers for streams), by method, route and status"
    );
    describe_gauge!(
        "emoflow_subscribers_connected",
        "Live push subscribers connected (SSE and WebSocket)"
    );
    describe_gauge!("emoflow_filters", "Filters defined");
    describe_counter!(
        "emoflow_events_pushed_total",
        "Events delivered to live push subscribers"
    );
    describe_counter!(
        "emoflow_slow_clients_dropped_total",
        "Subscribers cut off because they read too slowly (they may resume)"
    );
}
