//! Reading a subscriber's history back from the Kafka log: what it missed before the hub's
//! memory of recent events begins, in offset order per partition, with the offsets the log no
//! longer holds reported as gaps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emoflow_dataflow::update::ShownEvent;
use emoflow_dataflow::FilterSpec;
use emoflow_ingest::kafka::{PartitionRange, PartitionReader};
use emoflow_ingest::{decode_event, MaxFuture};
use tokio::sync::mpsc;

use super::Entry;

/// Where the history on disk is: the Kafka log the views read.
#[derive(Debug, Clone)]
pub struct LogSource {
    /// Bootstrap servers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// The views' `--max-future`, applied again to events read back.
    pub max_future: MaxFuture,
}

/// What a history read sends its subscriber.
pub(super) enum HistoryItem {
    /// Matching events, in offset order per partition.
    Events(Vec<Arc<Entry>>),
    /// `(partition, requested, restart)`: the log no longer holds `requested..restart`.
    Gap(i32, i64, i64),
    /// The read failed: why.
    Failed(String),
}

/// How long a history read may go without reading anything.
pub(super) const HISTORY_SILENCE: Duration = Duration::from_secs(30);

/// Reads `ranges` back from the log, sending the events `spec` matches and the gaps (offsets
/// the log no longer holds) in order.
pub(super) fn read_history(
    log: &LogSource,
    ranges: &[PartitionRange],
    spec: Option<&FilterSpec>,
    tx: &mpsc::Sender<HistoryItem>,
) -> Result<(), String> {
    let mut reader =
        PartitionReader::new(&log.brokers, &log.topic, ranges).map_err(|e| e.to_string())?;
    let mut expect: BTreeMap<i32, i64> = ranges.iter().map(|r| (r.partition, r.start)).collect();
    let mut last_read = Instant::now();
    while !reader.is_finished() {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut page = Vec::new();
        let mut items = Vec::new();
        let n = reader.poll_batch(4096, Duration::from_millis(100), |m| {
            let next = expect.get(&m.partition).copied().unwrap_or(m.offset);
            if m.offset > next {
                if !page.is_empty() {
                    items.push(HistoryItem::Events(std::mem::take(&mut page)));
                }
                items.push(HistoryItem::Gap(m.partition, next, m.offset));
            }
            expect.insert(m.partition, m.offset + 1);
            let Ok(e) = decode_event(m.payload, m.timestamp_ms) else {
                return;
            };
            if log.max_future.check(e.ts, clock).is_err() {
                return;
            }
            if spec.is_none_or(|s| s.matches(&e)) {
                page.push(Entry::new(ShownEvent::of(&e, m.partition, m.offset)));
            }
        });
        if !page.is_empty() {
            items.push(HistoryItem::Events(page));
        }
        for item in items {
            if tx.blocking_send(item).is_err() {
                return Ok(()); // the subscriber left
            }
        }
        if n > 0 {
            last_read = Instant::now();
        } else if last_read.elapsed() > HISTORY_SILENCE {
            return Err(format!(
                "nothing could be read for {}s",
                HISTORY_SILENCE.as_secs()
            ));
        }
    }
    Ok(())
}
