//! `emoflow serve`: the dataflow over a Kafka topic (or the embedded broker) with the HTTP API
//! in front. The service is built in steps, each its own function: the ground it stands on
//! ([`Ground`]: listener, cluster, storage, broker, plan), the parts that run
//! ([`Service::start`]: delivery hub, dataflow, producer, health, the API's state), then it
//! serves until stopped and stops its parts in order ([`Service::serve`]).

mod setup;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};

use emoflow_dataflow::{
    start_kafka, Delivery, FilterNo, KafkaInput, KafkaRun, KafkaRunOptions, Link, Member,
    RunStatus, ViewConfig,
};
use emoflow_ingest::kafka::EventProducer;
use emoflow_ingest::MaxFuture;
use emoflow_query_api::window::{IngestWindow, LogLimits};
use emoflow_query_api::{
    AppState, FilterStore, Filters, HealthProbe, HttpOptions, Hub, HubLimits, IngestOptions,
    LogSource, Publisher, DEFAULT_BODY_LIMIT,
};
use emoflow_storage::archive::STOP_PATIENCE;
use emoflow_storage::ArchiveSink;

use self::setup::{Broker, ServePlan};
use crate::cli::ServeArgs;
use crate::storage::Storage;

/// Work running beside the service (the demo's load): stopped first when the service stops,
/// so that it is done with the broker before the broker goes.
pub struct Companion {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Companion {
    /// `thread`, which ends soon after `stop` is set.
    pub fn new(stop: Arc<AtomicBool>, thread: JoinHandle<()>) -> Self {
        Companion { stop, thread }
    }

    /// Stops it and waits for it to end.
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::warn!("the work beside the service panicked");
        }
    }
}

/// `emoflow serve`.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    serve_with(args, |_| None)
}

/// Runs the service until Ctrl-C or SIGTERM (or, in a cluster, until any process stops).
/// `on_ready` runs once the API listens, with the bootstrap servers (on process 0 only); the
/// load it returns is stopped before the broker.
pub fn serve_with(
    args: ServeArgs,
    on_ready: impl FnOnce(&str) -> Option<Companion>,
) -> anyhow::Result<()> {
    raise_open_files(&args);
    let ground = Ground::prepare(&args)?;
    let service = Service::start(&args, ground)?;
    service.serve(&args, on_ready)
}

/// Every live subscriber is an open connection: takes as many as the system allows.
fn raise_open_files(args: &ServeArgs) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) if (n as usize) < args.push.max_subscribers + 256 => tracing::warn!(
            open_files = n,
            max_subscribers = args.push.max_subscribers,
            "the open-files limit is below --max-subscribers: connections past it will fail"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-files limit: {e}"),
    }
}

/// What the service stands on, decided before anything runs.
struct Ground {
    cfg: ViewConfig,
    /// What lasts as long as the service.
    site: Site,
    link: Option<Link>,
    members: Option<Vec<Member>>,
    /// Process 0's filter store.
    store: Option<FilterStore>,
    plan: ServePlan,
}

/// What the service keeps of its ground while it runs: where it answers, what it stores, the
/// broker it reads.
struct Site {
    /// A process of a cluster other than process 0 (it answers `/health` and `/metrics` only).
    member: bool,
    listen: String,
    http_listener: std::net::TcpListener,
    addr: SocketAddr,
    storage: Storage,
    broker: Broker,
}

