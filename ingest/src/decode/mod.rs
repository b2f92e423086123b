//! Turning one message's bytes into a validated [`Event`], or a [`Rejection`] saying why not.
//!
//! The decoder walks the JSON object once with a hand-written serde visitor: field names are
//! matched without allocating, strings are borrowed from the input when unescaped, and every
//! way the input can be wrong maps to one [`RejectReason`]. Aliases (`emoji_type`, `event`,
//! `user_tier`, `timestamp`) fill the same slot as their canonical field, so giving both is a
//! [`RejectReason::DuplicateField`] rather than a silent choice.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::{
    Event, DEFAULT_EVENT_TYPE, MAX_LABEL_BYTES, MAX_MESSAGE_BYTES, MAX_TS_MS, MAX_USER_ID_BYTES,
};
use crate::reject::{RejectReason, Rejection};

/// Decodes and validates one message. `fallback_ts` is the event time to use when the message
/// has none (the Kafka message timestamp, or the server clock for HTTP); a file has none.
pub fn decode_event(bytes: &[u8], fallback_ts: Option<i64>) -> Result<Event<'_>, Rejection> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "message is {} bytes, the limit is {MAX_MESSAGE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = match de.deserialize_any(TopVisitor) {
        Ok(fields) => fields,
        Err(e) => return Err(Rejection::new(RejectReason::InvalidJson, e.to_string())),
    };
    if let Err(e) = de.end() {
        return Err(Rejection::new(RejectReason::InvalidJson, e.to_string()));
    }
    fields?.validate(fallback_ts)
}

/// The slots of an event, filled from canonical names or aliases.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    UserId,
    Emoji,
    EventType,
    Tier,
    Amount,
    Ts,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::UserId => "user_id",
            Slot::Emoji => "emoji",
            Slot::EventType => "event_type",
            Slot::Tier => "tier",
            Slot::Amount => "amount",
            Slot::Ts => "ts",
        }
    }
}

/// A field name as read: the slot it fills (and the spelling used), or an unknown field.
struct Key(Option<(Slot, &'static str)>);

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                let slot = match v {
                    "user_id" => (Slot::UserId, "user_id"),
                    "emoji" => (Slot::Emoji, "emoji"),
                    "emoji_type" => (Slot::Emoji, "emoji_type"),
                    "event_type" => (Slot::EventType, "event_type"),
                    "event" => (Slot::EventType, "event"),
                    "tier" => (Slot::Tier, "tier"),
                    "user_tier" => (Slot::Tier, "user_tier"),
                    "amount" => (Slot::Amount, "amount"),
                    "ts" => (Slot::Ts, "ts"),
                    "timestamp" => (Slot::Ts, "timestamp"),
                    _ => return Ok(Key(None)),
                };
                Ok(Key(Some(slot)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A JSON value reduced to what validation needs: its type, and strings and numbers as given.
enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    /// An unsigned integer beyond `i64`.
    BigInt,
    Float(f64),
    Null,
    /// A boolean, array or object.
    Other(&'static str),
}

impl Value<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) | Value::BigInt => "an integer",
            Value::Float(_) => "a number with a fraction or exponent",
            Value::Null => "null",
            Value::Other(t) => t,
        }
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(i64::try_from(v).map_or(Value::BigInt, Value::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value<'de>, E> {
        Ok(Value::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value<'de>, E> {
        Ok(Value::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other("an object"))
    }
}

/// The fields of an object as read, before validation.
#[derive(Default)]
struct Fields<'a> {
    user_id: Option<Value<'a>>,
    emoji: Option<Value<'a>>,
    event_type: Option<Value<'a>>,
    tier: Option<Value<'a>>,
    amount: Option<Value<'a>>,
    ts: Option<Value<'a>>,
}

impl<'a> Fields<'a> {
    fn slot(&mut self, slot: Slot) -> &mut Option<Value<'a>> {
        match slot {
            Slot::UserId => &mut self.user_id,
            Slot::Emoji => &mut self.emoji,
            Slot::EventType => &mut self.event_type,
            Slot::Tier => &mut self.tier,
            Slot::Amount => &mut self.amount,
            Slot::Ts => &mut self.ts,
        }
    }

    fn validate(self, fallback_ts: Option<i64>) -> Result<Event<'a>, Rejection> {
        let amount = match present(self.amount) {
            None => None,
            Some(Value::Int(i)) => Some(i as f64),
            Some(Value::Float(f)) => Some(f),
            Some(v) => return Err(wrong_type("amount", "a finite number", &v)),
        };
        let ts = match present(self.ts) {
            Some(v) => Some(timestamp(v)?),
            None => match fallback_ts {
                Some(ms) => {
                    check_ts_range(ms).map_err(|mut r| {
                        r.detail = format!(
                            "no ts, and the fallback (the message timestamp): {}",
                            r.detail
                        );
                        r
                    })?;
                    Some(ms)
                }
                None => None,
            },
        };
        EventParts {
            user_id: string_field(self.user_id, Slot::UserId)?,
            emoji: string_field(self.emoji, Slot::Emoji)?,
            event_type: string_field(self.event_type, Slot::EventType)?,
            tier: string_field(self.tier, Slot::Tier)?,
            amount,
            ts,
        }
        .validate()
    }
}

