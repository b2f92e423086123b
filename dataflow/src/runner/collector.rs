//! The run's other threads: process 0's collector, which folds the workers' updates into the
//! views one complete dataflow time at a time and tells the world (`publish`, acknowledged
//! filter changes, live delivery); and, in the other processes of a cluster, a reporter of how
//! far the dataflow has come and where this process's readers stand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::batch::FilterKey;
use crate::capture::collect;
use crate::config::ViewConfig;
use crate::filter_control::FilterControl;
use crate::freshness::{Freshness, OpenTimes};
use crate::report::{Matched, RunReport};
use crate::snapshot::{CapturedEvent, Collector, ViewState};
use crate::update::ShownEvent;

/// What the views newly cover, for live delivery: sent after each advance of `as_of` that
/// brought events or moved a position.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    /// The dataflow time the views (and these events) are complete up to.
    pub as_of: u64,
    /// Kafka partition -> next offset to read, as of `as_of`.
    pub positions: BTreeMap<i32, i64>,
    /// The events accepted since the last delivery, in offset order per partition, each with
    /// the filters its reader matched.
    pub events: Vec<(ShownEvent, Matched)>,
    /// Newest matches of filters added while running, found by their back-fill (at most
    /// [`crate::newest::RECENT_MATCHES`] per filter incarnation).
    pub backfilled: Vec<(FilterKey, ShownEvent)>,
}

impl Delivery {
    /// What `collector` has newly applied, or `None` when nothing moved since `last`.
    fn take(collector: &mut Collector, last: &BTreeMap<i32, i64>) -> Option<Delivery> {
        let outbox = collector.take_outbox();
        let state = collector.state();
        if outbox.is_empty() && state.positions == *last {
            return None;
        }
        let mut out = Delivery {
            as_of: state.as_of,
            positions: state.positions.clone(),
            ..Delivery::default()
        };
        for update in outbox {
            match update {
                RunReport::Accepted(e, matched) => out.events.push((*e, matched)),
                RunReport::Backfilled(key, e) => out.backfilled.push((key, *e)),
                _ => {}
            }
        }
        // A partition is read by one worker in offset order and its times only grow, so this
        // keeps each partition's order whatever order the times' updates arrived in.
        out.events
            .sort_unstable_by_key(|(e, _)| (e.partition, e.offset));
        Some(out)
    }
}

/// What this process's workers report about themselves, for a process that holds no views.
#[derive(Debug, Default)]
pub(crate) struct LocalProgress {
    /// The dataflow time every worker's output is complete up to (`as_of`).
    pub complete: AtomicU64,
    /// Where this process's readers stand: partition -> next offset.
    positions: Mutex<BTreeMap<i32, i64>>,
    /// Workers of this process that have stopped.
    pub exited: AtomicUsize,
    /// Set when a worker failed (an error, or a broken connection to another process).
    pub failed: AtomicBool,
    /// Worker threads in this process.
    pub workers: usize,
}

impl LocalProgress {
    /// Progress of `workers` workers.
    pub(crate) fn new(workers: usize) -> Self {
        LocalProgress {
            workers,
            ..LocalProgress::default()
        }
    }

    /// Notes where some of this process's partitions stand now.
    pub(crate) fn note_positions(&self, now: &BTreeMap<i32, i64>) {
        if let Ok(mut p) = self.positions.lock() {
            p.extend(now.iter().map(|(&k, &v)| (k, v)));
        }
    }

    /// The state a process without views shows: how far the dataflow is, and its positions.
    fn state(&self) -> ViewState {
        let mut state = ViewState::default();
        state.as_of = self.complete.load(Ordering::Relaxed);
        state.positions = self.positions.lock().map(|p| p.clone()).unwrap_or_default();
        state
    }
}

/// Whether a run has finished; clones share the run.
#[derive(Debug, Clone)]
pub struct RunStatus(pub(crate) Arc<LocalProgress>);

impl RunStatus {
    /// True once every worker of this process has stopped as asked: the run was stopped
    /// (here, or by another process of the cluster) or its bounded read ended. A run whose
    /// workers failed is not finished: it stays up, reporting the failure, until stopped.
    pub fn is_finished(&self) -> bool {
        self.0.exited.load(Ordering::Relaxed) >= self.0.workers
            && !self.0.failed.load(Ordering::Relaxed)
    }
}

/// Whom the collector tells.
pub(crate) struct Listeners<P> {
    /// Sees the state each time its `as_of` advances (on the collector's thread).
    pub publish: P,
    /// Learns which filter changes every worker has applied.
    pub filters: FilterControl,
    /// Receives what each advance newly covers.
    pub deliver: Option<mpsc::SyncSender<Delivery>>,
    /// The times the workers opened, to measure freshness.
    pub opened: Arc<OpenTimes>,
    /// Where the collector notes how far it has applied (file runs wait for it).
    pub applied: Arc<AtomicU64>,
    /// The views' parameters.
    pub views: ViewConfig,
}

/// The views and how fresh they stayed, as the collector ends.
pub(crate) type Collected = Option<(Collector, Freshness)>;

/// Starts process 0's collector over `rx`.
pub(crate) fn spawn_collector<P: FnMut(&ViewState) + Send + 'static>(
    rx: mpsc::Receiver<CapturedEvent>,
    mut to: Listeners<P>,
    background: bool,
) -> std::io::Result<JoinHandle<Collected>> {
    std::thread::Builder::new()
        .name("emoflow-collector".into())
        .spawn(move || {
            if background {
                crate::priority::lower_this_thread();
            }
            let mut delivered = BTreeMap::new();
            let mut acks = BTreeMap::new();
            let mut freshness = Freshness::default();
            let views = to.views;
            let collector = collect(rx, &views, |c| {
                let as_of = c.state().as_of;
                to.applied.store(as_of, Ordering::Relaxed);
                to.opened.complete(as_of, &mut freshness);
                (to.publish)(c.state());
                if c.state().filter_acks != acks {
                    acks.clone_from(&c.state().filter_acks);
                    to.filters.acknowledged(&acks, as_of);
                }
                if let Some(tx) = &to.deliver {
                    if let Some(d) = Delivery::take(c, &delivered) {
                        delivered.clone_from(&d.positions);
                        // Delivery only goes away when the service stops.
                        let _ = tx.send(d);
                    }
                }
            });
            Some((collector, freshness))
        })
}

/// Starts the reporter of a process that holds no views: every `period` while its workers
/// run, `publish` sees how far the dataflow has come and this process's positions.
pub(crate) fn spawn_reporter<P: FnMut(&ViewState) + Send + 'static>(
    progress: Arc<LocalProgress>,
    period: Duration,
    mut publish: P,
) -> std::io::Result<JoinHandle<Collected>> {
    std::thread::Builder::new()
        .name("emoflow-reporter".into())
        .spawn(move || {
            let mut last = None;
            while progress.exited.load(Ordering::Relaxed) < progress.workers {
                let state = progress.state();
                if last.as_ref() != Some(&(state.as_of, state.positions.clone())) {
                    publish(&state);
                    last = Some((state.as_of, state.positions));
                }
                std::thread::sleep(period);
            }
            None
        })
}
