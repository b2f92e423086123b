//! The views as one JSON document (the output of `emoflow query` and `emoflow replay`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ViewConfig, WINDOWS_SHOWN};
use crate::sessions::Session;
pub use crate::snapshot::LifetimeCounts;
use crate::snapshot::ViewState;
use crate::update::WindowSlot;

/// An emoji in a top-K list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopEntry {
    /// The emoji.
    pub emoji: String,
    /// Its count.
    pub count: i64,
    /// 1 + the number of emojis with a strictly greater count.
    pub rank: usize,
}

/// One event-time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowDoc {
    /// Window start (inclusive), ms.
    pub start_ms: i64,
    /// Window end (exclusive), ms.
    pub end_ms: i64,
    /// Events in the window.
    pub total: i64,
    /// Events per emoji in the window.
    pub counts: BTreeMap<String, i64>,
    /// The window's ties-aware top-K.
    pub top: Vec<TopEntry>,
}

/// One session as shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionDoc {
    /// First event time.
    pub start_ms: i64,
    /// Last event time.
    pub end_ms: i64,
    /// Events in the session.
    pub events: u64,
    /// `end_ms - start_ms`.
    pub duration_ms: i64,
    /// `events / max(duration_ms / 60000, 1)`.
    pub rate_per_min: f64,
}

impl From<Session> for SessionDoc {
    fn from(s: Session) -> Self {
        SessionDoc {
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            events: s.events,
            duration_ms: s.duration_ms(),
            rate_per_min: s.rate_per_min(),
        }
    }
}

pub use crate::session_totals::SessionSummary;

/// The sessions view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionsDoc {
    /// Totals and means.
    pub summary: SessionSummary,
    /// Each user's sessions, newest first.
    pub by_user: BTreeMap<String, Vec<SessionDoc>>,
}

/// A filter's match count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterDoc {
    /// Retained events that match.
    pub count: i64,
}

/// Every view, as of one dataflow time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewsDocument {
    /// Accepted events, lifetime.
    pub total: i64,
    /// Events per emoji, lifetime.
    pub counts: BTreeMap<String, i64>,
    /// Events per event type, lifetime.
    pub event_types: BTreeMap<String, i64>,
    /// Lifetime ties-aware top-K.
    pub top: Vec<TopEntry>,
    /// The newest windows that hold events, newest first.
    pub windows: Vec<WindowDoc>,
    /// Sessions over the retained history.
    pub sessions: SessionsDoc,
    /// Filter id -> matches in the retained history.
    pub filters: BTreeMap<String, FilterDoc>,
    /// Rejected inputs by reason.
    pub rejected: BTreeMap<String, i64>,
    /// The dataflow time the numbers are complete up to.
    pub as_of: u64,
}

/// Orders `(emoji, count)` pairs by count descending then emoji ascending, with SQL ranks.
pub fn ranked(mut entries: Vec<(String, i64)>) -> Vec<TopEntry> {
    entries.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    let mut out: Vec<TopEntry> = Vec::with_capacity(entries.len());
    for (i, (emoji, count)) in entries.into_iter().enumerate() {
        let rank = match out.last() {
            Some(prev) if prev.count == count => prev.rank,
            _ => i + 1,
        };
        out.push(TopEntry { emoji, count, rank });
    }
    out
}

/// Summary statistics of a set of sessions.
pub fn summarize<'a>(users: usize, sessions: impl Iterator<Item = &'a Session>) -> SessionSummary {
    let mut sum = SummarySum::default();
    sessions.for_each(|s| sum.add(s));
    sum.summary(users)
}

/// Sums for [`SessionSummary`], fed one session at a time (the order of the sessions fixes
/// the floating-point sums: documents feed them by user, then newest first).
#[derive(Debug, Default)]
pub struct SummarySum {
    n: usize,
    duration: i128,
    events: u128,
    rate: f64,
}

impl SummarySum {
    /// Adds `s`.
    pub fn add(&mut self, s: &Session) {
        self.n += 1;
        self.duration += i128::from(s.duration_ms());
        self.events += u128::from(s.events);
        self.rate += s.rate_per_min();
    }

    /// The summary of what was added, over `users` users.
    pub fn summary(&self, users: usize) -> SessionSummary {
        SessionSummary::of_sums(
            users,
            self.n,
            self.duration as f64,
            self.events as f64,
            self.rate,
        )
    }
}

/// The sessions summary of `state` over `users` (those with sessions, sorted), summed in the
/// documents' order: by user, then newest first.
pub(crate) fn summary_in_user_order(state: &ViewState, users: &[&str]) -> SessionSummary {
    let mut sum = SummarySum::default();
    for user in users {
        state.held_sessions(user).iter().for_each(|s| sum.add(s));
    }
    sum.summary(users.len())
}

/// The lifetime ties-aware top-K the dataflow maintains (K from the configuration).
pub fn lifetime_top(state: &ViewState) -> Vec<TopEntry> {
    ranked(state.top.iter().map(|(e, c)| (e.clone(), *c)).collect())
}

