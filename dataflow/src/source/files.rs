//! Files as input: an NDJSON file, NDJSON bytes in memory, or Parquet files (one file, or an
//! archive directory), shared out among the workers of every process.

use std::fs::File;
use std::io::{Cursor, Read, Seek};
use std::path::PathBuf;
use std::sync::Arc;

use emoflow_ingest::ndjson::interleaved_ranges;
use emoflow_ingest::parquet_source::{ParquetInput, RowGroupRef};

use crate::error::RunError;

/// Bytes of input a worker reads before the next worker's turn.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// Where the events come from.
#[derive(Debug, Clone)]
pub enum InputData {
    /// An NDJSON file, read by every worker in its own byte ranges.
    File(PathBuf),
    /// NDJSON bytes already in memory (benchmarks, tests).
    Memory(Arc<[u8]>),
    /// Parquet files (one, or an archive directory), their row groups shared out among the
    /// workers.
    Parquet(Arc<ParquetInput>),
}

/// A reader over NDJSON input, whichever place it is in.
pub(crate) enum Reader {
    File(File),
    Memory(Cursor<Arc<[u8]>>),
}

impl Read for Reader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Reader::File(f) => f.read(buf),
            Reader::Memory(c) => c.read(buf),
        }
    }
}

impl Seek for Reader {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        match self {
            Reader::File(f) => f.seek(pos),
            Reader::Memory(c) => c.seek(pos),
        }
    }
}

impl InputData {
    /// The input at `path`: Parquet (a directory of files, or a file starting with `PAR1`) or
    /// NDJSON.
    pub fn open_path(path: &std::path::Path) -> Result<InputData, RunError> {
        let meta = std::fs::metadata(path).map_err(|e| RunError::file(path, e))?;
        let mut magic = [0u8; 4];
        let parquet = meta.is_dir()
            || File::open(path)
                .map_err(|e| RunError::file(path, e))?
                .read_exact(&mut magic)
                .is_ok()
                && &magic == b"PAR1";
        if !parquet {
            return Ok(InputData::File(path.to_owned()));
        }
        let input = ParquetInput::open(path)?;
        if input.file_count() == 0 && !input.problems().is_empty() {
            return Err(RunError::NoParquet {
                path: path.to_owned(),
                problems: input.problems().to_vec(),
            });
        }
        Ok(InputData::Parquet(Arc::new(input)))
    }

    /// A new reader from the start of NDJSON input (each byte range is read through its own).
    pub(crate) fn open(&self) -> std::io::Result<Reader> {
        match self {
            InputData::File(p) => File::open(p).map(Reader::File),
            InputData::Memory(b) => Ok(Reader::Memory(Cursor::new(b.clone()))),
            InputData::Parquet(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "Parquet input is not NDJSON",
            )),
        }
    }

    fn len(&self) -> Result<u64, RunError> {
        match self {
            InputData::File(p) => std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| RunError::file(p, e)),
            InputData::Memory(b) => Ok(b.len() as u64),
            InputData::Parquet(p) => Ok(p.total_rows()),
        }
    }

    /// How much of the input (bytes of NDJSON, rows of Parquet) process `process` of
    /// `processes` reads when each runs `workers` workers taking turns by `chunk_bytes`: the
    /// total of its progress bar.
    pub(crate) fn share_of_process(
        &self,
        workers: usize,
        chunk_bytes: u64,
        process: usize,
        processes: usize,
    ) -> Result<u64, RunError> {
        let workers = workers.max(1);
        let shares = self.shares(workers * processes.max(1), chunk_bytes)?;
        Ok(shares
            .iter()
            .skip(process * workers)
            .take(workers)
            .map(Share::size)
            .sum())
    }

    /// What each of `workers` workers reads.
    pub(crate) fn shares(&self, workers: usize, chunk_bytes: u64) -> Result<Vec<Share>, RunError> {
        match self {
            InputData::Parquet(p) => Ok(balance(p.row_groups(), workers)
                .into_iter()
                .map(Share::RowGroups)
                .collect()),
            _ => Ok(interleaved_ranges(self.len()?, workers, chunk_bytes)
                .into_iter()
                .map(Share::Ranges)
                .collect()),
        }
    }
}

/// One worker's part of file input.
#[derive(Debug, Clone)]
pub(crate) enum Share {
    /// Byte ranges of NDJSON.
    Ranges(Vec<std::ops::Range<u64>>),
    /// Row groups of Parquet files, in file order.
    RowGroups(Vec<RowGroupRef>),
}

impl Share {
    /// Bytes or rows in this share.
    fn size(&self) -> u64 {
        match self {
            Share::Ranges(ranges) => ranges.iter().map(|r| r.end - r.start).sum(),
            Share::RowGroups(groups) => groups.iter().map(|g| g.rows).sum(),
        }
    }
}

/// Shares row groups out so that every worker gets about as many rows, each worker's in file
/// order.
fn balance(groups: Vec<RowGroupRef>, workers: usize) -> Vec<Vec<RowGroupRef>> {
    let mut shares: Vec<(u64, Vec<RowGroupRef>)> = vec![(0, Vec::new()); workers.max(1)];
    // An empty row group would read as the end of a worker's share.
    let mut by_size: Vec<RowGroupRef> = groups.into_iter().filter(|g| g.rows > 0).collect();
    by_size.sort_by_key(|g| std::cmp::Reverse(g.rows));
    for g in by_size {
        if let Some(least) = shares.iter_mut().min_by_key(|(rows, _)| *rows) {
            least.0 += g.rows;
            least.1.push(g);
        }
    }
    shares
        .into_iter()
        .map(|(_, mut v)| {
            v.sort_by_key(|g| (g.file, g.index));
            v
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` NDJSON lines in memory, of 7 users, one emoji.
    pub(crate) fn lines(n: usize) -> InputData {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    r#"{{"user_id":"u{}","event_type":"emoji","emoji":"🔥","ts":{}}}"#,
                    i % 7,
                    1_700_000_000_000i64 + i as i64
                ) + "\n"
            })
            .collect();
        InputData::Memory(Arc::from(text.into_bytes()))
    }

    #[test]
    fn process_shares_split_the_input_among_the_processes() {
        let input = lines(500);
        let len = input.len().unwrap_or(0);
        for workers in 1..=3 {
            for processes in 1..=3 {
                let shares: Vec<u64> = (0..processes)
                    .map(|p| {
                        input
                            .share_of_process(workers, 1000, p, processes)
                            .unwrap_or(0)
                    })
                    .collect();
                assert_eq!(shares.iter().sum::<u64>(), len, "{workers}x{processes}");
                assert!(
                    shares.iter().all(|s| *s > 0),
                    "{workers}x{processes}: {shares:?}"
                );
            }
        }
    }
}
