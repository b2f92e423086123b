//! The views over the retained history (SPEC section 3): per-user sessions and filter matches.
//!
//! Events are routed to workers by user, so each worker holds every retained event of its
//! users in a time-ordered store. The retention horizon is `newest event time - retention`,
//! where "newest" is global: every batch carries its sender's newest time, so all workers agree
//! on the horizon of each dataflow time. Each time is processed once the inputs' frontier has
//! passed it, in order: filter changes (a new filter is back-filled over the store), then new
//! events (kept only if not already behind the horizon), then eviction of what fell behind.
//! Memory is bounded by retention and by the number of users and filters.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::batch::EventBatch;
use crate::config::ViewConfig;
use crate::filter::{CompiledFilter, FilterSpec, StoredEvent};
use crate::intern::{Interner, Sym};
use crate::sessions::{Session, UserSessions};
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

/// A stored event, ordered by event time for eviction.
#[derive(Debug, Clone, Copy)]
struct ByTs(StoredEvent);

impl PartialEq for ByTs {
    fn eq(&self, other: &Self) -> bool {
        self.0.ts == other.0.ts
    }
}
impl Eq for ByTs {}
impl PartialOrd for ByTs {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByTs {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.ts.cmp(&other.0.ts)
    }
}

/// A filter in force on this worker, with its pending change in matches.
struct ActiveFilter {
    compiled: CompiledFilter,
    multiplicity: isize,
    matches: i64,
    delta: i64,
}

/// One worker's retained events, sessions and filter counts.
pub struct RetainedState {
    cfg: ViewConfig,
    interner: Interner,
    store: BinaryHeap<Reverse<ByTs>>,
    users: FxHashMap<Sym, UserSessions>,
    filters: BTreeMap<(String, FilterSpec), ActiveFilter>,
    newest_ts: i64,
    session_changes: FxHashMap<(Sym, Session), isize>,
    /// Match counts of filters removed at this time, to retract.
    removed: Vec<(String, i64)>,
}

impl RetainedState {
    /// Empty state for the views `cfg`.
    pub fn new(cfg: ViewConfig) -> Self {
        RetainedState {
            cfg,
            interner: Interner::default(),
            store: BinaryHeap::new(),
            users: FxHashMap::default(),
            filters: BTreeMap::new(),
            newest_ts: i64::MIN,
            session_changes: FxHashMap::default(),
            removed: Vec::new(),
        }
    }

    /// Number of retained events on this worker.
    pub fn retained(&self) -> usize {
        self.store.len()
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
        for b in batches {
            self.insert(b);
        }
        self.evict();
        self.drain(&mut emit);
    }

    fn change_filter(&mut self, (id, spec): (String, FilterSpec), diff: isize) {
        let key = (id, spec);
        let entry = match self.filters.get_mut(&key) {
            Some(f) => f,
            None if diff > 0 => {
                let compiled = CompiledFilter::compile(&key.1, &mut self.interner);
                let matches = self
                    .store
                    .iter()
                    .filter(|Reverse(ByTs(e))| compiled.matches(e))
                    .count() as i64;
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

    fn insert(&mut self, batch: &EventBatch) {
        let horizon = self.horizon();
        let gap = self.cfg.session_gap_ms;
        for e in batch.iter().filter(|e| e.ts >= horizon) {
            let stored = StoredEvent {
                ts: e.ts,
                user: self.interner.intern(e.user_id),
                emoji: self.interner.intern_opt(e.emoji),
                event_type: self.interner.intern(e.event_type),
                tier: self.interner.intern_opt(e.tier),
                amount: e.amount.unwrap_or(f64::NAN),
                partition: e.partition,
                offset: e.offset,
            };
            for f in self.filters.values_mut() {
                if f.compiled.matches(&stored) {
                    f.delta += 1;
                }
            }
            let changes = &mut self.session_changes;
            self.users
                .entry(stored.user)
                .or_default()
                .insert(stored.ts, gap, &mut |s, d| {
                    *changes.entry((stored.user, s)).or_insert(0) += d
                });
            self.store.push(Reverse(ByTs(stored)));
        }
    }

    fn evict(&mut self) {
        let horizon = self.horizon();
        let gap = self.cfg.session_gap_ms;
        while let Some(Reverse(ByTs(e))) = self.store.peek().copied() {
            if e.ts >= horizon {
                break;
            }
            self.store.pop();
            for f in self.filters.values_mut() {
                if f.compiled.matches(&e) {
                    f.delta -= 1;
                }
            }
            if let Some(user) = self.users.get_mut(&e.user) {
                let changes = &mut self.session_changes;
                user.remove(e.ts, gap, &mut |s, d| {
                    *changes.entry((e.user, s)).or_insert(0) += d
                });
                if user.is_empty() {
                    self.users.remove(&e.user);
                }
            }
        }
    }

    fn drain(&mut self, emit: &mut impl FnMut(ViewUpdate, isize)) {
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
        for ((user, session), diff) in self.session_changes.drain() {
            if diff != 0 {
                emit(
                    ViewUpdate::Session(self.interner.name(user).to_owned(), session),
                    diff,
                );
            }
        }
    }
}
