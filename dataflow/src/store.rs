//! The retained events of one worker, bucketed by event time so that retention evicts whole
//! buckets and late events are appended, not inserted into the middle of a sorted list.
//!
//! Buckets are `width` ms of event time each, contiguous from the oldest retained one. Only the
//! bucket that straddles the retention horizon is ever sorted (once, when it first straddles),
//! so eviction is exact to the millisecond while inserts stay O(1). Unsorted buckets hold their
//! events in fixed-size chunks: at a high rate a bucket holds millions of events, and growing
//! one contiguous array would copy all of them at each doubling, stalling the worker.

use std::collections::VecDeque;

use crate::filter::StoredEvent;

/// Events per chunk of an unsorted bucket (about 200 KiB).
const CHUNK: usize = 4096;

/// One bucket: events in `[index * width, (index + 1) * width)`.
#[derive(Debug)]
enum Bucket {
    /// Events as they came, in chunks of at most [`CHUNK`]: appending never moves what is held.
    Unsorted(Vec<Vec<StoredEvent>>),
    /// Sorted by time; events before `start` were evicted.
    Sorted {
        events: Vec<StoredEvent>,
        start: usize,
    },
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket::Unsorted(Vec::new())
    }
}

impl Bucket {
    fn push(&mut self, e: StoredEvent) {
        match self {
            Bucket::Unsorted(chunks) => match chunks.last_mut() {
                Some(last) if last.len() < CHUNK => last.push(e),
                _ => {
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push(e);
                    chunks.push(chunk);
                }
            },
            Bucket::Sorted { events, start } => {
                let pos = *start + events[*start..].partition_point(|x| x.ts <= e.ts);
                events.insert(pos, e);
            }
        }
    }

    /// Sorts the bucket, once: from then on it can be evicted from the front, by time.
    fn sort(&mut self) {
        if let Bucket::Unsorted(chunks) = self {
            let mut events = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
            for chunk in chunks.drain(..) {
                events.extend(chunk);
            }
            events.sort_unstable_by_key(|e| e.ts);
            *self = Bucket::Sorted { events, start: 0 };
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &StoredEvent> + '_> {
        match self {
            Bucket::Unsorted(chunks) => Box::new(chunks.iter().flatten()),
            Bucket::Sorted { events, start } => Box::new(events[*start..].iter()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Bucket::Unsorted(chunks) => chunks.iter().map(Vec::len).sum(),
            Bucket::Sorted { events, start } => events.len() - start,
        }
    }
}

/// Retained events, evictable by time.
#[derive(Debug)]
pub struct EventStore {
    width: i64,
    /// Bucket number of `buckets[0]`.
    first: i64,
    buckets: VecDeque<Bucket>,
    len: usize,
}

impl EventStore {
    /// A store whose buckets span `width` ms each (at least 1).
    pub fn new(width: i64) -> Self {
        EventStore {
            width: width.max(1),
            first: 0,
            buckets: VecDeque::new(),
            len: 0,
        }
    }

    /// Number of events held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no event is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds an event. Callers evict before inserting, so that the buckets between the oldest
    /// retained event and the newest stay few (at most retention / width + 2).
    pub fn insert(&mut self, e: StoredEvent) {
        let b = e.ts.div_euclid(self.width);
        if self.buckets.is_empty() {
            self.first = b;
        }
        while b < self.first {
            self.buckets.push_front(Bucket::default());
            self.first -= 1;
        }
        let i = (b - self.first) as usize;
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        self.buckets[i].push(e);
        self.len += 1;
    }

    /// Removes every event older than `horizon`, handing each to `evicted`.
    pub fn evict_before(&mut self, horizon: i64, mut evicted: impl FnMut(&StoredEvent)) {
        while let Some(bucket) = self.buckets.front_mut() {
            let start_ms = self.first.saturating_mul(self.width);
            let end_ms = start_ms.saturating_add(self.width);
            if end_ms <= horizon {
                self.len -= bucket.len();
                bucket.iter().for_each(&mut evicted);
                self.buckets.pop_front();
                self.first += 1;
                continue;
            }
            if start_ms < horizon {
                bucket.sort();
                if let Bucket::Sorted { events, start } = bucket {
                    let live = &events[*start..];
                    let n = live.partition_point(|e| e.ts < horizon);
                    live[..n].iter().for_each(&mut evicted);
                    *start += n;
                    self.len -= n;
                }
            }
            break;
        }
        if self.len == 0 {
            self.buckets.clear();
        }
    }

    /// Every held event, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &StoredEvent> {
        self.buckets.iter().flat_map(Bucket::iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(ts: i64) -> StoredEvent {
        StoredEvent {
            ts,
            user: 1,
            emoji: 0,
            event_type: 1,
            tier: 0,
            amount: f64::NAN,
            partition: 0,
            offset: ts,
        }
    }

    #[test]
    fn a_bucket_of_many_chunks_evicts_exactly() {
        let mut store = EventStore::new(1_000_000);
        // Out of order, spanning several chunks of one bucket.
        let times: Vec<i64> = (0..3 * CHUNK as i64 + 7)
            .map(|i| (i * 7919) % 20_011)
            .collect();
        for &t in &times {
            store.insert(ev(t));
        }
        assert_eq!(store.iter().count(), times.len());
        let mut gone = Vec::new();
        store.evict_before(10_000, |e| gone.push(e.ts));
        let mut expected: Vec<i64> = times.iter().copied().filter(|&t| t < 10_000).collect();
        expected.sort();
        assert_eq!(
            gone, expected,
            "evicted in time order, exactly those before the horizon"
        );
        assert_eq!(store.len(), times.len() - expected.len());
        // A late event into the now sorted bucket is kept, and evicted in order too.
        let held = times
            .iter()
            .filter(|&&t| (10_000..15_000).contains(&t))
            .count();
        store.insert(ev(12_345));
        let mut gone = Vec::new();
        store.evict_before(15_000, |e| gone.push(e.ts));
        assert_eq!(gone.len(), held + 1);
        assert!(gone.windows(2).all(|w| w[0] <= w[1]));
    }

    proptest! {
        #[test]
        fn eviction_is_exact(ops in prop::collection::vec((0i64..500, any::<bool>()), 1..200), width in 1i64..60) {
            let mut store = EventStore::new(width);
            let mut model: Vec<i64> = Vec::new();
            let mut horizon = 0;
            for (t, evict) in ops {
                if evict {
                    horizon = horizon.max(t);
                    let mut gone = Vec::new();
                    store.evict_before(horizon, |e| gone.push(e.ts));
                    let mut expected: Vec<i64> = model.iter().copied().filter(|&x| x < horizon).collect();
                    model.retain(|&x| x >= horizon);
                    gone.sort();
                    expected.sort();
                    prop_assert_eq!(gone, expected);
                } else if t >= horizon {
                    store.insert(ev(t));
                    model.push(t);
                }
                let mut held: Vec<i64> = store.iter().map(|e| e.ts).collect();
                held.sort();
                let mut m = model.clone();
                m.sort();
                prop_assert_eq!(held, m);
                prop_assert_eq!(store.len(), model.len());
            }
        }
    }
}
