//! The unit the dataflow moves between workers: a columnar batch of events, bound for one worker.
//!
//! Events travel in batches rather than one record each, so routing costs one allocation per
//! batch, not per event, and the same bytes serialise cheaply when workers sit in different
//! processes. Each batch also carries its sender's newest event time, so that every receiver
//! learns the global event-time high-water mark (and with it the retention horizon) without a
//! separate broadcast.

use emoflow_ingest::Event;
use serde::{Deserialize, Serialize};

use crate::filter::Amount;
use crate::update::ShownEvent;

/// Strings stored back to back, addressed by index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StrColumn {
    text: String,
    ends: Vec<u32>,
}

impl StrColumn {
    /// Appends `s` (the empty string stands for "absent").
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
    }

    /// The `i`-th string.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

/// A batch of accepted events for one destination worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The worker this batch is for.
    pub dest: u32,
    /// The newest event time the sender has seen so far (`i64::MIN` when none).
    pub sender_max_ts: i64,
    ts: Vec<i64>,
    users: StrColumn,
    emojis: StrColumn,
    types: StrColumn,
    tiers: StrColumn,
    /// `NaN` where the event has no amount (amounts are always finite).
    amounts: Vec<f64>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
}

/// One event read out of a batch, with its source position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRef<'a> {
    /// Event time in ms.
    pub ts: i64,
    /// The user.
    pub user_id: &'a str,
    /// The emoji, if any.
    pub emoji: Option<&'a str>,
    /// The event type.
    pub event_type: &'a str,
    /// The tier, if any.
    pub tier: Option<&'a str>,
    /// The amount, if any.
    pub amount: Option<f64>,
    /// Source partition (a Kafka partition; 0 for files).
    pub partition: i32,
    /// Source offset (a Kafka offset; the line's byte offset for files).
    pub offset: i64,
}

impl EventRef<'_> {
    /// An owned copy, as responses show events.
    pub fn to_shown(&self) -> ShownEvent {
        ShownEvent {
            ts: self.ts,
            partition: self.partition,
            offset: self.offset,
            user_id: self.user_id.to_owned(),
            emoji: self.emoji.map(str::to_owned),
            event_type: self.event_type.to_owned(),
            tier: self.tier.map(str::to_owned),
            amount: self.amount.map(Amount),
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl EventBatch {
    /// An empty batch for worker `dest`.
    pub fn new(dest: u32) -> Self {
        EventBatch {
            dest,
            sender_max_ts: i64::MIN,
            ts: Vec::new(),
            users: StrColumn::default(),
            emojis: StrColumn::default(),
            types: StrColumn::default(),
            tiers: StrColumn::default(),
            amounts: Vec::new(),
            partitions: Vec::new(),
            offsets: Vec::new(),
        }
    }

    /// Appends an event with its source position.
    pub fn push(&mut self, e: &Event<'_>, partition: i32, offset: i64) {
        self.ts.push(e.ts);
        self.users.push(&e.user_id);
        self.emojis.push(e.emoji.as_deref().unwrap_or(""));
        self.types.push(&e.event_type);
        self.tiers.push(e.tier.as_deref().unwrap_or(""));
        self.amounts.push(e.amount.unwrap_or(f64::NAN));
        self.partitions.push(partition);
        self.offsets.push(offset);
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when the batch holds no event (it may still carry `sender_max_ts`).
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// An empty batch for `dest` with room for as many events and bytes as `like` holds.
    pub fn with_capacity_of(dest: u32, like: &EventBatch) -> Self {
        let col = |c: &StrColumn| StrColumn {
            text: String::with_capacity(c.text.len()),
            ends: Vec::with_capacity(c.ends.len()),
        };
        let n = like.len();
        EventBatch {
            dest,
            sender_max_ts: i64::MIN,
            ts: Vec::with_capacity(n),
            users: col(&like.users),
            emojis: col(&like.emojis),
            types: col(&like.types),
            tiers: col(&like.tiers),
            amounts: Vec::with_capacity(n),
            partitions: Vec::with_capacity(n),
            offsets: Vec::with_capacity(n),
        }
    }

    /// The `i`-th event.
    pub fn get(&self, i: usize) -> EventRef<'_> {
        let amount = self.amounts[i];
        EventRef {
            ts: self.ts[i],
            user_id: self.users.get(i),
            emoji: non_empty(self.emojis.get(i)),
            event_type: self.types.get(i),
            tier: non_empty(self.tiers.get(i)),
            amount: (!amount.is_nan()).then_some(amount),
            partition: self.partitions[i],
            offset: self.offsets[i],
        }
    }

    /// The events in order.
    pub fn iter(&self) -> impl Iterator<Item = EventRef<'_>> {
        (0..self.len()).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn events_round_trip() {
        let mut b = EventBatch::new(3);
        let e = Event {
            user_id: Cow::Borrowed("u"),
            emoji: Some(Cow::Borrowed("🔥")),
            event_type: Cow::Borrowed("emoji"),
            tier: None,
            amount: Some(1.5),
            ts: 9,
        };
        b.push(&e, 2, 40);
        let f = Event {
            emoji: None,
            amount: None,
            tier: Some(Cow::Borrowed("vip")),
            ..e.clone()
        };
        b.push(&f, 0, 41);
        let got: Vec<_> = b.iter().collect();
        assert_eq!(got[0].emoji, Some("🔥"));
        assert_eq!(got[0].amount, Some(1.5));
        assert_eq!((got[0].partition, got[0].offset), (2, 40));
        assert_eq!(got[1].emoji, None);
        assert_eq!(got[1].tier, Some("vip"));
        assert_eq!(got[1].amount, None);
    }
}
