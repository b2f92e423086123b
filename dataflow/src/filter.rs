//! Filter matches (docs/views.md): a filter has optional predicates `event_types`, `emojis`,
//! `tiers`, `user_ids` (each a list: the event's field must be one of them), `min_amount`,
//! `max_amount` (inclusive; the event must have an amount). An event matches when every given
//! predicate holds; a filter with no predicate matches every event. A filter's count is its
//! matches in the retained history, including a filter added later (back-filled).
//!
//! This module is what a subscriber asks for. `filter_index.rs` matches events against
//! many filters at once; the counts are made by the reading workers (`feed.rs`) and
//! kept per retention bucket by the filter's owner (`retained.rs`).

use serde::{Deserialize, Serialize};

use emoflow_ingest::Event;

/// A finite amount bound with a total order, so filters can live in differential collections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(pub f64);

impl PartialEq for Amount {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}
impl Eq for Amount {}
impl PartialOrd for Amount {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Amount {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}
impl std::hash::Hash for Amount {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state)
    }
}

/// A filter's predicates. Each given predicate must hold; a filter with none matches every event.
/// Lists mean "the event's field is one of these" (an event without the field never matches);
/// amount bounds are inclusive and need the event to have an amount.
///
/// JSON leaves out the predicates a filter does not have; between workers (bincode) every
/// field is written, so a filter crosses workers in this form ([`crate::wire`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct FilterSpec {
    /// Accepted event types.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Accepted emojis.
    #[serde(default)]
    pub emojis: Option<Vec<String>>,
    /// Accepted tiers.
    #[serde(default)]
    pub tiers: Option<Vec<String>>,
    /// Accepted users.
    #[serde(default)]
    pub user_ids: Option<Vec<String>>,
    /// Smallest accepted amount.
    #[serde(default)]
    pub min_amount: Option<Amount>,
    /// Largest accepted amount.
    #[serde(default)]
    pub max_amount: Option<Amount>,
}

impl Serialize for FilterSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let readable = s.is_human_readable();
        let mut out = s.serialize_struct("FilterSpec", 6)?;
        for (name, list) in [
            ("event_types", &self.event_types),
            ("emojis", &self.emojis),
            ("tiers", &self.tiers),
            ("user_ids", &self.user_ids),
        ] {
            crate::wire::optional(&mut out, readable, name, list)?;
        }
        crate::wire::optional(&mut out, readable, "min_amount", &self.min_amount)?;
        crate::wire::optional(&mut out, readable, "max_amount", &self.max_amount)?;
        out.end()
    }
}

impl FilterSpec {
    /// Whether `e` matches, by the definition (the oracle's way;
    /// `FilterIndex` in `filter_index.rs` is the fast way and must agree).
    pub fn matches(&self, e: &Event<'_>) -> bool {
        let one_of = |list: &Option<Vec<String>>, v: Option<&str>| match list {
            None => true,
            Some(list) => v.is_some_and(|v| list.iter().any(|x| x == v)),
        };
        one_of(&self.event_types, Some(&e.event_type))
            && one_of(&self.emojis, e.emoji.as_deref())
            && one_of(&self.tiers, e.tier.as_deref())
            && one_of(&self.user_ids, Some(&e.user_id))
            && self
                .min_amount
                .is_none_or(|m| e.amount.is_some_and(|a| a >= m.0))
            && self
                .max_amount
                .is_none_or(|m| e.amount.is_some_and(|a| a <= m.0))
    }
}

/// Most values one list of a filter may hold.
pub const MAX_LIST_VALUES: usize = 1000;

/// Most bytes of one value in a filter's list (the longest field, `user_id`, has 128).
pub const MAX_VALUE_BYTES: usize = 128;

