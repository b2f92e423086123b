//! Several processes as one timely computation: the hostfile, the connections between the
//! processes, and the check that they were started alike.
//!
//! Timely connects the processes itself, but it retries forever, prints to stdout, and cannot
//! tell two processes started with different settings apart (they hang or compute wrong
//! numbers). So the connections are made here, the way timely makes them (process `i`
//! connects to every process before it and accepts every process after it), each opened by a
//! [`Hello`] both sides check, and then handed to timely's own networking. Process 0 then
//! sends every other process the run's plan (what to read, the filters in force), so that all
//! of them start from the same one.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::communication::allocator::zero_copy::initialize::initialize_networking_from_sockets;
use timely::communication::allocator::{AllocatorBuilder, ProcessBuilder};
use timely::communication::{Hooks, WorkerGuards};

/// Most processes a cluster may have.
pub const MAX_PROCESSES: usize = 256;

/// How often a process tries again to reach, or checks for, another while joining: processes
/// usually start within milliseconds of each other, and the join is part of every run's time.
const POLL: Duration = Duration::from_millis(5);

/// Opens every frame this module sends, so that anything else on the port is refused clearly.
const MAGIC: &[u8; 8] = b"EMOFLOW\x01";

/// Largest frame accepted (a plan holds a range per partition and the filters).
const MAX_FRAME: u32 = 64 << 20;

/// Why a cluster could not be formed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The hostfile could not be read.
    #[error("cannot read the hostfile {path}: {source}")]
    Hostfile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The hostfile does not describe the cluster asked for.
    #[error("hostfile {path}: {detail}")]
    BadHostfile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        detail: String,
    },
    /// `--process` or `--processes` is out of range.
    #[error("{0}")]
    BadIdentity(String),
    /// This process cannot listen on its own address.
    #[error("cannot listen on {address} (line {line} of the hostfile: this process's address): {source}")]
    Listen {
        /// The address.
        address: String,
        /// Its line in the hostfile.
        line: usize,
        /// Why.
        source: std::io::Error,
    },
    /// Another process did not answer in time.
    #[error("process {process} at {address} did not join within {}s: is it started, with this hostfile?", .waited.as_secs())]
    Timeout {
        /// The process waited for.
        process: usize,
        /// Its address.
        address: String,
        /// How long.
        waited: Duration,
    },
    /// The processes were started with settings that differ.
    #[error("process {process} was started differently: {detail}")]
    Mismatch {
        /// The other process.
        process: usize,
        /// What differs.
        detail: String,
    },
    /// A connection failed after it was made, or spoke something else.
    #[error("talking to process {process}: {detail}")]
    Protocol {
        /// The other process.
        process: usize,
        /// What went wrong.
        detail: String,
    },
}

/// Where this process stands in a cluster: `--processes`, `--process`, `--hostfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// This process's index, from 0.
    pub process: usize,
    /// Every process's cluster address (`host:port`), by index.
    pub addresses: Vec<String>,
}

impl Cluster {
    /// The cluster of `processes` processes listed in `hostfile`, this one being `process`.
    pub fn from_hostfile(
        processes: usize,
        process: usize,
        hostfile: &Path,
    ) -> Result<Cluster, ClusterError> {
        let text = std::fs::read_to_string(hostfile).map_err(|source| ClusterError::Hostfile {
            path: hostfile.to_owned(),
            source,
        })?;
        let addresses =
            parse_hostfile(&text, processes).map_err(|detail| ClusterError::BadHostfile {
                path: hostfile.to_owned(),
                detail,
            })?;
        Cluster::new(process, addresses)
    }

    /// The cluster of `addresses`, this process being `process`.
    pub fn new(process: usize, addresses: Vec<String>) -> Result<Cluster, ClusterError> {
        if addresses.len() < 2 || addresses.len() > MAX_PROCESSES {
            return Err(ClusterError::BadIdentity(format!(
                "a cluster has 2 to {MAX_PROCESSES} processes, not {}",
                addresses.len()
            )));
        }
        if process >= addresses.len() {
            return Err(ClusterError::BadIdentity(format!(
                "--process {process} is out of range: a cluster of {} processes numbers them 0 to {}",
                addresses.len(),
                addresses.len() - 1
            )));
        }
        Ok(Cluster { process, addresses })
    }

