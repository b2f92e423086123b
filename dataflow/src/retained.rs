//! The views over the retained history (SPEC section 3): per-user sessions and filter matches.
//!
//! Events are routed to workers by user, so each worker holds every retained event of its
//! users in a time-ordered store. The retention horizon is `newest event time - retention`,
//! where "newest" is global: every batch carries its sender's newest time, so all workers agree
//! on the horizon of each dataflow time. Each time is processed once the inputs' frontier has
//! passed it, in order: filter changes (a new filter is back-filled over the store), then new
//! events (kept only if not already behind the horizon), then eviction of what fell behind.
//! Memory is bounded by retention and by the number of users and filters.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::batch::EventBatch;
use crate::config::ViewConfig;
use crate::filter::{CompiledFilter, FilterSpec, StoredEvent};
use crate::intern::{Interner, Sym};
use crate::sessions::{Session, UserSessions};
use crate::store::EventStore;
use crate::update::ViewUpdate;

/// A filter change: `(id, spec)` with `+1` (added) or `-1` (removed).
pub type FilterChange = ((String, FilterSpec), u64, isize);

/// Sessions and filter-match counts, maintained from user-routed event batches and the filter
/// collection (which must reach every worker).
pub fn retained_views<'s>(
    batches: Stream<'s, u64, Vec<EventBatch>>,
    filters: Stream<'s, u64, Vec<FilterChange>>,
    cfg: ViewConfig,
) -> VecCollection<'s, u64, ViewUpdate, isize> {
    let route = Exchange::new(|b: &EventBatch| u64::from(b.dest));
    let local = timely::dataflow::channels::pact::Pipeline;
    batches
        .binary_frontier(
            filters,
            route,
            local,
            "RetainedViews",
            move |_cap, _info| {
                let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
                let mut state = RetainedState::new(cfg);
                move |(events, events_frontier), (filters, filters_frontier), output| {
                    let port = output.output_index();
                    events.for_each_stamp(|cap, data| {
                        if let Some(cap) = cap.retain_least(port) {
                            let entry = pending
                                .entry(*cap.time())
                                .or_insert_with(|| Pending::new(cap));
                            entry.batches.extend(data.flat_map(std::mem::take));
                        }
                    });
                    filters.for_each_stamp(|cap, data| {
                        for ((filter, time, diff), cap) in
                            data.flat_map(std::mem::take).map(|change| {
                                let c = cap.delayed(&change.1, port);
                                (change, c)
                            })
                        {
                            pending
                                .entry(time)
                                .or_insert_with(|| Pending::new(cap))
                                .filters
                                .push((filter, diff));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if events_frontier.frontier().less_equal(&time)
                            || filters_frontier.frontier().less_equal(&time)
                        {
                            break;
                        }
                        let p = entry.remove();
                        let mut session = output.session(&p.cap);
                        state.step(p.filters, &p.batches, |u, diff| {
                            session.give((u, time, diff))
                        });
                    }
                }
            },
        )
        .as_collection()
}

/// What arrived for one dataflow time.
struct Pending {
    cap: Capability<u64>,
    batches: Vec<EventBatch>,
    filters: Vec<((String, FilterSpec), isize)>,
}

impl Pending {
    fn new(cap: Capability<u64>) -> Self {
        Pending {
            cap,
            batches: Vec::new(),
            filters: Vec::new(),
        }
    }
}

/// A filter in force on this worker, with its pending change in matches.
struct ActiveFilter {
    compiled: CompiledFilter,
    multiplicity: isize,
    matches: i64,
    delta: i64,
}

/// One user's sessions, and this time's session changes.
#[derive(Default)]
struct UserState {
    sessions: UserSessions,
    /// Session changes since the last drain; an update that undoes the previous one cancels it.
    log: Vec<(Session, isize)>,
    dirty: bool,
}

/// Records a session change, cancelling it against the previous one when it undoes it (an
/// event extending a session reports `-old +new`; the next one `-new +newer`).
fn log_change(log: &mut Vec<(Session, isize)>, s: Session, diff: isize) {
    if let Some(&(last, d)) = log.last() {
        if last == s && d == -diff {
            log.pop();
            return;
        }
    }
    log.push((s, diff));
}

/// Adds `by` to the pending match change of every filter that `e` matches.
fn count_matches(
    filters: &mut BTreeMap<(String, FilterSpec), ActiveFilter>,
    e: &StoredEvent,
    by: i64,
) {
    for f in filters.values_mut() {
        if f.compiled.matches(e) {
            f.delta += by;
        }
    }
}

/// Notes that `user`'s sessions changed at this time, once.
fn mark_dirty(state: &mut UserState, user: Sym, dirty: &mut Vec<Sym>) {
    if !state.dirty {
        state.dirty = true;
        dirty.push(user);
    }
}

/// One worker's retained events, sessions and filter counts.
pub struct RetainedState {
    cfg: ViewConfig,
    /// Emojis, event types and tiers.
    labels: Interner,
    /// User ids; a user's number indexes `users` (minus one).
    user_ids: Interner,
    users: Vec<UserState>,
    store: EventStore,
    filters: BTreeMap<(String, FilterSpec), ActiveFilter>,
    newest_ts: i64,
    dirty_users: Vec<Sym>,
    /// Users seen for the first time at this time.
    new_users: Vec<Sym>,
    /// Match counts of filters removed at this time, to retract.
    removed: Vec<(String, i64)>,
}

impl RetainedState {
    /// Empty state for the views `cfg`.
    pub fn new(cfg: ViewConfig) -> Self {
        RetainedState {
            cfg,
            labels: Interner::default(),
            user_ids: Interner::default(),
            users: Vec::new(),
            // About 512 buckets over the retention period.
            store: EventStore::new(cfg.retention_ms / 512),
            filters: BTreeMap::new(),
            newest_ts: i64::MIN,
            dirty_users: Vec::new(),
            new_users: Vec::new(),
            removed: Vec::new(),
        }
    }

    fn horizon(&self) -> i64 {
        self.newest_ts.saturating_sub(self.cfg.retention_ms)
    }

    /// Processes everything of one dataflow time and reports the views' changes.
    pub fn step(
        &mut self,
        filters: Vec<((String, FilterSpec), isize)>,
        batches: &[EventBatch],
        mut emit: impl FnMut(ViewUpdate, isize),
    ) {
        for (filter, diff) in filters {
            self.change_filter(filter, diff);
        }
        for b in batches {
            self.newest_ts = self.newest_ts.max(b.sender_max_ts);
        }
        // Evicting first keeps the store's buckets within the retention period.
        self.evict();
        for b in batches {
            self.insert(b);
        }
        self.drain(&mut emit);
    }

    fn change_filter(&mut self, (id, spec): (String, FilterSpec), diff: isize) {
        let key = (id, spec);
        let entry = match self.filters.get_mut(&key) {
            Some(f) => f,
            None if diff > 0 => {
                let compiled =
                    CompiledFilter::compile(&key.1, &mut self.labels, &mut self.user_ids);
                let matches = self.store.iter().filter(|e| compiled.matches(e)).count() as i64;
                self.filters.entry(key.clone()).or_insert(ActiveFilter {
                    compiled,
                    multiplicity: 0,
                    matches: 0,
                    delta: matches,
                })
            }
            None => return,
        };
        entry.multiplicity += diff;
        if entry.multiplicity <= 0 {
            if let Some(f) = self.filters.remove(&key) {
                // Retract what was reported; what was pending was never reported.
                self.removed.push((key.0, f.matches));
            }
        }
    }

    fn user(&mut self, user_id: &str) -> Sym {
        let sym = self.user_ids.intern(user_id);
        if self.users.len() < sym as usize {
            self.users.resize_with(sym as usize, UserState::default);
            self.new_users.push(sym);
        }
        sym
    }

    fn insert(&mut self, batch: &EventBatch) {
        let horizon = self.horizon();
        let gap = self.cfg.session_gap_ms;
        for e in batch.iter() {
            // Every user is known from their first event, even one already behind the horizon.
            let user = self.user(e.user_id);
            if e.ts < horizon {
                continue;
            }
            let stored = StoredEvent {
                ts: e.ts,
                user,
                emoji: self.labels.intern_opt(e.emoji),
                event_type: self.labels.intern(e.event_type),
                tier: self.labels.intern_opt(e.tier),
                amount: e.amount.unwrap_or(f64::NAN),
                partition: e.partition,
                offset: e.offset,
            };
            count_matches(&mut self.filters, &stored, 1);
            self.store.insert(stored);
            let state = &mut self.users[user as usize - 1];
            let log = &mut state.log;
            state
                .sessions
                .insert(stored.ts, gap, &mut |s, d| log_change(log, s, d));
            mark_dirty(state, user, &mut self.dirty_users);
        }
    }

    fn evict(&mut self) {
        let gap = self.cfg.session_gap_ms;
        let horizon = self.horizon();
        let (users, filters, dirty) = (&mut self.users, &mut self.filters, &mut self.dirty_users);
        self.store.evict_before(horizon, |e| {
            count_matches(filters, e, -1);
            let state = &mut users[e.user as usize - 1];
            let log = &mut state.log;
            state
                .sessions
                .remove(e.ts, gap, &mut |s, d| log_change(log, s, d));
            mark_dirty(state, e.user, dirty);
        });
    }

    fn drain(&mut self, emit: &mut impl FnMut(ViewUpdate, isize)) {
        for user in self.new_users.drain(..) {
            emit(ViewUpdate::UserSeen(self.user_ids.name(user).to_owned()), 1);
        }
        for (id, matches) in self.removed.drain(..) {
            if matches != 0 {
                emit(ViewUpdate::FilterMatches(id), -(matches as isize));
            }
        }
        for ((id, _), f) in self.filters.iter_mut() {
            if f.delta != 0 {
                emit(ViewUpdate::FilterMatches(id.clone()), f.delta as isize);
                f.matches += f.delta;
                f.delta = 0;
            }
        }
        for user in self.dirty_users.drain(..) {
            let state = &mut self.users[user as usize - 1];
            state.dirty = false;
            let mut log = std::mem::take(&mut state.log);
            differential_dataflow::consolidation::consolidate(&mut log);
            let name = self.user_ids.name(user);
            for (session, diff) in log.drain(..) {
                emit(ViewUpdate::Session(name.to_owned(), session), diff);
            }
            // Keep the allocation for the next time.
            state.log = log;
            if state.sessions.is_empty() {
                state.sessions = UserSessions::default();
            }
        }
    }
}
