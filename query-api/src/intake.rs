//! The write routes: `POST /emoji`, `/events`, `/register_event`, `/v1/event`. A request is
//! validated whole before anything is produced (all or nothing); 202 comes only once the broker
//! acknowledged every event.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{to_bytes, Body};
use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use emoflow_ingest::kafka::{Deliveries, PartitionOf, ProduceError};
use emoflow_ingest::{decode_event, Event, MaxFuture, RejectReason, Rejection};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::content::{empty_body, framing, Accepts, Framing};
use crate::error::ApiError;
use crate::metrics::INGEST_EVENTS;
use crate::state::AppState;
use crate::window::{IngestWindow, Need};

/// One validated event, ready to produce: its key (the user) and its normalised JSON.
type Record = (Vec<u8>, Vec<u8>);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn invalid(index: usize, rejection: &Rejection) -> ApiError {
    ApiError::bad_request(
        format!(
            "event {index} is invalid ({}): {}; nothing was produced",
            rejection.reason.as_str(),
            rejection.detail
        ),
        json!({
            "index": index,
            "reason": rejection.reason.as_str(),
            "message": rejection.detail,
        }),
    )
}

/// What an event must satisfy beyond the rules of docs/events.md, for one request.
#[derive(Debug, Clone, Copy)]
struct Check {
    /// The server's clock: fills a missing `ts`, and bounds how far ahead one may lie.
    now: i64,
    max_future: MaxFuture,
    /// `POST /emoji` needs an emoji.
    need_emoji: bool,
}

impl Check {
    fn new(app: &AppState, need_emoji: bool) -> Self {
        Check {
            now: now_ms(),
            max_future: app.max_future(),
            need_emoji,
        }
    }
}

/// Validates one event and normalises it.
fn record(index: usize, bytes: &[u8], check: Check) -> Result<Record, ApiError> {
    let event: Event<'_> = decode_event(bytes, Some(check.now))
        .and_then(|e| check.max_future.check(e.ts, check.now).map(|()| e))
        .map_err(|r| invalid(index, &r))?;
    if check.need_emoji && event.emoji.is_none() {
        return Err(invalid(
            index,
            &Rejection::new(
                RejectReason::MissingField,
                "`emoji` (or `emoji_type`) is required",
            ),
        ));
    }
    let value = serde_json::to_vec(&event.to_json()).unwrap_or_default();
    Ok((event.user_id.as_bytes().to_vec(), value))
}

/// Splits and validates a body into records, refusing the whole body at the first bad event.
fn records(body: &[u8], framing: Framing, check: Check) -> Result<Vec<Record>, ApiError> {
    let trimmed = body.trim_ascii();
    if trimmed.is_empty() {
        return Err(empty_body());
    }
    let ndjson = framing == Framing::Ndjson
        || (trimmed.first() == Some(&b'{')
            && serde_json::from_slice::<&RawValue>(trimmed).is_err()
            && memchr::memchr(b'\n', trimmed).is_some());
    let out = if ndjson {
        trimmed
            .split(|b| *b == b'\n')
            .filter(|line| !line.trim_ascii().is_empty())
            .enumerate()
            .map(|(i, line)| record(i, line, check))
            .collect::<Result<Vec<_>, _>>()?
    } else if trimmed.first() == Some(&b'[') {
        let items: Vec<&RawValue> = serde_json::from_slice(trimmed).map_err(|e| {
            ApiError::bad_request(
                "the body is not a JSON array of events; nothing was produced",
                json!({ "reason": "invalid_json", "message": e.to_string() }),
            )
        })?;
        items
            .iter()
            .enumerate()
            .map(|(i, raw)| record(i, raw.get().as_bytes(), check))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        vec![record(0, trimmed, check)?]
    };
    if out.is_empty() {
        return Err(empty_body());
    }
    Ok(out)
}

async fn read_body(app: &AppState, body: Body) -> Result<axum::body::Bytes, ApiError> {
    to_bytes(body, app.body_limit()).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {} bytes", app.body_limit()),
            json!({ "limit_bytes": app.body_limit(), "message": e.to_string() }),
        )
    })
}

/// Hands validated records to the producer (choosing their partitions when a window is in
/// force).
fn enqueue(app: &AppState, records: &[Record]) -> Result<Deliveries, ApiError> {
    let Some(producer) = app.producer() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "this server has no producer; nothing was produced",
            Value::Null,
        ));
    };
    let window = app.window();
    let partition_of = window.map(|w| move |key: &[u8]| w.partition_of(key));
    producer
        .enqueue_all(
            records,
            partition_of.as_ref().map(|f| f as &PartitionOf<'_>),
        )
        .map_err(|e| produce_failed(app, &e, records.len()))
}