    /// How many processes.
    pub fn processes(&self) -> usize {
        self.addresses.len()
    }

    /// The host part of process `i`'s address (to reach its HTTP API on the same machine).
    pub fn host_of(&self, i: usize) -> &str {
        let address = self.addresses.get(i).map_or("", String::as_str);
        address.rsplit_once(':').map_or(address, |(host, _)| host)
    }
}

/// The addresses of a hostfile: one `host:port` a line, process 0 first; blank lines and
/// lines starting with `#` are skipped. It must list exactly `processes` addresses.
pub fn parse_hostfile(text: &str, processes: usize) -> Result<Vec<String>, String> {
    let mut addresses = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        check_address(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if let Some(first) = addresses.iter().position(|a| a == line) {
            return Err(format!(
                "line {}: {line} is listed twice (it is process {first}'s address too)",
                n + 1
            ));
        }
        addresses.push(line.to_owned());
    }
    if addresses.len() != processes {
        return Err(format!(
            "it lists {} addresses, and --processes is {processes}: list one host:port a line, process 0 first",
            addresses.len()
        ));
    }
    Ok(addresses)
}

fn check_address(line: &str) -> Result<(), String> {
    let Some((host, port)) = line.rsplit_once(':') else {
        return Err(format!("{line:?} is not host:port"));
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{line:?} has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{line:?}: the port must be 1 to 65535")),
    }
}

/// What a process says about itself when it connects: everything that must agree across the
/// cluster, and where its HTTP API listens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// emoflow's version.
    pub version: String,
    /// The sender's index.
    pub process: usize,
    /// How many processes it was told there are.
    pub processes: usize,
    /// Its worker threads.
    pub workers: usize,
    /// The command and the settings that must agree (`name = value` each), compared one by one.
    pub settings: Vec<(String, String)>,
    /// Its HTTP API, `http://host:port`, when it serves one.
    pub http: Option<String>,
}

impl Hello {
    /// What differs between this process's hello and `other`'s, worded for a person.
    fn differences(&self, other: &Hello) -> Vec<String> {
        let mut out = Vec::new();
        if self.version != other.version {
            out.push(format!(
                "it runs emoflow {}, this process {}",
                other.version, self.version
            ));
        }
        if self.processes != other.processes {
            out.push(format!(
                "it was started with --processes {}, this process with {}",
                other.processes, self.processes
            ));
        }
        if self.workers != other.workers {
            out.push(format!(
                "it runs --workers {}, this process --workers {}: every process must run the same number of workers",
                other.workers, self.workers
            ));
        }
        for (name, mine) in &self.settings {
            match other.settings.iter().find(|(n, _)| n == name) {
                Some((_, theirs)) if theirs != mine => {
                    out.push(format!("its {name} is {theirs}, this process's is {mine}"))
                }
                None => out.push(format!("it has no {name} (this process: {mine})")),
                _ => {}
            }
        }
        for (name, theirs) in &other.settings {
            if !self.settings.iter().any(|(n, _)| n == name) {
                out.push(format!("its {name} is {theirs}; this process has none"));
            }
        }
        out
    }
}

/// The processes of a cluster, connected and agreed; consumed by the run that uses them.
pub struct Link {
    process: usize,
    workers: usize,
    sockets: Vec<Option<TcpStream>>,
    hellos: Vec<Hello>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("process", &self.process)
            .field("processes", &self.sockets.len())
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// One process of a cluster, as the others know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its index.
    pub process: usize,
    /// Its HTTP API, when it serves one.
    pub http: Option<String>,
}

