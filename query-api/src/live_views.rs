//! `GET /stream`: the views pushed over SSE for dashboards, one message per published
//! snapshot at most every [`MIN_INTERVAL`], each `{"total","counts","event_types","top",
//! "events_per_second","lag","sessions","as_of"}` with `id:` its `as_of`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use emoflow_dataflow::document::lifetime_top;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::push::{HEARTBEAT, RETRY_MS};
use crate::snapshot::Snapshot;

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

/// The message for `snap`.
pub fn update(app: &AppState, snap: &Snapshot) -> Value {
    let l = &snap.state.lifetime;
    let marks = app.health().high_watermarks();
    let lag: i64 = marks
        .iter()
        .map(|(p, hw)| (hw - snap.state.positions.get(p).copied().unwrap_or(0)).max(0))
        .sum();
    let s = snap.sessions_summary();
    json!({
        "total": l.total,
        "counts": l.counts,
        "event_types": l.event_types,
        "top": lifetime_top(&snap.state),
        "events_per_second": events_per_second(snap),
        "lag": lag,
        "sessions": { "users": s.users, "sessions": s.sessions, "active": s.active },
        "as_of": snap.state.as_of,
    })
}

/// `GET /stream`.
pub async fn stream(State(app): State<AppState>) -> Response {
    let head = format!("retry: {RETRY_MS}\n\n");
    let rx = app.watch_snapshots();
    let stopping = app.stopping();
    let rest = futures::stream::unfold(Some((app, rx, stopping, true)), |state| async move {
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
            update(&app, &snap)
        );
        Some((Ok(Bytes::from(body)), Some((app, rx, stopping, false))))
    });
    let stream = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
