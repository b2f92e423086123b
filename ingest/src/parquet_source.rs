//! Events from Parquet: one file, or a directory of them (an emoflow archive, or any
//! Hive-style dataset with the archive's columns), read row group by row group so that
//! workers can share the row groups out.
//!
//! Rows go through the same rules as JSON events ([`crate::EventParts::validate`]), so a
//! Parquet file written by someone else gives the same views, or the same rejections, as the
//! NDJSON it came from. A file that is not Parquet, or lacks `user_id` or `ts`, is reported
//! and skipped, never fatal; so are hidden files and those starting with `_`, which are not
//! data by Hive's convention (emoflow's own half-written files are hidden).

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::statistics::Statistics;

use crate::archive_format::{parse_hour_dir, HOUR_MS, PARQUET_SUFFIX, TMP_SUFFIX};
use crate::decode::{parse_rfc3339_ms, EventParts};
use crate::{Event, Rejection};

/// Rows decoded at a time within a row group.
const DECODE_BATCH_ROWS: usize = 16_384;

/// Why Parquet input cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ParquetSourceError {
    /// The path does not exist or cannot be listed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Where the columns emoflow reads sit in a file's schema.
#[derive(Debug, Clone, Default)]
struct Columns {
    /// Every column read, by index (the projection).
    read: Vec<usize>,
    /// The time column.
    ts: usize,
}

/// Column names read, canonical name first, then the input aliases of docs/events.md.
const NAMES: [&[&str]; 8] = [
    &["user_id"],
    &["ts", "timestamp"],
    &["event_type", "event"],
    &["emoji", "emoji_type"],
    &["tier", "user_tier"],
    &["amount"],
    &["kafka_partition"],
    &["kafka_offset"],
];

impl Columns {
    fn find(schema: &arrow_schema::Schema) -> Result<Columns, String> {
        let idx = |names: &[&str]| names.iter().find_map(|n| schema.index_of(n).ok());
        let found: Vec<Option<usize>> = NAMES.iter().map(|n| idx(n)).collect();
        let ts = found[1].ok_or("it has no ts column")?;
        if found[0].is_none() {
            return Err("it has no user_id column".into());
        }
        if found[2].is_none() && found[3].is_none() {
            return Err("it has neither an emoji nor an event_type column".into());
        }
        let mut read: Vec<usize> = found.into_iter().flatten().collect();
        read.sort_unstable();
        Ok(Columns { read, ts })
    }
}

struct ParquetFile {
    path: PathBuf,
    meta: ArrowReaderMetadata,
    columns: Columns,
    /// Rows in the row groups before each one (row numbers for rows without an offset).
    rows_before: Vec<u64>,
}

/// One row group of one file: the unit of work a worker takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupRef {
    /// Index of the file in the input.
    pub file: usize,
    /// Index of the row group in the file.
    pub index: usize,
    /// Rows in it.
    pub rows: u64,
    /// Smallest and largest `ts` (ms), when the file has statistics for it.
    pub ts_range: Option<(i64, i64)>,
}

/// Parquet files opened for reading, with what could not be read.
pub struct ParquetInput {
    files: Vec<ParquetFile>,
    problems: Vec<String>,
}

impl std::fmt::Debug for ParquetInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetInput")
            .field("files", &self.files.len())
            .field("problems", &self.problems)
            .finish()
    }
}

/// One row as read: its position and the event, or why it is not one.
pub struct Row<'a> {
    /// The file it came from.
    pub path: &'a Path,
    /// Its row number in that file, from 0.
    pub row: u64,
    /// `kafka_partition`, or 0 when the file has none.
    pub partition: i32,
    /// `kafka_offset`, or the row number when the file has none.
    pub offset: i64,
    /// The validated event.
    pub event: Result<Event<'a>, Rejection>,
}

/// True for a name that is not data by Hive's convention (hidden, or starting with `_`).
fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Every file under `dir`, recursively, sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), ParquetSourceError> {
    let io = |source| ParquetSourceError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            if !is_hidden(&entry.file_name().to_string_lossy()) {
                walk(&path, out)?;
            }
        } else {
            out.push(path);
        }
    }
    Ok(())
}

