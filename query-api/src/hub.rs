//! Live delivery: every accepted event leaves the dataflow once its dataflow time is complete
//! ([`emoflow_dataflow::Delivery`], gathered on worker 0 from every worker, so it does not
//! matter which process read it), and the hub hands it to the subscribers of each filter it
//! matches, and to the subscribers of every event.
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

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use emoflow_dataflow::feed::RECENT_MATCHES;
use emoflow_dataflow::filter_index::FilterIndex;
use emoflow_dataflow::update::ShownEvent;
use emoflow_dataflow::{Delivery, FilterSpec};
use emoflow_ingest::kafka::{PartitionRange, PartitionReader, RangeEnd};
use emoflow_ingest::{decode_event, MaxFuture};
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

/// Where a subscriber stands: per partition, the next offset it has not received. Rendered
/// `0:15,1:7` (the id of SSE events and of WebSocket messages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(BTreeMap<i32, i64>);

impl Cursor {
    /// Reads `0:15,1:7`; partitions not named start from the oldest retained event.
    pub fn parse(text: &str) -> Result<Cursor, String> {
        let mut at = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part.split_once(':').and_then(|(p, o)| {
                Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?))
            });
            match parsed {
                Some((p, o)) if p >= 0 && o >= 0 => {
                    at.insert(p, o);
                }
                _ => {
                    return Err(format!(
                        "{part:?} is not PARTITION:OFFSET (a resume point looks like 0:15,1:7)"
                    ))
                }
            }
        }
        Ok(Cursor(at))
    }

    /// The cursor as text.
    pub fn render(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        parts.join(",")
    }

    fn next(&self, partition: i32) -> i64 {
        self.0.get(&partition).copied().unwrap_or(0)
    }

    /// Moves past `e` if it is ahead of the cursor; false when it was delivered already.
    fn admit(&mut self, e: &ShownEvent) -> bool {
        if e.offset < self.next(e.partition) {
            return false;
        }
        self.0.insert(e.partition, e.offset + 1);
        true
    }

    fn skip_to(&mut self, partition: i32, offset: i64) {
        if self.next(partition) < offset {
            self.0.insert(partition, offset);
        }
    }
}

/// A filter's newest matches, newest first (by event time, partition, offset).
#[derive(Debug, Default)]
struct Newest(VecDeque<Arc<Entry>>);

impl Newest {
    fn offer(&mut self, e: &Arc<Entry>) {
        let key = e.key();
        if self.0.len() >= RECENT_MATCHES && self.0.back().is_some_and(|b| b.key() >= key) {
            return;
        }
        let at = self.0.partition_point(|x| x.key() > key);
        if self.0.get(at).is_some_and(|x| x.key() == key) {
            return; // back-filled and seen live
        }
        self.0.insert(at, e.clone());
        self.0.truncate(RECENT_MATCHES);
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
    /// The incarnation (see [`emoflow_dataflow::filter_control::FilterControl`]).
    since: u64,
    subscribers: Vec<u64>,
    recent: Newest,
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

/// Where the history on disk is: the Kafka log the views read.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The views' `--max-future`, applied again to events read back.
    pub max_future: MaxFuture,
}

#[derive(Default)]
struct State {
    filters: Vec<HubFilter>,
    by_id: FxHashMap<String, usize>,
    index: FilterIndex,
    index_stale: bool,
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

    /// Starts matching filter `id` (incarnation `since`), replacing one of that id.
    pub fn add_filter(&self, id: &str, spec: FilterSpec, since: u64) {
        let mut st = lock(&self.state);
        let f = HubFilter {
            id: id.to_owned(),
            spec,
            since,
            subscribers: Vec::new(),
            recent: Newest::default(),
        };
        match st.by_id.get(id) {
            Some(&i) => {
                let old = std::mem::replace(&mut st.filters[i], f);
                st.close_all(old.subscribers, CloseReason::FilterDeleted);
            }
            None => {
                let i = st.filters.len();
                st.filters.push(f);
                st.by_id.insert(id.to_owned(), i);
            }
        }
        st.index_stale = true;
    }

    /// Stops matching filter `id`; its subscribers are told and cut off.
    pub fn remove_filter(&self, id: &str) {
        let mut st = lock(&self.state);
        let Some(i) = st.by_id.remove(id) else { return };
        let f = st.filters.swap_remove(i);
        if let Some(moved) = st.filters.get(i) {
            let moved = moved.id.clone();
            st.by_id.insert(moved, i);
        }
        st.close_all(f.subscribers, CloseReason::FilterDeleted);
        st.index_stale = true;
    }

