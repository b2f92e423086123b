//! Filters (SPEC section 3, "filter matches"): what a subscriber asks for, and matching events
//! against it quickly.

use serde::{Deserialize, Serialize};

use crate::batch::EventRef;
use crate::intern::{Interner, Sym};

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
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Accepted event types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Accepted emojis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emojis: Option<Vec<String>>,
    /// Accepted tiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<String>>,
    /// Accepted users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ids: Option<Vec<String>>,
    /// Smallest accepted amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_amount: Option<Amount>,
    /// Largest accepted amount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_amount: Option<Amount>,
}

impl FilterSpec {
    /// Whether `e` matches, by the definition (the oracle's way; [`CompiledFilter`] is the fast
    /// way and must agree).
    pub fn matches(&self, e: &EventRef<'_>) -> bool {
        let one_of = |list: &Option<Vec<String>>, v: Option<&str>| match list {
            None => true,
            Some(list) => v.is_some_and(|v| list.iter().any(|x| x == v)),
        };
        one_of(&self.event_types, Some(e.event_type))
            && one_of(&self.emojis, e.emoji)
            && one_of(&self.tiers, e.tier)
            && one_of(&self.user_ids, Some(e.user_id))
            && self
                .min_amount
                .is_none_or(|m| e.amount.is_some_and(|a| a >= m.0))
            && self
                .max_amount
                .is_none_or(|m| e.amount.is_some_and(|a| a <= m.0))
    }
}

/// A filter with its names turned into a worker's interned numbers, so matching compares
/// integers.
#[derive(Debug, Clone)]
pub struct CompiledFilter {
    event_types: Option<Vec<Sym>>,
    emojis: Option<Vec<Sym>>,
    tiers: Option<Vec<Sym>>,
    user_ids: Option<Vec<Sym>>,
    min_amount: Option<f64>,
    max_amount: Option<f64>,
}

/// An event as the retained store keeps it: interned fields, 40 bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredEvent {
    /// Event time.
    pub ts: i64,
    /// Interned user.
    pub user: Sym,
    /// Interned emoji, 0 when none.
    pub emoji: Sym,
    /// Interned event type.
    pub event_type: Sym,
    /// Interned tier, 0 when none.
    pub tier: Sym,
    /// Amount, `NaN` when none.
    pub amount: f64,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

impl CompiledFilter {
    /// `spec` in terms of interned numbers: user ids from `users`, other names from `labels`.
    pub fn compile(spec: &FilterSpec, labels: &mut Interner, users: &mut Interner) -> Self {
        fn syms(list: &Option<Vec<String>>, interner: &mut Interner) -> Option<Vec<Sym>> {
            list.as_ref().map(|l| {
                let mut v: Vec<Sym> = l.iter().map(|s| interner.intern(s)).collect();
                v.sort_unstable();
                v.dedup();
                v
            })
        }
        CompiledFilter {
            event_types: syms(&spec.event_types, labels),
            emojis: syms(&spec.emojis, labels),
            tiers: syms(&spec.tiers, labels),
            user_ids: syms(&spec.user_ids, users),
            min_amount: spec.min_amount.map(|a| a.0),
            max_amount: spec.max_amount.map(|a| a.0),
        }
    }

    /// Whether the stored event matches.
    pub fn matches(&self, e: &StoredEvent) -> bool {
        // 0 (absent) is never interned for a name, so it never matches a list.
        let one_of = |list: &Option<Vec<Sym>>, v: Sym| match list {
            None => true,
            Some(list) if list.len() <= 8 => list.contains(&v),
            Some(list) => list.binary_search(&v).is_ok(),
        };
        one_of(&self.event_types, e.event_type)
            && one_of(&self.emojis, e.emoji)
            && one_of(&self.tiers, e.tier)
            && one_of(&self.user_ids, e.user)
            && self.min_amount.is_none_or(|m| e.amount >= m)
            && self.max_amount.is_none_or(|m| e.amount <= m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(emoji: Option<&'static str>, amount: Option<f64>) -> EventRef<'static> {
        EventRef {
            ts: 1,
            user_id: "u",
            emoji,
            event_type: "purchase",
            tier: None,
            amount,
            partition: 0,
            offset: 0,
        }
    }

    fn both(spec: &FilterSpec, e: &EventRef<'_>) -> bool {
        let mut i = Interner::default();
        let mut users = Interner::default();
        let stored = StoredEvent {
            ts: e.ts,
            user: users.intern(e.user_id),
            emoji: i.intern_opt(e.emoji),
            event_type: i.intern(e.event_type),
            tier: i.intern_opt(e.tier),
            amount: e.amount.unwrap_or(f64::NAN),
            partition: 0,
            offset: 0,
        };
        let fast = CompiledFilter::compile(spec, &mut i, &mut users).matches(&stored);
        assert_eq!(fast, spec.matches(e), "{spec:?} on {e:?}");
        fast
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(both(&FilterSpec::default(), &event(None, None)));
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
        let r: Result<FilterSpec, _> = serde_json::from_str(r#"{"emoij":["x"]}"#);
        assert!(r.is_err());
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
        let spec: FilterSpec = serde_json::from_value(serde_json::Value::Object(obj))
            .map_err(|e| bad(e.to_string()))?;
        for (name, bound) in [
            ("min_amount", spec.min_amount),
            ("max_amount", spec.max_amount),
        ] {
            if bound.is_some_and(|b| !b.0.is_finite()) {
                return Err(bad(format!("{name} must be a finite number")));
            }
        }
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
    }
}
