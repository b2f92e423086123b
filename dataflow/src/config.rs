//! The parameters of the views.

/// How many event-time windows the views show (the newest that hold events).
pub const WINDOWS_SHOWN: usize = 60;

/// Parameters of the views (SPEC sections 3 and 5), with SPEC's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Start of the window holding `ts`.
    pub fn window_of(&self, ts: i64) -> i64 {
        ts - ts.rem_euclid(self.window_ms)
    }
}
