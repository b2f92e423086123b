//! Per-user sessions (SPEC section 3): a user's events sorted by time, split wherever two
//! consecutive events lie more than the gap apart.
//!
//! [`UserSessions`] keeps one user's retained event times and the sessions over them, and
//! updates both in O(log n) per event: an insert joins, extends or bridges the neighbouring
//! sessions (a late event between two sessions merges them), and removing the earliest event
//! (retention) shortens the first session. Each change is reported as differential updates
//! (`-old`, `+new`), so nothing ever re-reads a heavy user's whole history.

use std::collections::VecDeque;

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

/// One user's retained event times and sessions. Both are kept sorted in contiguous memory:
/// events mostly arrive in time order, so inserting is usually a push at the back and evicting
/// the earliest a pop at the front.
#[derive(Debug, Default, Clone)]
pub struct UserSessions {
    /// Retained event times, sorted (equal times repeat).
    times: VecDeque<i64>,
    /// Sessions, sorted by start; they never overlap.
    sessions: Vec<Session>,
}

impl UserSessions {
    /// True when no event is retained.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The sessions, oldest first.
    pub fn sessions(&self) -> impl Iterator<Item = Session> + '_ {
        self.sessions.iter().copied()
    }

    /// Replaces session `i` by `new`, reporting both.
    fn replace(&mut self, i: usize, new: Session, change: &mut impl FnMut(Session, isize)) {
        change(self.sessions[i], -1);
        self.sessions[i] = new;
        change(new, 1);
    }

    /// Adds an event at `ts`; `change` hears each session that left (`-1`) or appeared (`+1`).
    pub fn insert(&mut self, ts: i64, gap: i64, change: &mut impl FnMut(Session, isize)) {
        // Events mostly arrive in time order: check the back before searching.
        match self.times.back() {
            Some(&last) if last > ts => {
                let pos = self.times.partition_point(|&t| t <= ts);
                self.times.insert(pos, ts);
            }
            _ => self.times.push_back(ts),
        }
        // Sessions [0, i) start at or before ts.
        let i = match self.sessions.last() {
            Some(last) if last.start_ms > ts => self.sessions.partition_point(|s| s.start_ms <= ts),
            _ => self.sessions.len(),
        };
        if let Some(b) = i.checked_sub(1) {
            let s = self.sessions[b];
            if ts <= s.end_ms {
                self.replace(
                    b,
                    Session {
                        events: s.events + 1,
                        ..s
                    },
                    change,
                );
                return;
            }
        }
        let left = i
            .checked_sub(1)
            .filter(|&b| ts - self.sessions[b].end_ms <= gap);
        let right =
            Some(i).filter(|&r| self.sessions.get(r).is_some_and(|s| s.start_ms - ts <= gap));
        let mut merged = Session {
            start_ms: ts,
            end_ms: ts,
            events: 1,
        };
        if let Some(r) = right {
            let s = self.sessions.remove(r);
            change(s, -1);
            merged.end_ms = s.end_ms;
            merged.events += s.events;
        }
        match left {
            Some(l) => {
                let s = self.sessions[l];
                merged.start_ms = s.start_ms;
                merged.events += s.events;
                self.replace(l, merged, change);
            }
            None => {
                self.sessions.insert(i, merged);
                change(merged, 1);
            }
        }
    }

    /// Removes one event at `ts` (a no-op if there is none), in O(log n) apart from moving
    /// memory: removing a session's first or last event shortens it; removing an inner event
    /// that leaves a gap wider than `gap` splits it.
    pub fn remove(&mut self, ts: i64, gap: i64, change: &mut impl FnMut(Session, isize)) {
        let pos = self.times.partition_point(|&t| t < ts);
        if self.times.get(pos) != Some(&ts) {
            return;
        }
        self.times.remove(pos);
        let i = self.sessions.partition_point(|s| s.start_ms <= ts) - 1;
        let s = self.sessions[i];
        if s.events == 1 {
            self.sessions.remove(i);
            change(s, -1);
            return;
        }
        let still_there = self.times.get(pos) == Some(&ts);
        let prev = pos
            .checked_sub(1)
            .map(|p| self.times[p])
            .filter(|&t| t >= s.start_ms);
        let next = self.times.get(pos).copied().filter(|&t| t <= s.end_ms);
        let shorter = Session {
            events: s.events - 1,
            ..s
        };
        match (prev, next) {
            _ if still_there => self.replace(i, shorter, change),
            (None, Some(n)) => self.replace(
                i,
                Session {
                    start_ms: n,
                    ..shorter
                },
                change,
            ),
            (Some(p), None) => self.replace(
                i,
                Session {
                    end_ms: p,
                    ..shorter
                },
                change,
            ),
            (Some(p), Some(n)) if n - p <= gap => self.replace(i, shorter, change),
            (Some(p), Some(n)) => {
                let left = (pos - self.times.partition_point(|&t| t < s.start_ms)) as u64;
                self.replace(
                    i,
                    Session {
                        end_ms: p,
                        events: left,
                        ..s
                    },
                    change,
                );
                let right = Session {
                    start_ms: n,
                    end_ms: s.end_ms,
                    events: s.events - 1 - left,
                };
                self.sessions.insert(i + 1, right);
                change(right, 1);
            }
            (None, None) => {
                self.sessions.remove(i);
                change(s, -1);
            }
        }
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
