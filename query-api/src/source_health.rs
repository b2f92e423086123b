//! What the service knows about its source, apart from any request: the broker's watermarks
//! (read by a background thread every half second, so no route waits on the broker), the
//! run's readers and archive, and how positions and watermarks make lag and problems
//! ([`assess_source`], a pure function).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use emoflow_dataflow::reader_health::{ReaderHealth, ReaderProblem};
use emoflow_ingest::kafka::{PartitionMarks, Watermarks};
use emoflow_storage::{ArchiveMonitor, ArchiveReport};
use serde::Serialize;

/// How often the watermarks are read.
pub const WATERMARK_INTERVAL: Duration = Duration::from_millis(500);

/// A reading older than this, or views older than this, make the service `degraded`.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// The broker's watermarks per partition, or why they could not be read.
pub(crate) type MarksRead = Result<BTreeMap<i32, PartitionMarks>, String>;

struct Reading {
    at: Instant,
    marks: MarksRead,
}

/// What `/health` knows about the source.
pub struct HealthProbe {
    source: String,
    reading: Mutex<Option<Reading>>,
    archive: Option<ArchiveMonitor>,
    readers: Option<Arc<ReaderHealth>>,
}

impl HealthProbe {
    /// A probe describing the source as `source` (shown as is), the run's readers and its
    /// archive when there are ones.
    pub fn new(
        source: impl Into<String>,
        readers: Option<Arc<ReaderHealth>>,
        archive: Option<ArchiveMonitor>,
    ) -> Arc<Self> {
        Arc::new(HealthProbe {
            source: source.into(),
            reading: Mutex::new(None),
            archive,
            readers,
        })
    }

    /// The archive's counters, when the run archives.
    pub fn archive_report(&self) -> Option<ArchiveReport> {
        self.archive.as_ref().map(ArchiveMonitor::report)
    }

    fn record(&self, marks: MarksRead) {
        if let Ok(mut r) = self.reading.lock() {
            *r = Some(Reading {
                at: Instant::now(),
                marks,
            });
        }
    }

    /// The source as shown (`kafka://…`, `embedded://…`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The run's readers, when the service has a run.
    pub(crate) fn readers(&self) -> Option<&Arc<ReaderHealth>> {
        self.readers.as_ref()
    }

    /// The last watermark reading: when it was taken, and the marks or why they could not be
    /// read; `None` before the first.
    pub(crate) fn last_reading(&self) -> Option<(Instant, MarksRead)> {
        self.reading
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| (r.at, r.marks.clone())))
    }

    /// The high watermarks as last read (empty before the first reading, or when it failed).
    pub fn high_watermarks(&self) -> BTreeMap<i32, i64> {
        self.reading
            .lock()
            .ok()
            .and_then(|r| r.as_ref().and_then(|r| r.marks.as_ref().ok().cloned()))
            .unwrap_or_default()
            .into_iter()
            .map(|(p, m)| (p, m.high))
            .collect()
    }

    /// Reads the watermarks of `topic` on `brokers` until `stop` is set.
    pub fn spawn_poller(
        self: &Arc<Self>,
        brokers: String,
        topic: String,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let probe = self.clone();
        std::thread::Builder::new()
            .name("emoflow-watermarks".into())
            .spawn(move || {
                let marks = Watermarks::new(&brokers, &topic);
                while !stop.load(Ordering::Relaxed) {
                    let read = match &marks {
                        Ok(m) => m
                            .read(Duration::from_secs(2))
                            .map(|v| v.into_iter().collect())
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    probe.record(read);
                    std::thread::sleep(WATERMARK_INTERVAL);
                }
            })
    }
}

/// The wall clock, ms since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One partition as `/health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionHealth {
    /// The partition.
    pub partition: i32,
    /// The next offset the views will read; absent before they have read from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// The oldest offset the broker holds.
    pub low_watermark: i64,
    /// The offset the broker's next message gets: the larger of what the broker reported
    /// and the position (a broker may report a watermark behind what was already read).
    pub high_watermark: i64,
    /// Messages not yet in the views: from the position, or the whole backlog (low to high)
    /// of a partition with no position yet.
    pub lag: i64,
    /// False for a partition the run does not read (added to the topic after it started).
    pub read: bool,
}

/// What the source's state says about the service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAssessment {
    /// Every partition the broker reported.
    pub partitions: Vec<PartitionHealth>,
    /// Why the service is degraded, if it is.
    pub problems: Vec<String>,
    /// What is worth knowing but not wrong (stale watermarks).
    pub notes: Vec<String>,
}

