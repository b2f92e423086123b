//! The one worker loop, for every source and clock: each turn the clock says whether the
//! dataflow time moves on; filter changes now due are applied (a filter added is back-filled
//! from the source's history); the source reads a batch into the feed through the intake; what
//! was gathered goes into the dataflow with the positions it covers; the clock paces the
//! dataflow.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use timely::worker::Worker;

use super::clock::{Clock, LastRead, Turn};
use super::schedule::{ChangeQueue, ReportedAck, ReportedPositions};
use super::Shared;
use crate::error::RunError;
use crate::feed::Feed;
use crate::intake::Intake;
use crate::report::RunReport;
use crate::source::Source;
use crate::views::ViewInputs;

/// Runs one worker until its clock says stop; returns the records it read.
pub(super) fn run_worker(worker: &mut Worker, shared: &Shared) -> Result<u64, RunError> {
    let (index, peers) = (worker.index(), worker.peers());
    let plan = &shared.plan;
    if plan.background {
        crate::priority::lower_this_thread();
    }
    // Every worker builds the views first, then (Kafka) the control dataflow, in this order.
    let (inputs, probe) = shared.capture.build_views(worker, plan.views);
    let clock = shared.clock(worker);
    let source = shared.source(index, peers)?;
    let mut feed = Feed::new(plan.views, peers);
    feed.add_initial_filters(&plan.filters);
    if plan.deliver.is_some() {
        feed.deliver_events();
    }
    let mut this = WorkerLoop {
        index,
        shared,
        inputs,
        feed,
        source,
        intake: Intake::new(plan.max_future, plan.letters.clone()),
        changes: ChangeQueue::default(),
        positions: ReportedPositions::default(),
        ack: ReportedAck::default(),
    };
    this.run(worker, clock, &probe)
}

/// One worker's parts.
struct WorkerLoop<'a> {
    index: usize,
    shared: &'a Shared,
    inputs: ViewInputs,
    feed: Feed,
    source: Box<dyn Source>,
    intake: Intake,
    changes: ChangeQueue,
    positions: ReportedPositions,
    ack: ReportedAck,
}

impl WorkerLoop<'_> {
    fn run(
        &mut self,
        worker: &mut Worker,
        mut clock: Box<dyn Clock>,
        probe: &timely::dataflow::ProbeHandle<u64>,
    ) -> Result<u64, RunError> {
        let batch = self.shared.plan.batch.max(1);
        self.inputs.advance_to(clock.first());
        self.report_positions();
        let (mut gathered, mut in_time, mut records) = (0usize, 0usize, 0u64);
        let (mut t_read, mut t_step, mut times) = (Duration::ZERO, Duration::ZERO, 0u64);
        loop {
            match clock.turn(probe, self.source.is_finished(), &mut self.changes) {
                Turn::Read => {}
                Turn::Advance(time) => {
                    self.flush();
                    self.inputs.advance_to(time);
                    (gathered, in_time) = (0, 0);
                    times += 1;
                }
                Turn::Stop => {
                    self.flush();
                    self.source.finish();
                    clock.stopped();
                    break;
                }
            }
            self.apply_filter_changes()?;
            let full = in_time >= clock.capacity() || self.source.must_wait();
            let could_read = !full && self.source.has_input();
            let t0 = Instant::now();
            let read = if could_read {
                self.read(batch.saturating_sub(gathered).max(1))?
            } else {
                0
            };
            t_read += t0.elapsed();
            (gathered, in_time, records) = (gathered + read, in_time + read, records + read as u64);
            if gathered >= batch {
                self.flush();
                gathered = 0;
            }
            let t1 = Instant::now();
            let last = LastRead {
                records: read,
                finished: self.source.is_finished(),
                could_read,
            };
            clock.pace(worker, probe, last);
            t_step += t1.elapsed();
            let complete =
                probe.with_frontier(|f| f.first().map_or(u64::MAX, |t| t.saturating_sub(1)));
            let progress = &self.shared.progress;
            progress.complete.fetch_max(complete, Ordering::Relaxed);
        }
        // Where the worker's time went: reading and decoding, or running the dataflow.
        tracing::debug!(index = self.index, ?t_read, ?t_step, times, "worker done");
        Ok(records)
    }

    /// Applies the filter changes that are due, back-filling the filters added over the
    /// source's history, and tells the views.
    fn apply_filter_changes(&mut self) -> Result<(), RunError> {
        if !self.changes.apply_ready(&mut self.feed) {
            return Ok(());
        }
        if self.feed.needs_backfill() {
            let feed = &mut self.feed;
            self.source
                .history(&mut |e, at| feed.count_history(e, at))?;
            feed.end_backfill();
        }
        // The next flush sends the back-fill, and tells process 0 it is done, at the current
        // time at the latest.
        let applied = self.changes.applied();
        self.ack.report(self.index, applied, &mut self.inputs);
        Ok(())
    }

    /// Reads one batch of at most `budget` records.
    fn read(&mut self, budget: usize) -> Result<usize, RunError> {
        let batch = self.source.read(budget, &mut self.feed, &mut self.intake)?;
        if let Some(e) = self.source.take_error() {
            self.shared.health.poll_error(self.index, e);
        }
        for (p, from, to) in self.source.take_skips() {
            self.inputs
                .reports
                .update(RunReport::Skipped(p, from, to), 1);
        }
        if let Some(progress) = &self.shared.plan.progress {
            progress.fetch_add(batch.amount, Ordering::Relaxed);
        }
        Ok(batch.records)
    }

    /// Sends what the worker gathered into the dataflow at the current time, with the
    /// positions it covers.
    fn flush(&mut self) {
        self.feed.flush_into(&mut self.inputs);
        self.report_positions();
    }

    fn report_positions(&mut self) {
        if let Some(now) = self.source.positions() {
            self.positions.report(now, &mut self.inputs);
            self.shared.progress.note_positions(now);
        }
    }
}
