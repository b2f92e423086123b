//! Per-user sessions (SPEC section 3): a user's events sorted by time, split wherever two
//! consecutive events lie more than the gap apart.
//!
//! [`UserSessions`] keeps one user's retained event times and the sessions over them, and
//! updates both in O(log n) per event: an insert joins, extends or bridges the neighbouring
//! sessions (a late event between two sessions merges them), and removing the earliest event
//! (retention) shortens the first session. Each change is reported as differential updates
//! (`-old`, `+new`), so nothing ever re-reads a heavy user's whole history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One session: `[start_ms, end_ms]` and how many events it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Session {
    /// Time of the first event.
    pub start_ms: i64,
    /// Time of the last event.
    pub end_ms: i64,
    /// Number of events.
    pub events: u64,
}

impl Session {
    /// `end_ms - start_ms`.
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// `events / max(duration_ms / 60000, 1.0)`.
    pub fn rate_per_min(&self) -> f64 {
        self.events as f64 / (self.duration_ms() as f64 / 60_000.0).max(1.0)
    }
}

/// One user's retained event times and sessions.
#[derive(Debug, Default, Clone)]
pub struct UserSessions {
    /// Event time → number of events at that time.
    times: BTreeMap<i64, u32>,
    /// Session start → (end, events).
    sessions: BTreeMap<i64, (i64, u64)>,
}

fn session(start: i64, (end, events): (i64, u64)) -> Session {
    Session {
        start_ms: start,
        end_ms: end,
        events,
    }
}

impl UserSessions {
    /// True when no event is retained.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The sessions, oldest first.
    pub fn sessions(&self) -> impl Iterator<Item = Session> + '_ {
        self.sessions.iter().map(|(&s, &v)| session(s, v))
    }

    /// Adds an event at `ts`; `change` hears each session that left (`-1`) or appeared (`+1`).
    pub fn insert(&mut self, ts: i64, gap: i64, change: &mut impl FnMut(Session, isize)) {
        *self.times.entry(ts).or_insert(0) += 1;
        let before = self
            .sessions
            .range(..=ts)
            .next_back()
            .map(|(&s, &v)| (s, v));
        if let Some((start, (end, events))) = before {
            if ts <= end {
                change(session(start, (end, events)), -1);
                self.sessions.insert(start, (end, events + 1));
                change(session(start, (end, events + 1)), 1);
                return;
            }
        }
        let left = before.filter(|&(_, (end, _))| ts - end <= gap);
        let right = self
            .sessions
            .range(ts + 1..)
            .next()
            .map(|(&s, &v)| (s, v))
            .filter(|&(start, _)| start - ts <= gap);
        let mut merged = (ts, (ts, 1u64));
        if let Some((start, v)) = left {
            change(session(start, v), -1);
            self.sessions.remove(&start);
            merged = (start, (ts, merged.1 .1 + v.1));
        }
        if let Some((start, v)) = right {
            change(session(start, v), -1);
            self.sessions.remove(&start);
            merged.1 = (v.0, merged.1 .1 + v.1);
        }
        self.sessions.insert(merged.0, merged.1);
        change(session(merged.0, merged.1), 1);
    }

    /// Removes one event at `ts` (a no-op if there is none). Removing a session's first or last
    /// event is O(log n); removing an inner event that leaves a gap wider than `gap` splits the
    /// session, which counts the events of the shorter side.
    pub fn remove(&mut self, ts: i64, gap: i64, change: &mut impl FnMut(Session, isize)) {
        let Some(n) = self.times.get_mut(&ts) else {
            return;
        };
        *n -= 1;
        let gone = *n == 0;
        if gone {
            self.times.remove(&ts);
        }
        let Some((&start, &(end, events))) = self.sessions.range(..=ts).next_back() else {
            return;
        };
        change(session(start, (end, events)), -1);
        self.sessions.remove(&start);
        if events == 1 {
            return;
        }
        if !gone {
            self.sessions.insert(start, (end, events - 1));
            change(session(start, (end, events - 1)), 1);
            return;
        }
        let prev = self.times.range(start..ts).next_back().map(|(&t, _)| t);
        let next = if ts < end {
            self.times.range(ts + 1..=end).next().map(|(&t, _)| t)
        } else {
            None
        };
        let parts: Vec<(i64, (i64, u64))> = match (prev, next) {
            (None, Some(n)) => vec![(n, (end, events - 1))],
            (Some(p), None) => vec![(start, (p, events - 1))],
            (Some(p), Some(n)) if n - p <= gap => vec![(start, (end, events - 1))],
            (Some(p), Some(n)) => {
                let left: u64 = self
                    .times
                    .range(start..=p)
                    .map(|(_, &c)| u64::from(c))
                    .sum();
                vec![(start, (p, left)), (n, (end, events - 1 - left))]
            }
            (None, None) => vec![],
        };
        for (s, v) in parts {
            self.sessions.insert(s, v);
            change(session(s, v), 1);
        }
    }

    /// The earliest retained event time.
    pub fn earliest(&self) -> Option<i64> {
        self.times.keys().next().copied()
    }
}

