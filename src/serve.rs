//! `emoflow serve` and `emoflow demo`: the dataflow over a Kafka topic (or the embedded
//! broker) with the HTTP API in front.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use std::collections::BTreeMap;

use emoflow_dataflow::{start_kafka, FilterSpec, KafkaInput, KafkaRunOptions};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{
    ensure_topic, resolve_range, BulkProducer, EmbeddedBroker, EventProducer, OffsetSpec,
    PartitionRange,
};
use emoflow_ingest::MaxFuture;
use emoflow_query_api::window::{IngestWindow, LogLimits};
use emoflow_query_api::{
    AppState, FilterStore, Filters, HealthProbe, HttpOptions, Hub, HubLimits, IngestOptions,
    LogSource, Publisher, DEFAULT_BODY_LIMIT,
};

use crate::cli::{DemoArgs, ServeArgs};
use crate::produce::{GeneratedMessages, Pacer};

/// Set when the service is shutting down, so that the demo load stops before the broker.
static SHUTTING_DOWN: AtomicBool = AtomicBool::new(false);

/// The broker the service reads: an external one, or the embedded one it started.
struct Broker {
    brokers: String,
    /// Kept alive for the life of the service (the embedded broker dies with it).
    _embedded: Option<EmbeddedBroker>,
}

fn broker(args: &ServeArgs) -> anyhow::Result<Broker> {
    match &args.brokers {
        Some(b) => {
            let parts = ensure_topic(b, &args.topic, args.partitions, Duration::from_secs(10))
                .with_context(|| format!("cannot reach the topic {:?} on {b}", args.topic))?;
            if parts.is_empty() {
                bail!("the topic {:?} has no partitions on {b}", args.topic);
            }
            tracing::info!(brokers = %b, topic = %args.topic, partitions = parts.len(), "reading Kafka");
            Ok(Broker {
                brokers: b.clone(),
                _embedded: None,
            })
        }
        None => {
            let embedded = EmbeddedBroker::start().context("cannot start the embedded broker")?;
            embedded
                .create_topic(&args.topic, args.partitions)
                .context("cannot create the topic on the embedded broker")?;
            let brokers = embedded.bootstrap_servers().to_owned();
            println!(
                "embedded Kafka broker at {brokers} (topic {}, {} partitions; in memory, gone when emoflow stops)",
                args.topic, args.partitions
            );
            Ok(Broker {
                brokers,
                _embedded: Some(embedded),
            })
        }
    }
}

