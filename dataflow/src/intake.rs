//! The one path from what a source read to the views, for every source: a record is decoded
//! and checked ([`Intake::decode`]), then accepted into the worker's [`Feed`] or rejected:
//! counted by reason, and kept as a [`DeadLetter`] where this run keeps them
//! ([`Intake::admit`]).

use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use emoflow_ingest::{decode_event, Event, MaxFuture, RejectReason, Rejection};

use crate::feed::Feed;
use crate::report::DeadLetter;

/// Where a run keeps the inputs it rejects (every rejection is counted in the views anyway).
#[derive(Debug, Clone, Default)]
pub(crate) enum Letters {
    /// Counted only.
    #[default]
    Counted,
    /// In the views' dead-letter store (`GET /dead-letters`), newest first.
    Views,
    /// Sent here, every one, with its line (`query --dead-letters`).
    Channel(mpsc::Sender<DeadLetter>),
}

/// Where a record was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At {
    /// Kafka partition (0 for NDJSON).
    pub partition: i32,
    /// Kafka offset (the line's byte offset for NDJSON).
    pub offset: i64,
    /// The Kafka message's timestamp, when it has one.
    pub arrival_ms: Option<i64>,
}

/// One worker's intake.
#[derive(Debug)]
pub(crate) struct Intake {
    /// Refuse event times this far ahead of the reader's clock (live sources only: a file's
    /// events were accepted whenever they were written).
    max_future: Option<MaxFuture>,
    letters: Letters,
}

impl Intake {
    /// An intake keeping rejections in `letters`, checking event times against the clock when
    /// `max_future` is given.
    pub(crate) fn new(max_future: Option<MaxFuture>, letters: Letters) -> Self {
        Intake {
            max_future,
            letters,
        }
    }

    /// The processing clock `decode` checks event times against, read once per batch.
    pub(crate) fn clock_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// `payload` as an event (docs/events.md), or why it is not one; an event without a
    /// time takes the message's. `clock_ms` is [`Intake::clock_ms`].
    pub(crate) fn decode<'a>(
        &self,
        payload: &'a [u8],
        arrival_ms: Option<i64>,
        clock_ms: i64,
    ) -> Result<Event<'a>, Rejection> {
        let event = decode_event(payload, arrival_ms)?;
        if let Some(limit) = self.max_future {
            limit.check(event.ts, clock_ms)?;
        }
        Ok(event)
    }

    /// Accepts `decoded` into `feed`, or counts its rejection and keeps it as a dead letter of
    /// `payload` (its first KiB) where this run keeps them; `line` says where it was in a
    /// file, asked only when a dead letter is sent on. Gives the event back when accepted.
    pub(crate) fn admit<'a>(
        &mut self,
        feed: &mut Feed,
        at: At,
        decoded: Result<Event<'a>, Rejection>,
        payload: &[u8],
        line: impl FnOnce() -> Option<u64>,
    ) -> Result<Event<'a>, RejectReason> {
        let rejection = match decoded {
            Ok(event) => {
                feed.accept(&event, at.partition, at.offset, at.arrival_ms.unwrap_or(0));
                return Ok(event);
            }
            Err(rejection) => rejection,
        };
        let reason = rejection.reason;
        match &self.letters {
            Letters::Counted => feed.reject(reason),
            Letters::Views => feed.reject_kept(
                DeadLetter::new(at.partition, at.offset, &rejection, payload),
                reason,
            ),
            Letters::Channel(tx) => {
                feed.reject(reason);
                let letter = DeadLetter {
                    line: line(),
                    ..DeadLetter::new(at.partition, at.offset, &rejection, payload)
                };
                // The receiver only goes away when the caller gave up on the run.
                let _ = tx.send(letter);
            }
        }
        Err(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ViewConfig;

    const AT: At = At {
        partition: 2,
        offset: 40,
        arrival_ms: Some(1_700_000_000_000),
    };

    #[test]
    fn a_rejection_goes_where_the_run_keeps_them_with_its_place() {
        let (tx, rx) = mpsc::channel();
        let mut intake = Intake::new(None, Letters::Channel(tx));
        let mut feed = Feed::new(ViewConfig::default(), 1);
        let bad = br#"{"user_id":"u"}"#;
        let decoded = intake.decode(bad, None, 0);
        let verdict = intake.admit(&mut feed, AT, decoded, bad, || Some(7));
        assert_eq!(verdict.err(), Some(RejectReason::MissingField));
        let letter = rx.try_recv().unwrap();
        assert_eq!(
            (
                letter.partition,
                letter.offset,
                letter.line,
                letter.reason.as_str()
            ),
            (2, 40, Some(7), "missing_field")
        );
        assert_eq!(letter.payload, r#"{"user_id":"u"}"#);
    }

    #[test]
    fn event_times_too_far_ahead_are_refused_only_when_checked() {
        let ahead = br#"{"user_id":"u","event_type":"click","ts":5000}"#;
        let checked = Intake::new(Some(MaxFuture(1000)), Letters::Counted);
        assert_eq!(
            checked.decode(ahead, None, 0).err().map(|r| r.reason),
            Some(RejectReason::FutureTimestamp)
        );
        assert!(checked.decode(ahead, None, 4000).is_ok());
        let unchecked = Intake::new(None, Letters::Counted);
        assert!(unchecked.decode(ahead, None, 0).is_ok());
    }
}