impl ParquetInput {
    /// Opens `path`: a Parquet file, or a directory whose `.parquet` files (at any depth) are
    /// read. Files that cannot be read as events are listed in [`ParquetInput::problems`].
    pub fn open(path: &Path) -> Result<ParquetInput, ParquetSourceError> {
        Self::open_within(path, None)
    }

    /// Like [`ParquetInput::open`], but leaves out, unopened, files in Hive hour directories
    /// (`date=YYYY-MM-DD/hour=HH`) that hold no event time in `[from_ms, to_ms)`.
    pub fn open_within(
        path: &Path,
        window: Option<(i64, i64)>,
    ) -> Result<ParquetInput, ParquetSourceError> {
        let meta = std::fs::metadata(path).map_err(|source| ParquetSourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut candidates = Vec::new();
        let mut problems = Vec::new();
        if meta.is_dir() {
            let mut all = Vec::new();
            walk(path, &mut all)?;
            for p in all {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                let name = name.unwrap_or_default();
                if is_hidden(&name) {
                    if !name.ends_with(TMP_SUFFIX) {
                        tracing::debug!(path = %p.display(), "hidden file skipped");
                    }
                } else if name.ends_with(PARQUET_SUFFIX) {
                    if window.is_none_or(|w| may_hold(&p, w)) {
                        candidates.push(p);
                    }
                } else {
                    problems.push(format!("{}: skipped: not a .parquet file", p.display()));
                }
            }
        } else {
            candidates.push(path.to_owned());
        }
        let mut files = Vec::with_capacity(candidates.len());
        for p in candidates {
            match open_file(&p) {
                Ok(f) => files.push(f),
                Err(why) => problems.push(format!("{}: skipped: {why}", p.display())),
            }
        }
        for p in &problems {
            tracing::warn!("{p}");
        }
        Ok(ParquetInput { files, problems })
    }

    /// Files that were skipped, and why.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Files read.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Every row group of every file, in file order.
    pub fn row_groups(&self) -> Vec<RowGroupRef> {
        let mut out = Vec::new();
        for (fi, f) in self.files.iter().enumerate() {
            let md = f.meta.metadata();
            for (index, rg) in md.row_groups().iter().enumerate() {
                let ts_range = rg.column(f.columns.ts).statistics().and_then(|s| match s {
                    Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
                    _ => None,
                });
                out.push(RowGroupRef {
                    file: fi,
                    index,
                    rows: rg.num_rows().max(0) as u64,
                    ts_range,
                });
            }
        }
        out
    }

    /// Total rows in every file.
    pub fn total_rows(&self) -> u64 {
        self.row_groups().iter().map(|r| r.rows).sum()
    }

    /// Reads one row group and hands every row to `f`, in order. The row group is decoded
    /// whole before any row is handed over, so a damaged row group yields an error and no row.
    pub fn read(&self, rg: RowGroupRef, mut f: impl FnMut(Row<'_>)) -> Result<(), String> {
        let file = &self.files[rg.file];
        let batches = file
            .decode(rg.index)
            .map_err(|e| format!("{}: row group {}: {e}", file.path.display(), rg.index))?;
        let mut row = file.rows_before[rg.index];
        for batch in &batches {
            let cols =
                BatchColumns::of(batch).map_err(|e| format!("{}: {e}", file.path.display()))?;
            for i in 0..batch.num_rows() {
                let (partition, offset) = cols.position(i, row);
                f(Row {
                    path: &file.path,
                    row,
                    partition,
                    offset,
                    event: cols.event(i),
                });
                row += 1;
            }
        }
        Ok(())
    }
}

/// False when `path` sits in a Hive hour directory outside `[from, to)`.
fn may_hold(path: &Path, (from, to): (i64, i64)) -> bool {
    let name = |p: Option<&Path>| {
        p.and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
    };
    let hour_dir = path.parent();
    let date_dir = hour_dir.and_then(Path::parent);
    match (name(date_dir), name(hour_dir)) {
        (Some(date), Some(hour)) => {
            parse_hour_dir(&date, &hour).is_none_or(|h| h < to && h.saturating_add(HOUR_MS) > from)
        }
        _ => true,
    }
}

fn open_file(path: &Path) -> Result<ParquetFile, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let columns = Columns::find(meta.schema())?;
    let mut rows_before = Vec::new();
    let mut n = 0u64;
    for rg in meta.metadata().row_groups() {
        rows_before.push(n);
        n += rg.num_rows().max(0) as u64;
    }
    Ok(ParquetFile {
        path: path.to_owned(),
        meta,
        columns,
        rows_before,
    })
}

impl ParquetFile {
    fn decode(&self, row_group: usize) -> Result<Vec<RecordBatch>, String> {
        let file = File::open(&self.path).map_err(|e| e.to_string())?;
        let mask = ProjectionMask::roots(
            self.meta.metadata().file_metadata().schema_descr(),
            self.columns.read.iter().copied(),
        );
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.meta.clone())
            .with_row_groups(vec![row_group])
            .with_projection(mask)
            .with_batch_size(DECODE_BATCH_ROWS)
            .build()
            .map_err(|e| e.to_string())?;
        reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }
}

