//! The views over the retained history (docs/views.md): per-user sessions and filter matches.
//!
//! Nothing here keeps an event. Each worker holds, for the users it owns, their sessions as
//! intervals (with the pieces retention evicts, see [`crate::sessions`]); and, for the filters
//! it owns, their match counts per retention bucket, counted by the reading workers
//! (the `Feed`, `feed.rs`). State is bounded by users, sessions, filters and buckets.
//!
//! **Retention.** The horizon is `newest event time - retention`, where "newest" is global:
//! every batch carries its sender's newest time, so all workers agree on the horizon of each
//! dataflow time. Event time is cut into buckets of `retention / 64`; an event is in the
//! retained history while its bucket ends after the horizon. When a bucket leaves, its events
//! leave the sessions (the first session of a user shrinks to start at its next event, or
//! leaves) and the filter counts. An event that arrives with its bucket already gone joins
//! nothing. So the views equal the definitions of docs/views.md over exactly the events whose bucket ends
//! after the final horizon, whatever the arrival order: lifetime counts and windows never
//! depend on it.
//!
//! Each dataflow time is processed once the input's frontier has passed it: eviction first,
//! then the new events and counts, then deleted filters.

use std::collections::{BTreeMap, BTreeSet};

use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::batch::{EventBatch, FilterKey};
use crate::config::ViewConfig;
use crate::intern::{Interner, Sym};
use crate::sessions::{Session, UserSessions};
use crate::update::ViewUpdate;

/// Sessions and filter-match counts, maintained from batches routed to their owning worker.
pub fn retained_views<'s>(
    batches: Stream<'s, u64, Vec<EventBatch>>,
    cfg: ViewConfig,
) -> VecCollection<'s, u64, ViewUpdate, isize> {
    let route = Exchange::new(|b: &EventBatch| u64::from(b.dest));
    let peers = batches.scope().peers();
    batches
        .unary_frontier(route, "RetainedViews", move |_cap, _info| {
            let mut pending: BTreeMap<u64, (Capability<u64>, Vec<EventBatch>)> = BTreeMap::new();
            let mut state = RetainedState::new(cfg, peers);
            move |(input, frontier), output| {
                let port = output.output_index();
                input.for_each_stamp(|cap, data| {
                    if let Some(cap) = cap.retain_least(port) {
                        let entry = pending
                            .entry(*cap.time())
                            .or_insert_with(|| (cap, Vec::new()));
                        entry.1.extend(data.flat_map(std::mem::take));
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    let time = *entry.key();
                    if frontier.less_equal(&time) {
                        break;
                    }
                    let (cap, batches) = entry.remove();
                    let mut session = output.session(&cap);
                    state.step(&batches, |u, diff| session.give((u, time, diff)));
                }
            }
        })
        .as_collection()
}

/// One user's sessions, and where they wait for eviction.
#[derive(Default)]
struct UserState {
    sessions: UserSessions,
    /// The key under which the user waits in the eviction queue, if they do.
    queued_at: Option<i64>,
    /// Where the user's newest change of this time is in the worker's buffer, plus one (0:
    /// none), so that the next change can cancel it.
    last_change: u32,
}

/// The session changes of one dataflow time, of every user of the worker: one buffer for all
/// (a per-user buffer costs each of a million users its own allocation), consolidated when
/// the time ends (an event extending a session reports `-old +new`; the next one `-new
/// +newer`, which cancels).
#[derive(Default)]
struct SessionChanges(Vec<((Sym, Session), isize)>);

impl SessionChanges {
    /// Records a change of `user`'s, cancelling their previous one when it undoes it (`-new`
    /// after `+new`): a heavy user then leaves about one change per event, not two. `last` is
    /// the user's [`UserState::last_change`]; a stale one (from an earlier time) can only point
    /// at an entry of another user or session, or at one it may rightly cancel.
    fn record(&mut self, last: &mut u32, user: Sym, s: Session, diff: isize) {
        if let Some(entry) = last.checked_sub(1).and_then(|i| self.0.get_mut(i as usize)) {
            if entry.0 == (user, s) && entry.1 == -diff {
                entry.1 = 0;
                *last = 0;
                return;
            }
        }
        self.0.push(((user, s), diff));
        *last = u32::try_from(self.0.len()).unwrap_or(0);
    }

    /// The time's net changes, by user: the buffer is kept for the next time.
    fn drain(&mut self) -> std::vec::Drain<'_, ((Sym, Session), isize)> {
        differential_dataflow::consolidation::consolidate(&mut self.0);
        self.0.drain(..)
    }
}

/// One filter's retained matches, by retention bucket.
#[derive(Default)]
struct FilterCounts {
    buckets: BTreeMap<i64, i64>,
    /// What the views show.
    reported: i64,
    /// The change not yet reported.
    delta: i64,
}

/// One worker's sessions and filter counts.
pub struct RetainedState {
    cfg: ViewConfig,
    peers: usize,
    /// User ids; a user's number indexes `users` (minus one).
    user_ids: Interner,
    users: Vec<UserState>,
    /// Users with retained sessions, by the end of the bucket of their oldest piece.
    evict_queue: BTreeSet<(i64, Sym)>,
    filters: FxHashMap<FilterKey, FilterCounts>,
    /// Deleted filters, with how many readers said so: late counts of theirs are dropped.
    deleted: FxHashMap<FilterKey, usize>,
    newest_ts: i64,
    changes: SessionChanges,
    /// Users seen for the first time at this time.
    new_users: Vec<Sym>,
    /// Match counts of filters deleted at this time, to retract.
    retract: Vec<(String, i64)>,
}

