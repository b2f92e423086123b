//! `emoflow query`: the views over one NDJSON file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context};
use emoflow_dataflow::snapshot::ViewState;
use emoflow_dataflow::{
    parse_filter_list, run_views, write_document, DeadLetter, InputData, RunOptions, ViewConfig,
};

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{DocumentArgs, QueryArgs};

/// Runs the views over the file and prints the document on stdout.
pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let filters = read_filters(args.filters.as_deref())?;
    let cfg = args.views.config();
    let filter_ids: Vec<String> = filters.iter().map(|(id, _)| id.clone()).collect();
    let progress = Arc::new(AtomicU64::new(0));
    let opts = RunOptions {
        workers: args.workers,
        batch_lines: args.batch_lines.max(1),
        views: cfg,
        filters,
        progress: Some(progress.clone()),
        ..RunOptions::default()
    };
    let input = InputData::open_path(&args.input)?;
    let link = crate::cluster::join(
        &args.cluster,
        args.workers,
        "query",
        query_settings(&input, &cfg, &opts.filters)?,
        None,
    )?;
    // This process's share of the input: in a cluster every process reads only its workers'.
    let share = input.process_share(&opts, args.cluster.process, args.cluster.processes)?;
    let unit = match &input {
        InputData::Parquet(_) => Unit::Rows,
        _ => Unit::Bytes,
    };
    let bar = ProgressTicker::start(share, progress, unit);
    let (tx, rx) = mpsc::channel();
    let writer = args
        .dead_letters
        .clone()
        .map(|path| std::thread::spawn(move || write_dead_letters(&path, rx)));
    let out = run_views(input, opts, writer.as_ref().map(|_| tx), link);
    bar.finish();
    let out = out?;
    if let Some(handle) = writer {
        match handle.join() {
            Ok(result) => result?,
            Err(_) => bail!("the dead-letter writer failed"),
        }
    }
    let Some(state) = &out.state else {
        eprintln!(
            "process {}: read {} lines of its share in {:.3}s; process 0 prints the views",
            args.cluster.process,
            out.lines,
            out.elapsed.as_secs_f64()
        );
        return Ok(());
    };
    let stdout = std::io::stdout().lock();
    print_document(state, &cfg, &filter_ids, &args.document, stdout)?;
    let total = state.lifetime.total;
    let rejected: i64 = state.lifetime.rejected.values().sum();
    let secs = out.elapsed.as_secs_f64();
    tracing::info!(
        lines = out.lines,
        accepted = total,
        rejected,
        seconds = format!("{secs:.3}"),
        lines_per_sec = format!("{:.0}", out.lines as f64 / secs.max(1e-9)),
        workers = args.workers,
        "query done"
    );
    if rejected > 0 && args.dead_letters.is_none() {
        tracing::warn!("{rejected} lines were rejected; --dead-letters FILE keeps them with their line numbers");
    }
    Ok(())
}

/// Writes the views document of `state` to `out`, one user's sessions at a time (a million
/// users' document is never held whole), through a large buffer, and a final newline.
pub fn print_document(
    state: &ViewState,
    cfg: &ViewConfig,
    filter_ids: &[String],
    args: &DocumentArgs,
    out: impl Write,
) -> anyhow::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let shown = args.sessions.shown();
    write_document(state, cfg, filter_ids, shown, args.pretty, &mut out)
        .context("cannot write the views document")?;
    writeln!(out)?;
    out.flush().context("cannot write the views document")?;
    Ok(())
}

/// The filters of a `--filters` file (a JSON array), none without one.
pub fn read_filters(
    path: Option<&Path>,
) -> anyhow::Result<Vec<(String, emoflow_dataflow::FilterSpec)>> {
    let Some(path) = path else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read filters from {}", path.display()))?;
    parse_filter_list(&text).with_context(|| format!("in {}", path.display()))
}

/// What the processes of a cluster running `query` must agree on: the views, the filters, and
/// the input (by its size: every process reads its share of the same file).
fn query_settings(
    input: &InputData,
    cfg: &emoflow_dataflow::ViewConfig,
    filters: &[(String, emoflow_dataflow::FilterSpec)],
) -> anyhow::Result<Vec<(String, String)>> {
    use std::hash::{Hash as _, Hasher as _};
    let mut settings = crate::cluster::view_settings(cfg);
    let size = match input {
        InputData::Parquet(p) => format!("{} rows", p.total_rows()),
        InputData::File(path) => format!(
            "{} bytes",
            std::fs::metadata(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .len()
        ),
        InputData::Memory(b) => format!("{} bytes", b.len()),
    };
    settings.push(("--input".into(), size));
    let mut digest = std::hash::DefaultHasher::new();
    filters.hash(&mut digest);
    settings.push((
        "--filters".into(),
        format!(
            "{} filters (digest {:016x})",
            filters.len(),
            digest.finish()
        ),
    ));
    Ok(settings)
}

/// Writes dead letters as NDJSON until the sender side closes.
pub fn write_dead_letters(path: &Path, rx: mpsc::Receiver<DeadLetter>) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    for dl in rx {
        let record = serde_json::json!({
            "line": dl.line.unwrap_or(0),
            "reason": dl.reason,
            "detail": dl.detail,
            "payload": dl.payload,
        });
        serde_json::to_writer(&mut w, &record)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// What a progress bar counts.
#[derive(Debug, Clone, Copy)]
pub enum Unit {
    /// Bytes of input.
    Bytes,
    /// Rows (Parquet).
    Rows,
}

/// A progress bar over the input, fed by the workers' counter (shown only on a terminal).
pub struct ProgressTicker {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProgressTicker {
    /// Starts a bar over `total` units; workers add to `read`.
    pub fn start(total: u64, read: Arc<AtomicU64>, unit: Unit) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let template = match unit {
            Unit::Bytes => {
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            Unit::Rows => "{bar:40} {human_pos}/{human_len} rows {per_sec} eta {eta}",
        };
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let thread = std::thread::spawn({
            let done = done.clone();
            move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(read.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            }
        });
        ProgressTicker {
            done,
            thread: Some(thread),
        }
    }

    /// Stops and clears the bar.
    pub fn finish(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
