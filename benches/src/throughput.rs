//! `emoflow bench`: throughput and peak memory of the full set of views, per worker count.
//!
//! Each run happens in a fresh process (`emoflow bench-run`), so its peak resident memory is its
//! own. Input generation is not timed; decoding is.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use emoflow_dataflow::filter::Amount;
use emoflow_dataflow::{run_views, FilterSpec, InputData, RunOptions};
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use serde::{Deserialize, Serialize};

use crate::cli::{BenchArgs, BenchRunArgs};

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    workers: usize,
    lines: u64,
    accepted: i64,
    seconds: f64,
    peak_rss_bytes: u64,
    /// Bytes of input held in memory during the run (the `memory` source), part of the peak.
    input_bytes: u64,
}

/// Runs every worker count `runs` times and prints the medians as a table.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.source == "file" && args.input.is_none() {
        bail!("--source file needs --input FILE");
    }
    if args.source == "kafka" {
        return crate::bench_kafka::run(&args);
    }
    if !matches!(args.source.as_str(), "memory" | "file") {
        bail!("--source must be memory, file or kafka");
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut rows: Vec<(usize, RunResult)> = Vec::new();
    for &workers in &args.workers {
        let mut results = Vec::new();
        for run in 0..args.runs.max(1) {
            eprintln!(
                "bench: {workers} worker(s), run {}/{}",
                run + 1,
                args.runs.max(1)
            );
            results.push(spawn_run(&exe, &args, workers)?);
        }
        results.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        rows.push((workers, results[results.len() / 2].clone()));
    }
    print_table(&args, &rows);
    write_csv(&args.csv, &rows)?;
    write_plot(&args.csv.with_extension("svg"), &rows)
}

/// A bar chart of events/s per worker count, as SVG (readable by any browser).
fn write_plot(path: &std::path::Path, rows: &[(usize, RunResult)]) -> anyhow::Result<()> {
    let bars: Vec<(String, f64)> = rows
        .iter()
        .map(|(w, r)| (format!("{w} worker(s)"), r.lines as f64 / r.seconds))
        .collect();
    write_bars(path, "emoflow bench: events/s by worker count", &bars)
}

