//! The HTTP side of a cluster: process 0 answers the API and watches the other processes'
//! `/health`; another process answers `/health` and `/metrics` about itself, and points
//! everything else at process 0.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{json, Value};

use crate::error::ApiError;

/// How often process 0 reads the other processes' `/health`.
pub const PEER_POLL: Duration = Duration::from_secs(1);

/// How long process 0 waits for another process's `/health`.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// Where this process stands in its cluster.
#[derive(Debug, Clone)]
pub enum ClusterRole {
    /// Process 0: it answers the API with the views of the whole cluster.
    Leader {
        /// The other processes, with their HTTP APIs.
        peers: Arc<PeerWatch>,
    },
    /// Another process: it reads its share of the partitions and holds no views.
    Member {
        /// Its number.
        process: usize,
        /// How many processes.
        processes: usize,
        /// Process 0's HTTP API, when known.
        leader_http: Option<String>,
    },
}

/// What process 0 last learnt of one other process.
#[derive(Debug, Clone)]
struct PeerReading {
    at: Instant,
    /// Its `/health` document, or why there was none.
    health: Result<Value, String>,
}

/// One other process, as process 0 watches it.
#[derive(Debug)]
struct Peer {
    process: usize,
    http: Option<String>,
    last: Mutex<Option<PeerReading>>,
}

/// Process 0's view of the other processes.
#[derive(Debug)]
pub struct PeerWatch {
    processes: usize,
    peers: Vec<Peer>,
}

impl PeerWatch {
    /// Watches the processes `peers` lists, `(process, http address)` each (process 0 not
    /// among them), of a cluster of `processes`.
    pub fn new(processes: usize, peers: Vec<(usize, Option<String>)>) -> Arc<Self> {
        Arc::new(PeerWatch {
            processes,
            peers: peers
                .into_iter()
                .map(|(process, http)| Peer {
                    process,
                    http,
                    last: Mutex::new(None),
                })
                .collect(),
        })
    }

    /// Reads every peer's `/health` each [`PEER_POLL`], until the runtime stops.
    pub async fn poll(self: Arc<Self>) {
        let client = match reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("cannot watch the cluster's processes: {e}");
                return;
            }
        };
        loop {
            for peer in &self.peers {
                let Some(http) = &peer.http else { continue };
                let health = read_health(&client, http).await;
                if let Ok(mut last) = peer.last.lock() {
                    *last = Some(PeerReading {
                        at: Instant::now(),
                        health,
                    });
                }
            }
            tokio::time::sleep(PEER_POLL).await;
        }
    }

    /// The cluster as process 0's `/health` shows it, and the problems it has: a process
    /// that does not answer, or answers `degraded`, is named.
    pub fn report(&self) -> (Value, Vec<String>) {
        let mut problems = Vec::new();
        let mut members = vec![json!({"process": 0, "status": "self"})];
        for peer in &self.peers {
            let last = peer.last.lock().ok().and_then(|l| l.clone());
            let name = format!(
                "process {} ({})",
                peer.process,
                peer.http.as_deref().unwrap_or("no HTTP API")
            );
            let (status, detail) = match &last {
                None => {
                    problems.push(format!("{name} has not been reached yet"));
                    ("unknown", Value::Null)
                }
                Some(r) => match &r.health {
                    Err(e) => {
                        problems.push(format!("{name} does not answer: {e}"));
                        ("unreachable", json!({"error": e}))
                    }
                    Ok(h) => {
                        let status = h.get("status").and_then(Value::as_str).unwrap_or("");
                        if status != "ok" {
                            let theirs: Vec<&str> = h
                                .get("problems")
                                .and_then(Value::as_array)
                                .map(|a| a.iter().filter_map(Value::as_str).collect())
                                .unwrap_or_default();
                            problems.push(format!("{name} is degraded: {}", theirs.join("; ")));
                        }
                        let status = if status == "ok" { "ok" } else { "degraded" };
                        (status, h.clone())
                    }
                },
            };
            if let Some(r) = &last {
                if r.at.elapsed() > PEER_POLL * 5 {
                    problems.push(format!(
                        "{name} was last read {}s ago",
                        r.at.elapsed().as_secs()
                    ));
                }
            }
            members.push(json!({
                "process": peer.process,
                "http": peer.http,
                "status": status,
                "lag": detail.get("lag"),
                "as_of": detail.get("as_of"),
                "partitions_read": detail.get("cluster").and_then(|c| c.get("partitions_read")),
                "problems": detail.get("problems"),
                "error": detail.get("error"),
            }));
        }
        (
            json!({"process": 0, "processes": self.processes, "members": members}),
            problems,
        )
    }
}

async fn read_health(client: &reqwest::Client, http: &str) -> Result<Value, String> {
    let response = client
        .get(format!("{http}/health"))
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    if !response.status().is_success() {
        return Err(format!("GET /health answered {}", response.status()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading its /health: {}", error_chain(&e)))?;
    serde_json::from_slice(&body).map_err(|e| format!("its /health is not JSON: {e}"))
}

/// An error with its causes (reqwest's own message is only the outermost).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What a process other than 0 answers on every route but `/health` and `/metrics`.
pub fn not_process_zero(
    process: usize,
    processes: usize,
    leader: Option<&str>,
) -> impl IntoResponse {
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this is process {process} of a cluster of {processes}: process 0 answers the API{}",
            leader.map(|l| format!(" at {l}")).unwrap_or_default()
        ),
        json!({"process": process, "processes": processes, "api": leader}),
    )
}
