//! Where emoflow's events come from: decoding and validating them (docs/events.md), explaining
//! every rejection, reading NDJSON files fast, and generating seeded synthetic streams.
//!
//! Nothing here knows about the dataflow: sources hand out [`Event`]s (borrowed from their
//! input, so decoding allocates nothing on the common path) or [`Rejection`]s.
#![forbid(missing_docs)]

pub mod archive_format;
mod decode;
mod event;
pub mod generator;
pub mod kafka;
pub mod ndjson;
pub mod pacing;
pub mod parquet_source;
mod reject;

pub use decode::{decode_event, parse_rfc3339_ms, EventParts, MaxFuture};
pub use event::{
    Event, DEFAULT_EVENT_TYPE, MAX_LABEL_BYTES, MAX_MESSAGE_BYTES, MAX_TS_MS, MAX_USER_ID_BYTES,
};
pub use reject::{RejectCounts, RejectReason, Rejection};
