//! Accepted events gathered column by column, one set of columns per hour of event time, and
//! handed to the writer in chunks, so that encoding keeps pace with reading.

use std::sync::Arc;

use arrow_array::builder::{
    ArrayBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use emoflow_ingest::archive_format::{archive_schema, hour_of};
use emoflow_ingest::Event;

/// Accepted events as the archive's columns, being gathered.
pub struct ArchiveRows {
    user_id: StringBuilder,
    event_type: StringBuilder,
    emoji: StringBuilder,
    tier: StringBuilder,
    amount: Float64Builder,
    ts: TimestampMillisecondBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
}

impl Default for ArchiveRows {
    fn default() -> Self {
        Self::new()
    }
}

impl ArchiveRows {
    /// No rows yet.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// No rows yet, with room for `rows` (so that a chunk never grows its buffers).
    pub fn with_capacity(rows: usize) -> Self {
        let text = |bytes_per_row| StringBuilder::with_capacity(rows, rows * bytes_per_row);
        ArchiveRows {
            user_id: text(12),
            event_type: text(6),
            emoji: text(6),
            tier: text(4),
            amount: Float64Builder::with_capacity(rows),
            ts: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
        }
    }

    /// Appends an accepted event read at `(partition, offset)`.
    pub fn push(&mut self, e: &Event<'_>, partition: i32, offset: i64) {
        self.user_id.append_value(&e.user_id);
        self.event_type.append_value(&e.event_type);
        self.emoji.append_option(e.emoji.as_deref());
        self.tier.append_option(e.tier.as_deref());
        self.amount.append_option(e.amount);
        self.ts.append_value(e.ts);
        self.partition.append_value(partition);
        self.offset.append_value(offset);
    }

    /// Rows gathered.
    pub fn len(&self) -> usize {
        self.offset.len()
    }

    /// True when no row is gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows as one batch of the archive's schema, emptying the builders.
    pub fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.user_id.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.emoji.finish()),
            Arc::new(self.tier.finish()),
            Arc::new(self.amount.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
        ];
        RecordBatch::try_new(archive_schema(), columns)
    }
}

/// Rows gathered in one hour's columns before they go to the writer as one batch.
pub const CHUNK_ROWS: usize = 16_384;

/// Rows of one partition's current range, by hour of event time, in offset order within each
/// hour.
#[derive(Default)]
pub struct HourRows {
    hours: Vec<(i64, ArchiveRows)>,
    /// Index in `hours` of the last hour appended to (events mostly arrive in time order).
    last: usize,
    rows: usize,
}

impl HourRows {
    /// Appends an accepted event read at `(partition, offset)`; returns its hour's batch once
    /// that holds [`CHUNK_ROWS`] rows.
    pub fn push(
        &mut self,
        e: &Event<'_>,
        partition: i32,
        offset: i64,
    ) -> Result<Option<(i64, RecordBatch)>, arrow_schema::ArrowError> {
        let hour = hour_of(e.ts);
        if self.hours.get(self.last).is_none_or(|(h, _)| *h != hour) {
            self.last = match self.hours.iter().position(|(h, _)| *h == hour) {
                Some(i) => i,
                None => {
                    self.hours
                        .push((hour, ArchiveRows::with_capacity(CHUNK_ROWS)));
                    self.hours.len() - 1
                }
            };
        }
        let cols = &mut self.hours[self.last].1;
        cols.push(e, partition, offset);
        self.rows += 1;
        if cols.len() >= CHUNK_ROWS {
            let batch = cols.finish()?;
            *cols = ArchiveRows::with_capacity(CHUNK_ROWS);
            return Ok(Some((hour, batch)));
        }
        Ok(None)
    }

    /// Rows of the range so far (handed over or not).
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when the range has no row.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows not yet handed over, one batch per hour (hour start in ms); the range starts
    /// afresh.
    pub fn take(&mut self) -> Result<Vec<(i64, RecordBatch)>, arrow_schema::ArrowError> {
        self.rows = 0;
        self.last = 0;
        std::mem::take(&mut self.hours)
            .into_iter()
            .filter(|(_, cols)| !cols.is_empty())
            .map(|(h, mut cols)| cols.finish().map(|b| (h, b)))
            .collect()
    }
}
