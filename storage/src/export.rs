//! `emoflow export`: the archived events of a time range (and of a filter) as one Parquet file,
//! and optionally the views over them as Parquet tables beside it.
//!
//! Only what can hold the range is read: hour directories outside it are not opened, row
//! groups whose `ts` statistics miss it are skipped, and only the archive's columns are
//! decoded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use emoflow_ingest::archive_format::{archive_schema, ts_type};
use emoflow_ingest::parquet_source::{ParquetInput, RowGroupRef};
use serde::Serialize;

use crate::archive::{parquet_properties, write_batch, write_parquet_atomically, ArchiveRows};
use emoflow_dataflow::FilterSpec;
use emoflow_dataflow::ViewsDocument;

/// What to export.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The archive (or any Parquet file or directory of events).
    pub archive: PathBuf,
    /// Events with `from_ms <= ts < to_ms`.
    pub from_ms: i64,
    /// See `from_ms`.
    pub to_ms: i64,
    /// Only events this filter matches.
    pub filter: Option<FilterSpec>,
    /// The file to write.
    pub out: PathBuf,
}

/// What an export read and wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportSummary {
    /// Files opened.
    pub files: usize,
    /// Row groups read.
    pub row_groups_read: usize,
    /// Row groups skipped by their `ts` statistics.
    pub row_groups_pruned: usize,
    /// Rows decoded.
    pub rows_scanned: u64,
    /// Rows written.
    pub rows_exported: u64,
    /// Rows that are not valid events (in files emoflow did not write).
    pub rows_rejected: u64,
    /// Size of the written file.
    pub bytes: u64,
    /// Files skipped, and why.
    pub problems: Vec<String>,
}

/// Rows per batch written to the export.
const OUT_BATCH_ROWS: usize = 64 * 1024;

/// The row groups of `input` that may hold `[from, to)`, and how many were pruned.
pub fn row_groups_within(input: &ParquetInput, from: i64, to: i64) -> (Vec<RowGroupRef>, usize) {
    let all = input.row_groups();
    let total = all.len();
    let kept: Vec<_> = all
        .into_iter()
        .filter(|g| g.ts_range.is_none_or(|(lo, hi)| hi >= from && lo < to))
        .collect();
    let pruned = total - kept.len();
    (kept, pruned)
}

