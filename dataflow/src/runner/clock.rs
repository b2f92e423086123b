//! The epoch clock, the part of the worker loop that decides when a dataflow time ends and
//! the next begins. Files: [`Batches`], one time per batch read, never more than
//! [`MAX_TIMES_IN_FLIGHT`] ahead of the views. Kafka: [`Ticks`], processing-time epochs that
//! worker 0 closes by its own clock and broadcasts ([`crate::control`]), so no two clocks need
//! agree; under load an epoch closes only once the previous one is complete, so epochs grow
//! (fewer, larger batches) instead of queueing up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use super::schedule::{ChangeQueue, Planned};
use crate::control::{Control, ControlPlane};
use crate::filter_control::FilterControl;
use crate::freshness::OpenTimes;

/// How many dataflow times a file run's worker may run ahead of the finished views.
pub const MAX_TIMES_IN_FLIGHT: u64 = 4;

/// Most messages a Kafka worker reads into one epoch; then it waits for the epoch to close
/// (Kafka holds the rest: backpressure costs nothing). Bounds the input in flight.
const MAX_EPOCH_MESSAGES: usize = 262_144;

/// What the worker does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Read on at the current time.
    Read,
    /// Send what was gathered at the current time, then move to this one.
    Advance(u64),
    /// Send what was gathered and stop.
    Stop,
}

/// What the worker's last read was like, for [`Clock::pace`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct LastRead {
    /// Records it brought.
    pub records: usize,
    /// The source is read to its end.
    pub finished: bool,
    /// The source could have read more (it has input, and neither the time nor the archive
    /// was full).
    pub could_read: bool,
}

/// When dataflow times end.
pub(crate) trait Clock {
    /// The time the worker starts at.
    fn first(&mut self) -> u64;
    /// Before each read: what to do next, given whether the source is read to its end;
    /// filter changes that are now due go to `changes`.
    fn turn(&mut self, probe: &ProbeHandle<u64>, finished: bool, changes: &mut ChangeQueue)
        -> Turn;
    /// Most records one time may hold.
    fn capacity(&self) -> usize;
    /// After each read: lets the dataflow run, waiting as long as this clock wants.
    fn pace(&mut self, worker: &mut Worker, probe: &ProbeHandle<u64>, last: LastRead);
    /// The worker has stopped.
    fn stopped(&mut self) {}
}

/// File runs: one dataflow time per batch.
pub(crate) struct Batches {
    time: u64,
    planned: Planned,
    /// The time the collector has applied (process 0): workers wait for it too, so that
    /// updates do not pile up between the dataflow and a slower collector.
    applied: Option<Arc<AtomicU64>>,
    opened: Option<Arc<OpenTimes>>,
}

impl Batches {
    /// A clock applying `planned` filter changes at their times; `applied` and `opened` are
    /// given in the process that holds the collector.
    pub(crate) fn new(
        planned: Planned,
        applied: Option<Arc<AtomicU64>>,
        opened: Option<Arc<OpenTimes>>,
    ) -> Self {
        Batches {
            time: 0,
            planned,
            applied,
            opened,
        }
    }

    fn done(&self, finished: bool) -> bool {
        finished && self.time >= self.planned.last_time()
    }

    fn open(&mut self, time: u64, changes: &mut ChangeQueue) {
        self.time = time;
        if let Some(o) = &self.opened {
            o.open(time);
        }
        self.planned.due(time, changes);
    }
}

impl Clock for Batches {
    fn first(&mut self) -> u64 {
        1
    }

    fn turn(&mut self, _: &ProbeHandle<u64>, finished: bool, changes: &mut ChangeQueue) -> Turn {
        if self.time == 0 {
            self.open(1, changes);
            return Turn::Read;
        }
        if self.done(finished) {
            return Turn::Stop;
        }
        self.open(self.time + 1, changes);
        Turn::Advance(self.time)
    }

    fn capacity(&self) -> usize {
        usize::MAX
    }

