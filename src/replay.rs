//! `emoflow replay`: the views over exactly one range of a Kafka topic.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use emoflow_dataflow::{start_kafka, FilterSpec, KafkaInput, KafkaRunOptions};
use emoflow_ingest::kafka::{resolve_range, PartitionRange};
use emoflow_ingest::MaxFuture;
use emoflow_storage::archive::STOP_PATIENCE;
use emoflow_storage::{ArchiveReport, ArchiveSink};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ReplayArgs;

/// Resolves the range, runs the views over it and prints (or writes) the document.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let cfg = args.views.config();
    cfg.validate()?;
    use emoflow_ingest::kafka::OffsetSpec::{Offset, Time};
    if let (Offset(from), Offset(to)) | (Time(from), Time(to)) = (args.from, args.to) {
        if from > to {
            anyhow::bail!("--from is after --to: the range {from}..{to} is backwards");
        }
    }
    let link = crate::cluster::join(
        &args.cluster,
        args.workers,
        "replay",
        replay_settings(&args),
        None,
    )?;
    let process = link.as_ref().map(emoflow_dataflow::Link::process);
    let archive = args.archive.as_ref().map(|dir| {
        dir.as_ref()
            .map(|d| process.map_or(d.clone(), |i| d.join(format!("process-{i}"))))
    });
    let storage = crate::storage::for_replay(
        &args.storage.of_process(process),
        archive.as_ref(),
        args.topic.clone(),
    )?;
    // Process 0 decides what to read; the others read their share of the same plan.
    let plan = match &link {
        Some(l) if l.process() > 0 => None,
        _ => Some(plan(&args)?),
    };
    let (plan, link) = match link {
        Some(mut l) => (l.share_plan(plan)?, Some(l)),
        None => (plan.context("no plan")?, None),
    };
    let (ranges, filters) = (plan.ranges, plan.filters);
    let filter_ids: Vec<String> = filters.iter().map(|(id, _)| id.clone()).collect();
    let input = KafkaInput {
        brokers: args.brokers.clone(),
        topic: args.topic.clone(),
        ranges,
    };
    // In a cluster this process reads only its workers' partitions.
    let total = input.process_known_len(args.workers, args.cluster.process, args.cluster.processes);
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let ticker = std::thread::spawn({
        let (progress, done) = (progress.clone(), done.clone());
        move || {
            let bar = match total {
                Some(total) => ProgressBar::new(total).with_style(
                    ProgressStyle::with_template(
                        "{bar:40} {human_pos}/{human_len} messages {per_sec} eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                // The end is found by reaching it.
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("{spinner} {human_pos} messages {per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            while !done.load(Ordering::Relaxed) {
                bar.set_position(progress.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        }
    });
    let archive = storage.open_archive()?;
    let out = start_kafka(
        input,
        KafkaRunOptions {
            workers: args.workers.max(1),
            views: cfg,
            filters,
            progress: Some(progress),
            archive: archive.as_ref().map(ArchiveSink::tap),
            max_future: MaxFuture(args.max_future),
            ..KafkaRunOptions::default()
        },
        link,
        |_| {},
    )
    .and_then(|run| run.wait());
    // Whatever the run's end, the archive writes what the workers handed it.
    let archived = archive.map(|a| a.finish(STOP_PATIENCE));
    done.store(true, Ordering::Relaxed);
    let _ = ticker.join();
    let out = out?;
    let Some(state) = &out.state else {
        eprintln!(
            "process {}: replayed its partitions in {:.3}s; process 0 prints the views",
            args.cluster.process,
            out.elapsed.as_secs_f64()
        );
        return archive_outcome(archived.as_ref());
    };
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    crate::query::print_document(state, &cfg, &filter_ids, &args.document, sink)?;
    let secs = out.elapsed.as_secs_f64();
    tracing::info!(
        accepted = state.lifetime.total,
        rejected = state.lifetime.rejected.values().sum::<i64>(),
        seconds = format!("{secs:.3}"),
        accepted_per_sec = format!("{:.0}", state.lifetime.total as f64 / secs.max(1e-9)),
        "replay done"
    );
    if state.skipped.total > 0 {
        eprintln!(
            "warning: {} offsets were skipped: the broker dropped them before they were read ({:?})",
            state.skipped.total, state.skipped.ranges
        );
    }
    archive_outcome(archived.as_ref())
}

/// Reports what the archive wrote; fails when events could not be archived.
fn archive_outcome(archived: Option<&ArchiveReport>) -> anyhow::Result<()> {
    if let Some(a) = archived {
        eprintln!(
            "archive {}: {} events written in {} files, {} already archived",
            a.dir, a.rows_written, a.files_written, a.rows_already_archived
        );
        if a.rows_abandoned > 0 {
            anyhow::bail!(
                "{} events could not be archived: {}",
                a.rows_abandoned,
                a.error.as_deref().unwrap_or("the writer failed")
            );
        }
    }
    Ok(())
}

/// What every process of a replay reads: process 0 resolves it and sends it to the others.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ReplayPlan {
    ranges: Vec<PartitionRange>,
    filters: Vec<(String, FilterSpec)>,
}

/// What the processes of a replay must agree on beyond the plan.
fn replay_settings(args: &ReplayArgs) -> Vec<(String, String)> {
    let mut settings = crate::cluster::view_settings(&args.views.config());
    settings.push(("--topic".into(), args.topic.clone()));
    settings.push(("--archive".into(), args.archive.is_some().to_string()));
    settings
}

/// Reads the filters and resolves the range.
fn plan(args: &ReplayArgs) -> anyhow::Result<ReplayPlan> {
    let filters = crate::query::read_filters(args.filters.as_deref())?;
    let ranges =
        resolve_range(&args.brokers, &args.topic, args.from, args.to).with_context(|| {
            format!(
                "cannot resolve the range on {}/{}",
                args.brokers, args.topic
            )
        })?;
    if ranges.is_empty() {
        anyhow::bail!(
            "the topic {:?} does not exist on {}",
            args.topic,
            args.brokers
        );
    }
    for r in &ranges {
        tracing::info!(partition = r.partition, from = r.start, from_ms = ?r.from_ms, to = ?r.end, "replaying");
        if let emoflow_ingest::kafka::OffsetSpec::Offset(asked) = args.from {
            if asked < r.low {
                eprintln!(
                    "warning: partition {}: the broker no longer holds offsets {asked}..{}; replaying from {}",
                    r.partition, r.low, r.low
                );
            }
        }
    }
    Ok(ReplayPlan { ranges, filters })
}
