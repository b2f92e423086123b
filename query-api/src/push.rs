//! Live push of matching events: `GET /filters/{id}/stream` (SSE), `GET /ws?filter={id}`
//! (WebSocket), `GET /clients/{client_id}/stream` and `GET /v1/ws/events` (every event), all
//! over one [`Subscription`] from the hub.
//!
//! Every event carries its resume point (a [`crate::hub::Cursor`]): the SSE `id:` line, the
//! WebSocket message's `"id"`. A client that reconnects with it (`Last-Event-ID`, or
//! `?resume=` / `?last_event_id=`) misses nothing and receives nothing twice. A final message
//! (`event: closed`, `{"type":"closed"}`) says why a stream ended and where to resume.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::filters::filters_of;
use crate::hub::{Cursor, Out, SubscribeError, Subscription};
use crate::state::AppState;

/// How often an idle stream sends a heartbeat (an SSE comment, a WebSocket ping).
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// What an SSE client waits before reconnecting (the `retry:` field), ms.
pub const RETRY_MS: u64 = 2000;

/// Most events written in one go.
const PAGE: usize = 256;

/// The client's IP address (unspecified when the server does not know it).
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientAddr(addr))
    }
}

/// Resume parameters: `?resume=` or `?last_event_id=` (the SSE header wins).
#[derive(Debug, Default, Deserialize)]
pub struct ResumeParams {
    /// A resume point, `0:15,1:7`.
    pub resume: Option<String>,
    /// The same, by the name SSE gives it.
    pub last_event_id: Option<String>,
    /// The filter, for `GET /ws`.
    pub filter: Option<String>,
}

fn resume_point(headers: &HeaderMap, params: &ResumeParams) -> Result<Option<Cursor>, ApiError> {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(text) = header
        .or_else(|| params.resume.clone())
        .or_else(|| params.last_event_id.clone())
    else {
        return Ok(None);
    };
    Cursor::parse(&text).map(Some).map_err(|e| {
        ApiError::bad_request(
            format!("the resume point is not one this service gave: {e}"),
            json!({ "value": text }),
        )
    })
}

fn subscribe_error(e: SubscribeError) -> ApiError {
    match e {
        SubscribeError::NoFilter(id) => ApiError::not_found(format!("no filter with id {id:?}")),
        SubscribeError::Busy(why) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why, Value::Null).with_retry_after(5)
        }
    }
}

/// Subscribes to `filter` (every event when `None`) from the resume point the request gives,
/// or live from now: from what a client reads now, the newest published views (see
/// [`crate::hub::Hub::live_cursor`]).
fn subscribe(
    app: &AppState,
    filter: Option<&str>,
    addr: IpAddr,
    headers: &HeaderMap,
    params: &ResumeParams,
) -> Result<Subscription, ApiError> {
    let hub = filters_of(app)?.hub();
    let from = match resume_point(headers, params)? {
        Some(cursor) => cursor,
        None => hub.live_cursor(&app.snapshot().state.positions),
    };
    hub.subscribe(filter, Some(from), addr)
        .map_err(subscribe_error)
}

/// Renders what a subscription gives as SSE.
fn sse_chunk(outs: Vec<Out>, buf: &mut String) -> bool {
    use std::fmt::Write as _;
    let mut ended = false;
    for out in outs {
        match out {
            Out::Event(e, id) => {
                let _ = write!(buf, "id: {id}\ndata: {}\n\n", e.json);
            }
            Out::Reset {
                partition,
                requested,
                restart,
                cursor,
            } => {
                let data = json!({
                    "partition": partition, "requested": requested, "restart": restart,
                    "reason": "the log no longer holds these offsets: delivery goes on from restart",
                    "resume": cursor,
                });
                let _ = write!(buf, "event: reset\nid: {cursor}\ndata: {data}\n\n");
            }
            Out::Closed { reason, cursor } => {
                let data = json!({ "reason": reason, "resume": cursor });
                let _ = write!(buf, "event: closed\ndata: {data}\n\n");
                ended = true;
            }
            Out::Heartbeat => buf.push_str(": heartbeat\n\n"),
        }
    }
    ended
}

