//! Turning one worker's decoded events into the dataflow's inputs for one dataflow time:
//! counters and filter matches pre-aggregated locally (one record per key per batch, not per
//! event), and `(user, ts)` pairs routed to the worker that owns their user's sessions, in
//! columnar batches.
//!
//! Filters are matched here, where events are read, so a filter added while running is
//! back-filled by the same worker over what it read before: the seam between back-fill and live
//! counting is exact per reading worker (see [`Feed::add_filter`]).

use std::sync::Arc;

use emoflow_ingest::{Event, RejectCounts, RejectReason};
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

use crate::batch::{EventBatch, FilterDelta, FilterKey, FilterNo};
use crate::config::ViewConfig;
use crate::filter::{Amount, FilterSpec};
use crate::filter_classes::{ClassCounter, ClassId};
use crate::filter_control::FilterChange;
use crate::filter_index::FilterIndex;
use crate::newest::Newest;
use crate::report::{DeadLetter, Matched, RunReport};
use crate::update::{CountKey, ShownEvent, ViewUpdate, WindowSlot};
use crate::views::ViewInputs;

/// The worker that owns `user_id`'s sessions and retained events, among `peers`.
pub fn owner_of(user_id: &str, peers: usize) -> u32 {
    (xxh3_64(user_id.as_bytes()) % peers.max(1) as u64) as u32
}

/// How many of the newest accepted events the views show (`recent` in `GET /stats`).
pub const RECENT_EVENTS: usize = 10;

/// Moves `f`'s pending match counts into `batch`.
fn push_deltas(f: &mut CountedFilter, batch: &mut EventBatch) {
    for (bucket, matches) in f.pending.drain(..) {
        batch.filter_deltas.push(FilterDelta {
            key: f.key.clone(),
            bucket,
            matches,
        });
    }
}

/// Per-window counters of one batch.
#[derive(Default)]
struct WindowAgg {
    total: i64,
    emojis: FxHashMap<Box<str>, i64>,
}

/// A filter this worker counts matches of.
struct CountedFilter {
    key: FilterKey,
    /// Its number, by which events say they matched it.
    no: FilterNo,
    spec: FilterSpec,
    /// The worker that owns its counts.
    dest: usize,
    /// Matches since the last flush, by retention bucket.
    pending: Vec<(i64, i64)>,
    /// Added since the last back-fill: [`Feed::count_history`] counts for it.
    backfilling: bool,
    /// With delivery on, its newest matches found by the back-fill (at most
    /// [`crate::newest::RECENT_MATCHES`]), sent once it ends.
    found: Newest<ShownEvent>,
}

impl CountedFilter {
    fn bump(&mut self, bucket: i64, events: i64) {
        match self.pending.iter_mut().rev().find(|(b, _)| *b == bucket) {
            Some((_, n)) => *n += events,
            None => self.pending.push((bucket, events)),
        }
    }
}

/// One of the newest accepted events, in buffers reused from event to event.
#[derive(Default)]
struct RecentSlot {
    arrival: i64,
    ts: i64,
    partition: i32,
    offset: i64,
    user_id: String,
    /// Empty when absent (a present emoji or tier is never empty).
    emoji: String,
    event_type: String,
    tier: String,
    amount: Option<f64>,
}

fn refill(buf: &mut String, v: &str) {
    buf.clear();
    buf.push_str(v);
}

impl RecentSlot {
    fn fill(&mut self, e: &Event<'_>, partition: i32, offset: i64, arrival: i64) {
        self.arrival = arrival;
        self.ts = e.ts;
        self.partition = partition;
        self.offset = offset;
        refill(&mut self.user_id, &e.user_id);
        refill(&mut self.emoji, e.emoji.as_deref().unwrap_or(""));
        refill(&mut self.event_type, &e.event_type);
        refill(&mut self.tier, e.tier.as_deref().unwrap_or(""));
        self.amount = e.amount;
    }

    fn shown(&self) -> ShownEvent {
        let opt = |s: &String| (!s.is_empty()).then(|| s.clone());
        ShownEvent {
            ts: self.ts,
            partition: self.partition,
            offset: self.offset,
            user_id: self.user_id.clone(),
            emoji: opt(&self.emoji),
            event_type: self.event_type.clone(),
            tier: opt(&self.tier),
            amount: self.amount.map(Amount),
        }
    }
}

