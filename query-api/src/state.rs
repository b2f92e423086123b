//! What every handler shares: the service's state ([`AppState`]) and the options it was built
//! with. Handlers reach everything through it; it knows no handler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use emoflow_ingest::kafka::EventProducer;
use emoflow_ingest::MaxFuture;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::cluster::ClusterRole;
use crate::error::ApiError;
use crate::filter_service::Filters;
use crate::metrics_recorder::Metrics;
use crate::snapshot::Snapshot;
use crate::source_health::HealthProbe;
use crate::window::IngestWindow;

/// Default largest request body, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 16 << 20;

struct Inner {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    producer: Option<EventProducer>,
    health: Arc<HealthProbe>,
    ingest: IngestOptions,
    produce_failures: AtomicU64,
    metrics: Metrics,
    filters: Option<Filters>,
    http: HttpOptions,
    /// Length of the dataflow's epochs (event reads are stamped with the end of theirs).
    tick: Duration,
    /// Set when the service stops: open streams end with a final message.
    stopping: watch::Sender<bool>,
    /// This process's place in a cluster, when it is in one.
    cluster: Option<ClusterRole>,
}

/// How HTTP ingest behaves.
#[derive(Debug)]
pub struct IngestOptions {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// When set, write routes need `Authorization: Bearer TOKEN`.
    pub api_token: Option<String>,
    /// How long a request may wait for the broker (and for room in its log).
    pub produce_timeout: Duration,
    /// The broker's bounded log, when it has one (the embedded broker).
    pub window: Option<IngestWindow>,
    /// How far ahead of the server's clock an event time may lie.
    pub max_future: MaxFuture,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            body_limit: DEFAULT_BODY_LIMIT,
            api_token: None,
            produce_timeout: Duration::from_secs(5),
            window: None,
            max_future: MaxFuture::default(),
        }
    }
}

/// How the server treats browsers from other origins and slow requests.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Origins allowed to call the API from a browser; `None` allows any.
    cors: Option<Vec<HeaderValue>>,
    /// How long a request (not a stream) may take before it is answered 408.
    pub request_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            cors: Some(Vec::new()),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// An origin given to `--cors-origin` that cannot be one.
#[derive(Debug, thiserror::Error)]
#[error("--cors-origin {0:?} is not an origin such as https://example.com (or *)")]
pub struct BadOrigin(String);

