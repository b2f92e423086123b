//! `GET /metrics`: the service's counters, gauges and histograms in Prometheus text format.
//!
//! Each service has its own recorder ([`crate::metrics_recorder`]). Numbers the views already hold (accepted,
//! rejected, positions, lag, archive, subscribers) are read from the newest snapshot and the
//! probes at scrape time, so a scrape agrees with `GET /stats` at the same `as_of`; what only
//! happens in a request (HTTP traffic, events produced) is counted as it happens.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram, Label};

use crate::health::now_ms;
pub use crate::metrics_recorder::{
    Metrics, HTTP_DURATION, HTTP_REQUESTS, INGEST_EVENTS, VIEW_LATENCY,
};
use crate::state::AppState;

fn non_negative(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Sets every metric the snapshot and the probes hold.
fn read_state(app: &AppState) {
    let snap = app.snapshot();
    let state = &snap.state;
    // A process of a cluster other than process 0 holds no views: only what it reads itself.
    if !app.is_member() {
        counter!("emoflow_events_accepted_total").absolute(non_negative(state.lifetime.total));
        for (reason, n) in &state.lifetime.rejected {
            counter!("emoflow_events_rejected_total", "reason" => reason.to_string())
                .absolute(non_negative(*n));
        }
    }
    for (p, position) in &state.positions {
        counter!("emoflow_events_consumed_total", "partition" => p.to_string())
            .absolute(non_negative(*position));
    }
    // Lag as `/health` reckons it (a partition not read yet lags by what the broker holds).
    let health = crate::health::health_document(app, &snap);
    for p in health["partitions"].as_array().into_iter().flatten() {
        if let (Some(partition), Some(lag)) = (p["partition"].as_i64(), p["lag"].as_i64()) {
            gauge!("emoflow_consumer_lag_messages", "partition" => partition.to_string())
                .set(lag as f64);
        }
    }
    if state.as_of > 0 {
        let age = now_ms().saturating_sub(state.as_of) as f64 / 1000.0;
        gauge!("emoflow_snapshot_age_seconds").set(age);
    }
    counter!("emoflow_http_ingest_failures_total").absolute(app.produce_failures());
    if let Some(a) = app.health().archive_report() {
        counter!("emoflow_archive_rows_total").absolute(a.rows_written);
        counter!("emoflow_archive_bytes_total").absolute(a.bytes_written);
        counter!("emoflow_archive_files_total").absolute(a.files_written);
    }
    if let Some(filters) = app.filters() {
        let hub = filters.hub().stats();
        gauge!("emoflow_subscribers_connected").set(hub.subscribers as f64);
        counter!("emoflow_events_pushed_total").absolute(hub.delivered);
        counter!("emoflow_slow_clients_dropped_total").absolute(hub.cut_off);
        gauge!("emoflow_filters").set(filters.count() as f64);
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    summary = "Counters, gauges and histograms in Prometheus text format",
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(app): State<AppState>) -> Response {
    let body = app.metrics().render(|| read_state(&app));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A request being timed, with the labels it will be counted under.
pub struct RequestTimer {
    method: Label,
    route: Label,
    started: Instant,
}

/// The label value of a method, without allocating for the usual ones.
fn method_label(method: &Method) -> Label {
    let name = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => return Label::new("method", method.as_str().to_owned()),
    };
    Label::from_static_parts("method", name)
}

/// The label value of a status, without allocating for the ones this API answers.
fn status_label(status: StatusCode) -> Label {
    const KNOWN: [(u16, &str); 17] = [
        (101, "101"),
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (408, "408"),
        (409, "409"),
        (413, "413"),
        (415, "415"),
        (500, "500"),
        (503, "503"),
    ];
    match KNOWN.iter().find(|(code, _)| *code == status.as_u16()) {
        Some((_, text)) => Label::from_static_parts("status", text),
        None => Label::new("status", status.as_u16().to_string()),
    }
}

impl RequestTimer {
    /// Starts timing `request`, labelled by its method and matched route.
    pub fn start(request: &Request) -> Self {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(Label::from_static_parts("route", "unmatched"), |m| {
                Label::new("route", m.as_str().to_owned())
            });
        RequestTimer {
            method: method_label(request.method()),
            route,
            started: Instant::now(),
        }
    }

    /// Counts the request and records its duration, by method, route and `status`.
    pub fn finish(self, app: &AppState, status: StatusCode) {
        let seconds = self.started.elapsed().as_secs_f64();
        let labels = [self.method, self.route, status_label(status)];
        app.metrics().record(|| {
            counter!(HTTP_REQUESTS, labels.iter()).increment(1);
            histogram!(HTTP_DURATION, labels.iter()).record(seconds);
        });
    }
}

/// How often histograms are compacted between scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Compacts the histograms every few seconds, so that their memory stays bounded when nobody
/// scrapes `/metrics` (the exporter keeps every sample until then otherwise).
pub async fn upkeep(app: AppState) {
    let mut stopping = app.stopping();
    loop {
        tokio::select! {
            () = tokio::time::sleep(UPKEEP_EVERY) => app.metrics().run_upkeep(),
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

/// Records each published snapshot's update latency until the views stop.
pub async fn watch_view_latency(app: AppState) {
    let mut rx = app.watch_snapshots();
    while rx.changed().await.is_ok() {
        let as_of = rx.borrow_and_update().state.as_of;
        if as_of == 0 {
            continue;
        }
        // Reads are stamped with the end of their epoch, so the newest data in the snapshot
        // was read at most one tick before `as_of`.
        let read_from = as_of.saturating_sub(app.tick().as_millis() as u64);
        let seconds = now_ms().saturating_sub(read_from) as f64 / 1000.0;
        app.metrics()
            .record(|| histogram!(VIEW_LATENCY).record(seconds));
    }
}