/// An SSE response streaming `sub`, ended early when the service stops.
pub fn sse_response(app: &AppState, sub: Subscription, what: &str) -> Response {
    let head = format!(
        "retry: {RETRY_MS}\n: emoflow: {what}, from {}\n\n",
        sub.cursor()
    );
    let stopping = app.stopping();
    let rest = futures::stream::unfold(Some((sub, stopping)), |state| async move {
        let (mut sub, mut stopping) = state?;
        let mut buf = String::new();
        let ended = tokio::select! {
            outs = sub.next(HEARTBEAT, PAGE) => match outs {
                Some(outs) => sse_chunk(outs, &mut buf),
                None => return None,
            },
            _ = stopping.wait_for(|s| *s) => sse_chunk(
                vec![Out::Closed { reason: "the service is stopping".into(), cursor: sub.cursor() }],
                &mut buf,
            ),
        };
        let next = (!ended).then_some((sub, stopping));
        Some((Ok::<_, Infallible>(Bytes::from(buf)), next))
    });
    let stream = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /filters/{id}/stream`: SSE of the filter's matches, live (or from `Last-Event-ID`).
#[utoipa::path(
    get,
    path = "/filters/{id}/stream",
    tag = "push",
    summary = "A filter's matching events, live over SSE; reconnecting with `Last-Event-ID` resumes with nothing missed and nothing twice",
    params(("id" = String, Path, description = "The filter"), ("resume" = Option<String>, Query, description = "A resume point `0:15,1:7` (the `Last-Event-ID` header wins)"), ("last_event_id" = Option<String>, Query, description = "The same as `resume`")),
    responses((status = 200, description = "`text/event-stream`: `retry:` first; then one message per matching event (`id:` its resume point, `data:` the event); `event: reset` when the log no longer holds the resume point; `event: closed` with the reason and `resume` when the stream ends; `: heartbeat` after 15 s of silence", body = crate::schemas::ShownEvent, content_type = "text/event-stream"), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody), (status = 404, description = "No such filter", body = crate::api_doc::ErrorBody), (status = 503, description = "Too many subscribers (with `Retry-After`)", body = crate::api_doc::ErrorBody))
)]
pub async fn filter_stream(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ResumeParams>,
) -> Result<Response, ApiError> {
    let sub = subscribe(&app, Some(&id), addr, &headers, &params)?;
    Ok(sse_response(&app, sub, &format!("matches of filter {id}")))
}

/// `GET /clients/{client_id}/stream`: SSE of a registered client's broadcast.
#[utoipa::path(
    get,
    path = "/clients/{client_id}/stream",
    tag = "older API",
    summary = "A registered client's matching events, live over SSE (as `GET /filters/{id}/stream`)",
    params(("client_id" = String, Path, description = "The client"), ("resume" = Option<String>, Query, description = "A resume point `0:15,1:7` (the `Last-Event-ID` header wins)"), ("last_event_id" = Option<String>, Query, description = "The same as `resume`")),
    responses((status = 200, description = "`text/event-stream`: `retry:` first; then one message per matching event (`id:` its resume point, `data:` the event); `event: reset` when the log no longer holds the resume point; `event: closed` with the reason and `resume` when the stream ends; `: heartbeat` after 15 s of silence", body = crate::schemas::ShownEvent, content_type = "text/event-stream"), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody), (status = 404, description = "No such client", body = crate::api_doc::ErrorBody), (status = 503, description = "Too many subscribers (with `Retry-After`)", body = crate::api_doc::ErrorBody))
)]
pub async fn client_stream(
    State(app): State<AppState>,
    Path(client): Path<String>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ResumeParams>,
) -> Result<Response, ApiError> {
    let filter = filters_of(&app)?
        .of_client(&client)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no registered client {client:?}")))?;
    let sub = subscribe(&app, Some(&filter.id), addr, &headers, &params)?;
    Ok(sse_response(
        &app,
        sub,
        &format!("broadcast of client {client}"),
    ))
}

/// `GET /ws?filter={id}`: the filter's matches over a WebSocket, one JSON text message per
/// event (its fields plus `"id"`, the resume point for `?resume=`).
#[utoipa::path(
    get,
    path = "/ws",
    tag = "push",
    summary = "A filter's matching events over WebSocket",
    params(("filter" = String, Query, description = "The filter"), ("resume" = Option<String>, Query, description = "A resume point `0:15,1:7` (the `Last-Event-ID` header wins)"), ("last_event_id" = Option<String>, Query, description = "The same as `resume`")),
    responses((status = 101, description = "WebSocket: one JSON text message per event, its fields plus `id` (the resume point, for `?resume=`); a gap is `{\"type\": \"reset\", \"partition\", \"requested\", \"restart\", \"reason\", \"id\"}`; `{\"type\": \"closed\", \"reason\", \"resume\"}` comes last; heartbeats are pings"), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody), (status = 404, description = "No such filter", body = crate::api_doc::ErrorBody), (status = 503, description = "Too many subscribers (with `Retry-After`)", body = crate::api_doc::ErrorBody))
)]
pub async fn ws_filter(
    State(app): State<AppState>,
    ws: WebSocketUpgrade,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ResumeParams>,
) -> Result<Response, ApiError> {
    let Some(filter) = params.filter.clone() else {
        return Err(ApiError::bad_request(
            "filter is required: GET /ws?filter={id} (GET /v1/ws/events has every event)",
            json!({ "parameter": "filter" }),
        ));
    };
    let sub = subscribe(&app, Some(&filter), addr, &headers, &params)?;
    Ok(upgrade(&app, ws, sub))
}