    /// The incarnation of filter `id` the hub matches, if it has it.
    pub fn since(&self, id: &str) -> Option<u64> {
        let st = lock(&self.state);
        st.by_id.get(id).map(|&i| st.filters[i].since)
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
            st.filters[i].recent.0.iter().take(limit).cloned().collect()
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
        let entries: Vec<Arc<Entry>> = d.events.into_iter().map(Entry::new).collect();
        let found: Vec<_> = d
            .backfilled
            .into_iter()
            .map(|(key, e)| (key, Entry::new(e)))
            .collect();
        let mut st = lock(&self.state);
        let st = &mut *st;
        for (key, e) in &found {
            if let Some(&i) = st.by_id.get(&key.id) {
                if st.filters[i].since == key.since {
                    st.filters[i].recent.offer(e);
                }
            }
        }
        st.refresh_index();
        let mut full = Vec::new();
        let mut matched = Vec::new();
        for e in entries {
            matched.clear();
            st.index
                .for_each_match(&e.event.as_event(), |i| matched.push(i));
            for &i in &matched {
                let f = &mut st.filters[i];
                f.recent.offer(&e);
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

impl State {
    fn refresh_index(&mut self) {
        if self.index_stale {
            let specs: Vec<&FilterSpec> = self.filters.iter().map(|f| &f.spec).collect();
            self.index = FilterIndex::new(&specs);
            self.index_stale = false;
        }
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

enum HistoryItem {
    Events(Vec<Arc<Entry>>),
    Gap(i32, i64, i64),
    Failed(String),
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

/// How long a history read may go without reading anything.
const HISTORY_SILENCE: Duration = Duration::from_secs(30);

/// Reads `ranges` back from the log, sending the events `spec` matches and the gaps (offsets
/// the log no longer holds) in order.
fn read_history(
    log: &LogSource,
    ranges: &[PartitionRange],
    spec: Option<&FilterSpec>,
    tx: &mpsc::Sender<HistoryItem>,
) -> Result<(), String> {
    let mut reader =
        PartitionReader::new(&log.brokers, &log.topic, ranges).map_err(|e| e.to_string())?;
    let mut expect: BTreeMap<i32, i64> = ranges.iter().map(|r| (r.partition, r.start)).collect();
    let mut last_read = Instant::now();
    while !reader.is_finished() {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut page = Vec::new();
        let mut items = Vec::new();
        let n = reader.poll_batch(4096, Duration::from_millis(100), |m| {
            let next = expect.get(&m.partition).copied().unwrap_or(m.offset);
            if m.offset > next {
                if !page.is_empty() {
                    items.push(HistoryItem::Events(std::mem::take(&mut page)));
                }
                items.push(HistoryItem::Gap(m.partition, next, m.offset));
            }
            expect.insert(m.partition, m.offset + 1);
            let Ok(e) = decode_event(m.payload, m.timestamp_ms) else {
                return;
            };
            if log.max_future.check(e.ts, clock).is_err() {
                return;
            }
            if spec.is_none_or(|s| s.matches(&e)) {
                page.push(Entry::new(ShownEvent::of(&e, m.partition, m.offset)));
            }
        });
        if !page.is_empty() {
            items.push(HistoryItem::Events(page));
        }
        for item in items {
            if tx.blocking_send(item).is_err() {
                return Ok(()); // the subscriber left
            }
        }
        if n > 0 {
            last_read = Instant::now();
        } else if last_read.elapsed() > HISTORY_SILENCE {
            return Err(format!(
                "nothing could be read for {}s",
                HISTORY_SILENCE.as_secs()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(p: i32, o: i64, emoji: &str) -> ShownEvent {
        ShownEvent {
            ts: 1_000 + o,
            partition: p,
            offset: o,
            user_id: format!("u{o}"),
            emoji: Some(emoji.into()),
            event_type: "emoji".into(),
            tier: None,
            amount: None,
        }
    }

    fn delivery(events: Vec<ShownEvent>, positions: &[(i32, i64)]) -> Delivery {
        Delivery {
            as_of: 1,
            positions: positions.iter().copied().collect(),
            events,
            backfilled: Vec::new(),
        }
    }

    fn fire() -> FilterSpec {
        FilterSpec {
            emojis: Some(vec!["🔥".into()]),
            ..FilterSpec::default()
        }
    }

    const ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    async fn drain(sub: &mut Subscription) -> Vec<(i32, i64)> {
        let mut got = Vec::new();
        while let Some(outs) = sub.next(Duration::from_millis(20), 100).await {
            let mut quiet = true;
            for o in outs {
                if let Out::Event(e, _) = o {
                    got.push((e.event.partition, e.event.offset));
                    quiet = false;
                }
            }
            if quiet {
                break;
            }
        }
        got
    }

    #[test]
    fn cursors_round_trip_and_refuse_nonsense() {
        let c = Cursor::parse("0:15, 1:7").unwrap_or_default();
        assert_eq!(c.render(), "0:15,1:7");
        assert!(Cursor::parse("0-15").is_err());
        assert!(Cursor::parse("0:-1").is_err());
        assert_eq!(Cursor::parse("").map(|c| c.render()), Ok(String::new()));
    }

    #[tokio::test]
    async fn a_resumed_subscriber_misses_nothing_and_gets_nothing_twice() {
        let hub = Hub::new([(0, 0), (1, 0)].into(), None, HubLimits::default());
        hub.add_filter("f", fire(), 0);
        let mut live = hub.subscribe(Some("f"), None, ADDR).unwrap();
        hub.deliver(delivery(
            vec![event(0, 0, "🔥"), event(1, 0, "👍"), event(1, 1, "🔥")],
            &[(0, 1), (1, 2)],
        ));
        assert_eq!(drain(&mut live).await, vec![(0, 0), (1, 1)]);
        let resume = Cursor::parse(&live.cursor()).unwrap_or_default();
        drop(live);
        hub.deliver(delivery(
            vec![event(0, 1, "🔥"), event(1, 2, "🔥")],
            &[(0, 2), (1, 3)],
        ));
        let mut back = hub.subscribe(Some("f"), Some(resume), ADDR).unwrap();
        hub.deliver(delivery(vec![event(0, 2, "🔥")], &[(0, 3), (1, 3)]));
        assert_eq!(drain(&mut back).await, vec![(0, 1), (1, 2), (0, 2)]);
    }

    #[tokio::test]
    async fn a_cursor_ahead_of_the_views_skips_what_it_had() {
        // After a restart the views read the topic again from its start: a client that
        // resumes before they catch up must not get again what it had.
        let hub = Hub::new([(0, 0)].into(), None, HubLimits::default());
        hub.add_filter("f", fire(), 0);
        let mut sub = hub
            .subscribe(Some("f"), Cursor::parse("0:2").ok(), ADDR)
            .unwrap();
        let events = (0..4).map(|o| event(0, o, "🔥")).collect();
        hub.deliver(delivery(events, &[(0, 4)]));
        assert_eq!(drain(&mut sub).await, vec![(0, 2), (0, 3)]);
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_cut_off_and_told_where_to_resume() {
        let limits = HubLimits {
            buffer: 2,
            ..HubLimits::default()
        };
        let hub = Hub::new([(0, 0)].into(), None, limits);
        hub.add_filter("f", fire(), 0);
        let mut slow = hub.subscribe(Some("f"), None, ADDR).unwrap();
        let mut other = hub.subscribe(Some("f"), None, ADDR).unwrap();
        hub.deliver(delivery(
            vec![event(0, 0, "🔥"), event(0, 1, "🔥")],
            &[(0, 2)],
        ));
        assert_eq!(drain(&mut other).await.len(), 2);
        hub.deliver(delivery(vec![event(0, 2, "🔥")], &[(0, 3)]));
        assert_eq!(
            hub.stats().cut_off,
            1,
            "the full buffer is cut off, not waited for"
        );
        let mut last = Vec::new();
        while let Some(outs) = slow.next(Duration::from_millis(20), 100).await {
            last = outs;
        }
        match last.as_slice() {
            [Out::Closed { reason, cursor }] => {
                assert!(reason.contains("too slowly"), "{reason}");
                assert_eq!(cursor, "0:2");
            }
            other => panic!("expected a final message, got {other:?}"),
        }
        assert_eq!(drain(&mut other).await, vec![(0, 2)]);
    }

    #[tokio::test]
    async fn without_the_log_an_old_cursor_is_answered_with_a_reset() {
        let limits = HubLimits {
            memory_events: 2,
            ..HubLimits::default()
        };
        let hub = Hub::new([(0, 0)].into(), None, limits);
        hub.add_filter("f", fire(), 0);
        let events = (0..5).map(|o| event(0, o, "🔥")).collect();
        hub.deliver(delivery(events, &[(0, 5)]));
        let mut sub = hub
            .subscribe(Some("f"), Cursor::parse("0:1").ok(), ADDR)
            .unwrap();
        let first = sub
            .next(Duration::from_millis(20), 100)
            .await
            .unwrap_or_default();
        assert!(
            matches!(
                first.as_slice(),
                [Out::Reset {
                    requested: 1,
                    restart: 3,
                    ..
                }]
            ),
            "{first:?}"
        );
        assert_eq!(drain(&mut sub).await, vec![(0, 3), (0, 4)]);
    }

    #[test]
    fn caps_refuse_subscribers_past_them() {
        let limits = HubLimits {
            max_per_address: 1,
            ..HubLimits::default()
        };
        let hub = Hub::new(BTreeMap::new(), None, limits);
        let first = hub.subscribe(None, None, ADDR);
        assert!(first.is_ok());
        assert!(matches!(
            hub.subscribe(None, None, ADDR),
            Err(SubscribeError::Busy(_))
        ));
        drop(first);
        assert!(
            hub.subscribe(None, None, ADDR).is_ok(),
            "a leaving subscriber frees its place"
        );
        assert!(matches!(
            hub.subscribe(Some("nope"), None, ADDR),
            Err(SubscribeError::NoFilter(_))
        ));
    }
}