/// A bar chart of labelled rates, as SVG.
pub(crate) fn write_bars(
    path: &std::path::Path,
    title: &str,
    bars: &[(String, f64)],
) -> anyhow::Result<()> {
    let max = bars.iter().map(|r| r.1).fold(1.0, f64::max);
    let (width, height, bar) = (120 + 130 * bars.len(), 300.0, 90.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="340" font-family="sans-serif" font-size="12">
<text x="10" y="16">{title}</text>
"#
    );
    for (i, (label, rate)) in bars.iter().enumerate() {
        let h = rate / max * (height - 60.0);
        let x = 60.0 + i as f64 * 130.0;
        let y = height - h;
        svg += &format!(
            r#"<rect x="{x}" y="{y:.1}" width="{bar}" height="{h:.1}" fill="steelblue"/>
<text x="{x}" y="{:.1}">{:.0}</text>
<text x="{x}" y="{:.1}">{label}</text>
"#,
            y - 4.0,
            rate,
            height + 16.0
        );
    }
    svg += "</svg>\n";
    std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn spawn_run(exe: &PathBuf, args: &BenchArgs, workers: usize) -> anyhow::Result<RunResult> {
    let v = &args.views;
    let mut cmd = Command::new(exe);
    cmd.arg("bench-run")
        .args(["--source", &args.source])
        .args(["--workers", &workers.to_string()])
        .args(["--events", &args.events.to_string()])
        .args(["--users", &args.users.to_string()])
        .args(["--filters", &args.filters.to_string()])
        .args(["--top-k", &v.top_k.to_string()])
        .args(["--window", &format!("{}ms", v.window)])
        .args(["--session-gap", &format!("{}ms", v.session_gap)])
        .args(["--retention", &format!("{}ms", v.retention)]);
    if let Some(input) = &args.input {
        cmd.arg("--input").arg(input);
    }
    let out = cmd.output().context("cannot start a benchmark run")?;
    if !out.status.success() {
        bail!(
            "benchmark run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("benchmark run printed no result")
}

fn print_table(args: &BenchArgs, rows: &[(usize, RunResult)]) {
    let base = rows
        .iter()
        .find(|(w, _)| *w == 1)
        .map(|(_, r)| r.lines as f64 / r.seconds);
    println!(
        "source={} events={} users={} filters={} runs={} (median run)",
        args.source, args.events, args.users, args.filters, args.runs
    );
    println!("| workers | lines | seconds | events/s | events/s/worker | speedup | peak RSS MiB | input in memory MiB | (peak - input) bytes/event |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut implausible = false;
    for (w, r) in rows {
        let rate = r.lines as f64 / r.seconds;
        // More than linear on more workers means the runs were too short to time (start-up
        // and noise dominate), not that the workers sped each other up.
        implausible |= base.is_some_and(|b| rate / b > *w as f64 * 1.1);
        let speedup = base.map_or("-".to_owned(), |b| format!("{:.2}x", rate / b));
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "| {w} | {} | {:.3} | {:.0} | {:.0} | {speedup} | {:.0} | {:.0} | {:.0} |",
            r.lines,
            r.seconds,
            rate,
            rate / *w as f64,
            mib(r.peak_rss_bytes),
            mib(r.input_bytes),
            r.peak_rss_bytes.saturating_sub(r.input_bytes) as f64 / r.lines.max(1) as f64,
        );
    }
    if implausible {
        println!(
            "note: a speed-up above the worker count is not plausible: these runs are too short to time (start-up and noise dominate); use more --events or --runs"
        );
    }
}

/// The CSV's columns; every row has one value for each.
const CSV_HEADER: &str =
    "workers,lines,accepted,seconds,events_per_sec,events_per_sec_per_worker,peak_rss_bytes,input_bytes";

/// The rows as CSV text, with [`CSV_HEADER`] first.
fn csv_text(rows: &[(usize, RunResult)]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for (w, r) in rows {
        let rate = r.lines as f64 / r.seconds;
        out += &format!(
            "{w},{},{},{:.6},{:.0},{:.0},{},{}\n",
            r.lines,
            r.accepted,
            r.seconds,
            rate,
            rate / (*w).max(1) as f64,
            r.peak_rss_bytes,
            r.input_bytes
        );
    }
    out
}

fn write_csv(path: &PathBuf, rows: &[(usize, RunResult)]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, csv_text(rows))
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// `n` filters of varied shapes, as a subscriber population might hold.
pub fn synthetic_filters(n: usize) -> Vec<(String, FilterSpec)> {
    let emojis = emoflow_ingest::generator::EMOJIS;
    (0..n)
        .map(|i| {
            let mut spec = FilterSpec::default();
            match i % 5 {
                0 => spec.emojis = Some(vec![emojis[i % emojis.len()].to_owned()]),
                1 => {
                    spec.event_types = Some(vec!["purchase".into()]);
                    spec.min_amount = Some(Amount((i * 5) as f64));
                }
                2 => spec.tiers = Some(vec!["vip".into()]),
                3 => {
                    spec.user_ids = (0..20)
                        .map(|u| format!("user-{}", u * 7 + i))
                        .collect::<Vec<_>>()
                        .into()
                }
                _ => {
                    spec.event_types = Some(vec!["emoji".into(), "click".into()]);
                    spec.tiers = Some(vec!["pro".into(), "free".into()]);
                }
            }
            (format!("f{i}"), spec)
        })
        .collect()
}

/// One run in this process; prints its [`RunResult`] as JSON.
pub fn run_one(args: BenchRunArgs) -> anyhow::Result<()> {
    let mut input_bytes = 0;
    let input = match args.source.as_str() {
        "file" => InputData::File(args.input.context("--source file needs --input")?),
        _ => {
            let mut buf = Vec::with_capacity(args.events as usize * 120);
            Generator::new(GeneratorConfig {
                users: args.users,
                ..GeneratorConfig::default()
            })
            .write_ndjson(args.events, &mut buf, |_| {})?;
            input_bytes = buf.len() as u64;
            InputData::Memory(Arc::from(buf.into_boxed_slice()))
        }
    };
    let opts = RunOptions {
        workers: args.workers,
        views: args.views.config(),
        filters: synthetic_filters(args.filters),
        ..RunOptions::default()
    };
    let out = run_views(input, opts, None, None)?;
    let accepted = out
        .state
        .as_ref()
        .context("the run returned no views")?
        .count(&emoflow_dataflow::update::CountKey::Total);
    let result = RunResult {
        workers: args.workers,
        lines: out.lines,
        accepted,
        seconds: out.elapsed.as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
        input_bytes,
    };
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}

/// This process's peak resident memory (Linux `VmHWM`), 0 where unknown.
fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_csv_row_has_a_value_for_each_column() {
        let r = RunResult {
            workers: 2,
            lines: 1000,
            accepted: 990,
            seconds: 0.5,
            peak_rss_bytes: 1 << 20,
            input_bytes: 1 << 10,
        };
        let text = csv_text(&[(1, r.clone()), (2, r)]);
        let columns = CSV_HEADER.split(',').count();
        for line in text.lines() {
            assert_eq!(line.split(',').count(), columns, "{line}");
        }
        assert_eq!(text.lines().count(), 3);
    }
}
