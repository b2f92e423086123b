//! Folding the dataflow's view updates into a consistent state, one complete dataflow time at
//! a time, so that every number read from it comes from the same `as_of`.

use std::collections::BTreeMap;
use std::sync::Arc;

use imbl::shared_ptr::DefaultSharedPtr;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::capture::Event;
use timely::progress::frontier::MutableAntichain;

use crate::config::ViewConfig;
use crate::feed::RECENT_EVENTS;
use crate::report::{DeadLetter, Output, RunReport};
use crate::session_totals::SessionTotals;
use crate::sessions::Session;
use crate::update::{CountKey, ShownEvent, ViewUpdate, WindowSlot};

/// How many rejected messages the dead-letter store keeps (the newest; older ones are only
/// counted).
pub const DEAD_LETTERS_KEPT: usize = 10_000;

/// A batch of captured updates, as the dataflow's capture delivers them.
pub type CapturedEvent = Event<u64, Vec<(Output, u64, isize)>>;

/// A persistent hash map: clones share structure, so a snapshot costs what changed since the
/// last one, not what exists.
pub type PMap<K, V> = imbl::GenericHashMap<K, V, FxBuildHasher, DefaultSharedPtr>;

/// A persistent sorted map (see [`PMap`]).
pub type POrdMap<K, V> = imbl::OrdMap<K, V>;

/// A counter's name in the persistent maps: copying a map's node on write copies its names,
/// which must not cost an allocation each.
pub type Name = Arc<str>;

/// One user's retained sessions, newest first, exactly as long as it needs to be: a user has a
/// handful, and a million users must not each cost a hash table or spare capacity. Snapshots
/// share it; a change makes a new one.
type SessionList = Arc<[Session]>;

/// The order of a [`SessionList`]: newest first (sessions of a user never overlap; within a
/// dataflow time a session and its successor can be held together, so ties are broken).
fn newest_first(s: &Session) -> (std::cmp::Reverse<i64>, i64, u64) {
    (std::cmp::Reverse(s.start_ms), s.end_ms, s.events)
}

/// Adds `s` to `list` (`diff > 0`) or removes it (`diff < 0`); says whether `list` changed. A
/// user's updates of a dataflow time are consolidated by the worker that owns the user and
/// times are applied in order, so a session arrives once and leaves only after it arrived.
fn change_session(list: &mut Vec<Session>, s: Session, diff: isize) -> bool {
    let at = list.binary_search_by_key(&newest_first(&s), newest_first);
    match (at, diff.signum()) {
        (Err(i), 1) => {
            list.insert(i, s);
            true
        }
        (Ok(i), -1) => {
            list.remove(i);
            true
        }
        (Ok(_), 1) => {
            debug_assert!(false, "session {s:?} added twice");
            false
        }
        (Err(_), -1) => {
            debug_assert!(false, "session {s:?} left before it arrived");
            false
        }
        _ => false,
    }
}

/// Applies `(key, value)` with multiplicity `diff` to a map holding one value per key, as the
/// dataflow's keyed views (counters, top-K) produce them: within a dataflow time a key's old
/// value leaves and its new value arrives, in either order. An arrival sets the value; a
/// departure removes the key only if it still holds the departing value.
fn set_value<K: Ord + Clone, V: Clone + PartialEq>(
    map: &mut POrdMap<K, V>,
    key: K,
    value: V,
    diff: isize,
) {
    if diff > 0 {
        map.insert(key, value);
    } else if diff < 0 && map.get(&key) == Some(&value) {
        map.remove(&key);
    }
}

/// The lifetime counters (docs/views.md), kept persistent so that publishing them at every
/// dataflow time costs what changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LifetimeCounts {
    /// Accepted events.
    pub total: i64,
    /// Events per emoji.
    pub counts: POrdMap<Name, i64>,
    /// Events per event type.
    pub event_types: POrdMap<Name, i64>,
    /// Rejected inputs by reason.
    pub rejected: POrdMap<Name, i64>,
}

