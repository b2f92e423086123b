//! The router and the state its handlers share.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use emoflow_ingest::kafka::EventProducer;
use emoflow_ingest::MaxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_doc::{ApiDoc, Description};
use crate::cluster::ClusterRole;
use crate::error::ApiError;
use crate::filters::{self, Filters};
use crate::health::{self, HealthProbe};
use crate::metrics::{self, Metrics};
use crate::snapshot::Snapshot;
use crate::views;
use crate::window::IngestWindow;
use crate::{api_doc, dashboard, intake};
use crate::{legacy, live_views, push};

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
    fn cors_layer(&self) -> Option<CorsLayer> {
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

/// Every request's way in and out: counted and timed by route and status, and an error answer
/// that is not JSON (axum's own rejections, the timeout's 408) turned into the
/// `{"error", "detail"}` shape every other error has. One middleware for both: each layer of
/// boxed futures costs a measurable share of a cheap request.
async fn edge(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let timer = metrics::RequestTimer::start(&request);
    let response = json_errors(next.run(request).await).await;
    timer.finish(&app, response.status());
    response
}

async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let text = match to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let error = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned()
    } else {
        text
    };
    ApiError::new(status, error, serde_json::Value::Null).into_response()
}

/// Routes answered at once, which the request timeout applies to.
fn reads() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard::index))
        .routes(routes!(dashboard::asset))
        .routes(routes!(api_doc::docs))
        .routes(routes!(api_doc::openapi_json))
        .routes(routes!(health::health))
        .routes(routes!(metrics::metrics))
        .routes(routes!(views::stats))
        .routes(routes!(views::top))
        .routes(routes!(views::counts))
        .routes(routes!(views::rates))
        .routes(routes!(views::sessions))
        .routes(routes!(views::user_sessions))
        .routes(routes!(views::dead_letters))
        .routes(routes!(filters::list))
        .routes(routes!(filters::get))
        .routes(routes!(filters::matches))
        .routes(routes!(legacy::clients))
}

/// Routes that change something and bound their own waits (`--produce-timeout` for the
/// broker, 10 s for a filter's back-fill): a request timeout there could answer 408 for work
/// already done, which a retry would then do twice.
fn writes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(intake::post_emoji))
        .routes(routes!(intake::post_events))
        .routes(routes!(intake::post_register_event))
        .routes(routes!(intake::post_v1_event))
        .routes(routes!(filters::create))
        .routes(routes!(filters::delete))
        .routes(routes!(legacy::register))
        .routes(routes!(legacy::deregister))
}

/// Routes that stay open (SSE and WebSocket).
fn streams() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push::filter_stream))
        .routes(routes!(push::ws_filter))
        .routes(routes!(live_views::stream))
        .routes(routes!(push::client_stream))
        .routes(routes!(push::ws_events))
}

/// Every route with its description, before the outer layers, the read routes with the request
/// timeout: the router and the OpenAPI document are built from the same `#[utoipa::path]`
/// attributes, so no route answers undescribed.
fn described(request_timeout: Duration) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(reads().route_layer(timeout))
        .merge(writes())
        .merge(streams())
        .split_for_parts()
}

/// Every route of the HTTP API, with its layers: tracing, CORS, compression, metrics, JSON
/// errors, and the timeout for the read routes. A process of a cluster other than process 0
/// answers `/health` and `/metrics` only.
pub fn router(state: AppState) -> Router {
    if let Some(ClusterRole::Member {
        process,
        processes,
        leader_http,
    }) = state.cluster().cloned()
    {
        return member_router(state, process, processes, leader_http);
    }
    let http = state.0.http.clone();
    let (routes, api) = described(http.request_timeout);
    let description = Description(Arc::new(
        serde_json::to_value(&api).unwrap_or(serde_json::Value::Null),
    ));
    let router = routes
        // Ingest reads the body itself, to answer 413 in the API's error shape.
        .layer(DefaultBodyLimit::disable())
        .layer(Extension(description))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .layer(CompressionLayer::new());
    let router = match http.cors_layer() {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router.layer(TraceLayer::new_for_http()).with_state(state)
}

/// The routes of a process other than process 0: its own health and metrics, and a pointer
/// to process 0 for everything else.
fn member_router(
    state: AppState,
    process: usize,
    processes: usize,
    leader_http: Option<String>,
) -> Router {
    use axum::routing::get;
    let elsewhere = move || {
        let leader = leader_http.clone();
        async move { crate::cluster::not_process_zero(process, processes, leader.as_deref()) }
    };
    Router::new()
        .route("/health", get(crate::health::health))
        .route("/metrics", get(metrics::metrics))
        .fallback(elsewhere)
        .layer(axum::middleware::from_fn_with_state(state.clone(), edge))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` resolves; open streams then end with a
/// final message.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::spawn(metrics::watch_view_latency(state.clone()));
    tokio::spawn(metrics::upkeep(state.clone()));
    if let Some(ClusterRole::Leader { peers }) = state.cluster() {
        tokio::spawn(peers.clone().poll());
    }
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            state.stop_streams();
        })
        .await
}
