//! The event of docs/events.md, after validation.

use std::borrow::Cow;

/// Largest accepted message (one Kafka value or one NDJSON line), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Byte limit of `user_id`.
pub const MAX_USER_ID_BYTES: usize = 128;
/// Byte limit of `emoji`, `event_type` and `tier`.
pub const MAX_LABEL_BYTES: usize = 64;
/// Latest accepted event time: 9999-12-31T23:59:59.999Z, in ms since the Unix epoch.
pub const MAX_TS_MS: i64 = 253_402_300_799_999;
/// `event_type` of an event that names an emoji but no type.
pub const DEFAULT_EVENT_TYPE: &str = "emoji";

/// A validated event. Strings borrow from the input where it holds them unescaped, so decoding
/// allocates nothing on the common path.
///
/// Invariants (checked by [`crate::decode_event`]): strings are within their byte limits and
/// non-empty, `emoji` has no control character, `amount` is finite, `ts` is in `0..=MAX_TS_MS`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Who acted.
    pub user_id: Cow<'a, str>,
    /// The reaction, if the event is one.
    pub emoji: Option<Cow<'a, str>>,
    /// What kind of event; `"emoji"` when only `emoji` was given.
    pub event_type: Cow<'a, str>,
    /// The user's tier, if known.
    pub tier: Option<Cow<'a, str>>,
    /// A purchase amount or other value, if any.
    pub amount: Option<f64>,
    /// Event time in milliseconds since the Unix epoch.
    pub ts: i64,
}

impl Event<'_> {
    /// An owned copy that no longer borrows the input.
    pub fn into_owned(self) -> Event<'static> {
        Event {
            user_id: Cow::Owned(self.user_id.into_owned()),
            emoji: self.emoji.map(|e| Cow::Owned(e.into_owned())),
            event_type: Cow::Owned(self.event_type.into_owned()),
            tier: self.tier.map(|t| Cow::Owned(t.into_owned())),
            amount: self.amount,
            ts: self.ts,
        }
    }

    /// The event in its normalised JSON form (canonical field names, absent fields left out).
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("user_id".into(), self.user_id.as_ref().into());
        if let Some(e) = &self.emoji {
            m.insert("emoji".into(), e.as_ref().into());
        }
        m.insert("event_type".into(), self.event_type.as_ref().into());
        if let Some(t) = &self.tier {
            m.insert("tier".into(), t.as_ref().into());
        }
        if let Some(a) = self.amount {
            m.insert("amount".into(), a.into());
        }
        m.insert("ts".into(), self.ts.into());
        serde_json::Value::Object(m)
    }
}
