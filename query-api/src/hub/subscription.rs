//! One subscriber's stream and how it starts: registered under the hub's lock at the moment the
//! hub's memory is read (so nothing falls between), then history read back from the log, then
//! the remembered events, then live ones, each passing the cursor once.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use emoflow_dataflow::FilterSpec;
use emoflow_ingest::kafka::{PartitionRange, RangeEnd};
use tokio::sync::mpsc;

use super::history::{read_history, HistoryItem};
use super::{lock, CloseReason, Cursor, Entry, Hub, Slot, SubscribeError};

/// What a subscriber receives next.
#[derive(Debug)]
pub enum Out {
    /// A matching event and the cursor just past it.
    Event(Arc<Entry>, String),
    /// The log no longer holds `requested..restart` of `partition`: delivery goes on from
    /// `restart` (the cursor is the one after the jump).
    Reset {
        /// The partition.
        partition: i32,
        /// Where delivery should have gone on.
        requested: i64,
        /// Where it goes on.
        restart: i64,
        /// The cursor after the jump.
        cursor: String,
    },
    /// Delivery ended; resume from `cursor`.
    Closed {
        /// Why.
        reason: String,
        /// Where to resume.
        cursor: String,
    },
    /// Nothing happened for a while.
    Heartbeat,
}

/// One subscriber's stream: history first (from the log, then from memory), then live.
/// Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    id: u64,
    rx: mpsc::Receiver<Arc<Entry>>,
    closed: Arc<OnceLock<CloseReason>>,
    cursor: Cursor,
    spec: Option<FilterSpec>,
    /// Ranges to read back from the log before the backlog.
    history: Vec<PartitionRange>,
    history_rx: Option<mpsc::Receiver<HistoryItem>>,
    backlog: VecDeque<Arc<Entry>>,
    done: bool,
}

impl Hub {
    /// Where a subscriber live from now starts: per partition, the later of where the hub
    /// stands and where the views a client has read stand (`seen`). The hub can lag the
    /// published views by a delivery (the collector publishes a time's views before handing
    /// its events to the hub); what it delivers before `seen` was read before the client asked.
    pub fn live_cursor(&self, seen: &BTreeMap<i32, i64>) -> Cursor {
        let mut at = lock(&self.state).positions.clone();
        for (&p, &o) in seen {
            let next = at.entry(p).or_insert(o);
            *next = (*next).max(o);
        }
        Cursor(at)
    }

    /// Subscribes `addr` to filter `filter` (every event when `None`), from `from` (the views'
    /// positions when `None`: live from now).
    pub fn subscribe(
        self: &Arc<Self>,
        filter: Option<&str>,
        from: Option<Cursor>,
        addr: IpAddr,
    ) -> Result<Subscription, SubscribeError> {
        let mut st = lock(&self.state);
        if st.slots.len() >= self.limits.max_subscribers {
            return Err(SubscribeError::Busy(format!(
                "{} subscribers are connected, the most this service takes (--max-subscribers)",
                st.slots.len()
            )));
        }
        let mine = st.per_address.get(&addr).copied().unwrap_or(0);
        if mine >= self.limits.max_per_address {
            return Err(SubscribeError::Busy(format!(
                "{mine} subscribers are connected from {addr}, the most one address may have (--max-subscribers-per-address)"
            )));
        }
        let spec = match filter {
            Some(id) => match st.by_id.get(id) {
                Some(&i) => Some(st.filters[i].spec.clone()),
                None => return Err(SubscribeError::NoFilter(id.to_owned())),
            },
            None => None,
        };
        let cursor = from.unwrap_or_else(|| Cursor(st.positions.clone()));
        let mut history = Vec::new();
        for (&p, &held_from) in &st.memory_from {
            let want = cursor.next(p);
            if want < held_from {
                history.push(PartitionRange {
                    end: RangeEnd::Offset(held_from),
                    low: 0,
                    ..PartitionRange::open(p, want)
                });
            }
        }
        let backlog = st.backlog(&cursor, spec.as_ref());
        let (tx, rx) = mpsc::channel(self.limits.buffer.max(1));
        let closed = Arc::new(OnceLock::new());
        let id = st.next_slot;
        st.next_slot += 1;
        match filter.and_then(|f| st.by_id.get(f).copied()) {
            Some(i) => st.filters[i].subscribers.push(id),
            None => st.everything.push(id),
        }
        *st.per_address.entry(addr).or_default() += 1;
        st.slots.insert(
            id,
            Slot {
                tx,
                failed: std::cell::Cell::new(false),
                closed: closed.clone(),
                addr,
                filter: filter.map(str::to_owned),
            },
        );
        Ok(Subscription {
            hub: self.clone(),
            id,
            rx,
            closed,
            cursor,
            spec,
            history,
            history_rx: None,
            backlog: backlog.into(),
            done: false,
        })
    }

