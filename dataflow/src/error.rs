//! Why a run failed: one error type for every source and the runner, each failure its own
//! variant with what it is about (the file, the partitions), so a caller can tell them apart
//! and a person can act on the message.

use std::path::PathBuf;
use std::time::Duration;

use emoflow_ingest::kafka::ReaderError;
use emoflow_ingest::parquet_source::ParquetSourceError;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file of the input could not be opened or read.
    #[error("input: cannot read {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// Reading NDJSON input failed part-way (a file shrank, a disk failed).
    #[error("input: {0}")]
    Read(#[source] std::io::Error),
    /// A Parquet path could not be listed.
    #[error("input: {0}")]
    Parquet(#[from] ParquetSourceError),
    /// A Parquet path holds no file that can be read.
    #[error("input: no readable Parquet file in {}: {}", path.display(), problems.join("; "))]
    NoParquet {
        /// The file or directory given.
        path: PathBuf,
        /// Why each file was left out.
        problems: Vec<String>,
    },
    /// The Kafka consumer could not be created or assigned.
    #[error("input: {0}")]
    Kafka(#[from] ReaderError),
    /// A bounded read (or a back-fill's read of the history) received nothing for too long:
    /// the broker cannot serve the range.
    #[error(
        "input: {}nothing could be read from partitions {partitions:?} for {}s: the broker no longer serves the range (see the warnings above)",
        if *backfill { "back-filling filters: " } else { "" },
        silence.as_secs()
    )]
    Silent {
        /// The partitions still waited for.
        partitions: Vec<i32>,
        /// How long nothing came.
        silence: Duration,
        /// True when it was a filter back-fill's read of the history.
        backfill: bool,
    },
    /// A parameter is out of range.
    #[error("invalid configuration")]
    Config(#[from] crate::config::ConfigError),
    /// The dataflow itself failed (a worker panicked or could not start, the cluster broke).
    #[error("dataflow: {0}")]
    Dataflow(String),
}

impl RunError {
    /// The error of `path` failing with `source`.
    pub(crate) fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RunError::File {
            path: path.into(),
            source,
        }
    }
}
