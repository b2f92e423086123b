//! How `emoflow bench` shows its results: a markdown table on standard output, a CSV file, and
//! an SVG plot drawn with plotters (events/s per configuration, and the freshness beside it).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::run::FreshnessMs;

/// One configuration's medians.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Processes.
    pub processes: usize,
    /// Worker threads in each process.
    pub workers: usize,
    /// Distinct users of the generated events (`None` for a file).
    pub users: Option<u32>,
    /// Inputs handled per run (accepted or rejected).
    pub events: u64,
    /// Seconds of the median run.
    pub seconds: f64,
    /// Peak resident memory of the median run, all processes together.
    pub peak_rss_bytes: u64,
    /// Input held in memory by the median run, all processes together (part of the peak).
    pub input_bytes: u64,
    /// How fresh the views stayed in the median run.
    pub freshness: FreshnessMs,
    /// `--source kafka`: the bare consumer's messages/s and the pipeline's rate against it,
    /// paired by run (medians).
    pub bare: Option<(f64, f64)>,
    /// `--archive`: events/s into views and archive, its cost against the views alone (paired),
    /// and the archive's bytes per event (medians).
    pub archive: Option<(f64, f64, f64)>,
}

impl Row {
    /// Worker threads in all.
    pub fn threads(&self) -> usize {
        self.processes * self.workers
    }

    /// Events per second.
    pub fn rate(&self) -> f64 {
        per_second(self.events, self.seconds)
    }

    /// `P×W`, as the table and plot label a configuration.
    fn label(&self) -> String {
        format!("{}×{}", self.processes, self.workers)
    }
}

/// `count` over `seconds` (a run too short to time still gives a finite rate).
pub fn per_second(count: u64, seconds: f64) -> f64 {
    count as f64 / seconds.max(f64::MIN_POSITIVE)
}

/// The rate of the one-process, one-worker row of the same users as `of`, when measured: the
/// base of its speed-up.
fn base_rate(rows: &[Row], of: &Row) -> Option<f64> {
    rows.iter()
        .find(|r| r.threads() == 1 && r.users == of.users)
        .map(Row::rate)
}

/// `1000000` as `1M`, `10000` as `10k`: user counts in labels.
fn short_count(n: u32) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// How the plot labels `r`: `P×W`, and its users when the rows differ in them.
fn plot_label(rows: &[Row], r: &Row) -> String {
    match r.users {
        Some(u) if rows.iter().any(|o| o.users != r.users) => {
            format!("{} {}u", r.label(), short_count(u))
        }
        _ => r.label(),
    }
}

const MIB: f64 = (1 << 20) as f64;

/// The table, as markdown.
pub fn table(rows: &[Row]) -> String {
    let kafka = rows.iter().any(|r| r.bare.is_some());
    let archive = rows.iter().any(|r| r.archive.is_some());
    let mut out = String::from(
        "| processes × workers | users | events | seconds | events/s | events/s per worker | speed-up over 1×1 | peak RSS MiB | input in memory MiB | freshness p50 ms | p90 ms | p99 ms | max ms |",
    );
    let mut rule =
        String::from("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    if kafka {
        out += " bare consumer msgs/s | pipeline / bare |";
        rule += "---:|---:|";
    }
    if archive {
        out += " + archive events/s | archive cost | archive bytes/event |";
        rule += "---:|---:|---:|";
    }
    out += "\n";
    out += &rule;
    out += "\n";
    for r in rows {
        let rate = r.rate();
        let base = base_rate(rows, r);
        let f = &r.freshness;
        out += &format!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.label(),
            r.users.map_or("-".to_owned(), |u| u.to_string()),
            r.events,
            r.seconds,
            rate,
            rate / r.threads() as f64,
            base.map_or("-".to_owned(), |b| format!("{:.2}x", rate / b)),
            r.peak_rss_bytes as f64 / MIB,
            r.input_bytes as f64 / MIB,
            f.p50,
            f.p90,
            f.p99,
            f.max,
        );
        if kafka {
            out += &match r.bare {
                Some((bare, ratio)) => format!(" {bare:.0} | {:.0}% |", ratio * 100.0),
                None => " - | - |".to_owned(),
            };
        }
        if archive {
            out += &match r.archive {
                Some((a, cost, bytes)) => {
                    format!(" {a:.0} | {:.1}% | {bytes:.1} |", cost * 100.0)
                }
                None => " - | - | - |".to_owned(),
            };
        }
        out += "\n";
    }
    out
}

