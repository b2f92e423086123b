//! How users reach emoflow's views: the HTTP API of docs/http-api.md.
//!
//! The dataflow's collector publishes an immutable [`snapshot::Snapshot`] at every new
//! `as_of`; read routes answer from the newest one without waiting for anything, so every
//! number in a response has the same `as_of`. Write routes validate a whole request, produce it
//! to Kafka and answer 202 once the broker acknowledged every event.
#![forbid(missing_docs)]

pub mod api_doc;
pub mod app;
pub mod cluster;
pub mod content;
pub mod dashboard;
pub mod error;
pub mod filter_service;
pub mod filter_store;
pub mod filters;
pub mod health;
pub mod hub;
pub mod intake;
pub mod legacy;
pub mod live_views;
pub mod metrics;
pub mod metrics_recorder;
pub mod push;
pub mod schemas;
pub mod snapshot;
pub mod source_health;
pub mod state;
pub mod views;
pub mod window;

pub use app::{router, serve};
pub use cluster::{ClusterRole, PeerWatch};
pub use filter_service::Filters;
pub use filter_store::FilterStore;
pub use health::HealthProbe;
pub use hub::{Hub, HubLimits, LogSource};
pub use snapshot::{Publisher, Snapshot};
pub use state::{AppState, HttpOptions, IngestOptions, DEFAULT_BODY_LIMIT};
