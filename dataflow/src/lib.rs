//! The timely/differential dataflow that maintains emoflow's views (docs/views.md) exactly and
//! incrementally on any number of workers, and the consistent snapshots read from it.
//!
//! - [`views::build_views`] builds the dataflow; one module per view, each with its
//!   definition and its oracle test: [`counts`], [`windows`], [`topk`], [`sessions`], [`filter`]
//!   (sessions and filter matches are kept over the retained history by [`retained`], which
//!   keeps no event).
//! - [`feed::Feed`] pre-aggregates a worker's events, counts filter matches, and routes users'
//!   events to their owners.
//! - [`snapshot::Collector`] folds captured updates into a [`snapshot::ViewState`] one complete
//!   dataflow time at a time; [`document::ViewsDocument`] renders it, and
//!   [`document_stream::write_document`] writes it as JSON one user at a time.
//! - [`runner`] runs it all, one worker loop for every input: each worker reads a
//!   [`source`] (NDJSON, Parquet, Kafka partitions) through the one [`intake`] (decode, then
//!   accept or reject), its clock ending dataflow times. [`run_views`] describes a run over
//!   files, [`start_kafka`] one over a Kafka topic, handing what it reads to an
//!   [`archive_tap::ArchiveTap`] (the Parquet archive, kept by `emoflow-storage`).
//! - [`cluster`] makes several processes one timely computation (`--processes`).
#![forbid(missing_docs)]

pub mod archive_tap;
pub(crate) mod batch;
mod capture;
pub(crate) mod cluster;
pub(crate) mod config;
mod control;
pub(crate) mod counts;
pub mod document;
pub mod document_stream;
pub(crate) mod error;
pub mod feed;
pub mod filter;
pub(crate) mod filter_classes;
pub mod filter_control;
pub mod filter_index;
#[cfg(test)]
mod filter_strategies;
pub mod freshness;
pub(crate) mod intake;
pub(crate) mod intern;
pub(crate) mod kafka_run;
pub mod newest;
#[cfg(test)]
mod oracle_check;
pub(crate) mod priority;
pub mod reader_health;
pub mod report;
pub(crate) mod retained;
pub(crate) mod run;
pub(crate) mod runner;
pub mod session_totals;
pub mod sessions;
pub mod snapshot;
pub(crate) mod source;
pub(crate) mod topk;
pub mod update;
pub mod views;
pub(crate) mod windows;
mod wire;

pub use batch::{FilterKey, FilterNo};
pub use cluster::{Cluster, ClusterError, Hello, Link, Member};
pub use config::{ViewConfig, WINDOWS_SHOWN};
pub use document::ViewsDocument;
pub use document_stream::{write_document, SessionsShown};
pub use error::RunError;
pub use filter::{parse_filter_list, FilterListError, FilterSpec, SpecError};
pub use filter_control::{FilterChange, FilterControl};
pub use kafka_run::{start_kafka, KafkaRun, KafkaRunOptions, KafkaRunOutput};
pub use report::{DeadLetter, Matched};
pub use run::{run_views, RunOptions};
pub use runner::collector::{Delivery, RunStatus};
pub use runner::schedule::ScheduledFilterChange;
pub use runner::{Run, RunOutput};
pub use source::files::InputData;
pub use source::kafka::{reader_of, KafkaInput};
