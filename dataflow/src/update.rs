//! What the views compute: their changes, as differential updates. What the runner says beside
//! them (positions, acknowledgements, dead letters, events for push) is `report.rs`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

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
    /// A user's session (the user's id shared with the worker's interner, not copied).
    Session(Arc<str>, Session),
    /// A user's first accepted event (only ever added): `/sessions/{user}` knows them even when
    /// none of their sessions is retained.
    UserSeen(Arc<str>),
    /// Matches of the filter with this id (the multiplicity carries the count).
    FilterMatches(String),
    /// One of the newest accepted events, with when it arrived (the Kafka message's timestamp;
    /// 0 for files), which orders it among the other events of its dataflow time (only ever
    /// added; the state keeps the newest few).
    Recent(i64, Box<ShownEvent>),
}

/// An accepted event as responses show it: the normalised fields of docs/events.md plus where it was read.
///
/// JSON leaves out the fields an event does not have; the workers' own encoding between
/// processes (bincode, which is not self-describing) writes every field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
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
        crate::wire::optional(&mut out, readable, "emoji", &self.emoji)?;
        out.serialize_field("event_type", &self.event_type)?;
        crate::wire::optional(&mut out, readable, "tier", &self.tier)?;
        crate::wire::optional(&mut out, readable, "amount", &self.amount)?;
        out.end()
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
        use crate::report::{Output, RunReport};
        for u in [
            Output::Report(RunReport::Accepted(
                Box::new(event(None, None)),
                Default::default(),
            )),
            Output::View(ViewUpdate::Recent(
                3,
                Box::new(event(Some("🔥"), Some(2.5))),
            )),
            Output::Report(RunReport::FilterApplied(3, 7)),
            Output::Report(RunReport::Position(2, 40)),
        ] {
            let bytes = bincode::serialize(&u).unwrap();
            assert_eq!(bincode::deserialize::<Output>(&bytes).unwrap(), u);
        }
    }

    #[test]
    fn the_records_the_dataflow_moves_most_stay_small() {
        // Every session change and counter is one of these, moved through timely's buffers
        // and sorted by differential: the rare large ones (events, dead letters) are boxed.
        use crate::report::Output;
        assert!(
            std::mem::size_of::<ViewUpdate>() <= 56,
            "{}",
            std::mem::size_of::<ViewUpdate>()
        );
        assert!(
            std::mem::size_of::<Output>() <= 64,
            "{}",
            std::mem::size_of::<Output>()
        );
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