/// An event's fields once their types are known (from JSON, or from the typed columns of a
/// Parquet file), before the rules of docs/events.md are checked. `None` means absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventParts<'a> {
    /// `user_id`.
    pub user_id: Option<Cow<'a, str>>,
    /// `emoji`.
    pub emoji: Option<Cow<'a, str>>,
    /// `event_type`.
    pub event_type: Option<Cow<'a, str>>,
    /// `tier`.
    pub tier: Option<Cow<'a, str>>,
    /// `amount`.
    pub amount: Option<f64>,
    /// Event time in ms (already the fallback when the source had none).
    pub ts: Option<i64>,
}

impl<'a> EventParts<'a> {
    /// Checks every rule of docs/events.md that does not depend on the encoding: required
    /// fields, byte limits, empty strings, control characters, a finite amount, the time range.
    pub fn validate(self) -> Result<Event<'a>, Rejection> {
        let user_id = required(
            label(self.user_id, Slot::UserId, MAX_USER_ID_BYTES)?,
            "user_id",
        )?;
        let emoji = label(self.emoji, Slot::Emoji, MAX_LABEL_BYTES)?;
        if let Some(e) = &emoji {
            if e.chars().any(char::is_control) {
                return Err(Rejection::new(
                    RejectReason::ControlCharacter,
                    "emoji contains a control character",
                ));
            }
        }
        let event_type = match label(self.event_type, Slot::EventType, MAX_LABEL_BYTES)? {
            Some(t) => t,
            None if emoji.is_some() => Cow::Borrowed(DEFAULT_EVENT_TYPE),
            None => {
                return Err(Rejection::new(
                    RejectReason::MissingField,
                    "event_type is required when there is no emoji",
                ))
            }
        };
        let tier = label(self.tier, Slot::Tier, MAX_LABEL_BYTES)?;
        if let Some(a) = self.amount {
            if !a.is_finite() {
                return Err(Rejection::new(
                    RejectReason::WrongType,
                    "amount must be a finite number",
                ));
            }
        }
        let ts = self.ts.ok_or_else(|| {
            Rejection::new(
                RejectReason::MissingField,
                "ts (or timestamp) is required: this source gives no message time",
            )
        })?;
        check_ts_range(ts)?;
        Ok(Event {
            user_id,
            emoji,
            event_type,
            tier,
            amount: self.amount,
            ts,
        })
    }
}