/// One worker's input for one dataflow time, being gathered.
pub struct Feed {
    cfg: ViewConfig,
    peers: usize,
    batches: Vec<EventBatch>,
    total: i64,
    emojis: FxHashMap<Box<str>, i64>,
    event_types: FxHashMap<Box<str>, i64>,
    windows: FxHashMap<i64, WindowAgg>,
    rejected: RejectCounts,
    dead_letters: Vec<DeadLetter>,
    /// The last accepted events of this batch, a ring: `recent[next]` is overwritten next.
    recent: Vec<RecentSlot>,
    recent_next: usize,
    recent_len: usize,
    filters: Vec<CountedFilter>,
    /// `filters`, indexed for matching event by event, for the back-fill only; rebuilt when a
    /// back-fill needs it after they changed.
    index: FilterIndex,
    index_stale: bool,
    /// `filters` again, for counting what is read: per class of events (see
    /// [`crate::filter_classes`]); rebuilt on the next event read after they change, so that
    /// adding many filters at once builds it once.
    classes: ClassCounter,
    classes_stale: bool,
    /// Newest event time this worker has seen, ever.
    newest_ts: i64,
    newest_sent: i64,
    /// Whether accepted events and back-filled matches go out for live delivery.
    deliver: bool,
    /// The newest filter change applied (0: none yet).
    applied: u64,
    /// With delivery on: the events accepted since the last flush, and the filters each
    /// matched.
    accepted: Vec<(ShownEvent, Matched)>,
    /// With delivery on: accepted events whose class is not matched yet, with the filters
    /// listing their users that they matched.
    waiting: Vec<(ShownEvent, Option<ClassId>, Vec<FilterNo>)>,
    /// The list of an event that matched no filter, shared.
    matched_none: Arc<[FilterNo]>,
    /// With delivery on: back-filled filters' newest matches, to send at the next flush.
    found: Vec<RunReport>,
}

fn bump(map: &mut FxHashMap<Box<str>, i64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.into(), 1);
        }
    }
}

impl Feed {
    /// A feed for a worker among `peers`.
    pub fn new(cfg: ViewConfig, peers: usize) -> Self {
        Feed {
            cfg,
            peers,
            batches: (0..peers as u32).map(EventBatch::new).collect(),
            total: 0,
            emojis: FxHashMap::default(),
            event_types: FxHashMap::default(),
            windows: FxHashMap::default(),
            rejected: RejectCounts::default(),
            dead_letters: Vec::new(),
            recent: (0..RECENT_EVENTS).map(|_| RecentSlot::default()).collect(),
            recent_next: 0,
            recent_len: 0,
            filters: Vec::new(),
            index: FilterIndex::default(),
            classes: ClassCounter::default(),
            index_stale: false,
            classes_stale: false,
            newest_ts: i64::MIN,
            newest_sent: i64::MIN,
            deliver: false,
            applied: 0,
            accepted: Vec::new(),
            waiting: Vec::new(),
            matched_none: Arc::from([]),
            found: Vec::new(),
        }
    }

    /// Sends every accepted event, and each back-filled filter's newest matches, out of the
    /// dataflow for live delivery (see [`RunReport::Accepted`]).
    pub fn deliver_events(&mut self) {
        self.deliver = true;
    }

    /// Adds an accepted event read at `(partition, offset)`; `arrival` is its Kafka message
    /// timestamp (0 for files), which orders `recent` within a dataflow time.
    pub fn accept(&mut self, e: &Event<'_>, partition: i32, offset: i64, arrival: i64) {
        self.total += 1;
        bump(&mut self.event_types, &e.event_type);
        let window = self.windows.entry(self.cfg.window_of(e.ts)).or_default();
        window.total += 1;
        if let Some(emoji) = &e.emoji {
            bump(&mut self.emojis, emoji);
            bump(&mut window.emojis, emoji);
        }
        self.newest_ts = self.newest_ts.max(e.ts);
        let dest = owner_of(&e.user_id, self.peers) as usize;
        self.batches[dest].push(&e.user_id, e.ts);
        self.recent[self.recent_next].fill(e, partition, offset, arrival);
        self.recent_next = (self.recent_next + 1) % RECENT_EVENTS;
        self.recent_len = (self.recent_len + 1).min(RECENT_EVENTS);
        let mut class = None;
        let mut listing = Vec::new();
        if !self.filters.is_empty() {
            self.refresh_classes();
            let bucket = self.cfg.bucket_of(e.ts);
            let filters = &mut self.filters;
            let deliver = self.deliver;
            class = self.classes.add(e, bucket, |i, n| {
                let f = &mut filters[i];
                f.bump(bucket, n);
                if deliver {
                    listing.push(f.no);
                }
            });
        }
        if self.deliver {
            let shown = ShownEvent::of(e, partition, offset);
            self.waiting.push((shown, class, listing));
        }
    }

