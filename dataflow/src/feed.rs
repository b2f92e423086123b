//! Turning one worker's decoded events into the dataflow's inputs for one dataflow time:
//! counters pre-aggregated locally (one record per key per batch, not per event) and events
//! routed to the worker that owns their user, in columnar batches.

use std::collections::VecDeque;

use emoflow_ingest::{Event, RejectCounts, RejectReason};
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::xxh3_64;

use crate::batch::EventBatch;
use crate::config::ViewConfig;
use crate::update::{CountKey, DeadLetterRecord, ViewUpdate, WindowSlot};
use crate::views::ViewInputs;

/// The worker that owns `user_id`'s sessions and retained events, among `peers`.
pub fn owner_of(user_id: &str, peers: usize) -> u32 {
    (xxh3_64(user_id.as_bytes()) % peers.max(1) as u64) as u32
}

/// How many of the newest accepted events the views show (`recent` in `GET /stats`).
pub const RECENT_EVENTS: usize = 10;

/// Per-window counters of one batch.
#[derive(Default)]
struct WindowAgg {
    total: i64,
    emojis: FxHashMap<Box<str>, i64>,
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
    dead_letters: Vec<DeadLetterRecord>,
    /// The last accepted events of this batch: (destination batch, index in it, arrival).
    recent: VecDeque<(usize, usize, i64)>,
    /// Newest event time this worker has seen, ever.
    newest_ts: i64,
    newest_sent: i64,
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
            recent: VecDeque::with_capacity(RECENT_EVENTS + 1),
            newest_ts: i64::MIN,
            newest_sent: i64::MIN,
        }
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
        let batch = &mut self.batches[dest];
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back((dest, batch.len(), arrival));
        batch.push(e, partition, offset);
    }

    /// Counts a rejected input.
    pub fn reject(&mut self, reason: RejectReason) {
        self.rejected.add(reason);
    }

    /// Counts a rejected message and keeps it for the dead-letter store.
    pub fn reject_kept(&mut self, record: DeadLetterRecord, reason: RejectReason) {
        self.rejected.add(reason);
        self.dead_letters.push(record);
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
            inputs.extras.update(ViewUpdate::DeadLetter(record), 1);
        }
        for (dest, i, arrival) in self.recent.drain(..) {
            let e = self.batches[dest].get(i).to_shown();
            inputs.extras.update(ViewUpdate::Recent(arrival, e), 1);
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
