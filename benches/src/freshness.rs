//! `emoflow bench-freshness`: how long an event takes from being produced to being counted in
//! `GET /stats`, at a steady rate. A producer thread sends generated events at `--rate` and
//! notes when it sent every 100th; a poller reads `/stats` every few milliseconds and notes
//! when the total first covered each of them. Meanwhile probers request the read routes asked
//! (each every ~10 ms) and, given the service's pid, a sampler notes its resident memory every
//! second. Needs a running `emoflow serve` on the same topic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::BulkProducer;

use emoflow_ingest::kafka::GeneratedMessages;
use emoflow_ingest::pacing::Pacer;

use crate::http_client::get;
use crate::Service;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The running service and its topic.
    pub service: Service,
    /// Events per second.
    pub rate: u64,
    /// How long to produce, in seconds.
    pub seconds: u64,
    /// The producer's linger (batching delay), part of the measured time.
    pub linger_ms: u64,
    /// Distinct users of the generated events.
    pub users: u32,
    /// Read routes to request meanwhile (each every ~10 ms), such as `/top` or `/sessions`.
    pub probes: Vec<String>,
    /// The service's process id, to sample its resident memory.
    pub serve_pid: Option<u32>,
}

/// Every how many events a send time is noted.
const SAMPLE_EVERY: u64 = 100;

/// `GET /stats` → the accepted total.
fn stats_total(addr: &str) -> anyhow::Result<i64> {
    let v: serde_json::Value = serde_json::from_str(&get(addr, "/stats")?)?;
    v["total"].as_i64().context("no total in /stats")
}

/// Requests `GET route` every `every` until `done`, returning each one's latency in ms.
fn probe(addr: &str, route: &str, every: Duration, done: &AtomicBool) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    while !done.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let body = get(addr, route)?;
        latencies.push(t0.elapsed().as_secs_f64() * 1000.0);
        if !body.starts_with('{') {
            bail!("GET {route} answered {body}");
        }
        std::thread::sleep(every);
    }
    Ok(latencies)
}

/// The resident memory of `pid` every second until `done`, in KiB.
fn sample_rss(pid: u32, done: &AtomicBool) -> Vec<u64> {
    let mut kib = Vec::new();
    while !done.load(Ordering::Relaxed) {
        kib.extend(crate::rss::rss_kib(pid));
        std::thread::sleep(Duration::from_secs(1));
    }
    kib
}