/// Warnings about figures that cannot be right on a machine of `cores` cores (0: unknown),
/// worded for the reader of the table: a speed-up over 1×1 beyond the worker threads, or beyond
/// the cores, means the runs were too short to time, not that workers sped each other up.
pub fn implausible(rows: &[Row], cores: usize) -> Vec<String> {
    rows.iter()
        .filter_map(|r| {
            let speed_up = r.rate() / base_rate(rows, r)?;
            let bound = match cores {
                0 => r.threads(),
                c => r.threads().min(c),
            };
            (speed_up > bound as f64 * 1.1).then(|| {
                format!(
                    "{}: a speed-up of {speed_up:.2}x with {} worker thread(s) on {cores} core(s) is not plausible: these runs are too short to time (start-up and noise dominate); use more --events or --runs",
                    r.label(),
                    r.threads(),
                )
            })
        })
        .collect()
}

/// The CSV's columns; every row has one value for each (empty where not measured).
pub const CSV_HEADER: &str = "processes,workers,users,events,seconds,events_per_sec,events_per_sec_per_worker,peak_rss_bytes,input_bytes,freshness_samples,freshness_p50_ms,freshness_p90_ms,freshness_p99_ms,freshness_max_ms,bare_msgs_per_sec,pipeline_over_bare,archive_events_per_sec,archive_cost,archive_bytes_per_event";

/// The rows as CSV text, [`CSV_HEADER`] first.
pub fn csv(rows: &[Row]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for r in rows {
        let f = &r.freshness;
        let (bare, ratio) = r.bare.map_or((String::new(), String::new()), |(b, q)| {
            (format!("{b:.0}"), format!("{q:.4}"))
        });
        let (a, cost, bytes) = r.archive.map_or(
            (String::new(), String::new(), String::new()),
            |(a, c, b)| (format!("{a:.0}"), format!("{c:.4}"), format!("{b:.2}")),
        );
        out += &format!(
            "{},{},{},{},{:.6},{:.0},{:.0},{},{},{},{:.3},{:.3},{:.3},{:.3},{bare},{ratio},{a},{cost},{bytes}\n",
            r.processes,
            r.workers,
            r.users.map_or(String::new(), |u| u.to_string()),
            r.events,
            r.seconds,
            r.rate(),
            r.rate() / r.threads() as f64,
            r.peak_rss_bytes,
            r.input_bytes,
            f.samples,
            f.p50,
            f.p90,
            f.p99,
            f.max,
        );
    }
    out
}

/// Writes `text` to `path`, creating its directory.
pub fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// The plot as SVG text: events/s per configuration on the left (with the bare consumer
/// beside the pipeline for Kafka), the freshness percentiles on the right.
pub fn plot(title: &str, rows: &[Row]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(560);
        let mut rates = vec![("pipeline events/s", rows.iter().map(Row::rate).collect())];
        if rows.iter().any(|r| r.bare.is_some()) {
            rates.push((
                "bare consumer msgs/s",
                rows.iter().map(|r| r.bare.map_or(0.0, |b| b.0)).collect(),
            ));
        }
        if rows.iter().any(|r| r.archive.is_some()) {
            rates.push((
                "views + archive events/s",
                rows.iter()
                    .map(|r| r.archive.map_or(0.0, |a| a.0))
                    .collect(),
            ));
        }
        bars(&left, "throughput (events/s)", rows, &rates)?;
        let fresh = vec![
            (
                "p50",
                rows.iter().map(|r| r.freshness.p50).collect::<Vec<_>>(),
            ),
            ("p99", rows.iter().map(|r| r.freshness.p99).collect()),
            ("max", rows.iter().map(|r| r.freshness.max).collect()),
        ];
        bars(&right, "freshness (ms, input read → views)", rows, &fresh)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// plotters' errors carry the backend's error type; this keeps the message.
fn plot_error<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the plot: {e}")
}