/// What is wrong with a filter, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    /// The field at fault.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FilterSpec {
    /// Reads a filter's predicates from the fields of a JSON object, naming the field at fault
    /// (unknown, of the wrong type, or breaking a rule of [`FilterSpec::validate`]). A `null`
    /// field is the same as a missing one.
    pub fn from_fields(
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<FilterSpec, SpecError> {
        let mut spec = FilterSpec::default();
        for (name, value) in fields {
            if value.is_null() {
                continue;
            }
            let list = |value: serde_json::Value, field: &'static str| {
                serde_json::from_value::<Vec<String>>(value).map_err(|_| SpecError {
                    field: field.into(),
                    message: "must be a list of strings".into(),
                })
            };
            let amount = |value: serde_json::Value, field: &'static str| {
                value.as_f64().map(Amount).ok_or_else(|| SpecError {
                    field: field.into(),
                    message: "must be a number".into(),
                })
            };
            match name.as_str() {
                "event_types" => spec.event_types = Some(list(value, "event_types")?),
                "emojis" => spec.emojis = Some(list(value, "emojis")?),
                "tiers" => spec.tiers = Some(list(value, "tiers")?),
                "user_ids" => spec.user_ids = Some(list(value, "user_ids")?),
                "min_amount" => spec.min_amount = Some(amount(value, "min_amount")?),
                "max_amount" => spec.max_amount = Some(amount(value, "max_amount")?),
                _ => {
                    return Err(SpecError {
                        message: "is not a filter field (a filter has event_types, emojis, tiers, user_ids, min_amount, max_amount)".into(),
                        field: name,
                    })
                }
            }
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what serde cannot: lists hold 1..=[`MAX_LIST_VALUES`] non-empty values of at most
    /// [`MAX_VALUE_BYTES`] (an empty list would match nothing, surely a mistake), amounts are
    /// finite, and `min_amount <= max_amount`.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |field: &str, message: String| {
            Err(SpecError {
                field: field.to_owned(),
                message,
            })
        };
        for (field, list) in [
            ("event_types", &self.event_types),
            ("emojis", &self.emojis),
            ("tiers", &self.tiers),
            ("user_ids", &self.user_ids),
        ] {
            let Some(list) = list else { continue };
            if list.is_empty() {
                return bad(
                    field,
                    "must not be empty (omit it to accept any value)".into(),
                );
            }
            if list.len() > MAX_LIST_VALUES {
                return bad(
                    field,
                    format!("has {} values; at most {MAX_LIST_VALUES}", list.len()),
                );
            }
            if let Some(v) = list
                .iter()
                .find(|v| v.is_empty() || v.len() > MAX_VALUE_BYTES)
            {
                return bad(
                    field,
                    format!(
                        "values must be 1..={MAX_VALUE_BYTES} bytes, got {} bytes",
                        v.len()
                    ),
                );
            }
        }
        for (field, bound) in [
            ("min_amount", self.min_amount),
            ("max_amount", self.max_amount),
        ] {
            if bound.is_some_and(|b| !b.0.is_finite()) {
                return bad(field, "must be a finite number".into());
            }
        }
        if let (Some(min), Some(max)) = (self.min_amount, self.max_amount) {
            if min.0 > max.0 {
                return bad(
                    "min_amount",
                    format!("{} is greater than max_amount {}", min.0, max.0),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn event(emoji: Option<&'static str>, amount: Option<f64>) -> Event<'static> {
        Event {
            ts: 1,
            user_id: Cow::Borrowed("u"),
            emoji: emoji.map(Cow::Borrowed),
            event_type: Cow::Borrowed("purchase"),
            tier: None,
            amount,
        }
    }

    fn both(spec: &FilterSpec, e: &Event<'_>) -> bool {
        let mut fast = false;
        crate::filter_index::FilterIndex::new(&[spec]).for_each_match(e, |_| fast = true);
        assert_eq!(fast, spec.matches(e), "{spec:?} on {e:?}");
        fast
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(both(&FilterSpec::default(), &event(None, None)));
    }

    #[test]
    fn long_lists_are_searched_like_short_ones() {
        let many: Vec<String> = (0..20).map(|i| format!("e{i}")).collect();
        let spec = FilterSpec {
            emojis: Some(many),
            ..FilterSpec::default()
        };
        assert!(both(&spec, &event(Some("e13"), None)));
        assert!(!both(&spec, &event(Some("e20"), None)));
    }

    #[test]
    fn amount_bounds_are_inclusive_and_need_an_amount() {
        let spec = FilterSpec {
            min_amount: Some(Amount(10.0)),
            max_amount: Some(Amount(20.0)),
            ..FilterSpec::default()
        };
        assert!(both(&spec, &event(None, Some(10.0))));
        assert!(both(&spec, &event(None, Some(20.0))));
        assert!(!both(&spec, &event(None, Some(20.5))));
        assert!(!both(&spec, &event(None, None)));
    }

    #[test]
    fn lists_need_the_field() {
        let spec = FilterSpec {
            emojis: Some(vec!["🔥".into()]),
            ..FilterSpec::default()
        };
        assert!(both(&spec, &event(Some("🔥"), None)));
        assert!(!both(&spec, &event(Some("👍"), None)));
        assert!(!both(&spec, &event(None, None)));
        let none = FilterSpec {
            tiers: Some(vec![]),
            ..FilterSpec::default()
        };
        assert!(!both(&none, &event(Some("🔥"), None)));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let fields = serde_json::from_str(r#"{"emoij":["x"]}"#).unwrap();
        let e = FilterSpec::from_fields(fields).unwrap_err();
        assert_eq!(e.field, "emoij");
    }
}

/// Why a list of filters could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilterListError {
    /// Not JSON, or not an array.
    #[error("filters must be a JSON array of objects: {0}")]
    Shape(String),
    /// One filter is malformed.
    #[error("filter {index}: {message}")]
    Filter {
        /// Position in the array, from 0.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// Two filters share an id.
    #[error("filter id {0:?} is used twice")]
    DuplicateId(String),
}

/// Reads a JSON array of filters. Each filter's id is its `id` field (a string or an integer)
/// or, without one, its position in the array from 0; an optional `name` is ignored.
pub fn parse_filter_list(json: &str) -> Result<Vec<(String, FilterSpec)>, FilterListError> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| FilterListError::Shape(e.to_string()))?;
    let mut out: Vec<(String, FilterSpec)> = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let bad = |message: String| FilterListError::Filter { index, message };
        let serde_json::Value::Object(mut obj) = item else {
            return Err(bad("must be a JSON object".into()));
        };
        let id = match obj.remove("id") {
            None | Some(serde_json::Value::Null) => index.to_string(),
            Some(serde_json::Value::String(s)) if !s.is_empty() => s,
            Some(serde_json::Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            Some(other) => {
                return Err(bad(format!(
                    "id must be a non-empty string or an integer, got {other}"
                )))
            }
        };
        obj.remove("name");
        let spec = FilterSpec::from_fields(obj).map_err(|e| bad(e.to_string()))?;
        if out.iter().any(|(existing, _)| *existing == id) {
            return Err(FilterListError::DuplicateId(id));
        }
        out.push((id, spec));
    }
    Ok(out)
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn ids_default_to_positions() {
        let list = parse_filter_list(r#"[{"emojis":["x"]},{"id":"vip","tiers":["vip"]},{"id":7}]"#)
            .unwrap();
        let ids: Vec<_> = list.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["0", "vip", "7"]);
        assert_eq!(list[2].1, FilterSpec::default());
    }

    #[test]
    fn mistakes_are_explained() {
        let e = parse_filter_list(r#"[{"emojis":["x"]},{"emoij":["x"]}]"#).unwrap_err();
        assert!(e.to_string().starts_with("filter 1:"), "{e}");
        assert!(parse_filter_list(r#"{"emojis":[]}"#).is_err());
        assert!(parse_filter_list(r#"[{"id":"a"},{"id":"a"}]"#).is_err());
        assert!(parse_filter_list(r#"[{"min_amount":"3"}]"#).is_err());
        for (json, field) in [
            (r#"[{"tiers":[]}]"#, "tiers"),
            (r#"[{"min_amount":5,"max_amount":4}]"#, "min_amount"),
            (r#"[{"emojis":[""]}]"#, "emojis"),
        ] {
            let e = parse_filter_list(json).unwrap_err().to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
        let long: Vec<String> = (0..=MAX_LIST_VALUES).map(|i| format!("\"u{i}\"")).collect();
        let e = parse_filter_list(&format!(r#"[{{"user_ids":[{}]}}]"#, long.join(",")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("user_ids"), "{e}");
    }
}

#[cfg(test)]
mod oracle_tests {
    #[test]
    fn filter_matches_equal_the_oracle() {
        crate::oracle_check::assert_parts_equal_the_oracle(&["filters"]);
    }
}