    /// Adds the matches of the event classes counted so far to the filters' counts, and, with
    /// delivery on, tells each accepted event waiting for its class which filters it matched.
    /// Runs before the filters change (their numbers move) and before each flush.
    fn drain_classes(&mut self) {
        let filters = &mut self.filters;
        let deliver = self.deliver;
        // Class c matched `flat[ends[c - 1]..ends[c]]` (numbers in `filters`).
        let mut flat = Vec::new();
        let mut ends = Vec::new();
        self.classes.drain(
            |i, bucket, n| filters[i].bump(bucket, n),
            |_, matched| {
                if deliver {
                    flat.extend_from_slice(matched);
                    ends.push(flat.len());
                }
            },
        );
        if self.waiting.is_empty() {
            return;
        }
        let lists: Vec<Arc<[FilterNo]>> = (0..ends.len())
            .map(|c| {
                let from = if c == 0 { 0 } else { ends[c - 1] };
                flat[from..ends[c]].iter().map(|&i| filters[i].no).collect()
            })
            .collect();
        let applied = self.applied;
        for (event, class, listing) in self.waiting.drain(..) {
            let of_class = class.and_then(|c| lists.get(c.0 as usize));
            let filters = match (of_class, listing.is_empty()) {
                (Some(list), true) => list.clone(),
                (None, true) => self.matched_none.clone(),
                (None, false) => listing.into(),
                (Some(list), false) => list.iter().copied().chain(listing).collect(),
            };
            self.accepted.push((event, Matched { applied, filters }));
        }
    }

    /// Applies one change to the filters this worker counts; `since` numbers it the same on
    /// every worker (it tells incarnations of one id apart). Filters added must then be
    /// back-filled (see [`Feed::add_filter`]).
    pub fn apply_change(&mut self, since: u64, change: &FilterChange) {
        // Events waiting for their class were read before this change.
        self.drain_classes();
        self.applied = since;
        match change {
            FilterChange::Add { id, spec } => {
                let key = FilterKey {
                    id: id.clone(),
                    since,
                };
                self.add_filter(key, spec);
            }
            FilterChange::Remove { id } => self.remove_filter(id),
        }
    }

    /// Starts counting the matches of a new filter in what this worker reads from now on. The
    /// caller back-fills it over what this worker read before, with [`Feed::count_history`]
    /// and then [`Feed::end_backfill`]: every event is counted once, live or back-filled, never
    /// both.
    fn add_filter(&mut self, key: FilterKey, spec: &FilterSpec) {
        let no = FilterNo::Added(key.since);
        self.push_filter(key, no, spec, true);
    }

    fn push_filter(&mut self, key: FilterKey, no: FilterNo, spec: &FilterSpec, backfilling: bool) {
        self.remove_filter(&key.id);
        self.push_new_filter(key, no, spec, backfilling);
    }

    /// Adds a filter whose id is not counted yet.
    fn push_new_filter(
        &mut self,
        key: FilterKey,
        no: FilterNo,
        spec: &FilterSpec,
        backfilling: bool,
    ) {
        self.drain_classes();
        let dest = owner_of(&key.id, self.peers) as usize;
        self.filters.push(CountedFilter {
            key,
            no,
            spec: spec.clone(),
            dest,
            pending: Vec::new(),
            backfilling,
            found: Newest::default(),
        });
        self.filters_changed();
    }

    /// Marks both matchers out of date; each is rebuilt when next used.
    fn filters_changed(&mut self) {
        self.index_stale = true;
        self.classes_stale = true;
    }

    fn specs(&self) -> Vec<&FilterSpec> {
        self.filters.iter().map(|f| &f.spec).collect()
    }

    /// Rebuilds the back-fill's index if the filters changed since it was built.
    fn refresh_index(&mut self) {
        if self.index_stale {
            self.index = FilterIndex::new(&self.specs());
            self.index_stale = false;
        }
    }

    /// Rebuilds the class counter if the filters changed since it was built.
    fn refresh_classes(&mut self) {
        if self.classes_stale {
            self.classes = ClassCounter::new(&self.specs());
            self.classes_stale = false;
        }
    }

    /// Starts counting `filters` from the start of a run, where there is no history to
    /// back-fill.
    pub fn add_initial_filters(&mut self, filters: &[(String, FilterSpec)]) {
        // Ids in a list are distinct: no need to look for each one among the others (which
        // took a quarter of a run with 10,000 filters).
        let fresh = self.filters.is_empty();
        for (n, (id, spec)) in filters.iter().enumerate() {
            let key = FilterKey {
                id: id.clone(),
                since: 0,
            };
            let no = FilterNo::Initial(n as u32);
            if fresh {
                self.push_new_filter(key, no, spec, false);
            } else {
                self.push_filter(key, no, spec, false);
            }
        }
    }

    /// Stops counting filter `id`; its counts leave the views.
    pub fn remove_filter(&mut self, id: &str) {
        self.drain_classes();
        if let Some(i) = self.filters.iter().position(|f| f.key.id == id) {
            let mut f = self.filters.swap_remove(i);
            let batch = &mut self.batches[f.dest];
            push_deltas(&mut f, batch);
            batch.filters_removed.push(f.key);
            self.filters_changed();
        }
    }

