//! The retained events of one worker, bucketed by event time so that retention evicts whole
//! buckets and late events are appended, not inserted into the middle of a sorted list.
//!
//! Buckets are `width` ms of event time each, contiguous from the oldest retained one. Only the
//! bucket that straddles the retention horizon is ever sorted (once, when it first straddles),
//! so eviction is exact to the millisecond while inserts stay O(1).

use std::collections::VecDeque;

use crate::filter::StoredEvent;

/// One bucket: events in `[index * width, (index + 1) * width)`.
#[derive(Debug, Default)]
struct Bucket {
    events: Vec<StoredEvent>,
    /// Events before this index were evicted.
    start: usize,
    /// Whether `events[start..]` is sorted by time.
    sorted: bool,
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
        let bucket = &mut self.buckets[i];
        if bucket.sorted {
            let pos =
                bucket.start + bucket.events[bucket.start..].partition_point(|x| x.ts <= e.ts);
            bucket.events.insert(pos, e);
        } else {
            bucket.events.push(e);
        }
        self.len += 1;
    }

    /// Removes every event older than `horizon`, handing each to `evicted`.
    pub fn evict_before(&mut self, horizon: i64, mut evicted: impl FnMut(&StoredEvent)) {
        while let Some(bucket) = self.buckets.front_mut() {
            let start_ms = self.first.saturating_mul(self.width);
            let end_ms = start_ms.saturating_add(self.width);
            if end_ms <= horizon {
                for e in &bucket.events[bucket.start..] {
                    evicted(e);
                }
                self.len -= bucket.events.len() - bucket.start;
                self.buckets.pop_front();
                self.first += 1;
                continue;
            }
            if start_ms < horizon {
                if !bucket.sorted {
                    bucket.events[bucket.start..].sort_unstable_by_key(|e| e.ts);
                    bucket.sorted = true;
                }
                let live = &bucket.events[bucket.start..];
                let n = live.partition_point(|e| e.ts < horizon);
                live[..n].iter().for_each(&mut evicted);
                bucket.start += n;
                self.len -= n;
            }
            break;
        }
        if self.len == 0 {
            self.buckets.clear();
        }
    }

    /// Every held event, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &StoredEvent> {
        self.buckets.iter().flat_map(|b| b.events[b.start..].iter())
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
