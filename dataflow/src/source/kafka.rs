//! A worker's Kafka partitions: worker `w` of `n` (all workers of all processes, numbered
//! process by process) reads partition `p` when `p % n == w` (static assignment: no consumer
//! group, no rebalance). Each message goes to the archive's tap as it is read; a filter added
//! during the run is back-filled by reading the worker's partitions again from where the run
//! started to where it stands: the views hold no events, and Kafka's log is their history.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emoflow_ingest::kafka::{PartitionRange, PartitionReader, RangeEnd};
use emoflow_ingest::RejectReason;

use super::{Batch, History, Source};
use crate::archive_tap::{ArchiveTap, WorkerTap};
use crate::error::RunError;
use crate::feed::Feed;
use crate::intake::{At, Intake};

/// How long a bounded read may go without reading anything before it fails: its partitions'
/// ends are found by reaching them, so silence this long means the broker cannot serve the
/// range.
const BOUNDED_SILENCE: Duration = Duration::from_secs(30);

/// Messages a back-fill reads at a time.
const HISTORY_BATCH: usize = 65_536;

/// The worker, of `workers`, that reads `partition` (see the module documentation).
pub fn reader_of(partition: i32, workers: usize) -> usize {
    partition.rem_euclid(workers.max(1) as i32) as usize
}

/// What to read.
#[derive(Debug, Clone)]
pub struct KafkaInput {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Where each partition starts and ends (the run ends when every partition has, unless
    /// one is open).
    pub ranges: Vec<PartitionRange>,
}

impl KafkaInput {
    /// Messages in the partitions that process `process` of `processes`, each running
    /// `workers` workers, reads, when known up front (its progress bar).
    pub fn process_known_len(
        &self,
        workers: usize,
        process: usize,
        processes: usize,
    ) -> Option<u64> {
        let workers = workers.max(1);
        self.ranges
            .iter()
            .filter(|r| reader_of(r.partition, workers * processes.max(1)) / workers == process)
            .map(PartitionRange::known_len)
            .sum()
    }

    /// True when the run follows the topic rather than ending.
    pub fn is_open(&self) -> bool {
        self.ranges.iter().any(|r| r.end == RangeEnd::Open)
    }

