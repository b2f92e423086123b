//! A seeded synthetic event stream shaped like a live show: a few emojis take most reactions,
//! a few users are very active, some events arrive late, some counts tie exactly, and some
//! events are purchases with amounts.
//!
//! The same seed always gives the same bytes (ChaCha8 is stable across platforms and `rand`
//! versions), so benchmark and test inputs can be regenerated instead of checked in.

use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

/// Emojis the generator draws from, most popular first.
pub const EMOJIS: [&str; 24] = [
    "🔥", "❤️", "😂", "👍", "🎉", "😮", "👏", "😢", "🙌", "💯", "🤯", "😍", "🥳", "👀", "😡", "🤔",
    "💀", "✨", "🙏", "🚀", "😎", "🤝", "🎶", "🌈",
];
/// Emojis that always arrive together, so their counts tie exactly.
pub const TIED_EMOJIS: [&str; 3] = ["🅰️", "🅱️", "🆎"];
const TIERS: [&str; 3] = ["free", "pro", "vip"];

/// What to generate.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// Seed of the random stream.
    pub seed: u64,
    /// Number of distinct users.
    pub users: u32,
    /// Event time of the first event, in ms since the Unix epoch.
    pub start_ms: i64,
    /// Mean event-time step between consecutive events, in ms.
    pub step_ms: f64,
    /// Share of events that arrive late, with a time up to `late_max_ms` in the past.
    pub late_fraction: f64,
    /// How far back a late event's time may lie.
    pub late_max_ms: i64,
    /// Share of events written with input aliases (`emoji_type`, `event`, `user_tier`,
    /// `timestamp`) instead of canonical names.
    pub alias_fraction: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            users: 10_000,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            step_ms: 20.0,
            late_fraction: 0.02,
            late_max_ms: 2 * 60 * 60 * 1000,
            alias_fraction: 0.1,
        }
    }
}