/// The windows of `state` that hold events, newest first (at most [`WINDOWS_SHOWN`]).
pub fn windows(state: &ViewState, cfg: &ViewConfig) -> Vec<WindowDoc> {
    state
        .windows
        .iter()
        .rev()
        .take(WINDOWS_SHOWN)
        .map(|(&start, counters)| {
            let mut doc = window_doc(start, cfg, counters.iter());
            doc.top = state
                .window_top
                .get(&start)
                .map(|t| ranked(t.iter().map(|(e, c)| (e.clone(), *c)).collect()))
                .unwrap_or_default();
            doc
        })
        .collect()
}

/// The base windows that hold events and are held whole for regrouping, oldest first: those
/// starting less than [`ViewConfig::widest_window_ms`] before the newest. Their `top` is left
/// empty (the caller ranks what it regroups).
pub fn whole_windows(state: &ViewState, cfg: &ViewConfig) -> Vec<WindowDoc> {
    let Some(&(newest, _)) = state.windows.get_max() else {
        return Vec::new();
    };
    let after = newest - cfg.widest_window_ms();
    state
        .windows
        .range(after + 1..)
        .map(|(&start, counters)| window_doc(start, cfg, counters.iter()))
        .collect()
}

fn window_doc<'a>(
    start: i64,
    cfg: &ViewConfig,
    counters: impl Iterator<Item = (&'a WindowSlot, &'a i64)>,
) -> WindowDoc {
    let mut doc = WindowDoc {
        start_ms: start,
        end_ms: start + cfg.window_ms,
        total: 0,
        counts: BTreeMap::new(),
        top: Vec::new(),
    };
    for (slot, count) in counters {
        match slot {
            WindowSlot::Total => doc.total = *count,
            WindowSlot::Emoji(e) => drop(doc.counts.insert(e.clone(), *count)),
        }
    }
    doc
}

/// The sessions view: a summary and every user's sessions.
pub fn sessions(state: &ViewState) -> SessionsDoc {
    let sessions = state.all_sessions();
    let summary = summarize(sessions.len(), sessions.values().flatten());
    let by_user = sessions
        .into_iter()
        .map(|(user, list)| {
            (
                user.to_owned(),
                list.into_iter().map(SessionDoc::from).collect(),
            )
        })
        .collect();
    SessionsDoc { summary, by_user }
}

/// Everything of a document but the sessions.
pub(crate) struct Head {
    pub total: i64,
    pub counts: BTreeMap<String, i64>,
    pub event_types: BTreeMap<String, i64>,
    pub top: Vec<TopEntry>,
    pub windows: Vec<WindowDoc>,
    pub filters: BTreeMap<String, FilterDoc>,
    pub rejected: BTreeMap<String, i64>,
    pub as_of: u64,
}

impl Head {
    /// The head of `state`'s document. `filter_ids` are the filters in force (shown even with
    /// no match).
    pub(crate) fn of(state: &ViewState, cfg: &ViewConfig, filter_ids: &[String]) -> Self {
        let lifetime = &state.lifetime;
        let filters = filter_ids
            .iter()
            .map(|id| {
                let count = state.filter_matches(id);
                (id.clone(), FilterDoc { count })
            })
            .collect();
        let sorted = |m: &crate::snapshot::POrdMap<crate::snapshot::Name, i64>| {
            m.iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        Head {
            total: lifetime.total,
            counts: sorted(&lifetime.counts),
            event_types: sorted(&lifetime.event_types),
            top: lifetime_top(state),
            windows: windows(state, cfg),
            filters,
            rejected: sorted(&lifetime.rejected),
            as_of: state.as_of,
        }
    }
}

impl ViewsDocument {
    /// Renders `state`. `filter_ids` are the filters in force (shown even with no match).
    pub fn render(state: &ViewState, cfg: &ViewConfig, filter_ids: &[String]) -> Self {
        Head::of(state, cfg, filter_ids).with_sessions(sessions(state))
    }

    /// [`ViewsDocument::render`] without `sessions.by_user` (left empty), for those who read
    /// each user's sessions from the state a few at a time: the summary is the same.
    pub fn render_summary(state: &ViewState, cfg: &ViewConfig, filter_ids: &[String]) -> Self {
        let users = state.users_with_sessions();
        Head::of(state, cfg, filter_ids).with_sessions(SessionsDoc {
            summary: summary_in_user_order(state, &users),
            by_user: BTreeMap::new(),
        })
    }
}

impl Head {
    /// The whole document: this head and `sessions`.
    fn with_sessions(self, sessions: SessionsDoc) -> ViewsDocument {
        ViewsDocument {
            total: self.total,
            counts: self.counts,
            event_types: self.event_types,
            top: self.top,
            windows: self.windows,
            sessions,
            filters: self.filters,
            rejected: self.rejected,
            as_of: self.as_of,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_sql_rank_and_ties_sort_by_bytes() {
        let r = ranked(vec![
            ("b".into(), 5),
            ("a".into(), 5),
            ("c".into(), 7),
            ("d".into(), 1),
        ]);
        let got: Vec<_> = r.iter().map(|t| (t.emoji.as_str(), t.rank)).collect();
        assert_eq!(got, [("c", 1), ("a", 2), ("b", 2), ("d", 4)]);
    }
}