fn produce_failed(app: &AppState, e: &ProduceError, events: usize) -> ApiError {
    app.count_produce_failure();
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the broker did not acknowledge the events; retry",
        json!({ "message": e.to_string(), "events": events }),
    )
}

/// Runs `work` on the blocking pool when `large`, else right here.
async fn off_runtime<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if !large {
        return work();
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "handling the body failed",
            json!({ "message": e.to_string() }),
        )
    })?
}

/// Bodies larger than this are validated and handed to the producer on the blocking pool: a
/// batch of thousands of events takes a millisecond or more of CPU, which on the runtime's
/// threads would hold up every query behind it.
const BLOCKING_BODY_BYTES: usize = 16 * 1024;

/// Records past which handing them to the producer moves to the blocking pool.
const BLOCKING_RECORDS: usize = 256;

/// How often a request waiting for room in the broker's log looks again.
const ROOM_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Produces `records` and waits for the broker's acknowledgement: 202 with their number.
/// With a bounded log, chunk by chunk, each once the readers have left room for it.
async fn produce(
    app: &AppState,
    route: &str,
    records: Vec<Record>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let answer = produce_all(app, records).await?;
    let n = answer.accepted as u64;
    let route = route.to_owned();
    app.metrics()
        .record(|| metrics::counter!(INGEST_EVENTS, "route" => route).increment(n));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "accepted": answer.accepted })),
    ))
}

/// What ingest answers on success.
struct Accepted {
    /// Events produced and acknowledged.
    accepted: usize,
}

/// Produces every record, waiting for the broker's acknowledgements.
async fn produce_all(app: &AppState, records: Vec<Record>) -> Result<Accepted, ApiError> {
    let n = records.len();
    let records = std::sync::Arc::new(records);
    let Some(window) = app.window() else {
        let (a, r) = (app.clone(), records.clone());
        let deliveries = off_runtime(n > BLOCKING_RECORDS, move || enqueue(&a, &r)).await?;
        deliveries
            .acknowledged()
            .await
            .map_err(|e| produce_failed(app, &e, n))?;
        return Ok(Accepted { accepted: n });
    };
    let deadline = tokio::time::Instant::now() + app.produce_timeout();
    let mut produced = 0;
    for chunk in window.chunks(&records) {
        let need = window.needs(&records[chunk.clone()]);
        loop {
            let snap = app.snapshot();
            let high = app.health().high_watermarks();
            if window.try_reserve(&need, &snap.state.positions, &high) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(no_room(app, produced, n));
            }
            tokio::time::sleep(ROOM_POLL).await;
        }
        let mut reserved = Reserved {
            window,
            need,
            acked: None,
        };
        let (a, r, c) = (app.clone(), records.clone(), chunk.clone());
        let enqueued = off_runtime(c.len() > BLOCKING_RECORDS, move || enqueue(&a, &r[c])).await;
        let acked = enqueued?.acknowledged().await;
        reserved.acked = acked.as_ref().ok().cloned();
        drop(reserved);
        acked.map_err(|e| produce_failed(app, &e, n))?;
        produced += chunk.len();
    }
    Ok(Accepted { accepted: n })
}

/// Room reserved in the broker's log for one chunk, given back when dropped: after the
/// broker's answer, on an error, and when the request is cut off midway (the client went
/// away), so that no reservation is ever leaked.
struct Reserved<'a> {
    window: &'a IngestWindow,
    need: BTreeMap<i32, Need>,
    /// The highest offsets acknowledged per partition, once known.
    acked: Option<BTreeMap<i32, i64>>,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let acked = self.acked.take().unwrap_or_default();
        self.window.release(&self.need, &acked);
    }
}

/// 503 with `Retry-After`: the readers have not left room in the broker's log in time.
fn no_room(app: &AppState, produced: usize, events: usize) -> ApiError {
    app.count_produce_failure();
    let limits = app.window().map(|w| w.limits());
    let error = if produced == 0 {
        "the broker holds as many unread events as it can; nothing was produced, retry later"
            .to_owned()
    } else {
        format!(
            "the broker holds as many unread events as it can: the first {produced} of {events} events were produced and will be counted, the rest were not; send the rest later"
        )
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        error,
        json!({
            "produced": produced,
            "events": events,
            "per_partition_bytes": limits.map(|l| l.bytes),
            "per_partition_messages": limits.map(|l| l.messages),
        }),
    )
    .with_retry_after(1)
}

