//! Why an input was refused: one reason per way an event can be wrong.

use std::fmt;

/// The reason an input could not become an event, as counted in `rejected` and
/// `emoflow_events_rejected_total{reason=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The message is longer than [`crate::MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The bytes are not one well-formed JSON value (this includes invalid UTF-8).
    InvalidJson,
    /// Well-formed JSON, but not an object.
    NotAnObject,
    /// A required field (`user_id`, `event_type` without `emoji`, or an event time) is absent.
    MissingField,
    /// A field has the wrong JSON type (a number where a string belongs, a float `ts`, ...).
    WrongType,
    /// A string field is present but empty.
    EmptyField,
    /// A string field is longer than its byte limit.
    FieldTooLong,
    /// `emoji` holds a control character.
    ControlCharacter,
    /// `ts`/`timestamp` is not an RFC 3339 time or is outside year 1970..=9999.
    InvalidTimestamp,
    /// A field is given twice, for instance as `emoji` and as its alias `emoji_type`.
    DuplicateField,
    /// The event time lies further ahead of the processing clock than `--max-future` allows.
    FutureTimestamp,
}

impl RejectReason {
    /// Every reason, in a stable order (for metrics and tests).
    pub const ALL: [RejectReason; 11] = [
        RejectReason::TooLarge,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::EmptyField,
        RejectReason::FieldTooLong,
        RejectReason::ControlCharacter,
        RejectReason::InvalidTimestamp,
        RejectReason::DuplicateField,
        RejectReason::FutureTimestamp,
    ];

    /// The reason's stable snake_case name, as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::EmptyField => "empty_field",
            RejectReason::FieldTooLong => "field_too_long",
            RejectReason::ControlCharacter => "control_character",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::FutureTimestamp => "future_timestamp",
        }
    }

    /// The reason with the given name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused input: the countable reason plus a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// The countable reason.
    pub reason: RejectReason,
    /// What exactly was wrong, naming the field.
    pub detail: String,
}

impl Rejection {
    /// A rejection with its explanation.
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

/// Counts of rejections by reason: a small fixed array, cheap to keep per worker and to merge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RejectCounts([u64; RejectReason::ALL.len()]);

impl RejectCounts {
    /// Counts one more rejection for `reason`.
    pub fn add(&mut self, reason: RejectReason) {
        self.0[reason as usize] += 1;
    }

    /// The count for `reason`.
    pub fn get(&self, reason: RejectReason) -> u64 {
        self.0[reason as usize]
    }

    /// All rejections together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Adds another set of counts into this one.
    pub fn merge(&mut self, other: &RejectCounts) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    /// The reasons with a non-zero count, with their counts.
    pub fn nonzero(&self) -> impl Iterator<Item = (RejectReason, u64)> + '_ {
        RejectReason::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::from_name(r.as_str()), Some(r));
        }
        let mut names: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RejectReason::ALL.len());
    }

    #[test]
    fn counts_merge() {
        let mut a = RejectCounts::default();
        a.add(RejectReason::WrongType);
        let mut b = RejectCounts::default();
        b.add(RejectReason::WrongType);
        b.add(RejectReason::TooLarge);
        a.merge(&b);
        assert_eq!(a.get(RejectReason::WrongType), 2);
        assert_eq!(a.total(), 3);
        assert_eq!(a.nonzero().count(), 2);
    }
}
