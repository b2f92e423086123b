//! Joining a cluster from the command line (`--processes`, `--process`, `--hostfile`).

use std::time::Duration;

use anyhow::{bail, Context};
use emoflow_dataflow::{Cluster, Hello, Link, ViewConfig};

use crate::cli::ClusterArgs;

impl ClusterArgs {
    /// The cluster asked for, or `None` for a process on its own.
    pub fn cluster(&self) -> anyhow::Result<Option<Cluster>> {
        if self.processes <= 1 {
            if self.process > 0 {
                bail!(
                    "--process {} needs --processes above it (a cluster of --processes processes)",
                    self.process
                );
            }
            return Ok(None);
        }
        let Some(hostfile) = &self.hostfile else {
            bail!(
                "--processes {} needs --hostfile: a file with one host:port a line, process 0 first",
                self.processes
            );
        };
        Ok(Some(Cluster::from_hostfile(
            self.processes,
            self.process,
            hostfile,
        )?))
    }

    /// True for a process other than process 0 of a cluster.
    pub fn is_member(&self) -> bool {
        self.processes > 1 && self.process > 0
    }
}

/// What every process of a cluster must agree on, beyond the workers.
pub fn view_settings(cfg: &ViewConfig) -> Vec<(String, String)> {
    vec![
        ("--top-k".into(), cfg.top_k.to_string()),
        ("--window".into(), format!("{} ms", cfg.window_ms)),
        ("--session-gap".into(), format!("{} ms", cfg.session_gap_ms)),
        ("--retention".into(), format!("{} ms", cfg.retention_ms)),
    ]
}

/// Joins the cluster `args` describes (none: `Ok(None)`), announcing `command` with
/// `settings` and this process's HTTP API, after checking that every process was started alike.
pub fn join(
    args: &ClusterArgs,
    workers: usize,
    command: &str,
    mut settings: Vec<(String, String)>,
    http: Option<String>,
) -> anyhow::Result<Option<Link>> {
    let Some(cluster) = args.cluster()? else {
        return Ok(None);
    };
    settings.insert(0, ("command".into(), command.into()));
    let hello = Hello {
        version: env!("CARGO_PKG_VERSION").into(),
        process: cluster.process,
        processes: cluster.processes(),
        workers,
        settings,
        http,
    };
    eprintln!(
        "process {} of {}: joining the cluster at {} (waiting up to {}s for the others)",
        cluster.process,
        cluster.processes(),
        cluster.addresses[cluster.process],
        args.join_timeout / 1000
    );
    let link = Link::join(
        &cluster,
        hello,
        Duration::from_millis(args.join_timeout.max(1) as u64),
    )
    .context("cannot form the cluster")?;
    eprintln!(
        "process {} of {}: cluster formed ({} workers each, {} in all)",
        link.process(),
        link.processes(),
        link.workers(),
        link.workers() * link.processes()
    );
    Ok(Some(link))
}

/// The address another process reaches this one's HTTP API at: the host of this process's
/// line in the hostfile, with the port it listens on.
pub fn advertised_http(cluster: &Cluster, listening: std::net::SocketAddr) -> String {
    let host = cluster.host_of(cluster.process);
    format!("http://{host}:{}", listening.port())
}