/// `null` counts as absent.
fn present(v: Option<Value<'_>>) -> Option<Value<'_>> {
    v.filter(|v| !matches!(v, Value::Null))
}

fn required<T>(v: Option<T>, name: &str) -> Result<T, Rejection> {
    v.ok_or_else(|| Rejection::new(RejectReason::MissingField, format!("{name} is required")))
}

fn wrong_type(field: &str, expected: &str, got: &Value<'_>) -> Rejection {
    Rejection::new(
        RejectReason::WrongType,
        format!("{field} must be {expected}, got {}", got.type_name()),
    )
}

fn string_field(v: Option<Value<'_>>, slot: Slot) -> Result<Option<Cow<'_, str>>, Rejection> {
    match present(v) {
        None => Ok(None),
        Some(Value::Str(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(slot.name(), "a string", &other)),
    }
}

fn label<'a>(
    s: Option<Cow<'a, str>>,
    slot: Slot,
    max_bytes: usize,
) -> Result<Option<Cow<'a, str>>, Rejection> {
    let name = slot.name();
    match s {
        Some(s) if s.is_empty() => Err(Rejection::new(
            RejectReason::EmptyField,
            format!("{name} must not be empty"),
        )),
        Some(s) if s.len() > max_bytes => Err(Rejection::new(
            RejectReason::FieldTooLong,
            format!("{name} is {} bytes, the limit is {max_bytes}", s.len()),
        )),
        s => Ok(s),
    }
}

fn timestamp(v: Value<'_>) -> Result<i64, Rejection> {
    let ms = match v {
        Value::Int(ms) => ms,
        Value::Str(s) => parse_rfc3339_ms(&s)?,
        Value::BigInt => i64::MAX,
        other => {
            return Err(wrong_type(
                "ts",
                "integer milliseconds or an RFC 3339 string",
                &other,
            ))
        }
    };
    check_ts_range(ms)?;
    Ok(ms)
}

fn check_ts_range(ms: i64) -> Result<(), Rejection> {
    if !(0..=MAX_TS_MS).contains(&ms) {
        return Err(Rejection::new(
            RejectReason::InvalidTimestamp,
            format!("ts {ms} is outside 1970-01-01..=9999-12-31"),
        ));
    }
    Ok(())
}

/// How far ahead of the processing clock an event time may lie (`--max-future`): one far-future
/// event would otherwise move the retention horizon past everyone's history. Like Kafka's
/// `log.message.timestamp.after.max.ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxFuture(pub i64);

impl Default for MaxFuture {
    /// One hour.
    fn default() -> Self {
        MaxFuture(3_600_000)
    }
}

impl MaxFuture {
    /// Refuses an event time more than the limit ahead of `clock_ms`.
    pub fn check(self, ts: i64, clock_ms: i64) -> Result<(), Rejection> {
        let ahead = ts.saturating_sub(clock_ms);
        if ahead <= self.0 {
            return Ok(());
        }
        Err(Rejection::new(
            RejectReason::FutureTimestamp,
            format!(
                "ts {ts} is {} ahead of the processing clock ({clock_ms}); at most {} is allowed (--max-future)",
                human_ms(ahead),
                human_ms(self.0)
            ),
        ))
    }
}

/// `90061000` as `1d 1h 1m 1s`, for messages.
fn human_ms(ms: i64) -> String {
    let mut left = ms.max(0) / 1000;
    let mut parts = Vec::new();
    for (unit, secs) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= secs {
            parts.push(format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    if parts.is_empty() {
        format!("{}ms", ms.max(0))
    } else {
        parts.join(" ")
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time such as `2026-11-22T08:00:00.250Z`.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, Rejection> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            Rejection::new(
                RejectReason::InvalidTimestamp,
                format!("timestamp {s:?} is not RFC 3339: {e}"),
            )
        })?;
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).map_err(|_| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            format!("timestamp {s:?} is out of range"),
        )
    })
}

/// Reads the top-level value: an object becomes its fields (or the first problem found in
/// them); anything else is [`RejectReason::NotAnObject`]. Always consumes the whole value so
/// that malformed JSON later in the object is still reported as such.
struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Result<Fields<'de>, Rejection>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        let mut problem = None;
        while let Some(Key(key)) = map.next_key::<Key>()? {
            match key {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some((slot, spelling)) => {
                    let value = map.next_value_seed(ValueSeed)?;
                    let target = fields.slot(slot);
                    // `null` is absent (docs/events.md): it neither fills a slot nor clashes.
                    if matches!(value, Value::Null) {
                        continue;
                    }
                    if target.is_some() && problem.is_none() {
                        problem = Some(Rejection::new(
                            RejectReason::DuplicateField,
                            format!("{} is given twice (last as {spelling})", slot.name()),
                        ));
                    }
                    *target = Some(value);
                }
            }
        }
        Ok(problem.map_or(Ok(fields), Err))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ValueVisitor.visit_seq(seq).map(not_an_object)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        ValueVisitor.visit_borrowed_str(v).map(not_an_object)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        ValueVisitor.visit_str(v).map(not_an_object)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        ValueVisitor.visit_i64(v).map(not_an_object)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        ValueVisitor.visit_u64(v).map(not_an_object)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        ValueVisitor.visit_f64(v).map(not_an_object)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        ValueVisitor.visit_bool(v).map(not_an_object)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        ValueVisitor.visit_unit().map(not_an_object)
    }
}

fn not_an_object<'a>(v: Value<'_>) -> Result<Fields<'a>, Rejection> {
    Err(Rejection::new(
        RejectReason::NotAnObject,
        format!("an event must be a JSON object, got {}", v.type_name()),
    ))
}

#[cfg(test)]
mod tests;