/// Writes the events of `req` to `req.out` (atomically); `progress` is told the rows read so
/// far, out of the total it is first told (`progress(0, total)`).
pub fn export_events(
    req: &ExportRequest,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportSummary, String> {
    if req.from_ms >= req.to_ms {
        return Err(format!(
            "the range is empty: --from ({}) must be before --to ({})",
            req.from_ms, req.to_ms
        ));
    }
    let input = ParquetInput::open_within(&req.archive, Some((req.from_ms, req.to_ms)))
        .map_err(|e| e.to_string())?;
    let (groups, pruned) = row_groups_within(&input, req.from_ms, req.to_ms);
    let total: u64 = groups.iter().map(|g| g.rows).sum();
    progress(0, total);
    let mut summary = ExportSummary {
        files: input.file_count(),
        row_groups_read: groups.len(),
        row_groups_pruned: pruned,
        problems: input.problems().to_vec(),
        ..ExportSummary::default()
    };
    let bytes = write_parquet_atomically(&req.out, archive_schema(), parquet_properties(), |w| {
        let mut rows = ArchiveRows::new();
        for g in &groups {
            let read = input.read(*g, |row| {
                summary.rows_scanned += 1;
                let Ok(e) = row.event else {
                    summary.rows_rejected += 1;
                    return;
                };
                if e.ts < req.from_ms || e.ts >= req.to_ms {
                    return;
                }
                let matches = req.filter.as_ref().is_none_or(|f| f.matches(&e));
                if matches {
                    rows.push(&e, row.partition, row.offset);
                }
            });
            if let Err(e) = read {
                tracing::warn!("skipped: {e}");
                summary.problems.push(e);
            }
            if rows.len() >= OUT_BATCH_ROWS {
                summary.rows_exported += rows.len() as u64;
                write_batch(w, &rows.finish().map_err(|e| e.to_string())?)?;
            }
            progress(summary.rows_scanned, total);
        }
        summary.rows_exported += rows.len() as u64;
        write_batch(w, &rows.finish().map_err(|e| e.to_string())?)
    })?;
    summary.bytes = bytes;
    Ok(summary)
}

/// `dir/stem.NAME.parquet` beside `out` (`out` being `dir/stem.parquet`).
pub fn beside(out: &Path, name: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    out.with_file_name(format!("{stem}.{name}.parquet"))
}

fn schema(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

fn write_table(path: &Path, schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<(), String> {
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    write_parquet_atomically(path, schema, parquet_properties(), |w| {
        write_batch(w, &batch)
    })
    .map(|_| ())
}

/// Writes the views of `doc` as Parquet tables beside `out`: `.counts` (emoji, count),
/// `.event_types` (event_type, count), `.top` (rank, emoji, count), `.windows` (one row per
/// window and emoji, with the window's total and the emoji's rank when in the window's top),
/// `.sessions` (one row per session). Returns the paths written.
pub fn write_view_tables(doc: &ViewsDocument, out: &Path) -> Result<Vec<PathBuf>, String> {
    let ts = || ts_type();
    let mut written = Vec::new();

    let mut table = |name: &str, fields: Vec<Field>, cols: Vec<ArrayRef>| {
        let path = beside(out, name);
        write_table(&path, schema(fields), cols)?;
        written.push(path);
        Ok::<_, String>(())
    };

    let counted = |map: &std::collections::BTreeMap<String, i64>| {
        let mut k = StringBuilder::new();
        let mut n = Int64Builder::new();
        for (key, count) in map {
            k.append_value(key);
            n.append_value(*count);
        }
        vec![Arc::new(k.finish()) as ArrayRef, Arc::new(n.finish())]
    };
    table(
        "counts",
        vec![
            Field::new("emoji", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ],
        counted(&doc.counts),
    )?;
    table(
        "event_types",
        vec![
            Field::new("event_type", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ],
        counted(&doc.event_types),
    )?;

    let (mut rank, mut emoji, mut count) = (
        UInt64Builder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
    );
    for t in &doc.top {
        rank.append_value(t.rank as u64);
        emoji.append_value(&t.emoji);
        count.append_value(t.count);
    }
    table(
        "top",
        vec![
            Field::new("rank", DataType::UInt64, false),
            Field::new("emoji", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ],
        vec![
            Arc::new(rank.finish()),
            Arc::new(emoji.finish()),
            Arc::new(count.finish()),
        ],
    )?;

    let mut start = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut end = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let (mut total, mut emoji, mut count, mut rank) = (
        Int64Builder::new(),
        StringBuilder::new(),
        Int64Builder::new(),
        UInt64Builder::new(),
    );
    for w in &doc.windows {
        for (e, n) in &w.counts {
            start.append_value(w.start_ms);
            end.append_value(w.end_ms);
            total.append_value(w.total);
            emoji.append_value(e);
            count.append_value(*n);
            rank.append_option(w.top.iter().find(|t| &t.emoji == e).map(|t| t.rank as u64));
        }
    }
    table(
        "windows",
        vec![
            Field::new("window_start", ts(), false),
            Field::new("window_end", ts(), false),
            Field::new("window_total", DataType::Int64, false),
            Field::new("emoji", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
            Field::new("rank", DataType::UInt64, true),
        ],
        vec![
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(total.finish()),
            Arc::new(emoji.finish()),
            Arc::new(count.finish()),
            Arc::new(rank.finish()),
        ],
    )?;

    let mut user = StringBuilder::new();
    let mut start = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut end = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let (mut events, mut duration, mut rate) = (
        UInt64Builder::new(),
        Int64Builder::new(),
        Float64Builder::new(),
    );
    for (u, sessions) in &doc.sessions.by_user {
        for s in sessions {
            user.append_value(u);
            start.append_value(s.start_ms);
            end.append_value(s.end_ms);
            events.append_value(s.events);
            duration.append_value(s.duration_ms);
            rate.append_value(s.rate_per_min);
        }
    }
    table(
        "sessions",
        vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("start", ts(), false),
            Field::new("end", ts(), false),
            Field::new("events", DataType::UInt64, false),
            Field::new("duration_ms", DataType::Int64, false),
            Field::new("rate_per_min", DataType::Float64, false),
        ],
        vec![
            Arc::new(user.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(events.finish()),
            Arc::new(duration.finish()),
            Arc::new(rate.finish()),
        ],
    )?;
    Ok(written)
}
