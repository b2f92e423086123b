//! `emoflow bench-subscribers`: many SSE subscribers over many filters against a running
//! `emoflow serve`, while events are produced at a steady rate. Reports deliveries per second,
//! delivery latency (from the event's time, set when it is produced, to its arrival at the
//! subscriber), events missed and delivered twice (both must be 0), and the service's RSS.
//!
//! Filter `i` of `M` lists users `i`, `i + M`, ... (`--users-per-filter` of them); subscriber
//! `s` follows filter `s % M`. The producer picks users uniformly, so every filter matches about
//! `rate * users_per_filter / users` events per second.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use emoflow_ingest::kafka::BulkProducer;
use futures::StreamExt;
use tokio::sync::{watch, Semaphore};

use emoflow_ingest::pacing::Pacer;

use crate::http_client::send;
use crate::rss::rss_kib;
use crate::Service;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The running service and its topic.
    pub service: Service,
    /// The service's process id, to report its memory.
    pub serve_pid: Option<u32>,
    /// SSE subscribers.
    pub subscribers: usize,
    /// Distinct filters (subscriber `s` follows filter `s % filters`).
    pub filters: usize,
    /// Users each filter lists.
    pub users_per_filter: usize,
    /// Distinct users the producer picks from.
    pub users: usize,
    /// Events per second.
    pub rate: u64,
    /// How long to produce, in seconds.
    pub seconds: u64,
}

/// Latencies are counted per millisecond up to this; later ones in the last bucket.
const MAX_LATENCY_MS: usize = 10_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What every subscriber adds to.
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    twice: AtomicU64,
    connected: AtomicUsize,
    failed: AtomicUsize,
    latency: Vec<AtomicU64>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            latency: (0..=MAX_LATENCY_MS).map(|_| AtomicU64::new(0)).collect(),
            ..Tally::default()
        }
    }

    fn quantile(&self, q: f64) -> usize {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let want = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (ms, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= want.max(1) {
                return ms;
            }
        }
        0
    }

    fn max(&self) -> usize {
        self.latency
            .iter()
            .rposition(|c| c.load(Ordering::Relaxed) > 0)
            .unwrap_or(0)
    }
}