impl HttpOptions {
    /// Options allowing `origins` (`*` for any) and timing requests out after `timeout`.
    pub fn new(origins: &[String], request_timeout: Duration) -> Result<Self, BadOrigin> {
        let cors = if origins.iter().any(|o| o.trim() == "*") {
            None
        } else {
            let parsed = origins
                .iter()
                .map(|o| {
                    let o = o.trim().trim_end_matches('/');
                    let scheme = o.starts_with("http://") || o.starts_with("https://");
                    HeaderValue::from_str(o)
                        .ok()
                        .filter(|_| scheme && !o.contains(char::is_whitespace))
                        .ok_or_else(|| BadOrigin(o.to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(parsed)
        };
        Ok(HttpOptions {
            cors,
            request_timeout,
        })
    }

    /// The CORS layer, when any origin is allowed: without one, no request gets CORS headers,
    /// which browsers read as "same origin only" (and each request skips the layer's cost).
    pub(crate) fn cors_layer(&self) -> Option<CorsLayer> {
        let allow = match &self.cors {
            None => AllowOrigin::any(),
            Some(list) if list.is_empty() => return None,
            Some(list) => AllowOrigin::list(list.iter().cloned()),
        };
        let layer = CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                HeaderName::from_static("last-event-id"),
            ])
            .max_age(Duration::from_secs(3600));
        Some(layer)
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// A state reading snapshots from `snapshots` and producing with `producer` (without one,
    /// ingest answers 503).
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        producer: Option<EventProducer>,
        health: Arc<HealthProbe>,
        ingest: IngestOptions,
    ) -> Self {
        AppState(Arc::new(Inner {
            snapshots,
            producer,
            health,
            ingest,
            produce_failures: AtomicU64::new(0),
            metrics: Metrics::new(),
            filters: None,
            http: HttpOptions::default(),
            tick: Duration::from_millis(20),
            stopping: watch::channel(false).0,
            cluster: None,
        }))
    }

    /// The same state as one process of a cluster (before it is shared).
    pub fn with_cluster(self, role: ClusterRole) -> Self {
        self.change("the cluster role", |inner| inner.cluster = Some(role))
    }

    /// This process's place in a cluster, when it is in one.
    pub fn cluster(&self) -> Option<&ClusterRole> {
        self.0.cluster.as_ref()
    }

    /// True for a process of a cluster other than process 0: it holds no views.
    pub fn is_member(&self) -> bool {
        matches!(self.0.cluster, Some(ClusterRole::Member { .. }))
    }

    /// The same state with filters and live push (before it is shared).
    pub fn with_filters(self, filters: Filters) -> Self {
        self.change("filters", |inner| inner.filters = Some(filters))
    }

    /// The same state with these HTTP options (before it is shared).
    pub fn with_http(self, http: HttpOptions) -> Self {
        self.change("HTTP options", |inner| inner.http = http)
    }

    /// The same state knowing the dataflow's epoch length (before it is shared).
    pub fn with_tick(self, tick: Duration) -> Self {
        self.change("the tick", |inner| inner.tick = tick)
    }

    /// The HTTP options.
    pub fn http(&self) -> &HttpOptions {
        &self.0.http
    }

    /// Length of the dataflow's epochs.
    pub fn tick(&self) -> Duration {
        self.0.tick
    }

    fn change(self, what: &str, f: impl FnOnce(&mut Inner)) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                f(&mut inner);
                AppState(Arc::new(inner))
            }
            Err(shared) => {
                tracing::error!("{what} added to a state already shared: ignored");
                AppState(shared)
            }
        }
    }

    /// The filters and the delivery hub, when the service has them.
    pub fn filters(&self) -> Option<&Filters> {
        self.0.filters.as_ref()
    }

    /// A receiver of every published snapshot.
    pub fn watch_snapshots(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.0.snapshots.clone()
    }

    /// Turns true when the service stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.0.stopping.subscribe()
    }

    /// Ends every open stream with a final message (the service is stopping).
    pub fn stop_streams(&self) {
        self.0.stopping.send_replace(true);
    }

    /// Checks a write request's `Authorization: Bearer TOKEN` when a token is configured:
    /// 401 without one, 403 with a wrong one.
    pub fn authorize(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.0.ingest.api_token else {
            return Ok(());
        };
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this route needs Authorization: Bearer TOKEN",
                serde_json::Value::Null,
            )),
            Some(g) if g.as_bytes() == token.as_bytes() => Ok(()),
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the token is not valid",
                serde_json::Value::Null,
            )),
        }
    }

    /// The newest published snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.snapshots.borrow().clone()
    }

    /// The producer behind ingest.
    pub fn producer(&self) -> Option<&EventProducer> {
        self.0.producer.as_ref()
    }

    /// The source's health.
    pub fn health(&self) -> &HealthProbe {
        &self.0.health
    }

    /// Largest request body, in bytes.
    pub fn body_limit(&self) -> usize {
        self.0.ingest.body_limit
    }

    /// How long ingest waits for the broker.
    pub fn produce_timeout(&self) -> Duration {
        self.0.ingest.produce_timeout
    }

    /// How far ahead of the server's clock an event time may lie.
    pub fn max_future(&self) -> MaxFuture {
        self.0.ingest.max_future
    }

    /// The broker's bounded log, when ingest must keep within it.
    pub fn window(&self) -> Option<&IngestWindow> {
        self.0.ingest.window.as_ref()
    }

    /// Requests the broker did not acknowledge, since start.
    pub fn produce_failures(&self) -> u64 {
        self.0.produce_failures.load(Ordering::Relaxed)
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// Counts a request the broker did not acknowledge.
    pub fn count_produce_failure(&self) {
        self.0.produce_failures.fetch_add(1, Ordering::Relaxed);
    }
}