/// Writes generated events as NDJSON, one line at a time.
pub struct Generator {
    cfg: GeneratorConfig,
    rng: ChaCha8Rng,
    emoji_dist: Zipf<f64>,
    emitted: u64,
    /// Tied emojis still owed to complete a group.
    tie_queue: Vec<&'static str>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GeneratorConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        // Zipf over the palette with exponent 1.1: a realistic head-heavy popularity curve.
        let emoji_dist = match Zipf::new(EMOJIS.len() as f64, 1.1) {
            Ok(d) => d,
            Err(_) => unreachable!("the palette is non-empty and the exponent positive"),
        };
        Generator {
            cfg: GeneratorConfig {
                users: cfg.users.max(1),
                ..cfg
            },
            rng,
            emoji_dist,
            emitted: 0,
            tie_queue: Vec::new(),
        }
    }

    fn user(&mut self) -> u32 {
        // 1% of users (at least one) produce 30% of events.
        let heavy = (self.cfg.users / 100).max(1);
        if self.rng.random_bool(0.3) {
            self.rng.random_range(0..heavy)
        } else {
            self.rng.random_range(0..self.cfg.users)
        }
    }

    fn ts(&mut self) -> i64 {
        let jitter = self.rng.random_range(0.0..self.cfg.step_ms);
        let mut ts = self.cfg.start_ms + (self.emitted as f64 * self.cfg.step_ms + jitter) as i64;
        if self.rng.random_bool(self.cfg.late_fraction) {
            ts -= self.rng.random_range(0..=self.cfg.late_max_ms);
        }
        ts.max(0)
    }

    /// Appends one event as an NDJSON line (with its `\n`) to `out`.
    pub fn write_event(&mut self, out: &mut Vec<u8>) {
        let user = self.user();
        let ts = self.ts();
        let alias = self.rng.random_bool(self.cfg.alias_fraction);
        let tier = TIERS[(user as usize * 7 + 3) % TIERS.len()];
        let kind: f64 = self.rng.random();
        let (event_type, emoji, amount) = if let Some(e) = self.tie_queue.pop() {
            (None, Some(e), None)
        } else if kind < 0.02 {
            self.tie_queue.extend_from_slice(&TIED_EMOJIS[1..]);
            (None, Some(TIED_EMOJIS[0]), None)
        } else if kind < 0.82 {
            let e = EMOJIS[self.emoji_dist.sample(&mut self.rng) as usize - 1];
            (None, Some(e), None)
        } else if kind < 0.94 {
            (Some("click"), None, None)
        } else if kind < 0.97 {
            (Some("view"), None, None)
        } else {
            let cents = self.rng.random_range(50..20_000);
            (Some("purchase"), None, Some(cents as f64 / 100.0))
        };
        let k = |canonical: &'static str, alias_name: &'static str| {
            if alias {
                alias_name
            } else {
                canonical
            }
        };
        let _ = write!(out, r#"{{"user_id":"user-{user}""#);
        if let Some(e) = emoji {
            let _ = write!(out, r#","{}":"{e}""#, k("emoji", "emoji_type"));
        }
        if let Some(t) = event_type {
            let _ = write!(out, r#","{}":"{t}""#, k("event_type", "event"));
        }
        let _ = write!(out, r#","{}":"{tier}""#, k("tier", "user_tier"));
        if let Some(a) = amount {
            let _ = write!(out, r#","amount":{a}"#);
        }
        if alias && self.emitted.is_multiple_of(2) {
            let _ = write!(out, r#","timestamp":"{}""#, rfc3339(ts));
        } else {
            let _ = write!(out, r#","{}":{ts}"#, k("ts", "timestamp"));
        }
        out.extend_from_slice(b"}\n");
        self.emitted += 1;
    }

    /// Writes `events` events to `w`, calling `progress` with the count written after each
    /// block of lines.
    pub fn write_ndjson(
        &mut self,
        events: u64,
        mut w: impl Write,
        mut progress: impl FnMut(u64),
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut written = 0;
        while written < events {
            let block = (events - written).min(8192);
            for _ in 0..block {
                self.write_event(&mut buf);
            }
            w.write_all(&buf)?;
            buf.clear();
            written += block;
            progress(written);
        }
        w.flush()
    }
}

/// `ts` as an RFC 3339 UTC string with milliseconds.
pub fn rfc3339(ts_ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ts_ms as i128 * 1_000_000);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ts_ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_event;

    fn generate(seed: u64, n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut g = Generator::new(GeneratorConfig {
            seed,
            users: 50,
            ..GeneratorConfig::default()
        });
        g.write_ndjson(n, &mut out, |_| {}).unwrap();
        out
    }

    #[test]
    fn same_seed_same_bytes() {
        assert_eq!(generate(7, 500), generate(7, 500));
        assert_ne!(generate(7, 500), generate(8, 500));
    }

    #[test]
    fn every_line_decodes_and_the_stream_has_its_features() {
        let data = generate(1, 5000);
        let mut tied = [0u32; 3];
        let (mut aliases, mut purchases, mut late, mut last) = (0, 0, 0, 0);
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let e = decode_event(line, None).unwrap();
            if let Some(i) = TIED_EMOJIS
                .iter()
                .position(|t| Some(*t) == e.emoji.as_deref())
            {
                tied[i] += 1;
            }
            aliases += usize::from(std::str::from_utf8(line).unwrap().contains("user_tier"));
            purchases += usize::from(e.amount.is_some());
            late += usize::from(e.ts < last);
            last = last.max(e.ts);
        }
        assert!(
            tied[0] > 0 && tied[0] == tied[1] && tied[1] == tied[2],
            "{tied:?}"
        );
        assert!(aliases > 0 && purchases > 0 && late > 0);
    }

    #[test]
    fn rfc3339_round_trips() {
        let ts = 1_767_225_600_123;
        assert_eq!(crate::parse_rfc3339_ms(&rfc3339(ts)), Ok(ts));
    }
}
