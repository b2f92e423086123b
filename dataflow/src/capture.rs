//! The one path from the workers' dataflow to a [`ViewState`], shared by the file and Kafka
//! runners: every view update is exchanged to worker 0, which captures it, and a collector
//! applies each dataflow time once it is complete, so every snapshot is consistent.

use std::sync::mpsc;
use std::sync::Mutex;

use timely::dataflow::operators::capture::{Capture as _, Event as Captured, EventPusher};
use timely::dataflow::operators::Exchange as _;
use timely::dataflow::ProbeHandle;

use crate::config::ViewConfig;
use crate::report::Output;
use crate::snapshot::{CapturedEvent, Collector};
use crate::views::{build_views, ViewInputs};

/// Sends captured updates to the collector from worker 0; other workers capture nothing (all
/// updates are routed to worker 0 first).
struct ToCollector(Option<mpsc::Sender<CapturedEvent>>);

impl EventPusher<u64, Vec<(Output, u64, isize)>> for ToCollector {
    fn push(&mut self, event: Captured<u64, Vec<(Output, u64, isize)>>) {
        if let Some(tx) = &self.0 {
            // The collector only goes away when the run is abandoned.
            let _ = tx.send(event);
        }
    }
}

/// The sending end, which worker 0 takes when it builds the views.
pub(crate) struct CaptureSlot(Mutex<Option<mpsc::Sender<CapturedEvent>>>);

/// A capture slot for the workers, and the receiving end for [`collect`].
pub(crate) fn capture_channel() -> (CaptureSlot, mpsc::Receiver<CapturedEvent>) {
    let (tx, rx) = mpsc::channel();
    (CaptureSlot(Mutex::new(Some(tx))), rx)
}

impl CaptureSlot {
    /// Builds the views on `worker`; returns its inputs and a probe of the finished views.
    pub(crate) fn build_views(
        &self,
        worker: &mut timely::worker::Worker,
        cfg: ViewConfig,
    ) -> (ViewInputs, ProbeHandle<u64>) {
        let pusher = ToCollector(if worker.index() == 0 {
            // Taken, not cloned: the channel closes when worker 0's capture is dropped.
            self.0.lock().ok().and_then(|mut g| g.take())
        } else {
            None
        });
        worker.dataflow::<u64, _, _>(move |scope| {
            let (inputs, updates) = build_views(scope, cfg);
            let (probe, updates) = updates.probe();
            updates.inner.exchange(|_| 0).capture_into(pusher);
            (inputs, probe)
        })
    }
}

/// Applies captured updates until the workers are done; `advanced` sees the collector each
/// time its `as_of` moves on (on the calling thread, so it must be quick).
pub(crate) fn collect(
    rx: mpsc::Receiver<CapturedEvent>,
    cfg: &ViewConfig,
    mut advanced: impl FnMut(&mut Collector),
) -> Collector {
    let mut collector = Collector::new(cfg);
    for event in rx {
        if collector.push(event) {
            advanced(&mut collector);
        }
    }
    collector
}