impl RetainedState {
    /// Empty state for the views `cfg`, among `peers` workers.
    pub fn new(cfg: ViewConfig, peers: usize) -> Self {
        RetainedState {
            cfg,
            peers: peers.max(1),
            user_ids: Interner::default(),
            users: Vec::new(),
            evict_queue: BTreeSet::new(),
            filters: FxHashMap::default(),
            deleted: FxHashMap::default(),
            newest_ts: i64::MIN,
            changes: SessionChanges::default(),
            new_users: Vec::new(),
            retract: Vec::new(),
        }
    }

    fn horizon(&self) -> i64 {
        self.cfg.horizon(self.newest_ts)
    }

    /// Processes everything of one dataflow time and reports the views' changes.
    pub fn step(&mut self, batches: &[EventBatch], mut emit: impl FnMut(ViewUpdate, isize)) {
        for b in batches {
            self.newest_ts = self.newest_ts.max(b.sender_max_ts);
        }
        self.evict();
        for b in batches {
            self.insert(b);
        }
        for b in batches {
            for key in &b.filters_removed {
                self.delete_filter(key);
            }
        }
        self.drain(&mut emit);
    }

    fn user(&mut self, user_id: &str) -> Sym {
        let sym = self.user_ids.intern(user_id);
        if self.users.len() < sym as usize {
            self.users.resize_with(sym as usize, UserState::default);
            self.new_users.push(sym);
        }
        sym
    }

    /// Puts `user` in the eviction queue under the bucket of their oldest piece.
    fn requeue(&mut self, user: Sym) {
        let state = &mut self.users[user as usize - 1];
        let key = state
            .sessions
            .first_piece_start()
            .map(|t| self.cfg.retained_until(t));
        if key != state.queued_at {
            if let Some(old) = state.queued_at {
                self.evict_queue.remove(&(old, user));
            }
            if let Some(new) = key {
                self.evict_queue.insert((new, user));
            }
            state.queued_at = key;
        }
    }

    fn insert(&mut self, batch: &EventBatch) {
        let horizon = self.horizon();
        let gap = self.cfg.session_gap_ms;
        let cfg = self.cfg;
        for (user_id, ts) in batch.iter() {
            // Every user is known from their first event, even one already behind the horizon.
            let user = self.user(user_id);
            if !cfg.retains(ts, horizon) {
                continue;
            }
            let state = &mut self.users[user as usize - 1];
            let changes = &mut self.changes;
            state
                .sessions
                .insert(ts, gap, |t| cfg.bucket_of(t), &mut |s, d| {
                    changes.record(&mut state.last_change, user, s, d)
                });
            self.requeue(user);
        }
        for d in &batch.filter_deltas {
            if self.deleted.contains_key(&d.key) || cfg.bucket_end(d.bucket) <= horizon {
                continue;
            }
            let f = self.filters.entry(d.key.clone()).or_default();
            *f.buckets.entry(d.bucket).or_default() += d.matches;
            f.delta += d.matches;
        }
    }

    fn evict(&mut self) {
        let horizon = self.horizon();
        let cfg = self.cfg;
        while let Some(&(key, user)) = self.evict_queue.first() {
            if key > horizon {
                break;
            }
            self.evict_queue.pop_first();
            let state = &mut self.users[user as usize - 1];
            state.queued_at = None;
            let changes = &mut self.changes;
            state
                .sessions
                .evict(|p| !cfg.retains(p.start_ms, horizon), &mut |s, d| {
                    changes.record(&mut state.last_change, user, s, d)
                });
            self.requeue(user);
        }
        for f in self.filters.values_mut() {
            while let Some(entry) = f.buckets.first_entry() {
                if cfg.bucket_end(*entry.key()) > horizon {
                    break;
                }
                f.delta -= entry.remove();
            }
        }
    }

    fn delete_filter(&mut self, key: &FilterKey) {
        if let Some(f) = self.filters.remove(key) {
            // Retract what was reported; what was pending was never reported.
            self.retract.push((key.id.clone(), f.reported));
        }
        let told = self.deleted.entry(key.clone()).or_default();
        *told += 1;
        if *told >= self.peers {
            // Every reader has stopped counting it: nothing more of it can come.
            self.deleted.remove(key);
        }
    }

    fn drain(&mut self, emit: &mut impl FnMut(ViewUpdate, isize)) {
        for user in self.new_users.drain(..) {
            emit(ViewUpdate::UserSeen(self.user_ids.shared(user)), 1);
        }
        for (id, matches) in self.retract.drain(..) {
            if matches != 0 {
                emit(ViewUpdate::FilterMatches(id), -(matches as isize));
            }
        }
        for (key, f) in self.filters.iter_mut() {
            if f.delta != 0 {
                emit(ViewUpdate::FilterMatches(key.id.clone()), f.delta as isize);
                f.reported += f.delta;
                f.delta = 0;
            }
        }
        for ((user, session), diff) in self.changes.drain() {
            emit(
                ViewUpdate::Session(self.user_ids.shared(user), session),
                diff,
            );
        }
    }
}