/// The number after `"key":` in `json`.
fn field(json: &str, key: &str) -> Option<i64> {
    let at = json.find(key)? + key.len();
    let rest = &json[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// One subscriber: connects, then counts what arrives until `stop`.
async fn subscribe(
    client: reqwest::Client,
    url: String,
    tally: Arc<Tally>,
    gate: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    // Held while connecting: a listen backlog takes only so many handshakes at once.
    let mut permit = gate.acquire().await.ok();
    let response = match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => r,
        _ => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    tally.connected.fetch_add(1, Ordering::Relaxed);
    permit.take();
    let mut chunks = response.bytes_stream();
    let mut body = Vec::new();
    let mut last: BTreeMap<i64, i64> = BTreeMap::new();
    loop {
        let chunk = tokio::select! {
            c = chunks.next() => match c { Some(Ok(c)) => c, _ => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        body.extend_from_slice(&chunk);
        let now = now_ms();
        let mut used = 0;
        while let Some(end) = body[used..].windows(2).position(|w| w == b"\n\n") {
            let block = String::from_utf8_lossy(&body[used..used + end]);
            used += end + 2;
            let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let (Some(ts), Some(p), Some(o)) = (
                field(data, "\"ts\":"),
                field(data, "\"partition\":"),
                field(data, "\"offset\":"),
            ) else {
                continue;
            };
            if last.insert(p, o).is_some_and(|prev| prev >= o) {
                tally.twice.fetch_add(1, Ordering::Relaxed);
            }
            tally.delivered.fetch_add(1, Ordering::Relaxed);
            let ms = (now - ts).clamp(0, MAX_LATENCY_MS as i64) as usize;
            tally.latency[ms].fetch_add(1, Ordering::Relaxed);
        }
        body.drain(..used);
    }
}

/// Creates the filters; returns their ids.
fn create_filters(addr: &str, args: &Options, run: &str) -> anyhow::Result<Vec<String>> {
    let ids: Vec<String> = (0..args.filters).map(|i| format!("{run}-{i}")).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= ids.len() {
                            return Ok(());
                        }
                        let users: Vec<String> = (0..args.users_per_filter)
                            .map(|k| format!("\"u{}\"", i + k * args.filters))
                            .collect();
                        let body =
                            format!(r#"{{"id":"{}","user_ids":[{}]}}"#, ids[i], users.join(","));
                        let (status, answer) =
                            send(addr, reqwest::Method::POST, "/filters", Some(body))?;
                        if status != 201 {
                            bail!("POST /filters answered {status}: {answer}");
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a filter thread failed"))??;
        }
        Ok(())
    })?;
    Ok(ids)
}

/// Produces events at `rate` for `seconds`; returns how many each user got.
fn produce(args: &Options) -> anyhow::Result<Vec<u64>> {
    let producer = BulkProducer::with_linger(
        &args.service.brokers,
        &args.service.topic,
        Duration::from_millis(2),
    )?;
    // Warm up: the first sends wait for the broker's metadata and connections, which is not
    // what this measures. These users are in no filter.
    for n in 0..1000u64 {
        let line = format!(
            r#"{{"user_id":"warm-up-{n}","emoji":"w","ts":{}}}"#,
            now_ms()
        );
        producer.send(&n.to_le_bytes(), line.as_bytes(), None, None)?;
    }
    producer.flush(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(1));
    let mut per_user = vec![0u64; args.users];
    let total = args.rate * args.seconds;
    let pacer = Pacer::new(args.rate);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for n in 0..total {
        pacer.wait_for(n);
        // xorshift: uniform enough, and the same every run.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let user = (x % args.users as u64) as usize;
        per_user[user] += 1;
        let line = format!(
            r#"{{"user_id":"u{user}","emoji":"e{}","ts":{}}}"#,
            n % 7,
            now_ms()
        );
        producer.send(&n.to_le_bytes(), line.as_bytes(), None, None)?;
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(per_user)
}

/// Runs the benchmark and prints what it measured.
pub fn run(args: &Options) -> anyhow::Result<()> {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("cannot raise the open-files limit: {e}");
    }
    let addr = args.service.addr();
    let run = format!("bench{}", std::process::id());
    println!("creating {} filters", args.filters);
    let ids = create_filters(&addr, args, &run)?;
    let rss_before = args.serve_pid.and_then(rss_kib);
    let tally = Arc::new(Tally::new());
    let (stop_tx, stop) = watch::channel(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let gate = Arc::new(Semaphore::new(256));
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    println!("connecting {} subscribers", args.subscribers);
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..args.subscribers)
        .map(|s| {
            let filter = ids[s % ids.len()].clone();
            runtime.spawn(subscribe(
                client.clone(),
                format!("http://{addr}/filters/{filter}/stream"),
                tally.clone(),
                gate.clone(),
                stop.clone(),
            ))
        })
        .collect();
    // The subscribers run on this runtime, on a thread of its own, while this one produces.
    let driver = std::thread::spawn(move || {
        runtime.block_on(async {
            for t in tasks {
                let _ = t.await;
            }
        })
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while tally.connected.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed)
        < args.subscribers
    {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} subscribers connected in 120 s",
                tally.connected.load(Ordering::Relaxed),
                args.subscribers
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let connected = tally.connected.load(Ordering::Relaxed);
    println!(
        "{connected} connected in {:.1} s ({} refused or failed)",
        t0.elapsed().as_secs_f64(),
        tally.failed.load(Ordering::Relaxed)
    );
    let rss_idle = args.serve_pid.and_then(rss_kib);
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = args.serve_pid.map(|pid| {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                if let Some(r) = rss_kib(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    });
    println!("producing {} events/s for {} s", args.rate, args.seconds);
    let started = Instant::now();
    let per_user = produce(args)?;
    let produced_in = started.elapsed();
    // Let the last deliveries arrive.
    let expected: u64 = (0..args.subscribers)
        .map(|s| {
            let f = s % ids.len();
            (0..args.users_per_filter)
                .map(|k| f + k * args.filters)
                .filter_map(|u| per_user.get(u))
                .sum::<u64>()
        })
        .sum();
    let settle = Instant::now() + Duration::from_secs(30);
    while tally.delivered.load(Ordering::Relaxed) < expected && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    if let Some(s) = sampler {
        let _ = s.join();
    }
    let _ = stop_tx.send(true);
    let _ = driver.join();
    let delivered = tally.delivered.load(Ordering::Relaxed);
    let twice = tally.twice.load(Ordering::Relaxed);
    let missed = expected.saturating_sub(delivered - twice.min(delivered));
    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| subscribers connected | {connected} of {} |",
        args.subscribers
    );
    println!(
        "| filters | {} ({} users each) |",
        args.filters, args.users_per_filter
    );
    println!(
        "| events produced | {} in {:.1} s ({:.0}/s) |",
        per_user.iter().sum::<u64>(),
        produced_in.as_secs_f64(),
        per_user.iter().sum::<u64>() as f64 / produced_in.as_secs_f64()
    );
    println!(
        "| deliveries | {delivered} of {expected} expected, {:.0}/s |",
        delivered as f64 / elapsed.as_secs_f64().max(produced_in.as_secs_f64())
    );
    println!("| missed | {missed} |");
    println!("| delivered twice or out of order | {twice} |");
    println!(
        "| latency p50 / p99 / max | {} / {} / {} ms |",
        tally.quantile(0.5),
        tally.quantile(0.99),
        tally.max()
    );
    if let (Some(before), Some(idle)) = (rss_before, rss_idle) {
        println!(
            "| serve RSS before / with subscribers idle / peak | {} / {} / {} MiB |",
            before / 1024,
            idle / 1024,
            peak.load(Ordering::Relaxed) / 1024
        );
        println!(
            "| serve RSS per subscriber (idle, peak) | {:.1} / {:.1} KiB |",
            idle.saturating_sub(before) as f64 / connected.max(1) as f64,
            peak.load(Ordering::Relaxed).saturating_sub(before) as f64 / connected.max(1) as f64
        );
    }
    for id in &ids {
        let _ = send(
            &addr,
            reqwest::Method::DELETE,
            &format!("/filters/{id}"),
            None,
        );
    }
    if missed > 0 || twice > 0 {
        bail!("{missed} deliveries missed and {twice} delivered twice");
    }
    Ok(())
}
