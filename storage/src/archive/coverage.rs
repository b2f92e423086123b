//! What the archive already holds, read from its file names at start, and the clean-up of
//! files a crash left half-written.
//!
//! Each file covers one offset range of one partition for one hour of event time, and the
//! writer writes a range for every hour it has rows in. So an event is archived exactly when
//! its hour's directory has a file whose range holds its offset: a crash between two renames of
//! one range leaves some hours written and others not, and a re-read writes exactly the
//! missing ones. No other record is needed, and the archive describes itself.

use std::collections::BTreeMap;
use std::path::Path;

use emoflow_ingest::archive_format::{parse_hour_dir, SegmentName};

/// One archived file, as far as exactly-once needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Covered {
    first: i64,
    last: i64,
    hour: i64,
}

/// The archived offset ranges of one partition of one log.
#[derive(Debug, Clone, Default)]
pub struct PartitionCoverage {
    /// Sorted by `first`.
    files: Vec<Covered>,
    /// The longest range, to bound look-ups.
    longest: i64,
    /// The highest offset any file covers.
    max_last: Option<i64>,
}

impl PartitionCoverage {
    fn add(&mut self, c: Covered) {
        let at = self.files.partition_point(|f| *f <= c);
        self.files.insert(at, c);
        self.longest = self.longest.max(c.last - c.first);
        self.max_last = self.max_last.max(Some(c.last));
    }

    /// Ranges holding `offset`, whatever their hour.
    fn holding(&self, offset: i64) -> impl Iterator<Item = &Covered> {
        let end = self.files.partition_point(|f| f.first <= offset);
        let low = offset.saturating_sub(self.longest);
        let start = self.files[..end].partition_point(|f| f.first < low);
        self.files[start..end]
            .iter()
            .filter(move |f| f.last >= offset)
    }

    /// True when the event at `offset` with its time in the hour starting at `hour` is
    /// archived already.
    pub fn holds(&self, offset: i64, hour: i64) -> bool {
        if self.max_last.is_none_or(|m| offset > m) {
            return false;
        }
        self.holding(offset).any(|f| f.hour == hour)
    }

    /// Where a range that starts at `start` must end (exclusive) so that it never straddles
    /// the bounds of a range already written: the end of a range holding `start`, or the start
    /// of the next one. `None` when nothing is archived beyond `start`.
    pub fn boundary_after(&self, start: i64) -> Option<i64> {
        if let Some(end) = self.holding(start).map(|f| f.last + 1).min() {
            return Some(end);
        }
        let next = self.files.partition_point(|f| f.first <= start);
        self.files.get(next).map(|f| f.first)
    }
}

/// Everything the archive holds, by log and partition.
#[derive(Debug, Default)]
pub struct Coverage {
    parts: BTreeMap<(String, i32), PartitionCoverage>,
    /// Files found.
    pub files: usize,
    /// Half-written files removed.
    pub removed_tmp: usize,
}

impl Coverage {
    /// Reads the archive under `dir` (created if missing), removing what an interrupted write
    /// left behind.
    pub fn scan(dir: &Path) -> std::io::Result<Coverage> {
        std::fs::create_dir_all(dir)?;
        let mut cov = Coverage::default();
        for date in std::fs::read_dir(dir)? {
            let date = date?;
            let date_name = date.file_name().to_string_lossy().into_owned();
            if !date.file_type()?.is_dir() || !date_name.starts_with("date=") {
                continue;
            }
            for hour in std::fs::read_dir(date.path())? {
                let hour = hour?;
                let hour_name = hour.file_name().to_string_lossy().into_owned();
                let Some(hour_ms) = parse_hour_dir(&date_name, &hour_name) else {
                    continue;
                };
                if hour.file_type()?.is_dir() {
                    cov.scan_hour(&hour.path(), hour_ms)?;
                }
            }
        }
        Ok(cov)
    }

    fn scan_hour(&mut self, dir: &Path, hour: i64) -> std::io::Result<()> {
        for file in std::fs::read_dir(dir)? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            if SegmentName::is_tmp(&name) {
                tracing::info!(file = %file.path().display(), "removing the leftover of an interrupted write");
                std::fs::remove_file(file.path())?;
                self.removed_tmp += 1;
            } else if let Some(seg) = SegmentName::parse(&name) {
                self.files += 1;
                self.parts
                    .entry((seg.log, seg.partition))
                    .or_default()
                    .add(Covered {
                        first: seg.first,
                        last: seg.last,
                        hour,
                    });
            }
        }
        Ok(())
    }

    /// What is archived of `partition` of `log`.
    pub fn of(&self, log: &str, partition: i32) -> PartitionCoverage {
        self.parts
            .get(&(log.to_owned(), partition))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(files: &[(i64, i64, i64)]) -> PartitionCoverage {
        let mut c = PartitionCoverage::default();
        for &(first, last, hour) in files {
            c.add(Covered { first, last, hour });
        }
        c
    }

    #[test]
    fn an_offset_is_held_only_in_the_hour_that_has_its_range() {
        // Range 0..=9 was written for hours 0 and 1; 10..=19 only for hour 1 (a crash).
        let c = cov(&[(0, 9, 0), (0, 9, 1), (10, 19, 1)]);
        assert!(c.holds(5, 0) && c.holds(5, 1));
        assert!(!c.holds(5, 2));
        assert!(c.holds(15, 1) && !c.holds(15, 0));
        assert!(!c.holds(20, 1));
    }

    #[test]
    fn new_ranges_end_where_written_ones_end_or_begin() {
        let c = cov(&[(10, 19, 0), (30, 39, 0)]);
        assert_eq!(c.boundary_after(0), Some(10));
        assert_eq!(c.boundary_after(12), Some(20));
        assert_eq!(c.boundary_after(20), Some(30));
        assert_eq!(c.boundary_after(40), None);
    }
}