impl Ground {
    fn prepare(args: &ServeArgs) -> anyhow::Result<Ground> {
        let cfg = args.views.config();
        cfg.validate()?;
        let cluster = args.cluster.cluster()?;
        if let (Some(c), None) = (&cluster, &args.kafka.brokers) {
            bail!(
                "a cluster (--processes {}) needs --brokers: every process reads the same Kafka topic, and the embedded broker lives inside one process",
                c.processes()
            );
        }
        let member = args.cluster.is_member();
        let listen = listen_address(args);
        // Bound first: the other processes of a cluster learn where it is when they join.
        let http_listener = std::net::TcpListener::bind(&listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = http_listener.local_addr()?;
        let advertised = cluster
            .as_ref()
            .map(|c| crate::cluster::advertised_http(c, addr));
        let mut link = crate::cluster::join(
            &args.cluster,
            args.workers.max(1),
            "serve",
            setup::serve_settings(args),
            advertised,
        )?;
        let members = link.as_ref().map(Link::members);
        let storage = open_storage(args, link.as_ref())?;
        let broker = match member {
            true => Broker::of_member(args),
            false => Broker::open(args)?,
        };
        // Process 0 keeps the filters and decides the plan; the others receive it.
        let (store, plan) = match member {
            true => (None, None),
            false => {
                let (store, filters) = setup::open_filters(storage.data_dir())?;
                let ranges = setup::start_ranges(&broker.brokers, &args.kafka.topic)?;
                (Some(store), Some(ServePlan { ranges, filters }))
            }
        };
        let plan = match link.as_mut() {
            Some(l) => l.share_plan(plan)?,
            None => plan.context("no plan")?,
        };
        let site = Site {
            member,
            listen,
            http_listener,
            addr,
            storage,
            broker,
        };
        Ok(Ground {
            cfg,
            site,
            link,
            members,
            store,
            plan,
        })
    }
}

/// Where the API listens: processes of a cluster on one machine do not all take the default
/// port.
fn listen_address(args: &ServeArgs) -> String {
    match (args.listen.as_str(), args.cluster.process) {
        (crate::cli::DEFAULT_LISTEN, i) if i > 0 => format!("127.0.0.1:{}", 8080 + i),
        _ => args.listen.clone(),
    }
}

/// This process's data directory and archive.
fn open_storage(args: &ServeArgs, link: Option<&Link>) -> anyhow::Result<Storage> {
    // The embedded broker's log starts again at offset 0 each run: its archive files say which
    // run they hold.
    let log = match &args.kafka.brokers {
        Some(_) => args.kafka.topic.clone(),
        None => crate::storage::embedded_log(&args.kafka.topic),
    };
    let of_process = args.storage.of_process(link.map(Link::process));
    crate::storage::for_serve(&of_process, args.no_archive, log)
}

/// The running parts of the service.
struct Service {
    site: Site,
    run: KafkaRun,
    archive: Option<ArchiveSink>,
    poller: JoinHandle<()>,
    stop_poller: Arc<AtomicBool>,
    state: AppState,
}

impl Service {
    fn start(args: &ServeArgs, ground: Ground) -> anyhow::Result<Service> {
        let Ground {
            cfg,
            site,
            link,
            members,
            store,
            plan,
        } = ground;
        let member = site.member;
        let brokers = site.broker.brokers.clone();
        // Bounded: a hub that falls behind holds the collector back rather than growing. In a
        // cluster every process's workers send their events to process 0, whose hub delivers.
        let (deliver, deliveries) = std::sync::mpsc::sync_channel(256);
        let hub = match member {
            true => None,
            false => Some(start_hub(args, &brokers, &plan, deliveries)?),
        };
        let (mut publisher, snapshots) = Publisher::new(cfg);
        let archive = site.storage.open_archive()?;
        let input = KafkaInput {
            brokers: brokers.clone(),
            topic: args.kafka.topic.clone(),
            ranges: plan.ranges,
        };
        let opts = KafkaRunOptions {
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
        };
        let run = start_kafka(input, opts, link, move |state| publisher.publish(state))?;
        match &site.storage.archive {
            Some(a) => println!("archiving accepted events to {}", a.dir.display()),
            None => println!("not archiving (--no-archive)"),
        }
        let probe = HealthProbe::new(
            source_name(args, &brokers),
            Some(run.reader_health()),
            archive.as_ref().map(ArchiveSink::monitor),
        );
        let stop_poller = Arc::new(AtomicBool::new(false));
        let poller = probe.spawn_poller(
            brokers.clone(),
            args.kafka.topic.clone(),
            stop_poller.clone(),
        )?;
        let producer = match member {
            true => None,
            false => Some(producer(args, &brokers)?),
        };
        let mut state = AppState::new(snapshots, producer, probe, ingest_options(args))
            .with_http(HttpOptions::new(
                &args.http.cors_origins,
                Duration::from_millis(args.http.request_timeout as u64),
            )?)
            .with_tick(Duration::from_millis(args.tick as u64));
        if let (Some(store), Some(hub)) = (store, hub) {
            let control = Some(run.filter_control());
            state = state.with_filters(Filters::new(store, control, hub, args.push.max_filters));
        }
        if let Some(members) = members {
            state = state.with_cluster(setup::cluster_role(args, members));
        }
        Ok(Service {
            site,
            run,
            archive,
            poller,
            stop_poller,
            state,
        })
    }

