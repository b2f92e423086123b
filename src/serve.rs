//! `emoflow serve` and `emoflow demo`: the dataflow over a Kafka topic (or the embedded
//! broker) with the HTTP API in front.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use std::collections::BTreeMap;

use emoflow_dataflow::{start_kafka, FilterSpec, KafkaInput, KafkaRunOptions, RunStatus};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{
    ensure_topic, resolve_range, BulkProducer, EmbeddedBroker, EventProducer, OffsetSpec,
    PartitionRange,
};
use emoflow_ingest::MaxFuture;
use emoflow_query_api::window::{IngestWindow, LogLimits};
use emoflow_query_api::{
    AppState, ClusterRole, FilterStore, Filters, HealthProbe, HttpOptions, Hub, HubLimits,
    IngestOptions, LogSource, PeerWatch, Publisher, DEFAULT_BODY_LIMIT,
};
use emoflow_storage::archive::STOP_PATIENCE;
use emoflow_storage::ArchiveSink;

use crate::cli::{DemoArgs, ServeArgs};
use emoflow_ingest::kafka::GeneratedMessages;
use emoflow_ingest::pacing::Pacer;

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

/// What every process of a `serve` cluster reads: process 0 decides and sends it to the others.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ServePlan {
    /// Where each partition starts (every range is open).
    ranges: Vec<PartitionRange>,
    /// The filters in force at the start (process 0's filter store).
    filters: Vec<(String, FilterSpec)>,
}

/// What the processes of a `serve` cluster must agree on beyond the plan.
fn serve_settings(args: &ServeArgs) -> Vec<(String, String)> {
    let mut settings = crate::cluster::view_settings(&args.views.config());
    settings.push(("--topic".into(), args.topic.clone()));
    settings.push(("--max-future".into(), format!("{} ms", args.max_future)));
    settings
}

