//! The feed's word on which filters each event matched, against matching every event with
//! every filter in force when it was read.

use proptest::prelude::*;

use super::*;
use crate::filter_strategies::{event, spec};

proptest! {
    /// Filters in force at the start, one added part-way and one of them removed: each event
    /// names exactly the filters it matches among those its reader had, with the newest change
    /// applied before it was read.
    #[test]
    fn each_event_names_the_filters_it_matched_when_read(
        initial in prop::collection::vec(spec(), 0..20),
        added in spec(),
        events in prop::collection::vec(event(), 1..60),
        add_at in 0usize..60,
        remove in prop::option::of(0usize..20),
    ) {
        let mut feed = Feed::new(ViewConfig::default(), 2);
        feed.deliver_events();
        let listed: Vec<(String, FilterSpec)> = initial
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("i{i}"), s.clone()))
            .collect();
        feed.add_initial_filters(&listed);
        // (number, definition) of the filters in force, as the reader has them.
        let mut in_force: Vec<(FilterNo, FilterSpec)> = initial
            .iter()
            .enumerate()
            .map(|(i, s)| (FilterNo::Initial(i as u32), s.clone()))
            .collect();
        let mut want = Vec::new();
        for (n, e) in events.iter().enumerate() {
            if n == add_at {
                let change = FilterChange::Add { id: "new".into(), spec: added.clone() };
                feed.apply_change(1, &change);
                feed.end_backfill();
                in_force.push((FilterNo::Added(1), added.clone()));
                if let Some(r) = remove.filter(|&r| r < initial.len()) {
                    feed.apply_change(2, &FilterChange::Remove { id: format!("i{r}") });
                    in_force.retain(|(no, _)| *no != FilterNo::Initial(r as u32));
                }
            }
            let applied = match (n >= add_at, remove.is_some_and(|r| r < initial.len())) {
                (false, _) => 0,
                (true, false) => 1,
                (true, true) => 2,
            };
            let mut matched: Vec<FilterNo> = in_force
                .iter()
                .filter(|(_, s)| s.matches(e))
                .map(|(no, _)| *no)
                .collect();
            matched.sort_unstable();
            want.push((n as i64, applied, matched));
            feed.accept(e, 0, n as i64, 0);
        }
        let got: Vec<(i64, u64, Vec<FilterNo>)> = feed
            .take_accepted()
            .into_iter()
            .map(|(shown, m)| {
                let mut filters = m.filters.to_vec();
                filters.sort_unstable();
                (shown.offset, m.applied, filters)
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}
