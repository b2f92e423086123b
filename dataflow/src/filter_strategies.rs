//! Random filters and events for the property tests of the two matchers
//! ([`crate::filter_index`], [`crate::filter_classes`]): few values, so that lists overlap and
//! events match; amount bounds in halves and amounts in quarters, so that amounts fall on
//! bounds and between them.

use std::borrow::Cow;

use emoflow_ingest::Event;
use proptest::prelude::*;

use crate::filter::{Amount, FilterSpec};

const VALUES: [&str; 4] = ["a", "b", "c", "d"];

/// A list predicate: absent, empty, or up to two values.
fn list() -> impl Strategy<Value = Option<Vec<String>>> {
    prop::option::of(prop::collection::vec(
        prop::sample::select(VALUES.to_vec()).prop_map(str::to_owned),
        0..3,
    ))
}

/// A filter with any mix of predicates.
pub(crate) fn spec() -> impl Strategy<Value = FilterSpec> {
    let amount = prop::option::of((0u8..8).prop_map(|a| Amount(f64::from(a) / 2.0)));
    (list(), list(), list(), list(), amount.clone(), amount).prop_map(
        |(event_types, emojis, tiers, user_ids, min_amount, max_amount)| FilterSpec {
            event_types,
            emojis,
            tiers,
            user_ids,
            min_amount,
            max_amount,
        },
    )
}

/// An event over the same values.
pub(crate) fn event() -> impl Strategy<Value = Event<'static>> {
    let value = prop::sample::select(VALUES.to_vec());
    (
        value.clone(),
        prop::option::of(value.clone()),
        value.clone(),
        prop::option::of(value),
        prop::option::of(0u8..17),
    )
        .prop_map(|(user, emoji, event_type, tier, amount)| Event {
            ts: 1,
            user_id: Cow::Borrowed(user),
            emoji: emoji.map(Cow::Borrowed),
            event_type: Cow::Borrowed(event_type),
            tier: tier.map(Cow::Borrowed),
            amount: amount.map(|a| f64::from(a) / 4.0),
        })
}
