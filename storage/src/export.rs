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
use emoflow_dataflow::sessions::Session;
use emoflow_dataflow::snapshot::ViewState;
use emoflow_dataflow::FilterSpec;
use emoflow_dataflow::{ViewConfig, ViewsDocument};

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

/// The columns of the sessions table, filled a piece at a time.
struct SessionColumns {
    user: StringBuilder,
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    events: UInt64Builder,
    duration: Int64Builder,
    rate: Float64Builder,
    rows: usize,
}

impl SessionColumns {
    fn new() -> Self {
        SessionColumns {
            user: StringBuilder::new(),
            start: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            end: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            events: UInt64Builder::new(),
            duration: Int64Builder::new(),
            rate: Float64Builder::new(),
            rows: 0,
        }
    }

    fn schema() -> SchemaRef {
        schema(vec![
            Field::new("user_id", DataType::Utf8, false),
            Field::new("start", ts_type(), false),
            Field::new("end", ts_type(), false),
            Field::new("events", DataType::UInt64, false),
            Field::new("duration_ms", DataType::Int64, false),
            Field::new("rate_per_min", DataType::Float64, false),
        ])
    }

    fn push(&mut self, user: &str, s: &Session) {
        self.user.append_value(user);
        self.start.append_value(s.start_ms);
        self.end.append_value(s.end_ms);
        self.events.append_value(s.events);
        self.duration.append_value(s.duration_ms());
        self.rate.append_value(s.rate_per_min());
        self.rows += 1;
    }

    /// The rows gathered, as a batch; the columns start empty again.
    fn take(&mut self) -> Result<RecordBatch, String> {
        self.rows = 0;
        RecordBatch::try_new(
            Self::schema(),
            vec![
                Arc::new(self.user.finish()),
                Arc::new(self.start.finish()),
                Arc::new(self.end.finish()),
                Arc::new(self.events.finish()),
                Arc::new(self.duration.finish()),
                Arc::new(self.rate.finish()),
            ],
        )
        .map_err(|e| e.to_string())
    }
}

/// Writes every user's sessions to `path`, a piece of about `rows_per_batch` at a time.
fn write_sessions(state: &ViewState, path: &Path, rows_per_batch: usize) -> Result<(), String> {
    write_parquet_atomically(path, SessionColumns::schema(), parquet_properties(), |w| {
        let mut columns = SessionColumns::new();
        for user in state.users_with_sessions() {
            for s in state.held_sessions(user) {
                columns.push(user, s);
            }
            if columns.rows >= rows_per_batch {
                write_batch(w, &columns.take()?)?;
            }
        }
        if columns.rows > 0 {
            write_batch(w, &columns.take()?)?;
        }
        Ok(())
    })
    .map(|_| ())
}

/// Sessions per Parquet write of the sessions table: it is written in pieces, so that a
/// million users' sessions never sit in memory as one table (nor as a document).
const SESSION_ROWS_PER_BATCH: usize = 65_536;

/// Writes the views of `state` as Parquet tables beside `out`: `.counts` (emoji, count),
/// `.event_types` (event_type, count), `.top` (rank, emoji, count), `.windows` (one row per
/// window and emoji, with the window's total and the emoji's rank when in the window's top),
/// `.sessions` (one row per session, by user, newest first). Returns the paths written.
pub fn write_view_tables(
    state: &ViewState,
    cfg: &ViewConfig,
    out: &Path,
) -> Result<Vec<PathBuf>, String> {
    let doc = &ViewsDocument::render_summary(state, cfg, &[]);
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

    let path = beside(out, "sessions");
    write_sessions(state, &path, SESSION_ROWS_PER_BATCH)?;
    written.push(path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType, UInt64Type};
    use emoflow_dataflow::update::ViewUpdate;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    #[test]
    fn the_sessions_table_holds_every_session_by_user_newest_first_written_in_pieces() {
        let mut state = ViewState::default();
        let mut want = Vec::new();
        for (user, starts) in [("b", vec![0, 100_000]), ("a", vec![5_000, 900_000, 50])] {
            state.apply(ViewUpdate::UserSeen(user.into()), 1);
            for start in starts {
                let s = Session {
                    start_ms: start,
                    end_ms: start + 10,
                    events: 2,
                };
                state.apply(ViewUpdate::Session(user.into(), s), 1);
            }
        }
        state.apply(ViewUpdate::UserSeen("nobody".into()), 1);
        for user in state.users_with_sessions() {
            for s in state.sessions_of(user).unwrap_or_default() {
                want.push((
                    user.to_owned(),
                    s.start_ms,
                    s.end_ms,
                    s.events,
                    s.duration_ms(),
                ));
            }
        }
        assert_eq!(want.len(), 5);
        assert_eq!(want[0].0, "a");
        assert_eq!(want[0].1, 900_000, "newest first");

        let path =
            std::env::temp_dir().join(format!("emoflow-sessions-{}.parquet", std::process::id()));
        write_sessions(&state, &path, 2).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        assert!(reader.metadata().num_row_groups() >= 1);
        let mut got = Vec::new();
        let mut batches = 0;
        for batch in reader.build().unwrap() {
            let b = batch.unwrap();
            batches += 1;
            let user = b.column(0).as_string::<i32>();
            let start = b.column(1).as_primitive::<TimestampMillisecondType>();
            let end = b.column(2).as_primitive::<TimestampMillisecondType>();
            let events = b.column(3).as_primitive::<UInt64Type>();
            let duration = b.column(4).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                got.push((
                    user.value(i).to_owned(),
                    start.value(i),
                    end.value(i),
                    events.value(i),
                    duration.value(i),
                ));
            }
        }
        let _ = std::fs::remove_file(&path);
        assert!(batches >= 1);
        assert_eq!(got, want);
    }
}