/// Value at quantile `p` of sorted `v`.
fn quantile(v: &[f64], p: f64) -> f64 {
    v.get(((v.len().saturating_sub(1)) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Events sent before the clock starts.
const WARM_UP_EVENTS: u64 = 1000;

/// Sends a few events and waits until `/stats` counts them, so that the measurement starts with
/// the producer connected and the service reading (a client's first send waits for metadata
/// and connections, which is not what this measures). Returns the total to count from.
fn warm_up(producer: &BulkProducer, addr: &str) -> anyhow::Result<i64> {
    let base = stats_total(addr)?;
    let mut messages = GeneratedMessages::new(Generator::new(GeneratorConfig {
        seed: 8,
        ..GeneratorConfig::default()
    }));
    for n in 0..WARM_UP_EVENTS {
        messages.send(producer, n)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let total = stats_total(addr)?;
        if total >= base + WARM_UP_EVENTS as i64 {
            return Ok(total);
        }
        if Instant::now() > deadline {
            bail!("the service did not count {WARM_UP_EVENTS} warm-up events within 30 s: is it reading --topic?");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the measurement and prints the distribution.
pub fn run(args: &Options) -> anyhow::Result<()> {
    let addr = args.service.addr();
    let producer = BulkProducer::with_linger(
        &args.service.brokers,
        &args.service.topic,
        Duration::from_millis(args.linger_ms),
    )?;
    let base = warm_up(&producer, &addr)?;
    let total = args.rate * args.seconds;
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let poller = std::thread::spawn({
        let (addr, done) = (addr.clone(), done.clone());
        move || -> anyhow::Result<Vec<(Duration, i64)>> {
            let mut seen = Vec::new();
            while !done.load(Ordering::Relaxed) {
                seen.push((started.elapsed(), stats_total(&addr)? - base));
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(seen)
        }
    });
    let probers: Vec<_> = args
        .probes
        .iter()
        .map(|route| {
            let (addr, done, route) = (addr.clone(), done.clone(), route.clone());
            std::thread::spawn(move || probe(&addr, &route, Duration::from_millis(10), &done))
        })
        .collect();
    let rss = args.serve_pid.map(|pid| {
        let done = done.clone();
        std::thread::spawn(move || sample_rss(pid, &done))
    });
    let pacer = Pacer::new(args.rate);
    let mut messages = GeneratedMessages::new(Generator::new(GeneratorConfig {
        seed: 9,
        users: args.users,
        start_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
        step_ms: 1000.0 / args.rate as f64,
        ..GeneratorConfig::default()
    }));
    let mut sent_at = Vec::with_capacity((total / SAMPLE_EVERY) as usize + 1);
    for n in 0..total {
        pacer.wait_for(n);
        messages.send(&producer, n)?;
        if (n + 1).is_multiple_of(SAMPLE_EVERY) {
            sent_at.push(started.elapsed());
        }
    }
    producer.flush(Duration::from_secs(30))?;
    let produce_secs = started.elapsed().as_secs_f64();
    // Let the views catch up before stopping the poller.
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats_total(&addr)? - base < total as i64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    done.store(true, Ordering::Relaxed);
    let seen = poller
        .join()
        .map_err(|_| anyhow::anyhow!("the poller panicked"))??;
    let mut probed = Vec::new();
    for (route, prober) in args.probes.iter().zip(probers) {
        let mut latencies = prober
            .join()
            .map_err(|_| anyhow::anyhow!("the {route} prober panicked"))??;
        latencies.sort_by(f64::total_cmp);
        probed.push((route, latencies));
    }
    let rss = rss
        .map(|h| h.join())
        .transpose()
        .map_err(|_| anyhow::anyhow!("the memory sampler panicked"))?;
    let mut delays: Vec<f64> = Vec::with_capacity(sent_at.len());
    let mut j = 0;
    for (k, sent) in sent_at.iter().enumerate() {
        let needed = ((k as u64 + 1) * SAMPLE_EVERY) as i64;
        while j < seen.len() && seen[j].1 < needed {
            j += 1;
        }
        let Some((visible, _)) = seen.get(j) else {
            bail!("event {needed} never showed in /stats");
        };
        delays.push(visible.saturating_sub(*sent).as_secs_f64() * 1000.0);
    }
    if let Some((worst, ms)) = delays.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
        tracing::info!(
            "slowest sample: event {} sent at {:.3}s, {ms:.1} ms",
            (worst as u64 + 1) * SAMPLE_EVERY,
            sent_at[worst].as_secs_f64()
        );
    }
    let slow: Vec<f64> = (0..delays.len())
        .filter(|&k| delays[k] > 250.0)
        .map(|k| sent_at[k].as_secs_f64())
        .collect();
    if let (Some(first), Some(last)) = (slow.first(), slow.last()) {
        tracing::info!(
            "{} samples over 250 ms, sent between {first:.3}s and {last:.3}s",
            slow.len()
        );
    }
    delays.sort_by(f64::total_cmp);
    let q = |p: f64| quantile(&delays, p);
    println!(
        "freshness: {total} events of {} users at {} events/s (achieved {:.0}/s), {} samples, /stats polled every ~2 ms",
        args.users,
        args.rate,
        total as f64 / produce_secs,
        delays.len()
    );
    println!("| p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    if !probed.is_empty() {
        println!("Read routes meanwhile, each requested every ~10 ms on a new connection:");
        println!("| route | requests | p50 ms | p99 ms | max ms |");
        println!("|---|---:|---:|---:|---:|");
        for (route, lat) in &probed {
            println!(
                "| {route} | {} | {:.2} | {:.2} | {:.2} |",
                lat.len(),
                quantile(lat, 0.5),
                quantile(lat, 0.99),
                quantile(lat, 1.0)
            );
        }
    }
    if let Some(kib) = rss.filter(|k| !k.is_empty()) {
        println!("{}", rss_line(&kib));
    }
    Ok(())
}

/// The service's memory over the run, from samples a second apart: at the first minute (or the
/// first sample of a shorter run), at the end, the peak, and the growth between the two.
fn rss_line(kib: &[u64]) -> String {
    let mib = |k: u64| k as f64 / 1024.0;
    let at_minute = kib[kib.len().min(60) - 1];
    let last = kib[kib.len() - 1];
    let peak = kib.iter().copied().max().unwrap_or(0);
    format!(
        "serve RSS: {:.0} MiB at {} s, {:.0} MiB at the end ({} s), peak {:.0} MiB; growth from then to the end {:+.1}%",
        mib(at_minute),
        kib.len().min(60),
        mib(last),
        kib.len(),
        mib(peak),
        (last as f64 / at_minute.max(1) as f64 - 1.0) * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_growth_is_counted_from_the_first_minute() {
        let mut kib: Vec<u64> = vec![100 * 1024; 60];
        kib.extend(vec![110 * 1024; 240]);
        let line = rss_line(&kib);
        assert!(
            line.starts_with(
                "serve RSS: 100 MiB at 60 s, 110 MiB at the end (300 s), peak 110 MiB"
            ),
            "{line}"
        );
        assert!(line.ends_with("+10.0%"), "{line}");
        assert!(rss_line(&[2048]).contains("at 1 s"));
    }
}