/// A time column as read: milliseconds, or RFC 3339 strings.
enum TsColumn {
    Millis(ArrayRef),
    Text(ArrayRef),
}

/// One decoded batch's columns, converted to the types rows are read from.
struct BatchColumns {
    user_id: ArrayRef,
    event_type: Option<ArrayRef>,
    emoji: Option<ArrayRef>,
    tier: Option<ArrayRef>,
    amount: Option<ArrayRef>,
    ts: TsColumn,
    partition: Option<ArrayRef>,
    offset: Option<ArrayRef>,
}

/// `col` converted to `to` (a no-op when it already is).
fn convert(col: &ArrayRef, to: &DataType, name: &str) -> Result<ArrayRef, String> {
    if col.data_type() == to {
        return Ok(col.clone());
    }
    arrow_cast::cast(col, to).map_err(|e| {
        format!(
            "column {name} is {} and cannot be read as {to}: {e}",
            col.data_type()
        )
    })
}

fn text_at(col: &Option<ArrayRef>, i: usize) -> Option<Cow<'_, str>> {
    col.as_ref()
        .and_then(|c| string_at(c, i))
        .map(Cow::Borrowed)
}

fn string_at(col: &ArrayRef, i: usize) -> Option<&str> {
    let a: &StringArray = col.as_string::<i32>();
    a.is_valid(i).then(|| a.value(i))
}

impl BatchColumns {
    fn of(batch: &RecordBatch) -> Result<BatchColumns, String> {
        let utf8 = DataType::Utf8;
        let user_id = get_named(batch, &["user_id"], &utf8)?.ok_or("no user_id column")?;
        let ts_col = get_named_raw(batch, &["ts", "timestamp"]).ok_or("no ts column")?;
        let ts = match ts_col.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                TsColumn::Text(convert(&ts_col, &utf8, "ts")?)
            }
            DataType::Timestamp(_, tz) => {
                let unit = arrow_schema::TimeUnit::Millisecond;
                let ms = convert(&ts_col, &DataType::Timestamp(unit, tz.clone()), "ts")?;
                TsColumn::Millis(convert(&ms, &DataType::Int64, "ts")?)
            }
            _ => TsColumn::Millis(convert(&ts_col, &DataType::Int64, "ts")?),
        };
        Ok(BatchColumns {
            user_id,
            event_type: get_named(batch, &["event_type", "event"], &utf8)?,
            emoji: get_named(batch, &["emoji", "emoji_type"], &utf8)?,
            tier: get_named(batch, &["tier", "user_tier"], &utf8)?,
            amount: get_named(batch, &["amount"], &DataType::Float64)?,
            ts,
            partition: get_named(batch, &["kafka_partition"], &DataType::Int32)?,
            offset: get_named(batch, &["kafka_offset"], &DataType::Int64)?,
        })
    }

    fn position(&self, i: usize, row: u64) -> (i32, i64) {
        let partition = self
            .partition
            .as_ref()
            .map(|c| c.as_primitive::<Int32Type>())
            .filter(|a| a.is_valid(i))
            .map_or(0, |a| a.value(i));
        let offset = self
            .offset
            .as_ref()
            .map(|c| c.as_primitive::<Int64Type>())
            .filter(|a| a.is_valid(i))
            .map_or(row as i64, |a| a.value(i));
        (partition, offset)
    }

    fn event(&self, i: usize) -> Result<Event<'_>, Rejection> {
        let ts = match &self.ts {
            TsColumn::Millis(c) => {
                let a = c.as_primitive::<Int64Type>();
                a.is_valid(i).then(|| a.value(i))
            }
            TsColumn::Text(c) => match string_at(c, i) {
                Some(s) => Some(parse_rfc3339_ms(s)?),
                None => None,
            },
        };
        let amount = self.amount.as_ref().and_then(|c| {
            let a = c.as_primitive::<Float64Type>();
            a.is_valid(i).then(|| a.value(i))
        });
        EventParts {
            user_id: string_at(&self.user_id, i).map(Cow::Borrowed),
            emoji: text_at(&self.emoji, i),
            event_type: text_at(&self.event_type, i),
            tier: text_at(&self.tier, i),
            amount,
            ts,
        }
        .validate()
    }
}