/// Sessions over `times` by the definition, computed naively (the oracle's way).
pub fn sessions_of(times: &[i64], gap: i64) -> Vec<Session> {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<Session> = Vec::new();
    for t in sorted {
        match out.last_mut() {
            Some(s) if t - s.end_ms <= gap => {
                s.end_ms = t;
                s.events += 1;
            }
            _ => out.push(Session {
                start_ms: t,
                end_ms: t,
                events: 1,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Applies changes to a multiset, which must then equal the structure's own sessions.
    fn check(us: &UserSessions, seen: &HashMap<Session, isize>, times: &[i64], gap: i64) {
        let mut from_changes: Vec<Session> = seen
            .iter()
            .filter(|(_, &n)| n != 0)
            .map(|(s, &n)| {
                assert_eq!(n, 1, "{s:?}");
                *s
            })
            .collect();
        from_changes.sort();
        let direct: Vec<Session> = us.sessions().collect();
        assert_eq!(from_changes, direct);
        assert_eq!(direct, sessions_of(times, gap));
    }

    #[test]
    fn late_event_merges_two_sessions() {
        let mut us = UserSessions::default();
        let mut seen = HashMap::new();
        let mut rec = |s, d| *seen.entry(s).or_insert(0) += d;
        us.insert(0, 20, &mut rec);
        us.insert(30, 20, &mut rec);
        assert_eq!(us.sessions().count(), 2);
        us.insert(15, 20, &mut rec);
        assert_eq!(
            us.sessions().collect::<Vec<_>>(),
            vec![Session {
                start_ms: 0,
                end_ms: 30,
                events: 3
            }]
        );
    }

    #[test]
    fn gap_equal_to_limit_stays_in_session() {
        assert_eq!(sessions_of(&[0, 10, 21], 10).len(), 2);
    }

    #[test]
    fn rate_uses_at_least_one_minute() {
        let s = Session {
            start_ms: 0,
            end_ms: 0,
            events: 3,
        };
        assert_eq!(s.rate_per_min(), 3.0);
        let s = Session {
            start_ms: 0,
            end_ms: 120_000,
            events: 3,
        };
        assert_eq!(s.rate_per_min(), 1.5);
    }

    proptest! {
        #[test]
        fn inserts_and_removals_match_the_definition(
            ops in proptest::collection::vec((0i64..200, any::<bool>()), 1..120),
            gap in 0i64..30,
        ) {
            let mut us = UserSessions::default();
            let mut seen: HashMap<Session, isize> = HashMap::new();
            let mut times: Vec<i64> = Vec::new();
            for (t, remove) in ops {
                let mut rec = |s, d| *seen.entry(s).or_insert(0) += d;
                if remove {
                    if let Some(i) = times.iter().position(|&x| x == t) {
                        times.swap_remove(i);
                        us.remove(t, gap, &mut rec);
                    }
                } else {
                    times.push(t);
                    us.insert(t, gap, &mut rec);
                }
                check(&us, &seen, &times, gap);
            }
        }
    }
}
