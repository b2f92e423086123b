//! Live delivery: every accepted event leaves the dataflow once its dataflow time is complete
//! ([`emoflow_dataflow::Delivery`], gathered on worker 0 from every worker, so it does not
//! matter which process read it), and the hub hands it to the subscribers of each filter it
//! matches, and to the subscribers of every event.
//!
//! The hub holds no index of the filters: each event comes with the filters the worker that
//! read it matched ([`Matched`]). Only an event read before its reader applied a filter's
//! creation (the few read while the change crossed the workers) is matched here, against that
//! one filter. A resuming subscriber's history and backlog are matched against its own filter.
//!
//! Delivery is lossless and in order per partition. A subscriber's position is a [`Cursor`]:
//! per partition, the next offset it has not received. A subscriber that comes back with its
//! cursor gets what it missed from the hub's memory of recent events when they are there, from
//! the Kafka log (the history on disk) when they are older, and then the live events; each
//! event passes the cursor once, so nothing comes twice. What the log no longer holds is
//! answered with a reset saying where delivery restarts.
//!
//! Each subscriber has a bounded buffer. The hub never waits for one: a subscriber whose
//! buffer is full is cut off, told why, and resumes with its cursor. Memory is bounded by the
//! number of subscribers, the buffer size and the memory of recent events.
//!
//! The rooms: the registry and fan-out here ([`Hub`]: filters, subscribers' buffers, the
//! memory of recent events, [`Hub::deliver`]); the cursor ([`cursor`]); one subscriber's
//! stream ([`subscription`]); reading history back from the log ([`history`]).

mod cursor;
mod history;
mod subscription;

pub use cursor::Cursor;
pub use history::LogSource;
pub use subscription::{Out, Subscription};

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, OnceLock};

use emoflow_dataflow::newest::Newest;
use emoflow_dataflow::update::ShownEvent;
use emoflow_dataflow::{Delivery, FilterNo, FilterSpec, Matched};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, Semaphore};

/// An accepted event as delivered: the event and its JSON (made once, sent to everyone).
#[derive(Debug)]
pub struct Entry {
    /// The event.
    pub event: ShownEvent,
    /// `event` as JSON, the fields of docs/events.md plus `partition` and `offset`.
    pub json: Box<str>,
}

impl Entry {
    /// Wraps `event`.
    pub fn new(event: ShownEvent) -> Arc<Entry> {
        // A ShownEvent always serialises (strings, integers, a finite amount).
        let json = serde_json::to_string(&event).unwrap_or_default().into();
        Arc::new(Entry { event, json })
    }

    fn key(&self) -> (i64, i32, i64) {
        (self.event.ts, self.event.partition, self.event.offset)
    }
}

/// Why the hub stopped delivering to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Its buffer was full: the client read too slowly.
    TooSlow,
    /// Its filter was deleted.
    FilterDeleted,
}

impl CloseReason {
    /// In words, for the final message.
    pub fn describe(&self, buffer: usize) -> String {
        match self {
            CloseReason::TooSlow => format!(
                "the client read too slowly: {buffer} events were waiting for it; reconnect with the last id to resume with nothing missed"
            ),
            CloseReason::FilterDeleted => "the filter was deleted".into(),
        }
    }
}

struct Slot {
    tx: mpsc::Sender<Arc<Entry>>,
    /// Set when a send failed: nothing more may go in, or the stream would have a hole.
    failed: std::cell::Cell<bool>,
    closed: Arc<OnceLock<CloseReason>>,
    addr: IpAddr,
    filter: Option<String>,
}

struct HubFilter {
    id: String,
    spec: FilterSpec,
    /// Its number in the run: events name it by this.
    no: FilterNo,
    subscribers: Vec<u64>,
    /// Its newest matches (`recent` of `/matches`).
    recent: Newest<Arc<Entry>>,
}

/// Limits on subscribers and on what the hub keeps.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Recent accepted events kept in memory for subscribers that resume.
    pub memory_events: usize,
    /// Events that may wait for one subscriber before it is cut off.
    pub buffer: usize,
    /// Subscribers in all.
    pub max_subscribers: usize,
    /// Subscribers from one client address.
    pub max_per_address: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            memory_events: 100_000,
            buffer: 1024,
            max_subscribers: 16_000,
            max_per_address: 12_000,
        }
    }
}

#[derive(Default)]
struct State {
    filters: Vec<HubFilter>,
    by_id: FxHashMap<String, usize>,
    by_no: FxHashMap<FilterNo, usize>,
    /// Filters added while running, by change number: the ones an event read before its
    /// reader applied them must be matched here.
    by_change: BTreeMap<u64, usize>,
    /// Recent accepted events in delivery order.
    memory: VecDeque<Arc<Entry>>,
    /// Per partition: every accepted event from this offset up to `positions` is in `memory`.
    memory_from: BTreeMap<i32, i64>,
    /// Per partition: the next offset the views will read.
    positions: BTreeMap<i32, i64>,
    as_of: u64,
    slots: FxHashMap<u64, Slot>,
    /// Subscribers of every event.
    everything: Vec<u64>,
    per_address: FxHashMap<IpAddr, usize>,
    next_slot: u64,
    delivered: u64,
    cut_off: u64,
}

