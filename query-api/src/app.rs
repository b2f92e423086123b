//! The router: every route with its description and the layers around them, and the server.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::to_bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::net::TcpListener;
use tower_http::compression::CompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api_doc::{ApiDoc, Description};
use crate::cluster::ClusterRole;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{api_doc, dashboard, filters, health, intake, metrics, views};
use crate::{legacy, live_views, push};

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
    let http = state.http().clone();
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
