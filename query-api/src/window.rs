//! Back-pressure for HTTP ingest on a broker whose log is bounded (the embedded broker keeps
//! 5 MiB per partition and drops the oldest beyond): a 202 must mean the events will be
//! counted and archived, so ingest never admits more than the broker holds ahead of the
//! readers. A request's events are split into chunks that fit the window; each chunk waits,
//! within `--produce-timeout`, until the readers have read far enough to leave room for it.
//!
//! Ingest picks each event's partition itself (a hash of the user, as Kafka's keyed
//! partitioning would, so one user's events stay in order), so that it knows what each
//! partition receives. A real Kafka broker keeps its log by time or size far beyond this, and
//! gets no window.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Mutex;

use xxhash_rust::xxh3::xxh3_64;

/// What a partition's log holds ahead of the readers, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Bytes of messages (key, value and record overhead).
    pub bytes: u64,
    /// Messages.
    pub messages: u64,
}

impl LogLimits {
    /// The embedded broker (librdkafka's mock cluster) drops a partition's oldest messages
    /// beyond 5 MiB or 100,000 message sets: ingest keeps to 60% of that, leaving room for
    /// record overhead and for other producers (the demo load).
    pub const EMBEDDED: LogLimits = LogLimits {
        bytes: 3 << 20,
        messages: 60_000,
    };
}

/// Bytes a record takes in the log beyond its key and value (length varints, deltas,
/// attributes, and its share of the batch header).
const RECORD_OVERHEAD: u64 = 16;

/// Messages and bytes bound for one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// Messages.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Need {
    fn add(&mut self, other: Need) {
        self.messages += other.messages;
        self.bytes += other.bytes;
    }

    fn within(&self, limits: LogLimits) -> bool {
        self.messages <= limits.messages && self.bytes <= limits.bytes
    }
}

#[derive(Debug, Default)]
struct State {
    /// Per partition, the offset after the last message ingest had acknowledged.
    acked_end: BTreeMap<i32, i64>,
    /// Per partition, what is admitted but not yet acknowledged.
    reserved: BTreeMap<i32, Need>,
    /// Mean bytes of a record produced so far (for messages already in the log).
    mean_bytes: f64,
}

/// The room ingest may use in a bounded log.
#[derive(Debug)]
pub struct IngestWindow {
    limits: LogLimits,
    partitions: i32,
    state: Mutex<State>,
}

impl IngestWindow {
    /// A window of `limits` per partition over `partitions` partitions.
    pub fn new(limits: LogLimits, partitions: i32) -> Self {
        IngestWindow {
            limits,
            partitions: partitions.max(1),
            state: Mutex::new(State {
                mean_bytes: 100.0,
                ..State::default()
            }),
        }
    }

    /// The partition of an event with this key.
    pub fn partition_of(&self, key: &[u8]) -> i32 {
        (xxh3_64(key) % self.partitions as u64) as i32
    }

    fn need_of(key: &[u8], value: &[u8]) -> Need {
        Need {
            messages: 1,
            bytes: (key.len() + value.len()) as u64 + RECORD_OVERHEAD,
        }
    }