impl LifetimeCounts {
    fn apply(&mut self, key: CountKey, value: i64, diff: isize) {
        let (map, name) = match key {
            CountKey::Total => {
                if diff > 0 {
                    self.total = value;
                } else if diff < 0 && self.total == value {
                    self.total = 0;
                }
                return;
            }
            CountKey::Emoji(e) => (&mut self.counts, e),
            CountKey::EventType(t) => (&mut self.event_types, t),
            CountKey::Rejected(r) => (&mut self.rejected, r),
        };
        set_value(map, Name::from(name), value, diff);
    }

    /// The value of a counter (0 when absent).
    pub fn get(&self, key: &CountKey) -> i64 {
        match key {
            CountKey::Total => self.total,
            CountKey::Emoji(e) => self.counts.get(e.as_str()).copied().unwrap_or(0),
            CountKey::EventType(t) => self.event_types.get(t.as_str()).copied().unwrap_or(0),
            CountKey::Rejected(r) => self.rejected.get(r.as_str()).copied().unwrap_or(0),
        }
    }
}

/// How many of the newest skipped ranges are kept (all are counted).
pub const SKIPPED_RANGES_KEPT: usize = 20;

/// Offsets that readers passed over without reading them: events the broker dropped first.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SkippedOffsets {
    /// Offsets skipped in all.
    pub total: u64,
    /// The newest ranges, `(partition, from, to)` with `to` exclusive, oldest first.
    pub ranges: Vec<(i32, i64, i64)>,
}

impl SkippedOffsets {
    fn add(&mut self, partition: i32, from: i64, to: i64) {
        self.total += (to - from).max(0) as u64;
        self.ranges.push((partition, from, to));
        if self.ranges.len() > SKIPPED_RANGES_KEPT {
            self.ranges.remove(0);
        }
    }
}

/// The views as of one dataflow time.
///
/// Cloning is cheap enough to publish a copy at every dataflow time: every part that grows
/// with keys is a persistent structure that shares what did not change, so a snapshot costs
/// what changed since the last one (measured by `query-api/benches/snapshot_ticks.rs`).
#[derive(Debug, Default, Clone)]
pub struct ViewState {
    /// The lifetime counters.
    pub lifetime: LifetimeCounts,
    /// Emoji -> lifetime count, of the emojis in the lifetime top-K.
    pub(crate) top: POrdMap<String, i64>,
    /// Window start -> its counters.
    pub(crate) windows: POrdMap<i64, POrdMap<WindowSlot, i64>>,
    /// Window start -> emoji -> count, of the emojis in the window's top-K.
    pub(crate) window_top: POrdMap<i64, POrdMap<String, i64>>,
    /// User -> their sessions; the key is the owning worker's interned id (one copy).
    pub(crate) sessions: PMap<Arc<str>, SessionList>,
    /// Sums over `sessions`, kept as they change (`GET /sessions`).
    pub session_totals: SessionTotals,
    /// Filter id -> matches.
    pub(crate) filters: PMap<String, i64>,
    /// Kafka partition -> next offset to read: where these views stand in the log.
    pub positions: BTreeMap<i32, i64>,
    /// Worker -> the newest filter change it has applied (Kafka runs).
    pub filter_acks: BTreeMap<u32, u64>,
    /// The last accepted events in arrival order, the last first: exact between dataflow times;
    /// within one, by message timestamp (ms), partition and offset (line order, for files).
    pub recent: Vec<ShownEvent>,
    /// Recent events of the dataflow time being applied, with their arrival timestamps.
    arriving: Vec<(i64, ShownEvent)>,
    /// The newest rejected messages, oldest first.
    pub dead_letters: imbl::Vector<Arc<DeadLetter>>,
    /// Offsets the readers passed over because the broker no longer held them.
    pub skipped: SkippedOffsets,
    /// The dataflow time these numbers are complete up to.
    pub as_of: u64,
}

impl ViewState {
    /// Empty views with the parameters `cfg`.
    pub fn new(cfg: &ViewConfig) -> Self {
        ViewState {
            session_totals: SessionTotals::new(cfg.session_gap_ms),
            ..ViewState::default()
        }
    }

