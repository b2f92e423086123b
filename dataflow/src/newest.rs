//! A filter's newest matches: the one keeper of "the newest few", used where a back-fill finds
//! them (each reading worker's feed) and where live delivery keeps them (the push hub), so
//! both agree on what "newest" means and on what counts as the same event.

use std::collections::VecDeque;

/// How many of a filter's newest matches are kept (`recent` in `GET /filters/{id}/matches`).
pub const RECENT_MATCHES: usize = 100;

/// Where an event stands among the others: event time, then partition and offset. Newer
/// events have greater keys; one event has one key wherever it was seen.
pub type EventKey = (i64, i32, i64);

/// The newest records offered, at most a fixed number, newest first; a key offered again is
/// kept once (an event both back-filled and seen live).
#[derive(Debug, Clone)]
pub struct Newest<T> {
    limit: usize,
    kept: VecDeque<(EventKey, T)>,
}

impl<T> Default for Newest<T> {
    /// A keeper of [`RECENT_MATCHES`].
    fn default() -> Self {
        Newest::new(RECENT_MATCHES)
    }
}

impl<T> Newest<T> {
    /// A keeper of the newest `limit` records.
    pub fn new(limit: usize) -> Self {
        Newest {
            limit,
            kept: VecDeque::new(),
        }
    }

    /// Keeps the record at `key` if it is among the newest; `make` builds it only then.
    pub fn offer(&mut self, key: EventKey, make: impl FnOnce() -> T) {
        let full = self.kept.len() >= self.limit;
        if self.limit == 0 || full && self.kept.back().is_some_and(|(k, _)| *k >= key) {
            return;
        }
        let at = self.kept.partition_point(|(k, _)| *k > key);
        if self.kept.get(at).is_some_and(|(k, _)| *k == key) {
            return;
        }
        self.kept.insert(at, (key, make()));
        self.kept.truncate(self.limit);
    }

    /// The records kept, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.kept.iter().map(|(_, t)| t)
    }

    /// Takes the records kept, newest first, leaving none.
    pub fn take(&mut self) -> Vec<T> {
        self.kept.drain(..).map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_once_each_newest_first() {
        let mut n = Newest::new(3);
        let mut made = 0;
        for (ts, offset) in [(5, 1), (9, 2), (1, 3), (7, 4), (9, 2), (3, 5), (8, 6)] {
            n.offer((ts, 0, offset), || {
                made += 1;
                offset
            });
        }
        assert_eq!(n.iter().copied().collect::<Vec<_>>(), vec![2, 6, 4]);
        // (9, 2) again was not made twice, nor (1, 3) and (3, 5) once the keeper was full of
        // newer ones.
        assert_eq!(made, 5);
        assert_eq!(n.take(), vec![2, 6, 4]);
        assert_eq!(n.iter().count(), 0);
    }

    #[test]
    fn ties_in_time_are_ordered_by_partition_and_offset() {
        let mut n = Newest::new(2);
        for p in 0..4 {
            n.offer((10, p, 0), || p);
        }
        assert_eq!(n.take(), vec![3, 2]);
    }
}
