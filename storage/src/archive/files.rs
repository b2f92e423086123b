//! Writing Parquet files so that they appear whole or not at all: written under a hidden name
//! beside their final one, fsynced, renamed, and the directory fsynced.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use emoflow_ingest::archive_format::{hour_dir, tmp_name, SegmentName};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

/// Rows per row group of archive files: large enough for zstd and dictionaries to pay, small
/// enough that workers share a file's row groups and that `ts` statistics prune well.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// How archive and export files are encoded: zstd (level 3); dictionaries for the string
/// columns (the writer falls back to plain pages where a dictionary stops paying); delta
/// encoding for the nearly sorted `ts` and the consecutive `kafka_offset`, which then need no
/// compression, nor does the run-length encoded `kafka_partition`; page statistics for
/// pruning.
pub fn parquet_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("emoflow {}", env!("CARGO_PKG_VERSION")));
    for col in ["ts", "kafka_offset"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(col), false)
            .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
    }
    for col in ["kafka_offset", "kafka_partition"] {
        b = b.set_column_compression(ColumnPath::from(col), Compression::UNCOMPRESSED);
    }
    b.build()
}

/// Makes the directory's entries (a new file name, a rename) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents, making each new entry durable.
pub fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Where a file written atomically at `path` stays meanwhile: its directory (`.` for a bare
/// name) and the hidden name beside it.
fn aside(path: &Path) -> Result<(&Path, PathBuf), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("{} is not a file path", path.display()))?;
    Ok((dir, dir.join(tmp_name(&name))))
}

/// Writes one Parquet file at `path`, atomically: a reader sees no file, or the whole file.
/// `fill` writes the batches. Returns the file's size in bytes.
pub fn write_parquet_atomically(
    path: &Path,
    schema: SchemaRef,
    props: WriterProperties,
    fill: impl FnOnce(&mut ArrowWriter<File>) -> Result<(), String>,
) -> Result<u64, String> {
    let (dir, tmp) = aside(path)?;
    let ctx = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", tmp.display());
    let result = (|| {
        create_dir_durably(dir).map_err(|e| ctx("cannot create the directory of", &e))?;
        let file = File::create(&tmp).map_err(|e| ctx("cannot create", &e))?;
        let mut writer =
            ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| ctx("cannot write", &e))?;
        fill(&mut writer).map_err(|e| ctx("cannot write", &e))?;
        let file = writer.into_inner().map_err(|e| ctx("cannot finish", &e))?;
        file.sync_all().map_err(|e| ctx("cannot sync", &e))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        rename_durably(dir, &tmp, path)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a whole encoded file at `path`, atomically, as [`write_parquet_atomically`] does.
pub fn publish_bytes(bytes: &[u8], path: &Path) -> Result<(), String> {
    let (dir, tmp) = aside(path)?;
    let ctx = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", tmp.display());
    let result = (|| {
        create_dir_durably(dir).map_err(|e| ctx("cannot create the directory of", &e))?;
        let mut file = File::create(&tmp).map_err(|e| ctx("cannot create", &e))?;
        file.write_all(bytes).map_err(|e| ctx("cannot write", &e))?;
        file.sync_all().map_err(|e| ctx("cannot sync", &e))?;
        rename_durably(dir, &tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Renames `tmp` to `path`, both in `dir`, and makes the rename durable.
fn rename_durably(dir: &Path, tmp: &Path, path: &Path) -> Result<(), String> {
    let ctx = |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", tmp.display());
    std::fs::rename(tmp, path).map_err(|e| ctx("cannot rename", &e))?;
    sync_dir(dir).map_err(|e| ctx("cannot sync the directory of", &e))
}

/// Where the file of `name` for the hour starting at `hour_ms` goes under `archive`.
pub fn segment_path(archive: &Path, hour_ms: i64, name: &SegmentName) -> PathBuf {
    archive.join(hour_dir(hour_ms)).join(name.file_name())
}

/// Writes `batch` with `writer`, as `fill` of [`write_parquet_atomically`] needs.
pub fn write_batch(writer: &mut ArrowWriter<File>, batch: &RecordBatch) -> Result<(), String> {
    writer.write(batch).map_err(|e| e.to_string())
}
