//! What the dataflow tells the outside world: changes to the views, as differential updates.

use serde::{Deserialize, Serialize};

use crate::batch::FilterKey;
use crate::filter::Amount;
use crate::sessions::Session;

/// A key of the lifetime counters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CountKey {
    /// All accepted events.
    Total,
    /// Events with this emoji.
    Emoji(String),
    /// Events of this type.
    EventType(String),
    /// Rejected inputs, by reason name.
    Rejected(String),
}

/// What a window counter counts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WindowSlot {
    /// Every event in the window.
    Total,
    /// Events with this emoji.
    Emoji(String),
}

/// One record of a view. The dataflow emits these with a multiplicity: `+1` when the record
/// appears, `-1` when it leaves; for [`ViewUpdate::FilterMatches`] the multiplicity is the
/// change in the number of matching events.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ViewUpdate {
    /// A lifetime counter and its value.
    Count(CountKey, i64),
    /// An emoji in the lifetime ties-aware top-K, with its count.
    Top(String, i64),
    /// A window counter (window start, what it counts) and its value.
    WindowCount(i64, WindowSlot, i64),
    /// An emoji in a window's ties-aware top-K (window start, emoji, count).
    WindowTop(i64, String, i64),
    /// A user's session.
    Session(String, Session),
    /// A user's first accepted event (only ever added): `/sessions/{user}` knows them even when
    /// none of their sessions is retained.
    UserSeen(String),
    /// Matches of the filter with this id (the multiplicity carries the count).
    FilterMatches(String),
    /// The next offset to read in a Kafka partition: where the views stand in the log.
    Position(i32, i64),
    /// The newest filter change a worker has applied, back-fill included (worker, change
    /// number): a filter change is in the views once every worker reports it.
    FilterApplied(u32, u64),
    /// One of the newest accepted events, with when it arrived (the Kafka message's timestamp;
    /// 0 for files), which orders it among the other events of its dataflow time (only ever
    /// added; the state keeps the newest few).
    Recent(i64, ShownEvent),
    /// A rejected message (only ever added; the state keeps the newest few thousand).
    DeadLetter(DeadLetterRecord),
    /// Offsets `from..to` of a partition passed over without a message: the broker no longer
    /// held them when they were to be read (only ever added).
    Skipped(i32, i64, i64),
    /// An accepted event, for live delivery to subscribers (only with delivery on; not kept in
    /// the views: see [`crate::snapshot::Collector::take_outbox`]).
    Accepted(ShownEvent),
    /// One of the newest matches of a filter the back-fill found (only with delivery on; not
    /// kept in the views).
    Backfilled(FilterKey, ShownEvent),
}

/// An accepted event as responses show it: the normalised fields of docs/events.md plus where it was read.
///
/// JSON leaves out the fields an event does not have; the workers' own encoding between
/// processes (bincode, which is not self-describing) writes every field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, utoipa::ToSchema)]
pub struct ShownEvent {
    /// Event time, ms since the Unix epoch.
    pub ts: i64,
    /// Kafka partition (0 for files).
    pub partition: i32,
    /// Kafka offset (the line's byte offset for files).
    pub offset: i64,
    /// Who acted.
    pub user_id: String,
    /// The emoji, if any.
    #[serde(default)]
    pub emoji: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The tier, if any.
    #[serde(default)]
    pub tier: Option<String>,
    /// The amount, if any.
    #[serde(default)]
    #[schema(value_type = Option<f64>)]
    pub amount: Option<Amount>,
}

impl Serialize for ShownEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let readable = s.is_human_readable();
        let mut out = s.serialize_struct("ShownEvent", 8)?;
        out.serialize_field("ts", &self.ts)?;
        out.serialize_field("partition", &self.partition)?;
        out.serialize_field("offset", &self.offset)?;
        out.serialize_field("user_id", &self.user_id)?;
        optional(&mut out, readable, "emoji", &self.emoji)?;
        out.serialize_field("event_type", &self.event_type)?;
        optional(&mut out, readable, "tier", &self.tier)?;
        optional(&mut out, readable, "amount", &self.amount)?;
        out.end()
    }
}