/// Counters of the hub's work, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct HubStats {
    /// Subscribers now.
    pub subscribers: usize,
    /// Events handed to subscribers' buffers.
    pub delivered: u64,
    /// Subscribers cut off for reading too slowly.
    pub cut_off: u64,
    /// Events in memory for resuming subscribers.
    pub memory_events: usize,
    /// The dataflow time delivered up to.
    pub as_of: u64,
}

/// Why a subscription was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// No such filter.
    #[error("no filter with id {0:?}")]
    NoFilter(String),
    /// Too many subscribers.
    #[error("{0}")]
    Busy(String),
}

/// The delivery hub: filters, subscribers, and the memory of recent events.
pub struct Hub {
    state: Mutex<State>,
    limits: HubLimits,
    log: Option<LogSource>,
    /// History reads at once (each is a Kafka consumer).
    history_reads: Arc<Semaphore>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update leaves the state whole between statements that could panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// A hub whose views start reading each partition at `start`; `log` is where older
    /// history is read back from.
    pub fn new(start: BTreeMap<i32, i64>, log: Option<LogSource>, limits: HubLimits) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(State {
                memory_from: start.clone(),
                positions: start,
                ..State::default()
            }),
            limits,
            log,
            history_reads: Arc::new(Semaphore::new(4)),
        })
    }

    /// Delivers what `deliveries` brings until it closes (on a thread of its own).
    pub fn spawn(
        self: &Arc<Self>,
        deliveries: std_mpsc::Receiver<Delivery>,
    ) -> std::io::Result<()> {
        let hub = self.clone();
        std::thread::Builder::new()
            .name("emoflow-delivery".into())
            .spawn(move || {
                for d in deliveries {
                    hub.deliver(d);
                }
            })
            .map(|_| ())
    }

    /// The limits in force.
    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    /// Starts delivering filter `id`, numbered `no` in the run, replacing one of that id.
    pub fn add_filter(&self, id: &str, spec: FilterSpec, no: FilterNo) {
        let mut st = lock(&self.state);
        st.remove(id);
        let i = st.filters.len();
        st.filters.push(HubFilter {
            id: id.to_owned(),
            spec,
            no,
            subscribers: Vec::new(),
            recent: Newest::default(),
        });
        st.index_filter(i);
    }

    /// Stops delivering filter `id`; its subscribers are told and cut off.
    pub fn remove_filter(&self, id: &str) {
        lock(&self.state).remove(id);
    }

    /// The incarnation of filter `id` the hub delivers, if it has it: the change that added it
    /// (see [`emoflow_dataflow::FilterControl`]), 0 for a filter the run started with.
    pub fn since(&self, id: &str) -> Option<u64> {
        let st = lock(&self.state);
        st.by_id.get(id).map(|&i| since(st.filters[i].no))
    }

    /// Subscribers of filter `id` now.
    pub fn subscribers_of(&self, id: &str) -> usize {
        let st = lock(&self.state);
        st.by_id
            .get(id)
            .map_or(0, |&i| st.filters[i].subscribers.len())
    }

    /// Filter `id`'s newest matches (at most `limit`), newest first.
    pub fn recent(&self, id: &str, limit: usize) -> Vec<Arc<Entry>> {
        let st = lock(&self.state);
        st.by_id.get(id).map_or_else(Vec::new, |&i| {
            st.filters[i].recent.iter().take(limit).cloned().collect()
        })
    }

    /// What the hub has done so far.
    pub fn stats(&self) -> HubStats {
        let st = lock(&self.state);
        HubStats {
            subscribers: st.slots.len(),
            delivered: st.delivered,
            cut_off: st.cut_off,
            memory_events: st.memory.len(),
            as_of: st.as_of,
        }
    }

    /// Hands one delivery to the subscribers.
    pub fn deliver(&self, d: Delivery) {
        // JSON is made outside the lock, once per event.
        let entries: Vec<(Arc<Entry>, Matched)> = d
            .events
            .into_iter()
            .map(|(e, matched)| (Entry::new(e), matched))
            .collect();
        let found: Vec<_> = d
            .backfilled
            .into_iter()
            .map(|(key, e)| (key, Entry::new(e)))
            .collect();
        let mut st = lock(&self.state);
        let st = &mut *st;
        for (key, e) in &found {
            if let Some(&i) = st.by_id.get(&key.id) {
                if since(st.filters[i].no) == key.since {
                    st.filters[i].recent.offer(e.key(), || e.clone());
                }
            }
        }
        let mut full = Vec::new();
        let mut matched = Vec::new();
        for (e, said) in entries {
            st.matches(&e, &said, &mut matched);
            for &i in &matched {
                let f = &mut st.filters[i];
                f.recent.offer(e.key(), || e.clone());
                for id in &f.subscribers {
                    st.delivered += send(&st.slots, *id, &e, &mut full);
                }
            }
            for id in &st.everything {
                st.delivered += send(&st.slots, *id, &e, &mut full);
            }
            st.memory_from
                .entry(e.event.partition)
                .or_insert(e.event.offset);
            st.memory.push_back(e);
            while st.memory.len() > self.limits.memory_events {
                if let Some(old) = st.memory.pop_front() {
                    st.memory_from
                        .insert(old.event.partition, old.event.offset + 1);
                }
            }
        }
        for (p, o) in d.positions {
            st.positions.insert(p, o);
            st.memory_from.entry(p).or_insert(o);
        }
        st.as_of = st.as_of.max(d.as_of);
        for (id, was_full) in full {
            if was_full {
                st.cut_off += 1;
                st.close(id, CloseReason::TooSlow);
            } else {
                st.forget(id);
            }
        }
    }
}

