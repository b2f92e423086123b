//! The parameters of the views.

/// How many event-time windows the views show (the newest that hold events).
pub const WINDOWS_SHOWN: usize = 60;

/// The widest regrouped window served exactly (`GET /top?window=`, `?last=`): one hour.
pub const WIDEST_WINDOW_MS: i64 = 3_600_000;

/// Most base windows kept for regrouping, so that a tiny `--window` cannot make an hour of
/// windows unbounded.
pub const MAX_WINDOWS_KEPT: i64 = 3_600;

/// Retention is kept in this many buckets of event time: history leaves a bucket at a time.
pub const RETENTION_BUCKETS: i64 = 64;

/// Parameters of the views (docs/views.md and docs/commands.md), with the documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ViewConfig {
    /// K of the ties-aware top-K, in 1..=1000.
    pub top_k: usize,
    /// Width of the tumbling event-time windows, in ms.
    pub window_ms: i64,
    /// Largest gap between consecutive events of one session, in ms.
    pub session_gap_ms: i64,
    /// How much event time behind the newest event sessions and filter matches keep, in ms.
    pub retention_ms: i64,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            top_k: 3,
            window_ms: 10_000,
            session_gap_ms: 30 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
        }
    }
}

/// A parameter out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `top_k` outside 1..=1000.
    #[error("top-k must be in 1..=1000, got {0}")]
    TopK(usize),
    /// A duration that must be positive is not.
    #[error("{0} must be at least 1 ms")]
    NotPositive(&'static str),
    /// A duration that must not be negative is.
    #[error("{0} must not be negative")]
    Negative(&'static str),
}

impl ViewConfig {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.top_k) {
            return Err(ConfigError::TopK(self.top_k));
        }
        if self.window_ms < 1 {
            return Err(ConfigError::NotPositive("window"));
        }
        if self.retention_ms < 1 {
            return Err(ConfigError::NotPositive("retention"));
        }
        if self.session_gap_ms < 0 {
            return Err(ConfigError::Negative("session gap"));
        }
        Ok(())
    }

    /// The widest multiple of the window served exactly: an hour, or [`MAX_WINDOWS_KEPT`]
    /// windows when they are shorter than a second, and at least one window.
    pub fn widest_window_ms(&self) -> i64 {
        let w = self.window_ms.max(1);
        let widest = WIDEST_WINDOW_MS.min(w.saturating_mul(MAX_WINDOWS_KEPT));
        (widest - widest % w).max(w)
    }

    /// Width of a retention bucket: `retention / 64` (at least 1 ms; 2 h 37.5 min at the default 7 d). An event stays in
    /// sessions and filter counts while its bucket ends after the horizon, so history leaves
    /// whole buckets at a time and state is bounded by keys and buckets, never by events.
    pub fn retention_bucket_ms(&self) -> i64 {
        (self.retention_ms / RETENTION_BUCKETS).max(1)
    }

    /// The retention bucket holding `ts`.
    pub fn bucket_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.retention_bucket_ms())
    }

    /// Where bucket `bucket` ends (exclusive).
    pub fn bucket_end(&self, bucket: i64) -> i64 {
        bucket
            .saturating_add(1)
            .saturating_mul(self.retention_bucket_ms())
    }

    /// The retention horizon when the newest event time is `newest`.
    pub fn horizon(&self, newest: i64) -> i64 {
        newest.saturating_sub(self.retention_ms)
    }

    /// Where the bucket of an event at `ts` ends: the event is retained while the horizon is
    /// before this.
    pub fn retained_until(&self, ts: i64) -> i64 {
        self.bucket_end(self.bucket_of(ts))
    }

    /// Whether an event at `ts` is still in the retained history behind `horizon`: its
    /// bucket ends after the horizon.
    pub fn retains(&self, ts: i64, horizon: i64) -> bool {
        self.retained_until(ts) > horizon
    }

    /// Start of the window holding `ts`.
    pub fn window_of(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.window_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_window_is_an_hour_of_whole_windows() {
        let with = |window_ms| ViewConfig {
            window_ms,
            ..ViewConfig::default()
        };
        assert_eq!(with(10_000).widest_window_ms(), 3_600_000);
        assert_eq!(with(7_000).widest_window_ms(), 3_598_000);
        assert_eq!(with(100).widest_window_ms(), 360_000);
        assert_eq!(with(7_200_000).widest_window_ms(), 7_200_000);
    }
}