    fn unsubscribe(&self, id: u64) {
        lock(&self.state).forget(id);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

impl Subscription {
    /// The cursor now.
    pub fn cursor(&self) -> String {
        self.cursor.render()
    }

    fn admit(&mut self, e: Arc<Entry>, out: &mut Vec<Out>) {
        if self.cursor.admit(&e.event) {
            out.push(Out::Event(e, self.cursor.render()));
        }
    }

    /// The next things to send (at most about `max` events), waiting up to `heartbeat`;
    /// `None` once the stream has ended.
    pub async fn next(&mut self, heartbeat: Duration, max: usize) -> Option<Vec<Out>> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        if !self.history.is_empty() && self.history_rx.is_none() {
            self.start_history().await;
        }
        if let Some(rx) = &mut self.history_rx {
            match tokio::time::timeout(heartbeat, rx.recv()).await {
                Err(_) => return Some(vec![Out::Heartbeat]),
                Ok(None) => self.history_rx = None,
                Ok(Some(HistoryItem::Events(events))) => {
                    for e in events {
                        self.admit(e, &mut out);
                    }
                    return Some(out);
                }
                Ok(Some(HistoryItem::Gap(partition, requested, restart))) => {
                    if self.cursor.next(partition) < restart {
                        self.cursor.skip_to(partition, restart);
                        out.push(Out::Reset {
                            partition,
                            requested,
                            restart,
                            cursor: self.cursor.render(),
                        });
                    }
                    return Some(out);
                }
                Ok(Some(HistoryItem::Failed(why))) => {
                    self.done = true;
                    return Some(vec![Out::Closed {
                        reason: format!("the history could not be read back: {why}"),
                        cursor: self.cursor.render(),
                    }]);
                }
            }
        }
        if !self.backlog.is_empty() {
            let n = self.backlog.len().min(max.max(1));
            let page: Vec<_> = self.backlog.drain(..n).collect();
            for e in page {
                self.admit(e, &mut out);
            }
            return Some(out);
        }
        match tokio::time::timeout(heartbeat, self.rx.recv()).await {
            Err(_) => Some(vec![Out::Heartbeat]),
            Ok(Some(e)) => {
                self.admit(e, &mut out);
                while out.len() < max {
                    match self.rx.try_recv() {
                        Ok(e) => self.admit(e, &mut out),
                        Err(_) => break,
                    }
                }
                Some(out)
            }
            Ok(None) => {
                self.done = true;
                let reason = self.closed.get().map_or_else(
                    || "the service is stopping".into(),
                    |r| r.describe(self.hub.limits.buffer),
                );
                Some(vec![Out::Closed {
                    reason,
                    cursor: self.cursor.render(),
                }])
            }
        }
    }

    /// Starts reading the history ranges back from the log on a thread of their own.
    async fn start_history(&mut self) {
        let ranges = std::mem::take(&mut self.history);
        let (tx, rx) = mpsc::channel(ranges.len() + 4);
        self.history_rx = Some(rx);
        let Some(log) = self.hub.log.clone() else {
            for r in ranges {
                let RangeEnd::Offset(end) = r.end else {
                    continue;
                };
                let _ = tx.try_send(HistoryItem::Gap(r.partition, r.start, end));
            }
            return;
        };
        let permit = self.hub.history_reads.clone().acquire_owned().await;
        let spec = self.spec.clone();
        let spawned = std::thread::Builder::new()
            .name("emoflow-history".into())
            .spawn(move || {
                let _permit = permit;
                if let Err(e) = read_history(&log, &ranges, spec.as_ref(), &tx) {
                    let _ = tx.blocking_send(HistoryItem::Failed(e));
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a history read: {e}");
        }
    }
}
