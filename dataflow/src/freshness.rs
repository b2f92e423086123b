//! How fresh the views stay: for every dataflow time, how long from the moment its input began
//! to be read to the moment the collector's views included it. Both runners measure it in
//! process 0 (which holds worker 0 and the collector); benchmarks report its distribution.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Longest delay told apart; longer ones count as this.
const MAX_MICROS: u64 = 3_600_000_000;

/// A distribution of delays, 3 significant digits from 1 µs to an hour, in bounded memory
/// (tens of KiB, however long the run).
#[derive(Debug, Clone)]
pub struct Freshness(Histogram<u64>);

impl Default for Freshness {
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low, at most 5
        // significant digits): this cannot fail on any input.
        Freshness(Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid constant bounds"))
    }
}

impl Freshness {
    /// Counts one delay.
    pub fn record(&mut self, delay: Duration) {
        let micros = (delay.as_micros() as u64).clamp(1, MAX_MICROS);
        self.0.saturating_record(micros);
    }

    /// Delays counted.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The delay at quantile `q` (0 to 1), in milliseconds; 0 when empty.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.0.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1000.0
    }

    /// The longest delay, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.0.max() as f64 / 1000.0
    }
}

/// Dataflow times opened and not yet seen complete, with when each was opened: shared between
/// the worker that opens times and the collector that sees them complete.
#[derive(Debug, Default)]
pub(crate) struct OpenTimes(Mutex<VecDeque<(u64, Instant)>>);

impl OpenTimes {
    /// Notes that `time` began now, unless a later or equal time already did.
    pub(crate) fn open(&self, time: u64) {
        if let Ok(mut open) = self.0.lock() {
            if open.back().is_none_or(|(t, _)| *t < time) {
                open.push_back((time, Instant::now()));
            }
        }
    }

    /// Counts in `freshness` every open time up to `as_of`, now complete.
    pub(crate) fn complete(&self, as_of: u64, freshness: &mut Freshness) {
        let Ok(mut open) = self.0.lock() else {
            return;
        };
        let now = Instant::now();
        while let Some(&(t, opened)) = open.front() {
            if t > as_of {
                break;
            }
            freshness.record(now.saturating_duration_since(opened));
            open.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_follow_the_delays_recorded() {
        let mut f = Freshness::default();
        for ms in 1..=100 {
            f.record(Duration::from_millis(ms));
        }
        assert_eq!(f.len(), 100);
        assert!(
            (f.quantile_ms(0.5) - 50.0).abs() < 0.1,
            "{}",
            f.quantile_ms(0.5)
        );
        assert!((f.quantile_ms(0.99) - 99.0).abs() < 0.1);
        assert!((f.max_ms() - 100.0).abs() < 0.1);
    }

    #[test]
    fn a_time_counts_once_when_the_views_reach_it() {
        let open = OpenTimes::default();
        let mut f = Freshness::default();
        open.open(1);
        open.open(1);
        open.open(2);
        open.open(3);
        open.complete(2, &mut f);
        assert_eq!(f.len(), 2);
        open.complete(2, &mut f);
        assert_eq!(f.len(), 2);
        open.complete(10, &mut f);
        assert_eq!(f.len(), 3);
        assert!(f.quantile_ms(1.0) < 1000.0);
    }
}
