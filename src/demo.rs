//! `emoflow demo`: `serve` on the embedded broker plus a generator producing synthetic events
//! with live timestamps at `--rate` events/s, so a newcomer sees the views move at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{BulkProducer, GeneratedMessages};
use emoflow_ingest::pacing::Pacer;

use crate::cli::DemoArgs;
use crate::serve::Companion;

/// `emoflow demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut serve = args.serve.clone();
    serve.kafka.brokers = None;
    let topic = serve.kafka.topic.clone();
    let (rate, users, seed) = (args.rate.max(1), args.users, args.seed);
    crate::serve::serve_with(serve, move |brokers| {
        let brokers = brokers.to_owned();
        println!("demo: producing {rate} synthetic events/s; open the URL above, Ctrl-C stops");
        let stop = Arc::new(AtomicBool::new(false));
        let spawned = std::thread::Builder::new()
            .name("emoflow-demo-load".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    if let Err(e) = produce(&brokers, &topic, rate, users, seed, &stop) {
                        tracing::error!("demo load stopped: {e:#}");
                    }
                }
            });
        spawned
            .map(|thread| Companion::new(stop, thread))
            .map_err(|e| tracing::error!("cannot start the demo load: {e}"))
            .ok()
    })
}

/// Produces generated events with live timestamps at `rate` per second until `stop`.
fn produce(
    brokers: &str,
    topic: &str,
    rate: u64,
    users: u32,
    seed: u64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let producer = BulkProducer::new(brokers, topic)?;
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let mut messages = GeneratedMessages::new(Generator::new(GeneratorConfig {
        seed,
        users,
        start_ms,
        step_ms: 1000.0 / rate as f64,
        ..GeneratorConfig::default()
    }));
    let pacer = Pacer::new(rate);
    for sent in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        pacer.wait_for(sent);
        messages.send(&producer, sent)?;
    }
    producer.flush(Duration::from_secs(1))?;
    Ok(())
}
