//! `GET /health`: where the views stand in the log against the broker's high watermarks.
//! A background thread reads the watermarks every half second; the route never waits on the
//! broker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::Json;
use emoflow_dataflow::archive::ArchiveMonitor;
use emoflow_dataflow::snapshot::SKIPPED_RANGES_KEPT;
use emoflow_ingest::kafka::Watermarks;
use serde_json::{json, Value};

use crate::app::AppState;

/// How often the watermarks are read.
pub const WATERMARK_INTERVAL: Duration = Duration::from_millis(500);

/// A reading older than this, or views older than this, make the service `degraded`.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

struct Reading {
    at: Instant,
    high: Result<BTreeMap<i32, i64>, String>,
}

/// What `/health` knows about the source.
pub struct HealthProbe {
    source: String,
    reading: Mutex<Option<Reading>>,
    archive: Option<ArchiveMonitor>,
}

impl HealthProbe {
    /// A probe describing the source as `source` (shown as is), and the archive when there
    /// is one.
    pub fn new(source: impl Into<String>, archive: Option<ArchiveMonitor>) -> Arc<Self> {
        Arc::new(HealthProbe {
            source: source.into(),
            reading: Mutex::new(None),
            archive,
        })
    }

    fn record(&self, high: Result<BTreeMap<i32, i64>, String>) {
        if let Ok(mut r) = self.reading.lock() {
            *r = Some(Reading {
                at: Instant::now(),
                high,
            });
        }
    }

    /// The high watermarks as last read (empty before the first reading, or when it failed).
    pub fn high_watermarks(&self) -> BTreeMap<i32, i64> {
        self.reading
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.high.as_ref().ok().cloned()))
            .unwrap_or_default()
    }

    /// Reads the watermarks of `topic` on `brokers` until `stop` is set.
    pub fn spawn_poller(
        self: &Arc<Self>,
        brokers: String,
        topic: String,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let probe = self.clone();
        std::thread::Builder::new()
            .name("emoflow-watermarks".into())
            .spawn(move || {
                let marks = Watermarks::new(&brokers, &topic);
                while !stop.load(Ordering::Relaxed) {
                    let high = match &marks {
                        Ok(m) => m
                            .high(Duration::from_secs(2))
                            .map(|v| v.into_iter().collect())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    probe.record(high);
                    std::thread::sleep(WATERMARK_INTERVAL);
                }
            })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Messages behind the high watermarks: never negative (a broker may report a watermark that
/// lags its real end), 0 once every partition is read to its end.
pub fn lag(positions: &BTreeMap<i32, i64>, high: &BTreeMap<i32, i64>) -> i64 {
    high.iter()
        .map(|(p, h)| positions.get(p).map_or(0, |pos| (h - pos).max(0)))
        .sum()
}

/// `GET /health`.
pub async fn health(State(app): State<AppState>) -> Json<Value> {
    let snap = app.snapshot();
    let probe = app.health();
    let positions = &snap.state.positions;
    let mut problems = Vec::new();
    let (lag, high) = match probe
        .reading
        .lock()
        .ok()
        .as_deref()
        .and_then(Option::as_ref)
    {
        None => {
            problems.push("no watermark reading yet".to_owned());
            (0, BTreeMap::new())
        }
        Some(r) => {
            if r.at.elapsed() > STALE_AFTER {
                problems.push("the broker has not answered for a while".to_owned());
            }
            match &r.high {
                Ok(high) => (lag(positions, high), high.clone()),
                Err(e) => {
                    problems.push(format!("cannot read the broker's watermarks: {e}"));
                    (0, BTreeMap::new())
                }
            }
        }
    };
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
    let archive = probe.archive.as_ref().map(ArchiveMonitor::report);
    if let Some(a) = &archive {
        if let Some(e) = &a.error {
            problems.push(format!(
                "the archive cannot be written ({e}); reading is paused until it can"
            ));
        }
    }
    let status = if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    Json(json!({
        "status": status,
        "source": probe.source,
        "lag": lag,
        "as_of": as_of,
        "positions": positions,
        "high_watermarks": high,
        "archive": archive,
        "skipped_offsets": {
            "total": skipped.total,
            "ranges": skipped.ranges.iter().map(|(p, from, to)| json!({"partition": p, "from": from, "to": to})).collect::<Vec<_>>(),
        },
        "problems": problems,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_never_negative_and_zero_when_caught_up() {
        let pos = BTreeMap::from([(0, 10), (1, 5)]);
        assert_eq!(lag(&pos, &BTreeMap::from([(0, 10), (1, 5)])), 0);
        assert_eq!(lag(&pos, &BTreeMap::from([(0, 8), (1, 7)])), 2);
    }
}
