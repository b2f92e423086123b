//! `GET /health`: where the views stand in the log against the broker's high watermarks, from
//! what the service's [`HealthProbe`] already knows (the route never waits on the broker).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use emoflow_dataflow::snapshot::SKIPPED_RANGES_KEPT;
use serde_json::{json, Value};

use crate::cluster::ClusterRole;
use crate::snapshot::Snapshot;
pub use crate::source_health::{
    assess_source, now_ms, HealthProbe, PartitionHealth, SourceAssessment, STALE_AFTER,
    WATERMARK_INTERVAL,
};
use crate::state::AppState;

/// `GET /health`.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    summary = "The source, lag, archive and subscribers; `degraded` with the problems named",
    responses((status = 200, description = "The service's health", body = crate::api_doc::HealthDoc))
)]
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    Json(health_document(&app, &app.snapshot()))
}

/// The document of `GET /health` for `snap` (also part of every `GET /stream` message, and
/// where `/metrics` reads lag from, so all three agree).
pub fn health_document(app: &AppState, snap: &Snapshot) -> Value {
    let probe = app.health();
    let positions = &snap.state.positions;
    let readers = probe.readers().map(|r| r.problems()).unwrap_or_default();
    let member = app.is_member();
    // A process of a cluster other than process 0 reports on the partitions it reads.
    let read = probe.readers().map(|r| {
        if member {
            r.local_partitions()
        } else {
            r.partitions()
        }
    });
    let mut problems = Vec::new();
    let mut marks = match probe.last_reading() {
        None => {
            problems.push("no watermark reading yet".to_owned());
            BTreeMap::new()
        }
        Some((at, marks)) => {
            if at.elapsed() > STALE_AFTER {
                problems.push("the broker has not answered for a while".to_owned());
            }
            marks.unwrap_or_else(|e| {
                problems.push(format!("cannot read the broker's watermarks: {e}"));
                BTreeMap::new()
            })
        }
    };
    if let (true, Some(read)) = (member, read) {
        marks.retain(|p, _| read.contains(p));
    }
    let source = assess_source(positions, &marks, read, &readers);
    problems.extend(source.problems.iter().cloned());
    let as_of = snap.state.as_of;
    if now_ms().saturating_sub(as_of) > STALE_AFTER.as_millis() as u64 {
        problems.push("the views have not advanced for a while".to_owned());
    }
    let skipped = &snap.state.skipped;
    if skipped.total > 0 {
        let ranges: Vec<String> = skipped
            .ranges
            .iter()
            .map(|(p, from, to)| format!("partition {p} offsets {from}..{to}"))
            .collect();
        problems.push(format!(
            "{} offsets were skipped: the broker dropped them before they were read ({}{})",
            skipped.total,
            if skipped.ranges.len() < SKIPPED_RANGES_KEPT {
                ""
            } else {
                "newest: "
            },
            ranges.join(", ")
        ));
    }
    let archive = probe.archive_report();
    if let Some(a) = &archive {
        if let Some(e) = &a.error {
            problems.push(format!(
                "the archive cannot be written ({e}); reading is paused until it can"
            ));
        }
    }
    let cluster = match app.cluster() {
        None => Value::Null,
        Some(ClusterRole::Leader { peers }) => {
            let (report, trouble) = peers.report();
            problems.extend(trouble);
            report
        }
        Some(ClusterRole::Member {
            process, processes, ..
        }) => json!({
            "process": process,
            "processes": processes,
            "partitions_read": read,
        }),
    };
    let status = if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let high: BTreeMap<i32, i64> = source
        .partitions
        .iter()
        .map(|p| (p.partition, p.high_watermark))
        .collect();
    json!({
        "status": status,
        "source": probe.source(),
        "lag": source.lag(),
        "as_of": as_of,
        "positions": positions,
        "high_watermarks": high,
        "partitions": source.partitions,
        "archive": archive,
        "skipped_offsets": {
            "total": skipped.total,
            "ranges": skipped.ranges.iter().map(|(p, from, to)| json!({"partition": p, "from": from, "to": to})).collect::<Vec<_>>(),
        },
        "subscribers": app.filters().map(|f| f.hub().stats()),
        "problems": problems,
        "notes": source.notes,
        "cluster": cluster,
    })
}
