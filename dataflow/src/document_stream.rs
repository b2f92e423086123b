//! The views document written as it is serialised: every user's sessions go from the state
//! to the writer one user at a time, so a million users' document needs no second copy of
//! their sessions in memory (`emoflow query` over a large input), and can leave them out.

use std::collections::BTreeMap;
use std::io::Write;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::config::ViewConfig;
use crate::document::{
    summary_in_user_order, FilterDoc, Head, SessionDoc, SessionSummary, TopEntry, WindowDoc,
};
use crate::snapshot::ViewState;

/// How much of the sessions view a document shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SessionsShown {
    /// The summary and every user's sessions (`by_user`).
    #[default]
    All,
    /// The summary alone: with many users, `by_user` is most of the document.
    Summary,
}

/// The fields of [`crate::ViewsDocument`], in its order, with the sessions borrowed.
#[derive(Serialize)]
struct Streamed<'a> {
    total: i64,
    counts: BTreeMap<String, i64>,
    event_types: BTreeMap<String, i64>,
    top: Vec<TopEntry>,
    windows: Vec<WindowDoc>,
    sessions: StreamedSessions<'a>,
    filters: BTreeMap<String, FilterDoc>,
    rejected: BTreeMap<String, i64>,
    as_of: u64,
}

#[derive(Serialize)]
struct StreamedSessions<'a> {
    summary: SessionSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_user: Option<ByUser<'a>>,
}

/// Every user's sessions, newest first, users sorted: made one user at a time.
struct ByUser<'a> {
    state: &'a ViewState,
    users: Vec<&'a str>,
}

impl Serialize for ByUser<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.users.len()))?;
        for &user in &self.users {
            let docs: Vec<SessionDoc> = self
                .state
                .held_sessions(user)
                .iter()
                .copied()
                .map(SessionDoc::from)
                .collect();
            map.serialize_entry(user, &docs)?;
        }
        map.end()
    }
}

/// Writes the views of `state` as JSON to `out`: with [`SessionsShown::All`], the same bytes
/// as serialising [`crate::ViewsDocument::render`]; `filter_ids` are the filters in force.
pub fn write_document(
    state: &ViewState,
    cfg: &ViewConfig,
    filter_ids: &[String],
    shown: SessionsShown,
    pretty: bool,
    out: impl Write,
) -> serde_json::Result<()> {
    let users = state.users_with_sessions();
    let summary = summary_in_user_order(state, &users);
    let head = Head::of(state, cfg, filter_ids);
    let doc = Streamed {
        total: head.total,
        counts: head.counts,
        event_types: head.event_types,
        top: head.top,
        windows: head.windows,
        sessions: StreamedSessions {
            summary,
            by_user: (shown == SessionsShown::All).then_some(ByUser { state, users }),
        },
        filters: head.filters,
        rejected: head.rejected,
        as_of: head.as_of,
    };
    if pretty {
        serde_json::to_writer_pretty(out, &doc)
    } else {
        serde_json::to_writer(out, &doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::Session;
    use crate::update::{CountKey, ViewUpdate};
    use crate::ViewsDocument;

    fn state() -> ViewState {
        let mut st = ViewState::default();
        let session = |start_ms, end_ms, events| Session {
            start_ms,
            end_ms,
            events,
        };
        for (user, s) in [
            ("zoe", session(1_000, 61_000, 3)),
            ("al", session(5_000, 5_000, 1)),
            ("al", session(900_000, 1_020_000, 7)),
            ("mo", session(10, 130_000, 2)),
        ] {
            st.apply(ViewUpdate::Session(user.into(), s), 1);
        }
        st.apply(ViewUpdate::Count(CountKey::Total, 13), 1);
        st
    }

    #[test]
    fn streaming_writes_what_render_serialises_and_summary_leaves_users_out() {
        let (st, cfg, ids) = (state(), ViewConfig::default(), vec!["f".to_owned()]);
        let rendered = ViewsDocument::render(&st, &cfg, &ids);
        for pretty in [false, true] {
            let mut out = Vec::new();
            write_document(&st, &cfg, &ids, SessionsShown::All, pretty, &mut out).unwrap();
            let want = if pretty {
                serde_json::to_vec_pretty(&rendered)
            } else {
                serde_json::to_vec(&rendered)
            };
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want.unwrap())
            );
        }
        let mut out = Vec::new();
        write_document(&st, &cfg, &ids, SessionsShown::Summary, false, &mut out).unwrap();
        let short: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let mut full = serde_json::to_value(&rendered).unwrap();
        assert_eq!(full["sessions"]["summary"]["users"], 3);
        if let Some(sessions) = full["sessions"].as_object_mut() {
            sessions.remove("by_user");
        }
        assert_eq!(short, full, "the same document without by_user");
    }
}