    /// What `records` (`(key, value)`) bring to each partition.
    pub fn needs<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, records: &[(K, V)]) -> BTreeMap<i32, Need> {
        let mut out: BTreeMap<i32, Need> = BTreeMap::new();
        for (k, v) in records {
            let (k, v) = (k.as_ref(), v.as_ref());
            out.entry(self.partition_of(k))
                .or_default()
                .add(Self::need_of(k, v));
        }
        out
    }

    /// Splits `records` into consecutive chunks, each bringing at most half the window to any
    /// partition, so that a chunk fits while the readers still have the other half to read.
    pub fn chunks<K: AsRef<[u8]>, V: AsRef<[u8]>>(&self, records: &[(K, V)]) -> Vec<Range<usize>> {
        let half = LogLimits {
            bytes: self.limits.bytes / 2,
            messages: self.limits.messages / 2,
        };
        let mut out = Vec::new();
        let mut start = 0;
        let mut sums: BTreeMap<i32, Need> = BTreeMap::new();
        for (i, (k, v)) in records.iter().enumerate() {
            let (k, v) = (k.as_ref(), v.as_ref());
            let p = self.partition_of(k);
            let mut next = sums.get(&p).copied().unwrap_or_default();
            next.add(Self::need_of(k, v));
            if !next.within(half) && i > start {
                out.push(start..i);
                start = i;
                sums.clear();
                next = Self::need_of(k, v);
            }
            sums.insert(p, next);
        }
        if start < records.len() {
            out.push(start..records.len());
        }
        out
    }

    /// Reserves room for `need` when the readers, at `positions` (partition → next offset),
    /// leave enough of the window; `high` are the broker's high watermarks as last read (they
    /// show other producers' messages too). False when there is no room yet.
    pub fn try_reserve(
        &self,
        need: &BTreeMap<i32, Need>,
        positions: &BTreeMap<i32, i64>,
        high: &BTreeMap<i32, i64>,
    ) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        let fits = need.iter().all(|(p, n)| {
            let end = s
                .acked_end
                .get(p)
                .copied()
                .max(high.get(p).copied())
                .unwrap_or(0);
            let unread = (end - positions.get(p).copied().unwrap_or(0)).max(0) as u64;
            let mut total = Need {
                messages: unread,
                bytes: (unread as f64 * s.mean_bytes) as u64,
            };
            total.add(s.reserved.get(p).copied().unwrap_or_default());
            total.add(*n);
            total.within(self.limits)
        });
        if fits {
            for (p, n) in need {
                s.reserved.entry(*p).or_default().add(*n);
            }
        }
        fits
    }

    /// Gives back what [`IngestWindow::try_reserve`] reserved, once the broker answered;
    /// `acked` holds the highest offset acknowledged per partition.
    pub fn release(&self, need: &BTreeMap<i32, Need>, acked: &BTreeMap<i32, i64>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        for (p, n) in need {
            if let Some(r) = s.reserved.get_mut(p) {
                r.messages = r.messages.saturating_sub(n.messages);
                r.bytes = r.bytes.saturating_sub(n.bytes);
            }
            if n.messages > 0 {
                let mean = n.bytes as f64 / n.messages as f64;
                s.mean_bytes = 0.9 * s.mean_bytes + 0.1 * mean;
            }
        }
        for (p, offset) in acked {
            let end = s.acked_end.entry(*p).or_insert(0);
            *end = (*end).max(offset + 1);
        }
    }

    /// What one partition's log may hold ahead of the readers (for error messages).
    pub fn limits(&self) -> LogLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("u{}", i % 97).into_bytes(), vec![b'x'; 84]))
            .collect()
    }

    #[test]
    fn chunks_cover_everything_in_order_and_each_fits_half_the_window() {
        let w = IngestWindow::new(
            LogLimits {
                bytes: 100_000,
                messages: 1_000,
            },
            4,
        );
        let recs = records(10_000);
        let chunks = w.chunks(&recs);
        assert!(chunks.len() > 1);
        let mut next = 0;
        for c in &chunks {
            assert_eq!(c.start, next);
            next = c.end;
            for n in w.needs(&recs[c.clone()]).values() {
                assert!(n.messages <= 500 && n.bytes <= 50_000, "{n:?}");
            }
        }
        assert_eq!(next, recs.len());
    }

    #[test]
    fn room_comes_back_as_the_readers_read() {
        let w = IngestWindow::new(
            LogLimits {
                bytes: 1 << 20,
                messages: 100,
            },
            1,
        );
        let recs = records(60);
        let need = w.needs(&recs);
        let at_start = BTreeMap::from([(0, 0)]);
        let none = BTreeMap::new();
        assert!(w.try_reserve(&need, &at_start, &none));
        // 60 reserved: another 60 does not fit.
        assert!(!w.try_reserve(&need, &at_start, &none));
        w.release(&need, &BTreeMap::from([(0, 59)]));
        // Acknowledged but unread: still no room.
        assert!(!w.try_reserve(&need, &at_start, &none));
        // Read: room again.
        assert!(w.try_reserve(&need, &BTreeMap::from([(0, 60)]), &none));
        // Another producer's messages, seen in the high watermark, take room too.
        w.release(&need, &BTreeMap::from([(0, 119)]));
        assert!(!w.try_reserve(
            &need,
            &BTreeMap::from([(0, 120)]),
            &BTreeMap::from([(0, 200)])
        ));
    }
}
