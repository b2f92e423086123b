//! What `serve` decides before the dataflow starts: the broker it reads (an external one, or
//! the embedded one it starts), and the plan every process of a cluster reads by (where each
//! partition starts, the filters in force).

use std::time::Duration;

use anyhow::{bail, Context};

use emoflow_dataflow::FilterSpec;
use emoflow_ingest::kafka::{
    ensure_topic, resolve_range, EmbeddedBroker, OffsetSpec, PartitionRange,
};
use emoflow_query_api::{ClusterRole, FilterStore, PeerWatch};

use crate::cli::ServeArgs;

/// The broker the service reads: an external one, or the embedded one it started.
pub(super) struct Broker {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Kept alive for the life of the service (the embedded broker dies with it).
    _embedded: Option<EmbeddedBroker>,
}

impl Broker {
    /// The broker of a process of a cluster other than process 0: process 0 checked it.
    pub(super) fn of_member(args: &ServeArgs) -> Broker {
        Broker {
            brokers: args.kafka.brokers.clone().unwrap_or_default(),
            _embedded: None,
        }
    }

    /// `--brokers` with the topic made sure of, or the embedded broker started with the topic.
    pub(super) fn open(args: &ServeArgs) -> anyhow::Result<Broker> {
        match &args.kafka.brokers {
            Some(b) => {
                let parts = ensure_topic(
                    b,
                    &args.kafka.topic,
                    args.kafka.partitions,
                    Duration::from_secs(10),
                )
                .with_context(|| format!("cannot reach the topic {:?} on {b}", args.kafka.topic))?;
                if parts.is_empty() {
                    bail!("the topic {:?} has no partitions on {b}", args.kafka.topic);
                }
                tracing::info!(brokers = %b, topic = %args.kafka.topic, partitions = parts.len(), "reading Kafka");
                Ok(Broker {
                    brokers: b.clone(),
                    _embedded: None,
                })
            }
            None => {
                let embedded =
                    EmbeddedBroker::start().context("cannot start the embedded broker")?;
                embedded
                    .create_topic(&args.kafka.topic, args.kafka.partitions)
                    .context("cannot create the topic on the embedded broker")?;
                let brokers = embedded.bootstrap_servers().to_owned();
                println!(
                    "embedded Kafka broker at {brokers} (topic {}, {} partitions; in memory, gone when emoflow stops)",
                    args.kafka.topic, args.kafka.partitions
                );
                Ok(Broker {
                    brokers,
                    _embedded: Some(embedded),
                })
            }
        }
    }
}

/// What every process of a `serve` cluster reads: process 0 decides and sends it to the others.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct ServePlan {
    /// Where each partition starts (every range is open).
    pub ranges: Vec<PartitionRange>,
    /// The filters in force at the start (process 0's filter store).
    pub filters: Vec<(String, FilterSpec)>,
}

/// What the processes of a `serve` cluster must agree on beyond the plan.
pub(super) fn serve_settings(args: &ServeArgs) -> Vec<(String, String)> {
    let mut settings = crate::cluster::view_settings(&args.views.config());
    settings.push(("--topic".into(), args.kafka.topic.clone()));
    settings.push(("--max-future".into(), format!("{} ms", args.max_future)));
    settings
}

/// Every partition of the topic, from its beginning (no checkpoints yet), read until stopped.
pub(super) fn start_ranges(brokers: &str, topic: &str) -> anyhow::Result<Vec<PartitionRange>> {
    Ok(
        resolve_range(brokers, topic, OffsetSpec::Earliest, OffsetSpec::Earliest)
            .context("cannot read the topic's offsets")?
            .into_iter()
            .map(|r| PartitionRange::open(r.partition, r.start))
            .collect(),
    )
}

/// This process's place in its cluster, for the HTTP API.
pub(super) fn cluster_role(
    args: &ServeArgs,
    members: Vec<emoflow_dataflow::Member>,
) -> ClusterRole {
    if args.cluster.is_member() {
        ClusterRole::Member {
            process: args.cluster.process,
            processes: members.len(),
            leader_http: members.first().and_then(|m| m.http.clone()),
        }
    } else {
        let peers = members
            .iter()
            .filter(|m| m.process > 0)
            .map(|m| (m.process, m.http.clone()))
            .collect();
        ClusterRole::Leader {
            peers: PeerWatch::new(members.len(), peers),
        }
    }
}

/// The filter store in the data directory (in memory without one), and the filters in it.
pub(super) fn open_filters(
    data_dir: Option<&std::path::Path>,
) -> anyhow::Result<(FilterStore, Vec<(String, FilterSpec)>)> {
    let store = match data_dir {
        Some(dir) => FilterStore::open(dir)
            .with_context(|| format!("cannot open the filter store in {}", dir.display()))?,
        None => FilterStore::in_memory()?,
    };
    let stored: Vec<(String, FilterSpec)> =
        store.list()?.into_iter().map(|f| (f.id, f.spec)).collect();
    if !stored.is_empty() {
        println!("{} filters from the filter store", stored.len());
    }
    Ok((store, stored))
}