    /// True when filters were added since the last back-fill.
    pub fn needs_backfill(&self) -> bool {
        self.filters.iter().any(|f| f.backfilling)
    }

    /// Counts `e`, an event this worker read before the filters added since the last
    /// back-fill: one pass over the history serves every filter added in the meantime. When
    /// the source says where it was read, `(partition, offset)`, and delivery is on, the
    /// newest matches are kept for `recent`.
    pub fn count_history(&mut self, e: &Event<'_>, at: Option<(i32, i64)>) {
        self.refresh_index();
        let bucket = self.cfg.bucket_of(e.ts);
        let keep = at.filter(|_| self.deliver);
        let filters = &mut self.filters;
        self.index.for_each_match(e, |i| {
            let f = &mut filters[i];
            if f.backfilling {
                f.bump(bucket, 1);
                if let Some((partition, offset)) = keep {
                    f.found.offer((e.ts, partition, offset), || {
                        ShownEvent::of(e, partition, offset)
                    });
                }
            }
        });
    }

    /// Ends the back-fill: the filters added before it now count only what is read.
    pub fn end_backfill(&mut self) {
        for f in &mut self.filters {
            if f.backfilling && self.deliver {
                for event in f.found.take() {
                    self.found
                        .push(RunReport::Backfilled(f.key.clone(), Box::new(event)));
                }
            }
            f.backfilling = false;
        }
    }

    /// Counts a rejected input.
    pub fn reject(&mut self, reason: RejectReason) {
        self.rejected.add(reason);
    }

    /// Counts a rejected message and keeps it for the dead-letter store.
    pub fn reject_kept(&mut self, record: DeadLetter, reason: RejectReason) {
        self.rejected.add(reason);
        self.dead_letters.push(record);
    }

    /// With delivery on, the events accepted since the last flush, each with the filters it
    /// matched; counts every filter match gathered so far.
    fn take_accepted(&mut self) -> Vec<(ShownEvent, Matched)> {
        self.drain_classes();
        std::mem::take(&mut self.accepted)
    }

    /// Sends what was gathered into `inputs` at their current time and starts afresh.
    pub fn flush_into(&mut self, inputs: &mut ViewInputs) {
        let counts = &mut inputs.counts;
        if self.total > 0 {
            counts.update(CountKey::Total, self.total as isize);
        }
        for (k, n) in self.emojis.drain() {
            counts.update(CountKey::Emoji(k.into()), n as isize);
        }
        for (k, n) in self.event_types.drain() {
            counts.update(CountKey::EventType(k.into()), n as isize);
        }
        for (reason, n) in self.rejected.nonzero() {
            counts.update(CountKey::Rejected(reason.as_str().to_owned()), n as isize);
        }
        for (window, agg) in self.windows.drain() {
            inputs
                .windows
                .send(((window, WindowSlot::Total), agg.total));
            for (emoji, n) in agg.emojis {
                inputs
                    .windows
                    .send(((window, WindowSlot::Emoji(emoji.into())), n));
            }
        }
        for record in self.dead_letters.drain(..) {
            inputs
                .reports
                .update(RunReport::DeadLetter(Box::new(record)), 1);
        }
        let oldest = (self.recent_next + RECENT_EVENTS - self.recent_len) % RECENT_EVENTS;
        for i in 0..self.recent_len {
            let slot = &self.recent[(oldest + i) % RECENT_EVENTS];
            let shown = ViewUpdate::Recent(slot.arrival, Box::new(slot.shown()));
            inputs.extras.update(shown, 1);
        }
        self.recent_len = 0;
        for (event, matched) in self.take_accepted() {
            inputs
                .reports
                .update(RunReport::Accepted(Box::new(event), matched), 1);
        }
        for found in self.found.drain(..) {
            inputs.reports.update(found, 1);
        }
        for f in &mut self.filters {
            push_deltas(f, &mut self.batches[f.dest]);
        }
        // Every worker must learn a new high-water mark, even ones this batch sends no events.
        let announce = self.newest_ts > self.newest_sent;
        for b in &mut self.batches {
            if !b.is_empty() || announce {
                b.sender_max_ts = self.newest_ts;
                // Sized like this one: the next batch is likely as large, so it need not grow.
                let next = EventBatch::with_capacity_of(b.dest, b);
                let full = std::mem::replace(b, next);
                inputs.batches.send(full);
            }
        }
        self.newest_sent = self.newest_ts;
        self.total = 0;
        self.rejected = RejectCounts::default();
    }
}

#[cfg(test)]
#[path = "feed_tests.rs"]
mod tests;
