//! The schemas of the dataflow's records that HTTP answers carry (an event as shown, a top-K
//! entry, a session, a filter's predicates), described here beside the rest of the API: the
//! dataflow's types say what they are, not how the API documents them. Each mirrors its type
//! field for field (same name, so the description names it as the API's documents do);
//! `tests/api_contract.rs` checks every described answer against what the routes send.
use serde::Serialize;
use utoipa::ToSchema;

// Mirrors emoflow_dataflow::update::ShownEvent.
/// An accepted event as responses show it: the normalised fields of docs/events.md plus
/// where it was read. Fields an event does not have are left out.
#[derive(Debug, Serialize, ToSchema)]
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
    pub emoji: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The tier, if any.
    pub tier: Option<String>,
    /// The amount, if any.
    pub amount: Option<f64>,
}

// Mirrors emoflow_dataflow::document::TopEntry.
/// An emoji in a top-K list.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopEntry {
    /// The emoji.
    pub emoji: String,
    /// Its count.
    pub count: i64,
    /// 1 + the number of emojis with a strictly greater count.
    pub rank: usize,
}

// Mirrors emoflow_dataflow::document::SessionDoc.
/// One session as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDoc {
    /// First event time.
    pub start_ms: i64,
    /// Last event time.
    pub end_ms: i64,
    /// Events in the session.
    pub events: u64,
    /// `end_ms - start_ms`.
    pub duration_ms: i64,
    /// `events / max(duration_ms / 60000, 1)`.
    pub rate_per_min: f64,
}

// Mirrors emoflow_dataflow::FilterSpec.
/// A filter's predicates. Each given predicate must hold; a filter with none matches every
/// event. Lists mean "the event's field is one of these" (an event without the field never
/// matches); amount bounds are inclusive and need the event to have an amount. Predicates a
/// filter does not have are left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilterSpec {
    /// Accepted event types.
    pub event_types: Option<Vec<String>>,
    /// Accepted emojis.
    pub emojis: Option<Vec<String>>,
    /// Accepted tiers.
    pub tiers: Option<Vec<String>>,
    /// Accepted users.
    pub user_ids: Option<Vec<String>>,
    /// Smallest accepted amount.
    pub min_amount: Option<f64>,
    /// Largest accepted amount.
    pub max_amount: Option<f64>,
}