    /// Serves the API until stopped, then stops the parts in order: the load, the readers,
    /// the archive, the poller, the broker last.
    fn serve(
        self,
        args: &ServeArgs,
        on_ready: impl FnOnce(&str) -> Option<Companion>,
    ) -> anyhow::Result<()> {
        let Service {
            site,
            run,
            archive,
            poller,
            stop_poller,
            state,
        } = self;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("emoflow-http")
            .build()
            .context("cannot start the HTTP runtime")?;
        let status = run.status();
        let served = runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(site.http_listener)
                .with_context(|| format!("cannot listen on {}", site.listen))?;
            announce(args, site.addr, site.member);
            let load = if site.member {
                None
            } else {
                on_ready(&site.broker.brokers)
            };
            let served = emoflow_query_api::serve(listener, state, shutdown_signal(status))
                .await
                .context("the HTTP server failed");
            anyhow::Ok((served, load))
        });
        let (served, load) = served.unwrap_or_else(|e| (Err(e), None));
        tracing::info!("stopping");
        // Clients of the embedded broker stop before it does, so none logs it going away.
        if let Some(load) = load {
            load.stop();
        }
        // The HTTP tasks still open (a live stream, say) hold the API's state, and with it the
        // ingest producer and the hub's clients: they end here, not after the broker has gone.
        runtime.shutdown_timeout(STOP_PATIENCE);
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
            report_archive(a);
        }
        match &out.state {
            Some(state) => tracing::info!(as_of = state.as_of, "stopped"),
            None => tracing::info!("stopped"),
        }
        drop(site.storage);
        drop(site.broker);
        served
    }
}

/// Process 0's delivery hub, matching the plan's filters, delivering what `deliveries` brings.
fn start_hub(
    args: &ServeArgs,
    brokers: &str,
    plan: &ServePlan,
    deliveries: std::sync::mpsc::Receiver<Delivery>,
) -> anyhow::Result<Arc<Hub>> {
    let start: BTreeMap<i32, i64> = plan.ranges.iter().map(|r| (r.partition, r.start)).collect();
    let log = LogSource {
        brokers: brokers.to_owned(),
        topic: args.kafka.topic.clone(),
        max_future: MaxFuture(args.max_future),
    };
    let limits = HubLimits {
        memory_events: args.push.push_memory_events,
        buffer: args.push.subscriber_buffer,
        max_subscribers: args.push.max_subscribers,
        max_per_address: args.push.max_subscribers_per_address,
    };
    let hub = Hub::new(start, Some(log), limits);
    for (n, (id, spec)) in plan.filters.iter().enumerate() {
        hub.add_filter(id, spec.clone(), FilterNo::Initial(n as u32));
    }
    hub.spawn(deliveries)
        .context("cannot start the delivery thread")?;
    Ok(hub)
}

/// The producer behind the ingest routes.
fn producer(args: &ServeArgs, brokers: &str) -> anyhow::Result<EventProducer> {
    EventProducer::new(
        brokers,
        &args.kafka.topic,
        Duration::from_millis(args.produce_linger.max(0) as u64),
        Duration::from_millis(args.produce_timeout.max(1) as u64),
    )
    .context("cannot create the producer")
}

/// The ingest routes' settings.
fn ingest_options(args: &ServeArgs) -> IngestOptions {
    // The embedded broker keeps 5 MiB per partition: ingest keeps within what it holds ahead
    // of the readers, so that every 202 is counted and archived.
    let window = args
        .kafka
        .brokers
        .is_none()
        .then(|| IngestWindow::new(LogLimits::EMBEDDED, args.kafka.partitions));
    IngestOptions {
        body_limit: match args.body_limit {
            0 => DEFAULT_BODY_LIMIT,
            n => n,
        },
        api_token: args.api_token.clone(),
        produce_timeout: Duration::from_millis(args.produce_timeout.max(1) as u64),
        window,
        max_future: MaxFuture(args.max_future),
    }
}

/// The source as `/health` names it.
fn source_name(args: &ServeArgs, brokers: &str) -> String {
    match args.kafka.brokers {
        Some(_) => format!("kafka://{brokers}/{}", args.kafka.topic),
        None => format!("embedded://{brokers}/{}", args.kafka.topic),
    }
}

/// Says where the service answers.
fn announce(args: &ServeArgs, addr: SocketAddr, member: bool) {
    let workers = args.workers.max(1);
    if member {
        println!(
            "process {} of {}: serving http://{addr}/health and /metrics ({workers} workers); process 0 answers the API",
            args.cluster.process, args.cluster.processes,
        );
    } else {
        let each = match args.cluster.processes {
            1 => String::new(),
            n => format!(" in each of {n} processes"),
        };
        println!("emoflow serving http://{addr}/ ({workers} workers{each})");
    }
}

/// Logs what the archive wrote as the service stopped.
fn report_archive(a: &emoflow_storage::archive::ArchiveReport) {
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