/// Whether a JSON object has an `emoji` or `emoji_type` field that is not null (what it
/// holds is checked with the rest of the event). Not JSON: true, for the decoder to explain.
fn names_an_emoji(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Fields<'a> {
        #[serde(borrow)]
        emoji: Option<&'a RawValue>,
        #[serde(borrow)]
        emoji_type: Option<&'a RawValue>,
    }
    match serde_json::from_slice::<Fields<'_>>(body) {
        Ok(f) => [f.emoji, f.emoji_type]
            .iter()
            .flatten()
            .any(|v| v.get() != "null"),
        Err(_) => true,
    }
}

/// `POST /emoji`: one `{"user_id", "emoji"}` (or `emoji_type`).
#[utoipa::path(
    post,
    path = "/emoji",
    tag = "ingest",
    summary = "One reaction: `{\"user_id\", \"emoji\"}` (or `emoji_type`); 202 once the broker acknowledged it",
    request_body(content = crate::api_doc::EventInput, content_type = "application/json", description = "One event with an emoji"),
    responses((status = 202, description = "Produced", body = crate::api_doc::AcceptedDoc), (status = 400, description = "The event is invalid (reason and index in `detail`), or the body is empty", body = crate::api_doc::ErrorBody), (status = 401, description = "A token is set and none was given", body = crate::api_doc::ErrorBody), (status = 403, description = "The token is wrong", body = crate::api_doc::ErrorBody), (status = 413, description = "The body is over `--body-limit`", body = crate::api_doc::ErrorBody), (status = 415, description = "The body is not declared `application/json`", body = crate::api_doc::ErrorBody), (status = 503, description = "The broker did not acknowledge it in time (it may still have been produced), or its log is full (with `Retry-After`)", body = crate::api_doc::ErrorBody))
)]
pub async fn post_emoji(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.authorize(&headers)?;
    framing(&headers, Accepts::Json)?;
    let bytes = read_body(&app, body).await?;
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Err(empty_body());
    }
    if trimmed.first() != Some(&b'{') {
        return Err(ApiError::bad_request(
            "POST /emoji takes one JSON object; use POST /events for batches",
            json!({ "index": 0, "reason": "not_an_object" }),
        ));
    }
    if !names_an_emoji(trimmed) {
        return Err(invalid(
            0,
            &Rejection::new(
                RejectReason::MissingField,
                "POST /emoji needs `emoji` (or `emoji_type`): the emoji reacted with",
            ),
        ));
    }
    let rec = record(0, trimmed, Check::new(&app, true))?;
    produce(&app, "/emoji", vec![rec]).await
}

