//! Sending at a steady rate, for the load generators (`produce --rate`, `demo`, the benchmarks).

use std::time::{Duration, Instant};

/// Keeps a sender at a steady rate: event `n` is due `n / rate` seconds after the start.
pub struct Pacer {
    rate: u64,
    started: Instant,
}

impl Pacer {
    /// A pacer at `rate` events/s (0: no limit).
    pub fn new(rate: u64) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
        }
    }

    /// Sleeps until event `n` is due (only when more than a millisecond ahead, so high rates
    /// send in small bursts rather than sleeping per event).
    pub fn wait_for(&self, n: u64) {
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(n as f64 / self.rate as f64);
        if let Some(ahead) = due.checked_sub(self.started.elapsed()) {
            if ahead > Duration::from_millis(1) {
                std::thread::sleep(ahead);
            }
        }
    }
}
