//! What handlers read: an immutable snapshot of the views, published by the dataflow's
//! collector each time `as_of` advances, plus a short history of the accepted-event total for
//! `GET /rates`. Handlers clone an `Arc` and never wait for the dataflow.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use emoflow_dataflow::document::SessionSummary;
use emoflow_dataflow::snapshot::ViewState;
use emoflow_dataflow::ViewConfig;
use serde::Serialize;
use tokio::sync::watch;

/// Seconds of ingest history kept for `GET /rates`.
pub const RATE_HISTORY_SECS: i64 = 3600;

/// The sessions summary of `GET /sessions`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionsSummary {
    /// Users with at least one retained session.
    pub users: usize,
    /// Retained sessions.
    pub sessions: usize,
    /// Sessions whose `end_ms` is within the session gap of the newest event.
    pub active: usize,
    /// Mean session duration.
    pub mean_duration_ms: f64,
    /// Mean events per session.
    pub mean_events: f64,
    /// Mean session rate.
    pub mean_rate_per_min: f64,
}

/// One published state of the views.
pub struct Snapshot {
    /// The views.
    pub state: ViewState,
    /// Their parameters.
    pub cfg: ViewConfig,
    /// `(second, accepted total at the end of that second)`, oldest first, processing time.
    pub history: imbl::Vector<(i64, i64)>,
}

impl Snapshot {
    /// A snapshot of `state`.
    pub fn new(state: ViewState, cfg: ViewConfig, history: imbl::Vector<(i64, i64)>) -> Self {
        Snapshot {
            state,
            cfg,
            history,
        }
    }

    /// The empty views, before the dataflow published anything.
    pub fn empty(cfg: ViewConfig) -> Self {
        Snapshot::new(ViewState::new(&cfg), cfg, imbl::Vector::new())
    }

    /// The sessions summary, from the totals the views keep as sessions change.
    pub fn sessions_summary(&self) -> SessionsSummary {
        let totals = &self.state.session_totals;
        let SessionSummary {
            users,
            sessions,
            mean_duration_ms,
            mean_events,
            mean_rate_per_min,
        } = totals.summary();
        SessionsSummary {
            users,
            sessions,
            active: totals.active(),
            mean_duration_ms,
            mean_events,
            mean_rate_per_min,
        }
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Turns the collector's states into published snapshots.
pub struct Publisher {
    cfg: ViewConfig,
    history: imbl::Vector<(i64, i64)>,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Publisher {
    /// A publisher, and the receiver handlers read from.
    pub fn new(cfg: ViewConfig) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (tx, rx) = watch::channel(Arc::new(Snapshot::empty(cfg)));
        let publisher = Publisher {
            cfg,
            history: imbl::Vector::new(),
            tx,
        };
        (publisher, rx)
    }

    /// Publishes `state` (called on the collector thread at each new `as_of`).
    pub fn publish(&mut self, state: &ViewState) {
        let second = now_secs();
        let total = state.lifetime.total;
        match self.history.back_mut() {
            Some(last) if last.0 == second => last.1 = total,
            _ => {
                self.history.push_back((second, total));
                while self
                    .history
                    .front()
                    .is_some_and(|(s, _)| *s < second - RATE_HISTORY_SECS)
                {
                    self.history.pop_front();
                }
            }
        }
        let snapshot = Snapshot::new(state.clone(), self.cfg, self.history.clone());
        self.tx.send_replace(Arc::new(snapshot));
    }
}