    /// The source of worker `index` of `peers`, handing what it reads to `archive`.
    pub(crate) fn source(
        &self,
        index: usize,
        peers: usize,
        archive: Option<&Arc<dyn ArchiveTap>>,
    ) -> Result<KafkaSource, RunError> {
        let mine: Vec<PartitionRange> = self
            .ranges
            .iter()
            .filter(|r| reader_of(r.partition, peers) == index)
            .copied()
            .collect();
        let reader = if mine.is_empty() {
            None
        } else {
            Some(PartitionReader::new(&self.brokers, &self.topic, &mine)?)
        };
        let partitions: Vec<i32> = mine.iter().map(|r| r.partition).collect();
        Ok(KafkaSource {
            input: self.clone(),
            archive: archive.map(|a| a.worker(&partitions)),
            mine,
            reader,
            bounded: !self.is_open(),
            refusals: ClockRefusals::default(),
            last_read: Instant::now(),
        })
    }
}

/// One worker's Kafka source.
pub(crate) struct KafkaSource {
    input: KafkaInput,
    /// This worker's partitions, as the run was asked to read them.
    mine: Vec<PartitionRange>,
    /// `None` for a worker without partitions.
    reader: Option<PartitionReader>,
    archive: Option<Box<dyn WorkerTap>>,
    bounded: bool,
    refusals: ClockRefusals,
    last_read: Instant,
}

impl KafkaSource {
    fn partitions(&self) -> Vec<i32> {
        self.mine.iter().map(|r| r.partition).collect()
    }
}

impl Source for KafkaSource {
    fn read(
        &mut self,
        budget: usize,
        feed: &mut Feed,
        intake: &mut Intake,
    ) -> Result<Batch, RunError> {
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Batch::default());
        };
        let (archive, refusals) = (&mut self.archive, &mut self.refusals);
        let clock = Intake::clock_ms();
        let records = reader.poll_batch(budget, Duration::from_millis(1), |m| {
            let at = At {
                partition: m.partition,
                offset: m.offset,
                arrival_ms: m.timestamp_ms,
            };
            let decoded = intake.decode(m.payload, m.timestamp_ms, clock);
            let verdict = intake.admit(feed, at, decoded, m.payload, || None);
            match &verdict {
                Ok(_) => refusals.accepted(m.partition),
                Err(RejectReason::FutureTimestamp) => refusals.refused(m.partition, m.offset),
                Err(_) => {}
            }
            if let Some(a) = archive.as_mut() {
                a.read(m.partition, m.offset, verdict.as_ref().ok());
            }
        });
        if let Some(a) = self.archive.as_mut() {
            a.tick();
        }
        if records > 0 {
            self.last_read = Instant::now();
        } else if self.bounded && self.last_read.elapsed() > BOUNDED_SILENCE {
            self.finish();
            return Err(RunError::Silent {
                partitions: self.partitions(),
                silence: BOUNDED_SILENCE,
                backfill: false,
            });
        }
        Ok(Batch {
            records,
            amount: records as u64,
        })
    }

    fn is_finished(&self) -> bool {
        self.bounded
            && self
                .reader
                .as_ref()
                .is_none_or(PartitionReader::is_finished)
    }

    fn history(&mut self, f: &mut History<'_>) -> Result<(), RunError> {
        let Some(reader) = &self.reader else {
            return Ok(());
        };
        backfill(
            &self.input,
            &self.mine,
            reader.positions(),
            &self.refusals,
            f,
        )
    }

    fn positions(&self) -> Option<&BTreeMap<i32, i64>> {
        self.reader.as_ref().map(PartitionReader::positions)
    }

    fn must_wait(&self) -> bool {
        self.archive.as_ref().is_some_and(|a| a.must_wait())
    }

    fn has_input(&self) -> bool {
        self.reader.is_some()
    }

    fn take_skips(&mut self) -> Vec<(i32, i64, i64)> {
        self.reader
            .as_mut()
            .map(PartitionReader::take_skips)
            .unwrap_or_default()
    }

    fn take_error(&mut self) -> Option<String> {
        self.reader.as_mut().and_then(PartitionReader::take_error)
    }

    fn finish(&mut self) {
        if let Some(a) = self.archive.as_mut() {
            a.flush();
        }
    }
}

/// Offsets a worker refused because their time lay too far ahead of its clock when it read
/// them. Whether such an event is refused depends on when it is read, so a back-fill that reads
/// it again must be told. Kept as ranges per partition, each closed by the next accepted event:
/// a burst of refusals costs one range, and every offset inside a range was refused.
#[derive(Default)]
struct ClockRefusals(BTreeMap<i32, (Vec<Range<i64>>, bool)>);

impl ClockRefusals {
    fn refused(&mut self, partition: i32, offset: i64) {
        let (ranges, open) = self.0.entry(partition).or_default();
        match ranges.last_mut() {
            Some(last) if *open => last.end = offset + 1,
            _ => ranges.push(offset..offset + 1),
        }
        *open = true;
    }

    fn accepted(&mut self, partition: i32) {
        if let Some((_, open)) = self.0.get_mut(&partition) {
            *open = false;
        }
    }

    fn holds(&self, partition: i32, offset: i64) -> bool {
        let Some((ranges, _)) = self.0.get(&partition) else {
            return false;
        };
        let after = ranges.partition_point(|r| r.start <= offset);
        after > 0 && ranges[after - 1].end > offset
    }
}

