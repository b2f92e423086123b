//! The router and the state its handlers share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use axum::routing::{delete, get, post};
use axum::Router;
use emoflow_ingest::kafka::EventProducer;
use emoflow_ingest::MaxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::filters::{self, Filters};
use crate::health::{health, HealthProbe};
use crate::intake::{post_emoji, post_events};
use crate::snapshot::Snapshot;
use crate::views;
use crate::window::IngestWindow;
use crate::{legacy, live_views, push};

/// Default largest request body, in bytes.
pub const DEFAULT_BODY_LIMIT: usize = 16 << 20;

struct Inner {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    producer: Option<EventProducer>,
    health: Arc<HealthProbe>,
    ingest: IngestOptions,
    produce_failures: AtomicU64,
    filters: Option<Filters>,
    /// Set when the service stops: open streams end with a final message.
    stopping: watch::Sender<bool>,
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
            filters: None,
            stopping: watch::channel(false).0,
        }))
    }

    /// The same state with filters and live push (before it is shared).
    pub fn with_filters(self, filters: Filters) -> Self {
        match Arc::try_unwrap(self.0) {
            Ok(mut inner) => {
                inner.filters = Some(filters);
                AppState(Arc::new(inner))
            }
            Err(shared) => {
                tracing::error!("filters added to a state already shared: ignored");
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

    /// Counts a request the broker did not acknowledge.
    pub fn count_produce_failure(&self) {
        self.0.produce_failures.fetch_add(1, Ordering::Relaxed);
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

async fn method_not_allowed() -> impl IntoResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this route does not take that method; see GET / for the routes",
        serde_json::Value::Null,
    )
}

async fn not_found() -> impl IntoResponse {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; see GET / for the routes",
        serde_json::Value::Null,
    )
}

/// Every route of SPEC section 4 built so far.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/stats", get(views::stats))
        .route("/top", get(views::top))
        .route("/counts", get(views::counts))
        .route("/rates", get(views::rates))
        .route("/sessions", get(views::sessions))
        .route("/sessions/{user_id}", get(views::user_sessions))
        .route("/dead-letters", get(views::dead_letters))
        .route("/emoji", post(post_emoji))
        .route("/events", post(post_events))
        .route("/register_event", post(post_events))
        .route("/v1/event", post(post_events))
        .route("/filters", post(filters::create).get(filters::list))
        .route("/filters/{id}", get(filters::get).delete(filters::delete))
        .route("/filters/{id}/matches", get(filters::matches))
        .route("/filters/{id}/stream", get(push::filter_stream))
        .route("/ws", get(push::ws_filter))
        .route("/stream", get(live_views::stream))
        .route("/register", post(legacy::register))
        .route("/deregister", delete(legacy::deregister))
        .route("/clients", get(legacy::clients))
        .route("/clients/{client_id}/stream", get(push::client_stream))
        .route("/v1/ws/events", get(push::ws_events))
        // Ingest reads the body itself, to answer 413 in SPEC's error shape.
        .layer(DefaultBodyLimit::disable())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; open streams then end with a
/// final message.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            state.stop_streams();
        })
        .await
}
