//! `GET /stream`: the views pushed over SSE for dashboards, one message per published
//! snapshot at most every [`MIN_INTERVAL`], each with `id:` its `as_of`. A message holds what
//! a dashboard shows: the lifetime views, events/s and the newest seconds' rates, lag and
//! health, the sessions summary, the newest events and dead letters, and, with `?window=1m`,
//! the counts and ties-aware top of that last stretch of event time.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use emoflow_dataflow::document::{lifetime_top, ranked};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{duration_param, ApiError};
use crate::health::health_document;
use crate::push::{HEARTBEAT, RETRY_MS};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::views;

/// The shortest time between two messages.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// Events per second over the last whole second of ingest (0 before there is one).
fn events_per_second(snap: &Snapshot) -> i64 {
    let h = &snap.history;
    match (
        h.len().checked_sub(2).and_then(|i| h.get(i)),
        h.len().checked_sub(3).and_then(|i| h.get(i)),
    ) {
        (Some(last), Some(before)) => (last.1 - before.1) / (last.0 - before.0).max(1),
        _ => 0,
    }
}

/// Dead letters carried by each message.
pub const DEAD_LETTERS_SHOWN: usize = 5;

/// Seconds of per-second rates carried by each message (a chart appends them).
pub const RATE_SECONDS_SHOWN: i64 = 10;

/// The message for `snap`, with the sliding window of the last `window_ms` when asked.
pub fn update(app: &AppState, snap: &Snapshot, window_ms: Option<i64>) -> Value {
    let l = &snap.state.lifetime;
    let health = health_document(app, snap);
    let window = window_ms.and_then(|w| {
        let g = views::sliding(snap, w).ok()??;
        let counts: Vec<(String, i64)> = g.counts.iter().map(|(e, n)| (e.clone(), *n)).collect();
        Some(json!({
            "last_ms": w, "start_ms": g.start_ms, "end_ms": g.end_ms, "total": g.total,
            "counts": g.counts, "top": ranked(counts),
        }))
    });
    json!({
        "total": l.total,
        "counts": l.counts,
        "event_types": l.event_types,
        "top": lifetime_top(&snap.state),
        "events_per_second": events_per_second(snap),
        "lag": health["lag"],
        "status": health["status"],
        "problems": health["problems"],
        "sessions": snap.sessions_summary(),
        "recent": snap.state.recent,
        "rejected": l.rejected,
        "dead_letters": {
            "total": l.rejected.values().sum::<i64>(),
            "items": views::dead_letter_items(snap, DEAD_LETTERS_SHOWN),
        },
        "rates": views::rate_points(snap, 1, RATE_SECONDS_SHOWN),
        "window": window,
        "subscribers": health["subscribers"],
        "as_of": snap.state.as_of,
    })
}

/// Parameters of `GET /stream`.
#[derive(Debug, Deserialize)]
pub struct StreamParams {
    /// Adds `window`: the counts and top of the last stretch of event time (`10s`, `1m`).
    window: Option<String>,
}

/// The width asked for, checked against what the views hold.
fn window_of(app: &AppState, p: &StreamParams) -> Result<Option<i64>, ApiError> {
    let Some(w) = p.window.as_deref() else {
        return Ok(None);
    };
    let ms = duration_param("window", w)?;
    views::sliding(&app.snapshot(), ms)?;
    Ok(Some(ms))
}

/// `GET /stream`.
#[utoipa::path(
    get,
    path = "/stream",
    tag = "push",
    summary = "The views pushed for dashboards: one message per snapshot, at most every 250 ms",
    params(("window" = Option<String>, Query, description = "Adds `window`: counts and top of that last stretch of event time (`10s`, `1m`, `10m`)")),
    responses((status = 200, description = "`text/event-stream`: `retry:` first, then `id:` the `as_of` and `data:` the message; `: heartbeat` after 15 s without a change", body = crate::api_doc::StreamMessageDoc, content_type = "text/event-stream"), (status = 400, description = "A parameter is wrong (named in `detail`)", body = crate::api_doc::ErrorBody))
)]
pub async fn stream(
    State(app): State<AppState>,
    Query(p): Query<StreamParams>,
) -> Result<Response, ApiError> {
    let window = window_of(&app, &p)?;
    let head = format!("retry: {RETRY_MS}\n\n");
    let rx = app.watch_snapshots();
    let stopping = app.stopping();
    let rest = futures::stream::unfold(Some((app, rx, stopping, true)), move |state| async move {
        let (app, mut rx, mut stopping, first) = state?;
        if !first {
            tokio::time::sleep(MIN_INTERVAL).await;
            let changed = tokio::select! {
                r = tokio::time::timeout(HEARTBEAT, rx.changed()) => r,
                _ = stopping.wait_for(|s| *s) => return None,
            };
            match changed {
                Err(_) => {
                    let beat = Bytes::from_static(b": heartbeat\n\n");
                    return Some((Ok::<_, Infallible>(beat), Some((app, rx, stopping, false))));
                }
                Ok(Err(_)) => return None, // the views stopped
                Ok(Ok(())) => {}
            }
        }
        let snap = rx.borrow_and_update().clone();
        let body = format!(
            "id: {}\ndata: {}\n\n",
            snap.state.as_of,
            update(&app, &snap, window)
        );
        Some((Ok(Bytes::from(body)), Some((app, rx, stopping, false))))
    });
    let stream = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