impl Link {
    /// Connects this process to every other of `cluster`, exchanging `hello` (whose `process`,
    /// `processes` and `workers` must be this process's); waits up to `timeout` for them.
    pub fn join(cluster: &Cluster, hello: Hello, timeout: Duration) -> Result<Link, ClusterError> {
        let me = cluster.process;
        let n = cluster.processes();
        let listener = listen(cluster)?;
        let deadline = Instant::now() + timeout;
        let mut sockets: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let mut hellos: Vec<Option<Hello>> = vec![None; n];
        hellos[me] = Some(hello.clone());
        for (i, address) in cluster.addresses.iter().enumerate().take(me) {
            let mut stream = connect(i, address, deadline, timeout)?;
            send_frame(&mut stream, &hello).map_err(|e| protocol(i, e))?;
            let theirs: Hello = read_frame(&mut stream).map_err(|e| protocol(i, e))?;
            check_peer(&hello, &theirs, i)?;
            // Timely's threads read it from now on, and an idle link is no failure.
            stream
                .set_read_timeout(None)
                .map_err(|e| protocol(i, e.to_string()))?;
            sockets[i] = Some(stream);
            hellos[i] = Some(theirs);
        }
        let mut reported = Instant::now();
        while let Some(next) = (me + 1..n).find(|&i| sockets[i].is_none()) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream
                        .set_nonblocking(false)
                        .and_then(|()| stream.set_nodelay(true))
                        .map_err(|e| protocol(next, e.to_string()))?;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let theirs: Hello = match read_frame(&mut stream) {
                        Ok(h) => h,
                        Err(e) => {
                            tracing::warn!("refused a connection to the cluster port: {e}");
                            continue;
                        }
                    };
                    let from = theirs.process;
                    // Answer first, so that the other side can name a mismatch too.
                    send_frame(&mut stream, &hello).map_err(|e| protocol(from, e))?;
                    if from <= me || from >= n || sockets[from].is_some() {
                        return Err(ClusterError::Protocol {
                            process: from,
                            detail: format!(
                                "it says it is process {from}, which this process (process {me}) does not wait for: check --process on each"
                            ),
                        });
                    }
                    check_peer(&hello, &theirs, from)?;
                    stream
                        .set_read_timeout(None)
                        .map_err(|e| protocol(from, e.to_string()))?;
                    sockets[from] = Some(stream);
                    hellos[from] = Some(theirs);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(ClusterError::Timeout {
                            process: next,
                            address: cluster.addresses[next].clone(),
                            waited: timeout,
                        });
                    }
                    if reported.elapsed() > Duration::from_secs(5) {
                        tracing::info!(process = next, address = %cluster.addresses[next], "waiting for a process to join");
                        reported = Instant::now();
                    }
                    std::thread::sleep(POLL);
                }
                Err(e) => return Err(protocol(next, format!("accepting: {e}"))),
            }
        }
        tracing::info!(process = me, processes = n, "cluster joined");
        Ok(Link {
            process: me,
            workers: hello.workers,
            sockets,
            hellos: hellos.into_iter().map(Option::unwrap_or_default).collect(),
        })
    }

    /// This process's index.
    pub fn process(&self) -> usize {
        self.process
    }

    /// How many processes.
    pub fn processes(&self) -> usize {
        self.sockets.len()
    }

    /// Worker threads in each process.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Every process, as it introduced itself.
    pub fn members(&self) -> Vec<Member> {
        self.hellos
            .iter()
            .enumerate()
            .map(|(process, h)| Member {
                process,
                http: h.http.clone(),
            })
            .collect()
    }

    /// Process 0 sends `plan` to every other process; the others receive it. Returns the plan
    /// every process then holds.
    pub fn share_plan<P: Serialize + serde::de::DeserializeOwned>(
        &mut self,
        plan: Option<P>,
    ) -> Result<P, ClusterError> {
        if self.process == 0 {
            let plan =
                plan.ok_or_else(|| ClusterError::BadIdentity("process 0 has no plan".into()))?;
            for (i, s) in self.sockets.iter_mut().enumerate() {
                if let Some(s) = s {
                    send_frame(s, &plan).map_err(|e| protocol(i, e))?;
                }
            }
            Ok(plan)
        } else {
            let zero = self.sockets[0]
                .as_mut()
                .ok_or_else(|| protocol(0, "no connection"))?;
            read_frame(zero).map_err(|e| protocol(0, format!("receiving the plan: {e}")))
        }
    }

    /// Starts `workers` threads per process running `func` on timely's networking over these
    /// connections.
    pub(crate) fn execute<T, F>(self, func: F) -> Result<WorkerGuards<T>, String>
    where
        T: Send + 'static,
        F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
    {
        let hooks = Hooks::default();
        let local = ProcessBuilder::new_typed_vector(
            self.workers,
            hooks.refill.clone(),
            hooks.spill.clone(),
        );
        let (builders, guard) = initialize_networking_from_sockets(
            local,
            self.sockets,
            self.process,
            self.workers,
            hooks,
        )
        .map_err(|e| format!("cannot start the cluster's networking: {e}"))?;
        let builders = builders.into_iter().map(AllocatorBuilder::Tcp).collect();
        timely::execute::execute_from(
            builders,
            Box::new(guard),
            timely::WorkerConfig::default(),
            func,
        )
    }
}

