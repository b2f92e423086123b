//! What the dataflow tells the outside world: changes to the views, as differential updates.

use serde::{Deserialize, Serialize};

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
    /// Matches of the filter with this id (the multiplicity carries the count).
    FilterMatches(String),
}