/// The first of `names` the batch has, unconverted.
fn get_named_raw(batch: &RecordBatch, names: &[&str]) -> Option<ArrayRef> {
    let schema = batch.schema();
    names
        .iter()
        .find_map(|n| schema.index_of(n).ok())
        .map(|i| batch.column(i).clone())
}

/// The first of `names` the batch has, converted to `to`.
fn get_named(
    batch: &RecordBatch,
    names: &[&str],
    to: &DataType,
) -> Result<Option<ArrayRef>, String> {
    get_named_raw(batch, names)
        .map(|c| convert(&c, to, names[0]))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{Field, Schema};
    use parquet::arrow::ArrowWriter;

    fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect())
                .unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn foreign_and_corrupt_files_are_reported_and_skipped_and_rows_are_validated() {
        let dir = std::env::temp_dir().join(format!("emoflow-pq-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("date=2026-01-01/hour=00")).unwrap();
        // Someone else's file with the event columns, ts as integer ms, one invalid row.
        write(
            &dir.join("date=2026-01-01/hour=00/theirs.parquet"),
            vec![
                (
                    "user_id",
                    Arc::new(StringArray::from(vec![Some("a"), Some("")])) as ArrayRef,
                ),
                ("emoji_type", Arc::new(StringArray::from(vec!["🔥", "x"]))),
                ("ts", Arc::new(Int64Array::from(vec![5, 6]))),
            ],
        );
        // A Parquet file that holds no events, a corrupt one, a stray text file, a hidden one.
        write(
            &dir.join("other.parquet"),
            vec![("n", Arc::new(Int64Array::from(vec![1])) as ArrayRef)],
        );
        std::fs::write(dir.join("broken.parquet"), b"PAR1 not really").unwrap();
        std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
        std::fs::write(dir.join("date=2026-01-01/hour=00/.x.parquet.tmp"), b"half").unwrap();

        let input = ParquetInput::open(&dir).unwrap();
        assert_eq!(input.file_count(), 1);
        let problems = input.problems().join("\n");
        for bad in ["other.parquet", "broken.parquet", "notes.txt"] {
            assert!(problems.contains(bad), "{problems}");
        }
        assert!(!problems.contains(".x.parquet.tmp"), "{problems}");
        let mut rows = Vec::new();
        for g in input.row_groups() {
            input
                .read(g, |r| {
                    rows.push((r.offset, r.event.map(|e| (e.user_id.into_owned(), e.ts))))
                })
                .unwrap();
        }
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], (0, Ok(("a".to_owned(), 5))));
        let rejected = rows[1].1.as_ref().unwrap_err();
        assert_eq!(rejected.reason, crate::RejectReason::EmptyField);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