/// A grouped bar chart: one group per row, one bar per series.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    rows: &[Row],
    series: &[(&str, Vec<f64>)],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.15;
    let labels: Vec<String> = rows.iter().map(|r| plot_label(rows, r)).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..rows.len().max(1) as f64, 0f64..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len().max(1) * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            // Label each group once, at its middle.
            if (x - i as f64 - 0.5).abs() < 1e-6 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("processes × workers")
        .y_label_formatter(&|y| format_si(*y))
        .draw()
        .map_err(plot_error)?;
    let palette = [BLUE.mix(0.8), RED.mix(0.6), GREEN.mix(0.7)];
    let width = 0.8 / series.len().max(1) as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let color = palette[s % palette.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let x0 = i as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.95, *v)], color.filled())
            }))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// `1.2M`, `850k`, `12.5`: short axis labels.
fn format_si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(processes: usize, workers: usize, seconds: f64) -> Row {
        Row {
            processes,
            workers,
            users: Some(10_000),
            events: 1_000_000,
            seconds,
            peak_rss_bytes: 300 << 20,
            input_bytes: 100 << 20,
            freshness: FreshnessMs {
                samples: 10,
                p50: 20.0,
                p90: 30.0,
                p99: 40.0,
                max: 41.0,
            },
            bare: (workers == 2).then_some((2e6, 0.5)),
            archive: None,
        }
    }

    #[test]
    fn every_csv_row_has_a_value_for_each_column() {
        let text = csv(&[row(1, 1, 1.0), row(1, 2, 0.6), row(2, 1, 0.7)]);
        let columns = CSV_HEADER.split(',').count();
        for line in text.lines() {
            assert_eq!(line.split(',').count(), columns, "{line}");
        }
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn the_table_shows_rates_and_speed_ups_over_one_worker() {
        let text = table(&[row(1, 1, 1.0), row(2, 1, 0.625)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[2].starts_with("| 1×1 | 10000 | 1000000 | 1.000 | 1000000 | 1000000 | 1.00x |")
        );
        assert!(
            lines[3].starts_with("| 2×1 | 10000 | 1000000 | 0.625 | 1600000 | 800000 | 1.60x |")
        );
        assert!(implausible(&[row(1, 1, 1.0), row(2, 1, 0.625)], 2).is_empty());
    }

    #[test]
    fn a_speed_up_beyond_the_workers_is_called_implausible() {
        let warnings = implausible(&[row(1, 1, 1.0), row(1, 2, 0.2)], 8);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].starts_with("1×2: a speed-up of 5.00x"),
            "{warnings:?}"
        );
        // Four threads on two cores cannot go three times as fast as one.
        let rows = [row(1, 1, 1.0), row(2, 2, 0.33)];
        assert_eq!(implausible(&rows, 2).len(), 1);
        assert!(implausible(&rows, 4).is_empty());
    }

    #[test]
    fn each_user_count_has_its_own_base_and_label() {
        let mut million = row(1, 1, 4.0);
        million.users = Some(1_000_000);
        let mut million_2 = row(1, 2, 2.0);
        million_2.users = Some(1_000_000);
        let rows = [row(1, 1, 1.0), million, million_2];
        let text = table(&rows);
        // 1×2 at a million users is twice 1×1 at a million, not half of 1×1 at 10,000.
        assert!(
            text.contains("| 1×2 | 1000000 | 1000000 | 2.000 | 500000 | 250000 | 2.00x |"),
            "{text}"
        );
        assert_eq!(plot_label(&rows, &rows[2]), "1×2 1Mu");
        assert_eq!(plot_label(&rows[..1], &rows[0]), "1×1");
        let svg = plot("bench", &rows).unwrap();
        assert!(svg.contains("1×1 10ku"));
    }

    #[test]
    fn the_plot_is_an_svg_naming_every_configuration() {
        let svg = plot("bench", &[row(1, 1, 1.0), row(1, 2, 0.6)]).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for label in ["1×1", "1×2", "bare consumer msgs/s", "p99"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(svg.matches("<rect").count() > 6);
    }
}