/// `GET /v1/ws/events`: every accepted event over a WebSocket, for clients of older systems.
#[utoipa::path(
    get,
    path = "/v1/ws/events",
    tag = "older API",
    summary = "Every accepted event over WebSocket",
    params(("resume" = Option<String>, Query, description = "A resume point `0:15,1:7` (the `Last-Event-ID` header wins)"), ("last_event_id" = Option<String>, Query, description = "The same as `resume`")),
    responses((status = 101, description = "WebSocket: one JSON text message per event, its fields plus `id` (the resume point, for `?resume=`); a gap is `{\"type\": \"reset\", \"partition\", \"requested\", \"restart\", \"reason\", \"id\"}`; `{\"type\": \"closed\", \"reason\", \"resume\"}` comes last; heartbeats are pings"), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody), (status = 503, description = "Too many subscribers (with `Retry-After`)", body = crate::api_doc::ErrorBody))
)]
pub async fn ws_events(
    State(app): State<AppState>,
    ws: WebSocketUpgrade,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    Query(params): Query<ResumeParams>,
) -> Result<Response, ApiError> {
    let sub = subscribe(&app, None, addr, &headers, &params)?;
    Ok(upgrade(&app, ws, sub))
}

/// Answers the upgrade and streams `sub` over the socket.
fn upgrade(app: &AppState, ws: WebSocketUpgrade, sub: Subscription) -> Response {
    let stopping = app.stopping();
    ws.on_upgrade(move |socket| pump(socket, sub, stopping))
}

/// A WebSocket message for `out`, and whether it is the last.
fn ws_message(out: Out) -> (Message, bool) {
    let text = match out {
        Out::Event(e, id) => {
            // `{"id":"0:15",` + the event's fields.
            let fields = e.json.strip_prefix('{').unwrap_or("}");
            let sep = if fields == "}" { "" } else { "," };
            format!("{{\"id\":\"{id}\"{sep}{fields}")
        }
        Out::Reset {
            partition,
            requested,
            restart,
            cursor,
        } => json!({
            "type": "reset", "partition": partition, "requested": requested, "restart": restart,
            "reason": "the log no longer holds these offsets: delivery goes on from restart",
            "id": cursor,
        })
        .to_string(),
        Out::Closed { reason, cursor } => {
            let text = json!({ "type": "closed", "reason": reason, "resume": cursor });
            return (Message::Text(text.to_string().into()), true);
        }
        Out::Heartbeat => return (Message::Ping(Bytes::new()), false),
    };
    (Message::Text(text.into()), false)
}

/// Writes the subscription to the socket until either ends.
async fn pump(
    mut socket: WebSocket,
    mut sub: Subscription,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let outs = tokio::select! {
            outs = sub.next(HEARTBEAT, PAGE) => match outs {
                Some(outs) => outs,
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
            _ = stopping.wait_for(|s| *s) => vec![Out::Closed {
                reason: "the service is stopping".into(),
                cursor: sub.cursor(),
            }],
        };
        let mut ended = false;
        for out in outs {
            let (message, last) = ws_message(out);
            ended |= last;
            if socket.feed(message).await.is_err() {
                return;
            }
        }
        if socket.flush().await.is_err() {
            return;
        }
        if ended {
            break;
        }
    }
    let _ = socket.send(Message::Close(None)).await;
}