impl SourceAssessment {
    /// Messages behind the high watermarks, in all.
    pub fn lag(&self) -> i64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

fn list(partitions: &[i32]) -> String {
    let names: Vec<String> = partitions.iter().map(i32::to_string).collect();
    names.join(", ")
}

/// Judges the views' `positions` against the broker's `marks`, the partitions the run reads
/// (`None`: not known) and the readers' problems.
pub fn assess_source(
    positions: &BTreeMap<i32, i64>,
    marks: &BTreeMap<i32, PartitionMarks>,
    read: Option<&BTreeSet<i32>>,
    readers: &[ReaderProblem],
) -> SourceAssessment {
    let mut out = SourceAssessment::default();
    let (mut stale, mut unread) = (Vec::new(), Vec::new());
    for (&partition, m) in marks {
        let position = positions.get(&partition).copied();
        if position.is_some_and(|pos| pos > m.high) {
            stale.push(partition);
        }
        let high = position.map_or(m.high, |pos| pos.max(m.high));
        let lag = match position {
            Some(pos) => high - pos,
            None => (m.high - m.low).max(0),
        };
        let is_read = read.is_none_or(|r| r.contains(&partition));
        if !is_read {
            unread.push(partition);
        }
        out.partitions.push(PartitionHealth {
            partition,
            position,
            low_watermark: m.low,
            high_watermark: high,
            lag,
            read: is_read,
        });
    }
    if !unread.is_empty() {
        out.problems.push(format!(
            "partitions {} were added to the topic after emoflow started and are not read: restart emoflow to read them",
            list(&unread)
        ));
    }
    if !stale.is_empty() {
        out.notes.push(format!(
            "the high watermarks last read are behind the views' positions for partitions {} (read up to 500 ms before them, or stale at the broker): shown as the positions",
            list(&stale)
        ));
    }
    for r in readers {
        let whose = format!("the reader of partitions [{}]", list(&r.partitions));
        out.problems.push(if r.stopped {
            format!(
                "{whose} (worker {}) stopped, and they are no longer read: {}",
                r.worker, r.error
            )
        } else {
            format!("{whose} (worker {}) reports: {}", r.worker, r.error)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(list: &[(i32, i64, i64)]) -> BTreeMap<i32, PartitionMarks> {
        list.iter()
            .map(|&(p, low, high)| (p, PartitionMarks { low, high }))
            .collect()
    }

    #[test]
    fn lag_is_never_negative_and_zero_when_caught_up() {
        let pos = BTreeMap::from([(0, 10), (1, 5)]);
        let caught_up = assess_source(&pos, &marks(&[(0, 0, 10), (1, 0, 5)]), None, &[]);
        assert_eq!(caught_up.lag(), 0);
        assert!(caught_up.problems.is_empty() && caught_up.notes.is_empty());
        let behind = assess_source(&pos, &marks(&[(0, 0, 8), (1, 0, 7)]), None, &[]);
        assert_eq!(behind.lag(), 2);
    }

    #[test]
    fn a_partition_with_no_position_counts_its_whole_backlog() {
        let pos = BTreeMap::from([(0, 10)]);
        let a = assess_source(&pos, &marks(&[(0, 0, 10), (1, 40, 100)]), None, &[]);
        assert_eq!(a.lag(), 60);
        assert_eq!(a.partitions[1].position, None);
        assert_eq!(a.partitions[1].lag, 60);
    }

    #[test]
    fn positions_are_never_ahead_of_the_watermarks_shown() {
        let pos = BTreeMap::from([(0, 12), (1, 3)]);
        let a = assess_source(&pos, &marks(&[(0, 0, 10), (1, 0, 5)]), None, &[]);
        for p in &a.partitions {
            assert!(
                p.position.is_none_or(|pos| pos <= p.high_watermark),
                "{p:?}"
            );
        }
        assert_eq!(a.partitions[0].high_watermark, 12);
        assert_eq!(a.lag(), 2);
        assert!(a.problems.is_empty());
        assert!(a.notes[0].contains("partitions 0 "), "{:?}", a.notes);
    }

    #[test]
    fn partitions_added_after_the_start_are_named() {
        let pos = BTreeMap::from([(0, 5), (1, 5)]);
        let read = BTreeSet::from([0, 1]);
        let m = marks(&[(0, 0, 5), (1, 0, 5), (2, 0, 7), (3, 0, 0)]);
        let a = assess_source(&pos, &m, Some(&read), &[]);
        assert_eq!(a.lag(), 7);
        assert_eq!(a.problems.len(), 1);
        assert!(
            a.problems[0].contains("partitions 2, 3 were added"),
            "{:?}",
            a.problems
        );
        assert!(!a.partitions[2].read && a.partitions[0].read);
    }

    #[test]
    fn a_failed_reader_is_a_problem_at_once() {
        let health = ReaderHealth::new(0..4, 2, 0..2);
        health.stopped(1, "kafka consumer: broker transport failure".into());
        let a = assess_source(
            &BTreeMap::new(),
            &marks(&[(0, 0, 0)]),
            Some(health.partitions()),
            &health.problems(),
        );
        assert_eq!(a.problems.len(), 1);
        assert!(
            a.problems[0].contains("partitions [1, 3]"),
            "{:?}",
            a.problems
        );
        assert!(a.problems[0].contains("broker transport failure"));
    }
}