/// Runs the service until Ctrl-C or SIGTERM (or, in a cluster, until any process stops).
/// `on_ready` runs once the API listens, with the bootstrap servers (on process 0 only).
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
    let cluster = args.cluster.cluster()?;
    if let (Some(c), None) = (&cluster, &args.brokers) {
        bail!(
            "a cluster (--processes {}) needs --brokers: every process reads the same Kafka topic, and the embedded broker lives inside one process",
            c.processes()
        );
    }
    let member = args.cluster.is_member();
    // Processes of a cluster on one machine do not all take the default port.
    let listen = match (args.listen.as_str(), args.cluster.process) {
        (crate::cli::DEFAULT_LISTEN, i) if i > 0 => format!("127.0.0.1:{}", 8080 + i),
        _ => args.listen.clone(),
    };
    // Bound first: the other processes of a cluster learn where it is when they join.
    let http_listener = std::net::TcpListener::bind(&listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = http_listener.local_addr()?;
    let mut link = crate::cluster::join(
        &args.cluster,
        args.workers.max(1),
        "serve",
        serve_settings(&args),
        cluster
            .as_ref()
            .map(|c| crate::cluster::advertised_http(c, addr)),
    )?;
    let members = link.as_ref().map(emoflow_dataflow::Link::members);
    // The embedded broker's log starts again at offset 0 each run: its archive files say which
    // run they hold.
    let log = match &args.brokers {
        Some(_) => args.topic.clone(),
        None => crate::storage::embedded_log(&args.topic),
    };
    let storage = crate::storage::for_serve(
        &args
            .storage
            .of_process(link.as_ref().map(emoflow_dataflow::Link::process)),
        args.no_archive,
        log,
    )?;
    let broker = if member {
        Broker {
            brokers: args.brokers.clone().unwrap_or_default(),
            _embedded: None,
        }
    } else {
        broker(&args)?
    };
    let brokers = broker.brokers.clone();
    // Process 0 keeps the filters; another process of a cluster has none of its own.
    let (store, plan) = if member {
        (None, None)
    } else {
        let (store, stored) = open_filters(storage.data_dir())?;
        let plan = ServePlan {
            ranges: start_ranges(&brokers, &args.topic)?,
            filters: stored,
        };
        (Some(store), Some(plan))
    };
    let plan = match link.as_mut() {
        Some(l) => l.share_plan(plan)?,
        None => plan.context("no plan")?,
    };
    let start: BTreeMap<i32, i64> = plan.ranges.iter().map(|r| (r.partition, r.start)).collect();
    // Bounded: a hub that falls behind holds the collector back rather than growing. In a
    // cluster every process's workers send their events to process 0, whose hub delivers them.
    let (deliver, deliveries) = std::sync::mpsc::sync_channel(256);
    let hub = match member {
        true => None,
        false => {
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
            for (id, spec) in &plan.filters {
                hub.add_filter(id, spec.clone(), 0);
            }
            hub.spawn(deliveries)
                .context("cannot start the delivery thread")?;
            Some(hub)
        }
    };
    let (mut publisher, snapshots) = Publisher::new(cfg);
    let archive = storage.open_archive()?;
    let run = start_kafka(
        KafkaInput {
            brokers: brokers.clone(),
            topic: args.topic.clone(),
            ranges: plan.ranges,
        },
        KafkaRunOptions {
            workers: args.workers.max(1),
            views: cfg,
            tick_ms: args.tick.max(1) as u64,
            // Requests first when the machine is saturated. Under saturating NDJSON ingest it
            // measured 470-690 batches/s against 440-470 before, with `GET /top` no slower and
            // the views still caught up: a modest gain within this machine's noise.
            background: true,
            archive: archive.as_ref().map(ArchiveSink::tap),
            max_future: MaxFuture(args.max_future),
            filters: plan.filters,
            deliver: Some(deliver),
            ..KafkaRunOptions::default()
        },
        link,
        move |state| publisher.publish(state),
    )?;
    match &storage.archive {
        Some(a) => println!("archiving accepted events to {}", a.dir.display()),
        None => println!("not archiving (--no-archive)"),
    }
    let producer = match member {
        true => None,
        false => Some(
            EventProducer::new(
                &brokers,
                &args.topic,
                Duration::from_millis(args.produce_linger.max(0) as u64),
                Duration::from_millis(args.produce_timeout.max(1) as u64),
            )
            .context("cannot create the producer")?,
        ),
    };
    let source = if args.brokers.is_some() {
        format!("kafka://{brokers}/{}", args.topic)
    } else {
        format!("embedded://{brokers}/{}", args.topic)
    };
    let probe = HealthProbe::new(
        source,
        Some(run.reader_health()),
        archive.as_ref().map(ArchiveSink::monitor),
    );
    let stop_poller = Arc::new(AtomicBool::new(false));
    let poller = probe.spawn_poller(brokers.clone(), args.topic.clone(), stop_poller.clone())?;
    // The embedded broker keeps 5 MiB per partition: ingest keeps within what it holds ahead
    // of the readers, so that every 202 is counted and archived.
    let window = args
        .brokers
        .is_none()
        .then(|| IngestWindow::new(LogLimits::EMBEDDED, args.partitions));
    let mut state = AppState::new(
        snapshots,
        producer,
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
    .with_http(HttpOptions::new(
        &args.http.cors_origins,
        Duration::from_millis(args.http.request_timeout as u64),
    )?)
    .with_tick(Duration::from_millis(args.tick as u64));
    if let (Some(store), Some(hub)) = (store, hub) {
        state = state.with_filters(Filters::new(
            store,
            Some(run.filter_control()),
            hub,
            args.push.max_filters,
        ));
    }
    if let Some(members) = members {
        state = state.with_cluster(cluster_role(&args, members));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("emoflow-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    let status = run.status();
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(http_listener)
            .with_context(|| format!("cannot listen on {listen}"))?;
        if member {
            println!(
                "process {} of {}: serving http://{addr}/health and /metrics ({} workers); process 0 answers the API",
                args.cluster.process,
                args.cluster.processes,
                args.workers.max(1)
            );
        } else {
            println!(
                "emoflow serving http://{addr}/ ({} workers{})",
                args.workers.max(1),
                match args.cluster.processes {
                    1 => String::new(),
                    n => format!(" in each of {n} processes"),
                }
            );
        }
        let load = if member { None } else { on_ready(&brokers) };
        let served = emoflow_query_api::serve(listener, state, shutdown_signal(status))
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
    let out = run.wait();
    // Whatever the run's end, the archive writes what the workers handed it.
    let archived = archive.map(|a| a.finish(STOP_PATIENCE));
    let out = out?;
    // The watermark poller is a client of the broker too: it ends before the broker does.
    if poller.join().is_err() {
        tracing::warn!("the watermark poller panicked");
    }
    if let Some(a) = &archived {
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
    match &out.state {
        Some(state) => tracing::info!(as_of = state.as_of, "stopped"),
        None => tracing::info!("stopped"),
    }
    drop(storage);
    served
}

/// Every partition of the topic, from its beginning (no checkpoints yet), read until stopped.
fn start_ranges(brokers: &str, topic: &str) -> anyhow::Result<Vec<PartitionRange>> {
    Ok(
        resolve_range(brokers, topic, OffsetSpec::Earliest, OffsetSpec::Earliest)
            .context("cannot read the topic's offsets")?
            .into_iter()
            .map(|r| PartitionRange::open(r.partition, r.start))
            .collect(),
    )
}

/// This process's place in its cluster, for the HTTP API.
fn cluster_role(args: &ServeArgs, members: Vec<emoflow_dataflow::Member>) -> ClusterRole {
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

/// Resolves on Ctrl-C or SIGTERM, or once the run has finished (in a cluster, another process
/// stopped: all stop together).
async fn shutdown_signal(status: RunStatus) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let finished = async move {
        while !status.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::info!("the dataflow stopped (another process of the cluster stopped)");
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
        () = finished => {},
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