/// Starts `workers` threads in this process, or in every process of `link`, running `func`.
pub(crate) fn execute<T, F>(
    workers: usize,
    link: Option<Link>,
    func: F,
) -> Result<WorkerGuards<T>, String>
where
    T: Send + 'static,
    F: Fn(&mut timely::worker::Worker) -> T + Send + Sync + 'static,
{
    match link {
        Some(link) => link.execute(func),
        None => timely::execute(timely::Config::process(workers.max(1)), func),
    }
}

fn protocol(process: usize, detail: impl Into<String>) -> ClusterError {
    ClusterError::Protocol {
        process,
        detail: detail.into(),
    }
}

fn check_peer(mine: &Hello, theirs: &Hello, process: usize) -> Result<(), ClusterError> {
    if theirs.process != process {
        return Err(ClusterError::Protocol {
            process,
            detail: format!(
                "the process at process {process}'s address says it is process {}: check --process on each",
                theirs.process
            ),
        });
    }
    let differences = mine.differences(theirs);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::Mismatch {
            process,
            detail: differences.join("; "),
        })
    }
}

fn listen(cluster: &Cluster) -> Result<TcpListener, ClusterError> {
    let me = cluster.process;
    let address = &cluster.addresses[me];
    let err = |source| ClusterError::Listen {
        address: address.clone(),
        line: me + 1,
        source,
    };
    let listener = TcpListener::bind(address.as_str()).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    Ok(listener)
}

fn connect(
    process: usize,
    address: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, ClusterError> {
    let mut reported = Instant::now();
    loop {
        let attempt = address
            .to_socket_addrs()
            .and_then(|mut addrs| {
                addrs
                    .next()
                    .ok_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address"))
            })
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)));
        match attempt {
            Ok(stream) => {
                stream
                    .set_nodelay(true)
                    .map_err(|e| protocol(process, e.to_string()))?;
                let _ = stream.set_read_timeout(Some(timeout));
                return Ok(stream);
            }
            Err(e) => {
                if Instant::now() > deadline {
                    return Err(ClusterError::Timeout {
                        process,
                        address: address.to_owned(),
                        waited: timeout,
                    });
                }
                if reported.elapsed() > Duration::from_secs(5) {
                    tracing::info!(process, address, error = %e, "waiting for a process to join");
                    reported = Instant::now();
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

fn send_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> Result<(), String> {
    let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let len = u32::try_from(body.len()).map_err(|_| "frame too large".to_owned())?;
    let mut frame = Vec::with_capacity(12 + body.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(&body);
    stream
        .write_all(&frame)
        .map_err(|e| format!("sending: {e}"))
}

fn receiving(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset => {
            "the connection closed: the process stopped (its own output says why)".to_owned()
        }
        _ => format!("receiving: {e}"),
    }
}

fn read_frame<T: serde::de::DeserializeOwned>(stream: &mut TcpStream) -> Result<T, String> {
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| receiving(&e))?;
    if &head[..8] != MAGIC {
        return Err("it does not speak emoflow's cluster protocol (another program on the port, or another emoflow version)".into());
    }
    let len = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if len > MAX_FRAME {
        return Err(format!("a frame of {len} bytes is too large"));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).map_err(|e| receiving(&e))?;
    serde_json::from_slice(&body).map_err(|e| format!("cannot read what it sent: {e}"))
}

#[cfg(test)]
mod tests;