/// Writes an optional field: always in a binary encoding, only when present in a readable one.
fn optional<S: serde::ser::SerializeStruct, T: Serialize>(
    out: &mut S,
    readable: bool,
    name: &'static str,
    value: &Option<T>,
) -> Result<(), S::Error> {
    match value {
        None if readable => out.skip_field(name),
        value => out.serialize_field(name, value),
    }
}

impl ShownEvent {
    /// `e` as read at `(partition, offset)`.
    pub fn of(e: &emoflow_ingest::Event<'_>, partition: i32, offset: i64) -> Self {
        ShownEvent {
            ts: e.ts,
            partition,
            offset,
            user_id: e.user_id.to_string(),
            emoji: e.emoji.as_deref().map(str::to_owned),
            event_type: e.event_type.to_string(),
            tier: e.tier.as_deref().map(str::to_owned),
            amount: e.amount.map(Amount),
        }
    }

    /// The event in the decoder's form, borrowing from this one (to match it against filters).
    pub fn as_event(&self) -> emoflow_ingest::Event<'_> {
        use std::borrow::Cow::Borrowed;
        emoflow_ingest::Event {
            ts: self.ts,
            user_id: Borrowed(&self.user_id),
            emoji: self.emoji.as_deref().map(Borrowed),
            event_type: Borrowed(&self.event_type),
            tier: self.tier.as_deref().map(Borrowed),
            amount: self.amount.map(|a| a.0),
        }
    }
}

/// A rejected Kafka message, kept so that it can be listed and explained.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeadLetterRecord {
    /// Kafka partition.
    pub partition: i32,
    /// Kafka offset.
    pub offset: i64,
    /// The rejection reason's name (docs/events.md).
    pub reason: String,
    /// What exactly was wrong.
    pub detail: String,
    /// The message, cut to 1 KiB, as lossy UTF-8.
    pub payload: String,
}

/// Most bytes of a rejected message that are kept.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 1024;

impl DeadLetterRecord {
    /// A record of `payload` rejected for `rejection` at `(partition, offset)`.
    pub fn new(
        partition: i32,
        offset: i64,
        rejection: &emoflow_ingest::Rejection,
        payload: &[u8],
    ) -> Self {
        let cut = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)];
        DeadLetterRecord {
            partition,
            offset,
            reason: rejection.reason.as_str().to_owned(),
            detail: rejection.detail.clone(),
            payload: String::from_utf8_lossy(cut).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(emoji: Option<&str>, amount: Option<f64>) -> ShownEvent {
        ShownEvent {
            ts: 5,
            partition: 1,
            offset: 9,
            user_id: "u".into(),
            emoji: emoji.map(str::to_owned),
            event_type: "emoji".into(),
            tier: None,
            amount: amount.map(Amount),
        }
    }

    #[test]
    fn updates_cross_between_processes_whole() {
        // Between processes the workers' updates are bincode, which has no field names: an
        // absent field left out would shift every later one.
        for u in [
            ViewUpdate::Accepted(event(None, None)),
            ViewUpdate::Recent(3, event(Some("🔥"), Some(2.5))),
            ViewUpdate::FilterApplied(3, 7),
            ViewUpdate::Position(2, 40),
        ] {
            let bytes = bincode::serialize(&u).unwrap();
            assert_eq!(bincode::deserialize::<ViewUpdate>(&bytes).unwrap(), u);
        }
    }

    #[test]
    fn json_leaves_out_the_fields_an_event_lacks() {
        let json = serde_json::to_value(event(None, None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ts": 5, "partition": 1, "offset": 9, "user_id": "u", "event_type": "emoji"})
        );
        let back: ShownEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event(None, None));
    }
}
