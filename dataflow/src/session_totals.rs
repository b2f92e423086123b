//! The sessions summary (`GET /sessions`), kept as the sessions change: a snapshot answers it
//! in time independent of the number of users instead of visiting every user's sessions.

use serde::{Deserialize, Serialize};

use crate::sessions::Session;

/// A persistent sorted map: snapshots share it.
type POrdMap<K, V> = imbl::OrdMap<K, V>;

/// The scale of the rate sum's fixed point: each session's rate is rounded to 10^-12 events
/// per minute, so that the sum is exact and does not depend on the order sessions changed in
/// (a floating-point sum that sessions enter and leave would drift).
const RATE_SCALE: f64 = 1e12;

/// Means over all sessions of all users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Users with at least one session.
    pub users: usize,
    /// Sessions of all users.
    pub sessions: usize,
    /// Mean session duration.
    pub mean_duration_ms: f64,
    /// Mean events per session.
    pub mean_events: f64,
    /// Mean session rate.
    pub mean_rate_per_min: f64,
}

impl SessionSummary {
    /// The summary of `sessions` sessions of `users` users from their sums (durations, events
    /// and rates): means over sessions, 0 when there are none.
    pub(crate) fn of_sums(
        users: usize,
        sessions: usize,
        duration_ms: f64,
        events: f64,
        rate: f64,
    ) -> Self {
        let mean = |x: f64| {
            if sessions == 0 {
                0.0
            } else {
                x / sessions as f64
            }
        };
        SessionSummary {
            users,
            sessions,
            mean_duration_ms: mean(duration_ms),
            mean_events: mean(events),
            mean_rate_per_min: mean(rate),
        }
    }
}

/// Sums over every retained session, and the sessions that are active.
#[derive(Debug, Clone)]
pub struct SessionTotals {
    users: usize,
    sessions: usize,
    duration_ms: i128,
    events: u128,
    rate: i128,
    /// The session gap: a session is active while its end is within it of the newest end.
    gap_ms: i64,
    /// The newest session end seen (`i64::MIN` before any).
    newest_end: i64,
    /// `end_ms` -> how many sessions end then, of the sessions ending within the gap of the
    /// newest end: older ones never become active again (a change makes a new session), so
    /// only these are kept, and the map stays as small as the active sessions.
    recent_ends: POrdMap<i64, u64>,
    /// Sessions counted in `recent_ends`.
    active: usize,
}

impl Default for SessionTotals {
    fn default() -> Self {
        SessionTotals::new(crate::config::ViewConfig::default().session_gap_ms)
    }
}

fn scaled_rate(s: &Session) -> i128 {
    (s.rate_per_min() * RATE_SCALE).round() as i128
}

impl SessionTotals {
    /// No sessions, for views with session gap `gap_ms`.
    pub fn new(gap_ms: i64) -> Self {
        SessionTotals {
            users: 0,
            sessions: 0,
            duration_ms: 0,
            events: 0,
            rate: 0,
            gap_ms,
            newest_end: i64::MIN,
            recent_ends: POrdMap::new(),
            active: 0,
        }
    }

    fn threshold(&self) -> i64 {
        self.newest_end.saturating_sub(self.gap_ms)
    }

    /// Counts a session that arrived (`diff > 0`) or left.
    pub(crate) fn change(&mut self, s: &Session, diff: isize) {
        let d = diff.unsigned_abs();
        if diff > 0 {
            self.sessions += d;
            self.duration_ms += i128::from(s.duration_ms()) * d as i128;
            self.events += u128::from(s.events) * d as u128;
            self.rate += scaled_rate(s) * d as i128;
            if s.end_ms > self.newest_end {
                self.newest_end = s.end_ms;
                self.forget_inactive();
            }
            if s.end_ms >= self.threshold() {
                *self.recent_ends.entry(s.end_ms).or_default() += d as u64;
                self.active += d;
            }
        } else if diff < 0 {
            self.sessions = self.sessions.saturating_sub(d);
            self.duration_ms -= i128::from(s.duration_ms()) * d as i128;
            self.events = self.events.saturating_sub(u128::from(s.events) * d as u128);
            self.rate -= scaled_rate(s) * d as i128;
            if let Some(n) = self.recent_ends.get_mut(&s.end_ms) {
                let gone = (d as u64).min(*n);
                *n -= gone;
                self.active -= gone as usize;
                if *n == 0 {
                    self.recent_ends.remove(&s.end_ms);
                }
            }
        }
    }

    /// Drops the ends that fell out of the gap of the newest.
    fn forget_inactive(&mut self) {
        let threshold = self.threshold();
        while let Some(&(end, n)) = self.recent_ends.get_min() {
            if end >= threshold {
                break;
            }
            self.recent_ends.remove(&end);
            self.active -= n as usize;
        }
    }

    /// Counts a user whose sessions went from none to some (`+1`) or from some to none (`-1`).
    pub(crate) fn user(&mut self, diff: isize) {
        self.users = self.users.saturating_add_signed(diff);
    }

    /// The summary: users, sessions and the means over sessions.
    pub fn summary(&self) -> SessionSummary {
        SessionSummary::of_sums(
            self.users,
            self.sessions,
            self.duration_ms as f64,
            self.events as f64,
            self.rate as f64 / RATE_SCALE,
        )
    }

    /// Sessions whose `end_ms` is within the session gap of the newest session's end.
    pub fn active(&self) -> usize {
        self.active
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::document::summarize;

    fn session(start_ms: i64, len: i64, events: u64) -> Session {
        Session {
            start_ms,
            end_ms: start_ms + len,
            events,
        }
    }

    proptest! {
        /// Sessions arriving and leaving in any order: the totals equal the summary computed
        /// afresh over the sessions held, and `active` counts those within the gap of the
        /// newest end seen.
        #[test]
        fn the_totals_equal_a_summary_over_the_sessions_held(
            steps in prop::collection::vec((0i64..10_000, 0i64..200_000, 1u64..50, any::<bool>()), 1..60),
            gap in 0i64..5_000,
        ) {
            let mut totals = SessionTotals::new(gap);
            let mut held: Vec<Session> = Vec::new();
            let mut newest = i64::MIN;
            for (start, len, events, leave) in steps {
                if leave && !held.is_empty() {
                    let s = held.remove(start as usize % held.len());
                    totals.change(&s, -1);
                } else {
                    let s = session(start, len, events);
                    newest = newest.max(s.end_ms);
                    held.push(s);
                    totals.change(&s, 1);
                }
                let want = summarize(0, held.iter());
                let got = totals.summary();
                prop_assert_eq!(got.sessions, want.sessions);
                prop_assert_eq!(got.mean_duration_ms, want.mean_duration_ms);
                prop_assert_eq!(got.mean_events, want.mean_events);
                let close = (got.mean_rate_per_min - want.mean_rate_per_min).abs()
                    <= 1e-9 * want.mean_rate_per_min.abs().max(1.0);
                prop_assert!(close, "{} against {}", got.mean_rate_per_min, want.mean_rate_per_min);
                let active = held.iter().filter(|s| newest - s.end_ms <= gap).count();
                prop_assert_eq!(totals.active(), active);
            }
        }
    }
}