    /// Applies one update with its multiplicity.
    pub fn apply(&mut self, update: ViewUpdate, diff: isize) {
        match update {
            ViewUpdate::Count(k, v) => self.lifetime.apply(k, v, diff),
            ViewUpdate::Top(e, c) => set_value(&mut self.top, e, c, diff),
            ViewUpdate::WindowCount(w, slot, c) => {
                let set = self.windows.entry(w).or_default();
                set_value(set, slot, c, diff);
                if set.is_empty() {
                    self.windows.remove(&w);
                }
            }
            ViewUpdate::WindowTop(w, e, c) => {
                let set = self.window_top.entry(w).or_default();
                set_value(set, e, c, diff);
                if set.is_empty() {
                    self.window_top.remove(&w);
                }
            }
            ViewUpdate::Session(user, s) => self.apply_sessions(user, [(s, diff)]),
            ViewUpdate::UserSeen(user) => {
                if diff > 0 && !self.sessions.contains_key(&user) {
                    self.sessions.insert(user, SessionList::from([]));
                }
            }
            // Filters whose count returns to 0 (removed ones, too) leave nothing behind.
            ViewUpdate::FilterMatches(id) => {
                let n = self.filters.get(&id).copied().unwrap_or(0) + diff as i64;
                if n == 0 {
                    self.filters.remove(&id);
                } else {
                    self.filters.insert(id, n);
                }
            }
            ViewUpdate::Recent(arrival, e) => {
                if diff > 0 {
                    self.arriving.push((arrival, *e));
                }
            }
        }
    }

    /// Applies changes to one user's sessions: one look-up and one new list for all of them
    /// (a worker sends a user's changes of a time together: `-old +new`).
    fn apply_sessions(
        &mut self,
        user: Arc<str>,
        changes: impl IntoIterator<Item = (Session, isize)>,
    ) {
        let held = self.sessions.get_mut(&user);
        let mut list = held.as_ref().map_or_else(Vec::new, |l| l.to_vec());
        let had_some = !list.is_empty();
        for (s, diff) in changes {
            if change_session(&mut list, s, diff) {
                self.session_totals.change(&s, diff);
            }
        }
        match (had_some, list.is_empty()) {
            (false, false) => self.session_totals.user(1),
            (true, true) => self.session_totals.user(-1),
            _ => {}
        }
        // A user whose sessions all left retention stays, with none: seen, not unknown.
        let list = SessionList::from(list);
        match held {
            Some(slot) => *slot = list,
            None => {
                self.sessions.insert(user, list);
            }
        }
    }

    /// Applies one of the runner's reports with its multiplicity: what the views cover
    /// (positions, acknowledged filter changes) and what was rejected or passed over.
    pub fn note(&mut self, report: RunReport, diff: isize) {
        match report {
            // A position is replaced by retracting the old one and adding the new one, in
            // either order within a time.
            RunReport::Position(p, offset) => {
                if diff > 0 {
                    self.positions.insert(p, offset);
                } else if self.positions.get(&p) == Some(&offset) {
                    self.positions.remove(&p);
                }
            }
            RunReport::FilterApplied(worker, seq) => {
                if diff > 0 {
                    self.filter_acks.insert(worker, seq);
                } else if self.filter_acks.get(&worker) == Some(&seq) {
                    self.filter_acks.remove(&worker);
                }
            }
            RunReport::Skipped(p, from, to) => {
                if diff > 0 {
                    self.skipped.add(p, from, to);
                }
            }
            // Delivery's, not the state's: the collector hands them on (see
            // [`Collector::take_outbox`]).
            RunReport::Accepted(..) | RunReport::Backfilled(..) => {}
            RunReport::DeadLetter(d) => {
                if diff > 0 {
                    self.dead_letters.push_back(Arc::from(d));
                    if self.dead_letters.len() > DEAD_LETTERS_KEPT {
                        self.dead_letters.pop_front();
                    }
                }
            }
        }
    }