    fn pace(&mut self, worker: &mut Worker, probe: &ProbeHandle<u64>, last: LastRead) {
        if self.done(last.finished) {
            return;
        }
        let lagging = (self.time + 1).saturating_sub(MAX_TIMES_IN_FLIGHT);
        // Park rather than spin while waiting for the other workers and the collector.
        while probe.less_than(&lagging) {
            worker.step_or_park(None);
        }
        if let Some(applied) = &self.applied {
            while applied.load(Ordering::Relaxed) < lagging.saturating_sub(1) {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The end of the tick holding `ms`.
fn tick_end(ms: u64, tick: u64) -> u64 {
    (ms / tick + 1) * tick
}

/// Kafka runs: processing-time epochs of `tick` ms, chosen by worker 0.
pub(crate) struct Ticks {
    control: ControlPlane,
    leader: bool,
    tick: u64,
    epoch: u64,
    /// The epoch closed last: a new one closes only once it is complete.
    closed: u64,
    /// Worker 0 finished a bounded read: the others close epochs themselves, a tick apart.
    self_clocked: bool,
    last_close: Instant,
    /// Set from outside to stop the run (every worker of every process stops with it).
    stop: Arc<AtomicBool>,
    stop_sent: bool,
    stopping: bool,
    /// Worker 0 sends the changes made here to every worker.
    filters: FilterControl,
    sent: u64,
    opened: Arc<OpenTimes>,
}

impl Ticks {
    /// The clock of a worker whose control dataflow is `control`.
    pub(crate) fn new(
        control: ControlPlane,
        leader: bool,
        tick_ms: u64,
        stop: Arc<AtomicBool>,
        filters: FilterControl,
        opened: Arc<OpenTimes>,
    ) -> Self {
        Ticks {
            control,
            leader,
            tick: tick_ms.max(1),
            epoch: 0,
            closed: 0,
            self_clocked: false,
            last_close: Instant::now(),
            stop,
            stop_sent: false,
            stopping: false,
            filters,
            sent: 0,
            opened,
        }
    }

    /// Handles the control messages that arrived: returns an epoch worker 0 moved to.
    fn receive(&mut self, changes: &mut ChangeQueue) -> Option<u64> {
        let mut advanced = None;
        for message in self.control.take() {
            match message {
                Control::Epoch(e) if !self.leader && e > self.epoch => {
                    self.epoch = e;
                    advanced = Some(e);
                }
                Control::Epoch(_) => {}
                Control::Filter(seq, change) => changes.receive(seq, change),
                Control::Stop => self.stopping = true,
                Control::LeaderDone => self.self_clocked = true,
            }
        }
        advanced
    }

    /// Closes the current epoch if it is due and the one before is complete.
    fn close_due(&mut self, probe: &ProbeHandle<u64>) -> Option<u64> {
        let now = now_ms();
        let due = if self.leader {
            now >= self.epoch
        } else {
            self.self_clocked && self.last_close.elapsed() >= Duration::from_millis(self.tick)
        };
        if !due || probe.less_than(&self.closed) {
            return None;
        }
        self.closed = self.epoch;
        self.epoch = tick_end(now, self.tick).max(self.epoch + 1);
        self.last_close = Instant::now();
        if self.leader {
            self.opened.open(self.epoch);
            self.control.send(Control::Epoch(self.epoch));
        }
        Some(self.epoch)
    }
}

impl Clock for Ticks {
    fn first(&mut self) -> u64 {
        // Worker 0 chooses the epochs by its clock; the others start at 0 and follow it.
        if self.leader {
            self.epoch = tick_end(now_ms(), self.tick);
            self.opened.open(self.epoch);
            self.control.send(Control::Epoch(self.epoch));
        }
        self.epoch
    }

    fn turn(
        &mut self,
        probe: &ProbeHandle<u64>,
        finished: bool,
        changes: &mut ChangeQueue,
    ) -> Turn {
        let followed = self.receive(changes);
        if self.stop.load(Ordering::Relaxed) && !self.stop_sent {
            self.control.send(Control::Stop);
            self.stop_sent = true;
        }
        if finished || self.stop_sent || self.stopping {
            return Turn::Stop;
        }
        let closed = self.close_due(probe);
        if self.leader {
            for (seq, change) in self.filters.changes_after(self.sent) {
                self.control.send(Control::Filter(seq, change));
                self.sent = seq;
            }
        }
        match closed.or(followed) {
            Some(epoch) => Turn::Advance(epoch),
            None => Turn::Read,
        }
    }

    fn capacity(&self) -> usize {
        MAX_EPOCH_MESSAGES
    }

    fn pace(&mut self, worker: &mut Worker, _: &ProbeHandle<u64>, last: LastRead) {
        if last.records > 0 {
            worker.step();
            return;
        }
        let tick = Duration::from_millis(self.tick);
        let until_tick = if self.leader {
            Duration::from_millis(self.epoch.saturating_sub(now_ms())).min(tick)
        } else {
            tick
        };
        let nap = if last.could_read {
            until_tick.min(Duration::from_millis(1))
        } else {
            until_tick
        };
        worker.step_or_park(Some(nap));
    }

    fn stopped(&mut self) {
        if self.leader {
            self.control.send(Control::LeaderDone);
        }
    }
}
