//! What emoflow keeps on disk, apart from the computation: the Parquet archive of every
//! accepted event ([`archive`], fed by a Kafka run through the dataflow's
//! `ArchiveTap`), `emoflow export` ([`export`]) of archived events and of the views as Parquet
//! tables, and the data directory with its lock ([`data_dir`]).
//!
//! The dataflow computes and stores nothing; it hands what it reads to the ports it defines
//! (`emoflow_dataflow::archive_tap`), which this crate implements.
#![forbid(missing_docs)]

pub mod archive;
pub mod data_dir;
pub mod export;

pub use archive::{ArchiveConfig, ArchiveMonitor, ArchiveReport, ArchiveSink};
pub use data_dir::{DataDir, DataDirError, DirLock};