    /// Ends the dataflow time whose updates were applied: its recent events go before the
    /// earlier ones.
    pub fn end_time(&mut self) {
        if self.arriving.is_empty() {
            return;
        }
        let mut now = std::mem::take(&mut self.arriving);
        now.sort_unstable_by_key(|(at, e)| std::cmp::Reverse((*at, e.partition, e.offset)));
        now.truncate(RECENT_EVENTS);
        let older = std::mem::take(&mut self.recent);
        self.recent = now.into_iter().map(|(_, e)| e).chain(older).collect();
        self.recent.truncate(RECENT_EVENTS);
    }

    /// The sessions of `user` still retained, newest first; `None` for a user never seen.
    pub fn sessions_of(&self, user: &str) -> Option<Vec<Session>> {
        self.sessions.get(user).map(|list| list.to_vec())
    }

    /// The sessions of `user` still retained, newest first, as held (none for a user never
    /// seen): for reading every user's sessions without a copy each.
    pub fn held_sessions(&self, user: &str) -> &[Session] {
        self.sessions.get(user).map_or(&[], |list| list)
    }

    /// Every user's sessions, sorted by user (a stable order for floating-point sums).
    pub fn all_sessions(&self) -> BTreeMap<&str, Vec<Session>> {
        self.users_with_sessions()
            .into_iter()
            .filter_map(|user| Some((user, self.sessions_of(user)?)))
            .collect()
    }

    /// The users with a session in the retained history, sorted: the order documents list
    /// them in.
    pub fn users_with_sessions(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self
            .sessions
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(user, _)| &**user)
            .collect();
        users.sort_unstable();
        users
    }

    /// The value of a lifetime counter (0 when absent).
    pub fn count(&self, key: &CountKey) -> i64 {
        self.lifetime.get(key)
    }

    /// The matches of filter `id` (0 when it has none).
    pub fn filter_matches(&self, id: &str) -> i64 {
        self.filters.get(id).copied().unwrap_or(0)
    }
}

/// Receives captured updates and applies each dataflow time once it is complete.
pub struct Collector {
    frontier: MutableAntichain<u64>,
    pending: BTreeMap<u64, Vec<(Output, isize)>>,
    state: ViewState,
    outbox: Vec<RunReport>,
}

impl Default for Collector {
    fn default() -> Self {
        Collector::new(&ViewConfig::default())
    }
}

impl Collector {
    /// A collector of the views `cfg`, before any time is complete.
    pub fn new(cfg: &ViewConfig) -> Self {
        let mut frontier = MutableAntichain::new();
        frontier.update_iter([(0u64, 1i64)]);
        Collector {
            frontier,
            pending: BTreeMap::new(),
            state: ViewState::new(cfg),
            outbox: Vec::new(),
        }
    }

    /// Takes one captured event; returns true when the state moved to a later `as_of`.
    pub fn push(&mut self, event: CapturedEvent) -> bool {
        match event {
            Event::Messages(_, data) => {
                for (u, t, d) in data {
                    self.pending.entry(t).or_default().push((u, d));
                }
                false
            }
            Event::Progress(changes) => {
                self.frontier.update_iter(changes);
                self.apply_complete()
            }
        }
    }

    fn apply_complete(&mut self) -> bool {
        let frontier = self.frontier.frontier();
        let limit = frontier.iter().min().copied();
        let before = self.state.as_of;
        while let Some(entry) = self.pending.first_entry() {
            if limit.is_some_and(|l| *entry.key() >= l) {
                break;
            }
            let (time, updates) = entry.remove_entry();
            let mut updates = updates.into_iter().peekable();
            let mut changes = Vec::new();
            while let Some((u, d)) = updates.next() {
                match u {
                    Output::View(ViewUpdate::Session(user, s)) => {
                        changes.push((s, d));
                        while let Some((Output::View(ViewUpdate::Session(next, s)), d)) =
                            updates.peek()
                        {
                            if !Arc::ptr_eq(next, &user) && **next != *user {
                                break;
                            }
                            changes.push((*s, *d));
                            updates.next();
                        }
                        self.state.apply_sessions(user, changes.drain(..));
                    }
                    Output::View(u) => self.state.apply(u, d),
                    Output::Report(r @ (RunReport::Accepted(..) | RunReport::Backfilled(..))) => {
                        if d > 0 {
                            self.outbox.push(r);
                        }
                    }
                    Output::Report(r) => self.state.note(r, d),
                }
            }
            self.state.end_time();
            self.state.as_of = self.state.as_of.max(time);
        }
        if let Some(l) = limit {
            self.state.as_of = self.state.as_of.max(l.saturating_sub(1));
        }
        self.state.as_of > before
    }