/// Runs the service until Ctrl-C or SIGTERM. `on_ready` runs once the API listens, with the
/// bootstrap servers.
fn serve_with(
    args: ServeArgs,
    on_ready: impl FnOnce(&str) -> Option<std::thread::JoinHandle<()>>,
) -> anyhow::Result<()> {
    // Every live subscriber is an open connection: take as many as the system allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < args.push.max_subscribers + 256 => tracing::warn!(
            open_files = n,
            max_subscribers = args.push.max_subscribers,
            "the open-files limit is below --max-subscribers: connections past it will fail"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
    let cfg = args.views.config();
    cfg.validate()?;
    // The embedded broker's log starts again at offset 0 each run: its archive files say which
    // run they hold.
    let log = match &args.brokers {
        Some(_) => args.topic.clone(),
        None => crate::storage::embedded_log(&args.topic),
    };
    let storage = crate::storage::for_serve(&args.storage, args.no_archive, log)?;
    let broker = broker(&args)?;
    let brokers = broker.brokers.clone();
    // No checkpoints yet: the views start from the beginning of the topic.
    let ranges: Vec<PartitionRange> = resolve_range(
        &brokers,
        &args.topic,
        OffsetSpec::Earliest,
        OffsetSpec::Earliest,
    )
    .context("cannot read the topic's offsets")?
    .into_iter()
    .map(|r| PartitionRange::open(r.partition, r.start))
    .collect();
    let (store, stored) = open_filters(storage.data_dir())?;
    let start: BTreeMap<i32, i64> = ranges.iter().map(|r| (r.partition, r.start)).collect();
    let hub = Hub::new(
        start,
        Some(LogSource {
            brokers: brokers.clone(),
            topic: args.topic.clone(),
            max_future: MaxFuture(args.max_future),
        }),
        HubLimits {
            memory_events: args.push.push_memory_events,
            buffer: args.push.subscriber_buffer,
            max_subscribers: args.push.max_subscribers,
            max_per_address: args.push.max_subscribers_per_address,
        },
    );
    for (id, spec) in &stored {
        hub.add_filter(id, spec.clone(), 0);
    }
    // Bounded: a hub that falls behind holds the collector back rather than growing.
    let (deliver, deliveries) = std::sync::mpsc::sync_channel(256);
    hub.spawn(deliveries)
        .context("cannot start the delivery thread")?;
    let (mut publisher, snapshots) = Publisher::new(cfg);
    let run = start_kafka(
        KafkaInput {
            brokers: brokers.clone(),
            topic: args.topic.clone(),
            ranges,
        },
        KafkaRunOptions {
            workers: args.workers.max(1),
            views: cfg,
            tick_ms: args.tick.max(1) as u64,
            // Requests first when the machine is saturated. Under saturating NDJSON ingest it
            // measured 470-690 batches/s against 440-470 before, with `GET /top` no slower and
            // the views still caught up: a modest gain within this machine's noise.
            background: true,
            archive: storage.archive.clone(),
            max_future: MaxFuture(args.max_future),
            filters: stored,
            deliver: Some(deliver),
            ..KafkaRunOptions::default()
        },
        move |state| publisher.publish(state),
    )?;
    match &storage.archive {
        Some(a) => println!("archiving accepted events to {}", a.dir.display()),
        None => println!("not archiving (--no-archive)"),
    }
    let producer = EventProducer::new(
        &brokers,
        &args.topic,
        Duration::from_millis(args.produce_linger.max(0) as u64),
        Duration::from_millis(args.produce_timeout.max(1) as u64),
    )
    .context("cannot create the producer")?;
    let source = if args.brokers.is_some() {
        format!("kafka://{brokers}/{}", args.topic)
    } else {
        format!("embedded://{brokers}/{}", args.topic)
    };
    let probe = HealthProbe::new(source, Some(run.reader_health()), run.archive_monitor());
    let stop_poller = Arc::new(AtomicBool::new(false));
    let poller = probe.spawn_poller(brokers.clone(), args.topic.clone(), stop_poller.clone())?;
    // The embedded broker keeps 5 MiB per partition: ingest keeps within what it holds ahead
    // of the readers, so that every 202 is counted and archived.
    let window = args
        .brokers
        .is_none()
        .then(|| IngestWindow::new(LogLimits::EMBEDDED, args.partitions));
    let state = AppState::new(
        snapshots,
        Some(producer),
        probe,
        IngestOptions {
            body_limit: if args.body_limit == 0 {
                DEFAULT_BODY_LIMIT
            } else {
                args.body_limit
            },
            api_token: args.api_token.clone(),
            produce_timeout: Duration::from_millis(args.produce_timeout.max(1) as u64),
            window,
            max_future: MaxFuture(args.max_future),
        },
    )
    .with_filters(Filters::new(
        store,
        Some(run.filter_control()),
        hub,
        args.push.max_filters,
    ))
    .with_http(HttpOptions::new(
        &args.http.cors_origins,
        Duration::from_millis(args.http.request_timeout as u64),
    )?)
    .with_tick(Duration::from_millis(args.tick as u64));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emoflow-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "emoflow serving http://{addr}/ ({} workers)",
            args.workers.max(1)
        );
        let load = on_ready(&brokers);
        let served = emoflow_query_api::serve(listener, state, shutdown_signal())
            .await
            .context("the HTTP server failed");
        anyhow::Ok((served, load))
    });
    let (served, load) = match served {
        Ok((served, load)) => (served, load),
        Err(e) => (Err(e), None),
    };
    tracing::info!("stopping");
    SHUTTING_DOWN.store(true, Ordering::Relaxed);
    // Clients of the embedded broker stop before it does, so none logs it going away.
    if let Some(load) = load {
        let _ = load.join();
    }
    stop_poller.store(true, Ordering::Relaxed);
    run.stop();
    let out = run.wait()?;
    // The watermark poller is a client of the broker too: it ends before the broker does.
    if poller.join().is_err() {
        tracing::warn!("the watermark poller panicked");
    }
    if let Some(a) = &out.archive {
        tracing::info!(
            rows = a.rows_written,
            files = a.files_written,
            already_archived = a.rows_already_archived,
            "archive written"
        );
        if a.rows_abandoned > 0 {
            tracing::warn!(
                rows = a.rows_abandoned,
                error = a.error.as_deref().unwrap_or(""),
                "events not archived: the archive could not be written; they are archived when emoflow next reads them from Kafka"
            );
        }
    }
    tracing::info!(as_of = out.state.as_of, "stopped");
    drop(storage);
    served
}

/// The filter store in the data directory (in memory without one), and the filters in it.
fn open_filters(
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `emoflow serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    serve_with(args, |_| None)
}

/// `emoflow demo`: serve on the embedded broker plus a generator at `--rate` events/s.
pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut serve = args.serve.clone();
    serve.brokers = None;
    let topic = serve.topic.clone();
    let (rate, users, seed) = (args.rate.max(1), args.users, args.seed);
    serve_with(serve, move |brokers| {
        let brokers = brokers.to_owned();
        println!("demo: producing {rate} synthetic events/s; open the URL above, Ctrl-C stops");
        let spawned = std::thread::Builder::new()
            .name("emoflow-demo-load".into())
            .spawn(move || {
                if let Err(e) = demo_load(&brokers, &topic, rate, users, seed) {
                    tracing::error!("demo load stopped: {e:#}");
                }
            });
        spawned
            .map_err(|e| tracing::error!("cannot start the demo load: {e}"))
            .ok()
    })
}

/// Produces generated events with live timestamps at `rate` per second, forever.
fn demo_load(brokers: &str, topic: &str, rate: u64, users: u32, seed: u64) -> anyhow::Result<()> {
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
        if SHUTTING_DOWN.load(Ordering::Relaxed) {
            break;
        }
        pacer.wait_for(sent);
        messages.send(&producer, sent)?;
    }
    producer.flush(Duration::from_secs(1))?;
    Ok(())
}
