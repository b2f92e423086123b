//! Per-user sessions (docs/views.md): a user's events sorted by time, split wherever two
//! consecutive events lie more than the gap apart.
//!
//! [`UserSessions`] keeps one user's sessions as intervals, and updates them in O(log n) per
//! event: an insert joins, extends or bridges the neighbouring sessions (a late event between
//! two sessions merges them), and retention removes the oldest bucket's piece of the first
//! session. Each change is reported as differential updates (`-old`, `+new`), so nothing ever
//! re-reads a heavy user's history, and no event is kept.

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

/// One user's retained sessions, and the pieces they are made of: a piece is the part of a
/// session that lies in one retention bucket (see [`crate::config::ViewConfig::retains`]).
/// Pieces are what retention evicts: when the oldest bucket leaves, its pieces leave, and the
/// session they belonged to loses their events and starts at its next piece. Memory is bounded
/// by sessions and buckets, never by events.
#[derive(Debug, Default, Clone)]
pub struct UserSessions {
    /// Sessions, sorted by start; they never overlap.
    sessions: VecDeque<Session>,
    /// Pieces of the sessions, cut at bucket boundaries, sorted; they never overlap.
    pieces: VecDeque<Session>,
}

/// Replaces interval `i` by `new`, reporting both.
fn replace_at(
    iv: &mut VecDeque<Session>,
    i: usize,
    new: Session,
    change: &mut impl FnMut(Session, isize),
) {
    change(iv[i], -1);
    iv[i] = new;
    change(new, 1);
}

/// Adds an event at `ts` to sorted, disjoint intervals, where `joins(a, b)` says whether
/// events at `a <= b` with nothing between them belong to one interval. An insert joins,
/// extends or bridges the neighbouring intervals (a late event between two may merge them);
/// `change` hears each interval that left (`-1`) or appeared (`+1`).
fn insert_into(
    iv: &mut VecDeque<Session>,
    ts: i64,
    joins: impl Fn(i64, i64) -> bool,
    change: &mut impl FnMut(Session, isize),
) {
    // Intervals [0, i) start at or before ts; events mostly come in time order.
    let i = match iv.back() {
        Some(last) if last.start_ms > ts => iv.partition_point(|s| s.start_ms <= ts),
        _ => iv.len(),
    };
    if let Some(b) = i.checked_sub(1) {
        let s = iv[b];
        if ts <= s.end_ms {
            let grown = Session {
                events: s.events + 1,
                ..s
            };
            replace_at(iv, b, grown, change);
            return;
        }
    }
    let left = i.checked_sub(1).filter(|&b| joins(iv[b].end_ms, ts));
    let right = Some(i).filter(|&r| iv.get(r).is_some_and(|s| joins(ts, s.start_ms)));
    let mut merged = Session {
        start_ms: ts,
        end_ms: ts,
        events: 1,
    };
    if let Some(r) = right {
        if let Some(s) = iv.remove(r) {
            change(s, -1);
            merged.end_ms = s.end_ms;
            merged.events += s.events;
        }
    }
    match left {
        Some(l) => {
            let s = iv[l];
            merged.start_ms = s.start_ms;
            merged.events += s.events;
            replace_at(iv, l, merged, change);
        }
        None => {
            iv.insert(i, merged);
            change(merged, 1);
        }
    }
}

impl UserSessions {
    /// True when no session is retained.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The sessions, oldest first.
    pub fn sessions(&self) -> impl Iterator<Item = Session> + '_ {
        self.sessions.iter().copied()
    }

    /// Start of the oldest piece, if any: nothing leaves before the horizon passes its bucket.
    pub fn first_piece_start(&self) -> Option<i64> {
        self.pieces.front().map(|p| p.start_ms)
    }

    /// Adds an event at `ts`, with sessions split at gaps wider than `gap` and pieces at the
    /// boundaries of buckets numbered by `bucket_of`; `change` hears each session that left
    /// (`-1`) or appeared (`+1`).
    pub fn insert(
        &mut self,
        ts: i64,
        gap: i64,
        bucket_of: impl Fn(i64) -> i64,
        change: &mut impl FnMut(Session, isize),
    ) {
        insert_into(&mut self.sessions, ts, |a, b| b - a <= gap, change);
        insert_into(
            &mut self.pieces,
            ts,
            |a, b| b - a <= gap && bucket_of(a) == bucket_of(b),
            &mut |_, _| {},
        );
    }

    /// Removes the pieces `leaves` says are behind the horizon (those of the oldest buckets,
    /// oldest first); the first session loses their events and starts at its next piece, or
    /// leaves when none is left.
    pub fn evict(
        &mut self,
        leaves: impl Fn(&Session) -> bool,
        change: &mut impl FnMut(Session, isize),
    ) {
        while let Some(piece) = self.pieces.front().copied().filter(|p| leaves(p)) {
            self.pieces.pop_front();
            // The oldest piece belongs to the oldest session.
            let Some(first) = self.sessions.front().copied() else {
                break;
            };
            change(first, -1);
            let events = first.events.saturating_sub(piece.events);
            match self.pieces.front() {
                Some(next) if events > 0 => {
                    let shorter = Session {
                        start_ms: next.start_ms,
                        end_ms: first.end_ms,
                        events,
                    };
                    self.sessions[0] = shorter;
                    change(shorter, 1);
                }
                _ => {
                    self.sessions.pop_front();
                }
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
        let one_bucket = |_| 0;
        us.insert(0, 20, one_bucket, &mut rec);
        us.insert(30, 20, one_bucket, &mut rec);
        assert_eq!(us.sessions().count(), 2);
        us.insert(15, 20, one_bucket, &mut rec);
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
        fn inserts_and_evictions_match_the_definition(
            ops in proptest::collection::vec((0i64..200, any::<bool>()), 1..120),
            gap in 0i64..30,
            width in 1i64..40,
        ) {
            let mut us = UserSessions::default();
            let mut seen: HashMap<Session, isize> = HashMap::new();
            let mut times: Vec<i64> = Vec::new();
            let bucket_of = |t: i64| t.div_euclid(width);
            let mut horizon = i64::MIN;
            for (t, evict) in ops {
                let mut rec = |s, d| *seen.entry(s).or_insert(0) += d;
                if evict {
                    // The horizon moves forward to t; whole buckets ending by it leave.
                    horizon = horizon.max(t);
                    let h = horizon;
                    us.evict(|p| (bucket_of(p.start_ms) + 1) * width <= h, &mut rec);
                    times.retain(|&x| (bucket_of(x) + 1) * width > h);
                } else if (bucket_of(t) + 1) * width > horizon {
                    times.push(t);
                    us.insert(t, gap, bucket_of, &mut rec);
                }
                check(&us, &seen, &times, gap);
            }
        }
    }
}

#[cfg(test)]
mod oracle_tests {
    #[test]
    fn sessions_equal_the_oracle() {
        crate::oracle_check::assert_parts_equal_the_oracle(&["sessions"]);
    }
}