/// Hands `f` every event this worker handed to the views: its partitions read again from
/// where the run started up to `positions` (the seam: what is read from there on is counted
/// live).
fn backfill(
    input: &KafkaInput,
    mine: &[PartitionRange],
    positions: &BTreeMap<i32, i64>,
    refusals: &ClockRefusals,
    f: &mut History<'_>,
) -> Result<(), RunError> {
    let ranges: Vec<PartitionRange> = mine
        .iter()
        .filter_map(|r| {
            let seam = *positions.get(&r.partition)?;
            (seam > r.start).then_some(PartitionRange {
                end: RangeEnd::Offset(seam),
                ..*r
            })
        })
        .collect();
    if ranges.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut reader = PartitionReader::new(&input.brokers, &input.topic, &ranges)?;
    let (mut events, mut last_read) = (0u64, Instant::now());
    while !reader.is_finished() {
        let n = reader.poll_batch(HISTORY_BATCH, Duration::from_millis(100), |m| {
            if refusals.holds(m.partition, m.offset) {
                return;
            }
            if let Ok(e) = emoflow_ingest::decode_event(m.payload, m.timestamp_ms) {
                events += 1;
                f(&e, Some((m.partition, m.offset)));
            }
        });
        if n > 0 {
            last_read = Instant::now();
        } else if last_read.elapsed() > BOUNDED_SILENCE {
            return Err(RunError::Silent {
                partitions: ranges.iter().map(|r| r.partition).collect(),
                silence: BOUNDED_SILENCE,
                backfill: true,
            });
        }
    }
    let gone: i64 = reader
        .take_skips()
        .iter()
        .map(|(_, from, to)| to - from)
        .sum();
    if gone > 0 {
        tracing::warn!(
            offsets = gone,
            "back-filling filters: offsets passed over without a message (markers, or events Kafka dropped since they were read: the new filters' counts then miss them)"
        );
    }
    tracing::info!(events, elapsed = ?started.elapsed(), "filters back-filled");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_known_lens_split_the_partitions_among_the_processes() {
        let input = KafkaInput {
            brokers: String::new(),
            topic: "t".into(),
            ranges: (0..7)
                .map(|p| PartitionRange {
                    end: RangeEnd::Offset(10 * (i64::from(p) + 1)),
                    ..PartitionRange::open(p, 0)
                })
                .collect(),
        };
        for (workers, processes) in [(1, 1), (1, 2), (2, 2), (3, 2), (2, 3)] {
            let lens: Vec<Option<u64>> = (0..processes)
                .map(|p| input.process_known_len(workers, p, processes))
                .collect();
            let sum: u64 = lens.iter().map(|l| l.unwrap_or(0)).sum();
            let whole: Option<u64> = input.ranges.iter().map(PartitionRange::known_len).sum();
            assert_eq!(Some(sum), whole, "{workers}x{processes}");
            // Each process counts exactly the partitions its workers read.
            for (p, len) in lens.iter().enumerate() {
                let expected: u64 = input
                    .ranges
                    .iter()
                    .filter(|r| {
                        (p * workers..(p + 1) * workers)
                            .contains(&reader_of(r.partition, workers * processes))
                    })
                    .map(|r| r.known_len().unwrap_or(0))
                    .sum();
                assert_eq!(*len, Some(expected), "{workers}x{processes} process {p}");
            }
        }
    }

    #[test]
    fn clock_refusals_cover_bursts_up_to_the_next_accepted_event() {
        let mut r = ClockRefusals::default();
        r.refused(0, 5);
        r.refused(0, 7); // 6 was refused for another reason: inside the burst
        r.accepted(0);
        r.refused(0, 9);
        r.refused(1, 3);
        for (p, o, held) in [
            (0, 4, false),
            (0, 5, true),
            (0, 6, true),
            (0, 7, true),
            (0, 8, false),
            (0, 9, true),
            (0, 10, false),
            (1, 3, true),
            (2, 3, false),
        ] {
            assert_eq!(r.holds(p, o), held, "partition {p} offset {o}");
        }
    }
}