    /// The reports for live delivery ([`RunReport::Accepted`], [`RunReport::Backfilled`])
    /// of the times applied since the last call, in the order of their times.
    pub fn take_outbox(&mut self) -> Vec<RunReport> {
        std::mem::take(&mut self.outbox)
    }

    /// True once the dataflow has finished: no update can follow.
    pub fn is_complete(&self) -> bool {
        self.frontier.frontier().is_empty()
    }

    /// The state as of the latest complete time.
    pub fn state(&self) -> &ViewState {
        &self.state
    }

    /// The state, consuming the collector.
    pub fn into_state(self) -> ViewState {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emoji(e: &str, n: i64) -> ViewUpdate {
        ViewUpdate::Count(CountKey::Emoji(e.into()), n)
    }

    #[test]
    fn a_counter_moves_whatever_the_order_of_its_old_and_new_value() {
        for new_first in [false, true] {
            let mut s = ViewState::default();
            s.apply(emoji("a", 1), 1);
            s.apply(emoji("b", 4), 1);
            let mut change = vec![(emoji("a", 1), -1), (emoji("a", 2), 1), (emoji("b", 4), -1)];
            if new_first {
                change.reverse();
            }
            for (u, d) in change {
                s.apply(u, d);
            }
            assert_eq!(
                s.count(&CountKey::Emoji("a".into())),
                2,
                "new first: {new_first}"
            );
            assert_eq!(s.count(&CountKey::Emoji("b".into())), 0);
            assert!(!s.lifetime.counts.contains_key("b"));
        }
    }

    #[test]
    fn a_users_sessions_are_listed_newest_first_whatever_the_order_they_change_in() {
        let at = |start_ms, end_ms, events| Session {
            start_ms,
            end_ms,
            events,
        };
        let session = |s: Session| ViewUpdate::Session("u".into(), s);
        let mut s = ViewState::default();
        for (x, d) in [(at(10, 10, 1), 1), (at(0, 5, 2), 1), (at(30, 30, 1), 1)] {
            s.apply(session(x), d);
        }
        // An event extends the session at 10 (its old value leaves after the new one arrived).
        s.apply(session(at(10, 12, 2)), 1);
        s.apply(session(at(10, 10, 1)), -1);
        assert_eq!(
            s.sessions_of("u"),
            Some(vec![at(30, 30, 1), at(10, 12, 2), at(0, 5, 2)])
        );
        s.apply(session(at(0, 5, 2)), -1);
        assert_eq!(s.sessions_of("u"), Some(vec![at(30, 30, 1), at(10, 12, 2)]));
        assert_eq!(s.sessions_of("v"), None);
        let totals = |s: &ViewState| {
            let t = s.session_totals.summary();
            (t.users, t.sessions)
        };
        assert_eq!(totals(&s), (1, 2));
        s.apply(session(at(30, 30, 1)), -1);
        s.apply(session(at(10, 12, 2)), -1);
        // Seen, with no session retained: known to /sessions/{user}, not counted.
        assert_eq!(s.sessions_of("u"), Some(vec![]));
        assert_eq!(totals(&s), (0, 0));
    }

    #[test]
    fn a_published_clone_does_not_see_later_changes() {
        let mut s = ViewState::default();
        s.apply(emoji("a", 1), 1);
        s.apply(ViewUpdate::WindowCount(0, WindowSlot::Total, 1), 1);
        let published = s.clone();
        s.apply(emoji("a", 1), -1);
        s.apply(emoji("a", 2), 1);
        s.apply(ViewUpdate::WindowCount(0, WindowSlot::Total, 1), -1);
        assert_eq!(published.count(&CountKey::Emoji("a".into())), 1);
        assert_eq!(published.windows.len(), 1);
        assert_eq!(s.count(&CountKey::Emoji("a".into())), 2);
        assert!(s.windows.is_empty());
    }
}