/// `POST /events` (and its aliases): one event, a JSON array, or NDJSON.
#[utoipa::path(
    post,
    path = "/events",
    tag = "ingest",
    summary = "One event, a JSON array of events, or NDJSON; all or nothing: any invalid event gets 400 naming its index, and none is produced",
    request_body(content((Vec<crate::api_doc::EventInput> = "application/json"), (String = "application/x-ndjson")), description = "One event, an array of events, or one event a line"),
    responses((status = 202, description = "All produced", body = crate::api_doc::AcceptedDoc), (status = 400, description = "An event is invalid (its index and reason in `detail`), or the body is empty; nothing was produced", body = crate::api_doc::ErrorBody), (status = 401, description = "A token is set and none was given", body = crate::api_doc::ErrorBody), (status = 403, description = "The token is wrong", body = crate::api_doc::ErrorBody), (status = 413, description = "The body is over `--body-limit`", body = crate::api_doc::ErrorBody), (status = 415, description = "Neither `application/json` nor NDJSON (`application/x-ndjson`)", body = crate::api_doc::ErrorBody), (status = 503, description = "The broker did not acknowledge them in time (some may still have been produced), or its log is full (with `Retry-After`; then `detail.produced` says how many of the first events were)", body = crate::api_doc::ErrorBody))
)]
pub async fn post_events(
    State(app): State<AppState>,
    route: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    app.authorize(&headers)?;
    let framing = framing(&headers, Accepts::JsonOrNdjson)?;
    let bytes = read_body(&app, body).await?;
    let large = bytes.len() > BLOCKING_BODY_BYTES;
    let check = Check::new(&app, false);
    let recs = off_runtime(large, move || records(&bytes, framing, check)).await?;
    produce(&app, route.as_str(), recs).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(now: i64, need_emoji: bool) -> Check {
        Check {
            now,
            max_future: MaxFuture::default(),
            need_emoji,
        }
    }

    #[test]
    fn arrays_ndjson_and_single_objects_split_and_name_the_bad_index() {
        let ok = br#"[{"user_id":"a","emoji":"x"},{"user_id":"b","event_type":"click"}]"#;
        assert_eq!(
            records(ok, Framing::Json, check(0, false)).unwrap().len(),
            2
        );
        let nd = b"{\"user_id\":\"a\",\"emoji\":\"x\"}\n\n{\"user_id\":\"b\",\"emoji\":\"y\"}\n";
        assert_eq!(
            records(nd, Framing::Ndjson, check(0, false)).unwrap().len(),
            2
        );
        // NDJSON sent as plain JSON is still recognised.
        assert_eq!(
            records(nd, Framing::Json, check(0, false)).unwrap().len(),
            2
        );
        let bad = br#"[{"user_id":"a","emoji":"x"},{"emoji":"y"}]"#;
        let err = records(bad, Framing::Json, check(0, false)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.detail["index"], 1);
        assert_eq!(err.detail["reason"], "missing_field");
        assert!(records(b"[]", Framing::Json, check(0, false)).is_err());
    }

    #[test]
    fn a_missing_ts_is_filled_and_the_output_is_normalised() {
        let (key, value) =
            record(0, br#"{"user_id":"u","emoji_type":"x"}"#, check(77, true)).unwrap();
        assert_eq!(key, b"u");
        let v: Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            v,
            json!({"user_id":"u","emoji":"x","event_type":"emoji","ts":77})
        );
        assert!(record(0, br#"{"user_id":"u","event":"click"}"#, check(1, true)).is_err());
    }

    #[test]
    fn an_event_far_in_the_future_is_refused_with_its_reason() {
        let day = 86_400_000;
        let two_days_ahead = format!(r#"{{"user_id":"u","emoji":"x","ts":{}}}"#, 2 * day);
        let err = record(0, two_days_ahead.as_bytes(), check(0, true)).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.detail["reason"], "future_timestamp");
        let soon = r#"{"user_id":"u","emoji":"x","ts":3600000}"#;
        assert!(record(0, soon.as_bytes(), check(0, true)).is_ok());
    }

    #[test]
    fn an_emoji_route_body_without_an_emoji_is_told_so() {
        assert!(names_an_emoji(br#"{"user_id":"a","emoji":"x"}"#));
        assert!(names_an_emoji(br#"{"user_id":"a","emoji_type":"x"}"#));
        assert!(!names_an_emoji(br#"{"user_id":"a"}"#));
        assert!(!names_an_emoji(br#"{"user_id":"a","emoji":null}"#));
        // Not JSON: left to the decoder, which explains what is wrong.
        assert!(names_an_emoji(b"{nope"));
    }
}

/// `POST /register_event`: `POST /events` for clients of older systems.
#[utoipa::path(
    post,
    path = "/register_event",
    tag = "ingest",
    summary = "The same as `POST /events`, for clients of older systems",
    request_body(content((Vec<crate::api_doc::EventInput> = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 202, description = "All produced", body = crate::api_doc::AcceptedDoc), (status = "4XX", description = "As `POST /events`", body = crate::api_doc::ErrorBody), (status = 503, description = "As `POST /events`", body = crate::api_doc::ErrorBody))
)]
pub async fn post_register_event(
    state: State<AppState>,
    route: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    post_events(state, route, headers, body).await
}

/// `POST /v1/event`: `POST /events` for clients of older systems.
#[utoipa::path(
    post,
    path = "/v1/event",
    tag = "ingest",
    summary = "The same as `POST /events`, for clients of older systems",
    request_body(content((Vec<crate::api_doc::EventInput> = "application/json"), (String = "application/x-ndjson"))),
    responses((status = 202, description = "All produced", body = crate::api_doc::AcceptedDoc), (status = "4XX", description = "As `POST /events`", body = crate::api_doc::ErrorBody), (status = 503, description = "As `POST /events`", body = crate::api_doc::ErrorBody))
)]
pub async fn post_v1_event(
    state: State<AppState>,
    route: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    post_events(state, route, headers, body).await
}
