//! The Parquet archive's layout (docs/archive.md), shared by its writer and its readers: the one
//! Arrow schema of every file, the Hive-style hour directories, and file names that say which
//! Kafka log, partition and offset range a file holds.
//!
//! ```text
//! <archive>/date=2026-11-23/hour=14/emoji-events.p3.120000-239999.parquet
//!                                    └─ log ─────┘ └┘ └─ offsets ──┘ (inclusive)
//! ```
//!
//! A file holds the accepted events of one partition whose offsets lie in its range and whose
//! event time falls in its hour. The writer covers a range for every hour at once, so "hour H
//! has a file whose range holds offset o" is exactly "the event at o, if its time is in H, is
//! archived": that is how a restart knows what is archived without any other record.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use time::{Date, Month, OffsetDateTime};

/// Milliseconds in an hour: the archive's directories hold one hour of event time each.
pub const HOUR_MS: i64 = 3_600_000;

/// File name suffix of archive files.
pub const PARQUET_SUFFIX: &str = ".parquet";

/// Suffix of a file being written; such files are hidden (a leading `.`), so readers skip
/// them, and deleted at start when a crash left them behind.
pub const TMP_SUFFIX: &str = ".tmp";

/// The columns of every archive file, in order.
pub const COLUMNS: [&str; 8] = [
    "user_id",
    "event_type",
    "emoji",
    "tier",
    "amount",
    "ts",
    "kafka_partition",
    "kafka_offset",
];

/// The Arrow type of `ts`: a UTC millisecond timestamp.
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// The one schema of every archive file.
pub fn archive_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("emoji", DataType::Utf8, true),
        Field::new("tier", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("ts", ts_type(), false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ]))
}

/// The start of the hour holding `ts_ms`.
pub fn hour_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(HOUR_MS) * HOUR_MS
}

/// The Hive-style directory of the hour starting at `hour_ms`: `date=YYYY-MM-DD/hour=HH`.
pub fn hour_dir(hour_ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(hour_ms.div_euclid(1000)) {
        Ok(t) => format!(
            "date={:04}-{:02}-{:02}/hour={:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour()
        ),
        // Event times are validated to 1970..=9999, which always converts.
        Err(_) => "date=invalid/hour=00".to_owned(),
    }
}

/// The hour a `date=YYYY-MM-DD` and `hour=HH` directory pair stands for, in ms.
pub fn parse_hour_dir(date: &str, hour: &str) -> Option<i64> {
    let date = date.strip_prefix("date=")?;
    let hour: i64 = hour.strip_prefix("hour=")?.parse().ok()?;
    let mut parts = date.split('-');
    let y: i32 = parts.next()?.parse().ok()?;
    let m: u8 = parts.next()?.parse().ok()?;
    let d: u8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !(0..24).contains(&hour) {
        return None;
    }
    let day = Date::from_calendar_date(y, Month::try_from(m).ok()?, d).ok()?;
    let secs = day.midnight().assume_utc().unix_timestamp();
    Some(secs * 1000 + hour * HOUR_MS)
}

/// The hidden name a file called `file_name` is written under, beside its final place, until
/// it is renamed there: readers skip it, and a restart removes it as a leftover.
pub fn tmp_name(file_name: &str) -> String {
    format!(".{file_name}{TMP_SUFFIX}")
}

/// What an archive file holds, as its name says: events of `log` (a Kafka topic, or one run of
/// the embedded broker), partition `partition`, offsets `first..=last`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentName {
    /// The Kafka log: the topic, or `topic~run` for one run of the embedded broker (whose log
    /// starts again at offset 0 each time).
    pub log: String,
    /// The Kafka partition.
    pub partition: i32,
    /// First offset of the range.
    pub first: i64,
    /// Last offset of the range (inclusive).
    pub last: i64,
}

impl SegmentName {
    /// `LOG.pPARTITION.FIRST-LAST.parquet`.
    pub fn file_name(&self) -> String {
        format!(
            "{}.p{}.{}-{}{PARQUET_SUFFIX}",
            self.log, self.partition, self.first, self.last
        )
    }

    /// Reads a name written by [`SegmentName::file_name`]; `None` for any other name.
    pub fn parse(name: &str) -> Option<SegmentName> {
        let stem = name.strip_suffix(PARQUET_SUFFIX)?;
        let (rest, range) = stem.rsplit_once('.')?;
        let (first, last) = range.split_once('-')?;
        let (log, partition) = rest.rsplit_once(".p")?;
        let (first, last): (i64, i64) = (first.parse().ok()?, last.parse().ok()?);
        if log.is_empty() || first < 0 || last < first {
            return None;
        }
        Some(SegmentName {
            log: log.to_owned(),
            partition: partition.parse().ok()?,
            first,
            last,
        })
    }

    /// True for the name of a file left half-written (see [`tmp_name`]).
    pub fn is_tmp(name: &str) -> bool {
        name.starts_with('.') && name.ends_with(TMP_SUFFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refuse_others() {
        let n = SegmentName {
            log: "emoji.events~20261123T101500Z".into(),
            partition: 3,
            first: 120,
            last: 239,
        };
        assert_eq!(
            n.file_name(),
            "emoji.events~20261123T101500Z.p3.120-239.parquet"
        );
        assert_eq!(SegmentName::parse(&n.file_name()), Some(n.clone()));
        assert!(SegmentName::is_tmp(&tmp_name(&n.file_name())));
        assert!(!SegmentName::is_tmp(&n.file_name()));
        for bad in [
            "x.parquet",
            "t.p1.5-4.parquet",
            "t.p1.5.parquet",
            ".p1.1-2.parquet",
        ] {
            assert_eq!(SegmentName::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn hour_dirs_round_trip() {
        // 2026-11-23T14:59:59.999Z
        let ts = 1_795_445_999_999;
        let h = hour_of(ts);
        assert_eq!(hour_dir(h), "date=2026-11-23/hour=14");
        assert_eq!(parse_hour_dir("date=2026-11-23", "hour=14"), Some(h));
        assert_eq!(hour_dir(0), "date=1970-01-01/hour=00");
        assert_eq!(parse_hour_dir("date=2026-02-30", "hour=1"), None);
        assert_eq!(parse_hour_dir("date=2026-11-23", "hour=24"), None);
    }
}