/// Puts `e` in subscriber `id`'s buffer; a full buffer marks it for cutting off, a closed one
/// (the client left) for forgetting.
fn send(slots: &FxHashMap<u64, Slot>, id: u64, e: &Arc<Entry>, full: &mut Vec<(u64, bool)>) -> u64 {
    let Some(slot) = slots.get(&id) else { return 0 };
    if slot.failed.get() {
        return 0;
    }
    let result = slot.tx.try_send(e.clone());
    let was_full = match result {
        Ok(()) => return 1,
        Err(mpsc::error::TrySendError::Full(_)) => true,
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    };
    // Later events of this delivery must not reach it either: the buffer may drain meanwhile,
    // and an event after a dropped one would leave a hole before the resume point.
    slot.failed.set(true);
    full.push((id, was_full));
    0
}

/// The change number of filter `no`, 0 for a filter the run started with.
fn since(no: FilterNo) -> u64 {
    match no {
        FilterNo::Initial(_) => 0,
        FilterNo::Added(seq) => seq,
    }
}

impl State {
    /// The filters (numbers in `filters`) event `e` matched: those its reader said, and those
    /// its reader had not applied yet, matched here by their definition.
    fn matches(&self, e: &Entry, said: &Matched, out: &mut Vec<usize>) {
        out.clear();
        out.extend(said.filters.iter().filter_map(|no| self.by_no.get(no)));
        let unseen = self.by_change.range(said.applied + 1..).map(|(_, &i)| i);
        out.extend(unseen.filter(|&i| self.filters[i].spec.matches(&e.event.as_event())));
    }

    /// Makes filter `i` found by its id, its number and its change.
    fn index_filter(&mut self, i: usize) {
        let f = &self.filters[i];
        self.by_id.insert(f.id.clone(), i);
        self.by_no.insert(f.no, i);
        if let FilterNo::Added(seq) = f.no {
            self.by_change.insert(seq, i);
        }
    }

    /// Forgets filter `id`, cutting its subscribers off.
    fn remove(&mut self, id: &str) {
        let Some(i) = self.by_id.remove(id) else {
            return;
        };
        let f = self.filters.swap_remove(i);
        self.by_no.remove(&f.no);
        self.by_change.remove(&since(f.no));
        if i < self.filters.len() {
            self.index_filter(i);
        }
        self.close_all(f.subscribers, CloseReason::FilterDeleted);
    }

    /// The events in memory that `spec` matches from `cursor` on, in delivery order.
    fn backlog(&self, cursor: &Cursor, spec: Option<&FilterSpec>) -> Vec<Arc<Entry>> {
        // Most subscribers resume near the end: walk back only as far as the cursor.
        let mut open: usize = self.memory_from.len();
        let mut done: BTreeMap<i32, bool> = BTreeMap::new();
        let mut out = Vec::new();
        for e in self.memory.iter().rev() {
            if open == 0 {
                break;
            }
            let p = e.event.partition;
            if e.event.offset < cursor.next(p) {
                if done.insert(p, true).is_none() {
                    open = open.saturating_sub(1);
                }
                continue;
            }
            if spec.is_none_or(|s| s.matches(&e.event.as_event())) {
                out.push(e.clone());
            }
        }
        out.reverse();
        out
    }

    fn close_all(&mut self, ids: Vec<u64>, reason: CloseReason) {
        for id in ids {
            self.close(id, reason.clone());
        }
    }

    /// Stops delivering to `id` (dropping its sender ends its stream after what is buffered).
    fn close(&mut self, id: u64, reason: CloseReason) {
        if let Some(slot) = self.slots.get(&id) {
            let _ = slot.closed.set(reason);
        }
        self.forget(id);
    }

    fn forget(&mut self, id: u64) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        if let Some(n) = self.per_address.get_mut(&slot.addr) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&slot.addr);
            }
        }
        let list = match slot.filter.as_ref().and_then(|f| self.by_id.get(f)) {
            Some(&i) => &mut self.filters[i].subscribers,
            None => &mut self.everything,
        };
        list.retain(|s| *s != id);
    }
}

#[cfg(test)]
mod tests;
