//! `emoflow bench` end to end: every source, several process and worker counts, and what it
//! writes (the table, the CSV, the SVG plot), checked for consistency rather than speed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

mod support;

use std::path::Path;
use std::process::Command;

/// Runs `emoflow bench` with `args`, writing its CSV into `dir`; returns standard output.
fn bench(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .arg("bench")
        .args(args)
        .arg("--csv")
        .arg(dir.join("bench.csv"))
        .env("EMOFLOW_LOG", "warn")
        .output()
        .expect("emoflow bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "emoflow bench {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The CSV's rows as column name → value maps.
fn csv_rows(dir: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let text = std::fs::read_to_string(dir.join("bench.csv")).expect("the CSV was written");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|l| {
            let values: Vec<&str> = l.split(',').collect();
            assert_eq!(values.len(), header.len(), "{l}");
            header
                .iter()
                .zip(values)
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn number(row: &std::collections::BTreeMap<String, String>, column: &str) -> f64 {
    row[column]
        .parse()
        .unwrap_or_else(|_| panic!("{column} = {:?} is not a number", row[column]))
}

/// Checks what every row must hold whatever the source: all events, a rate that is events over
/// seconds, memory, and a freshness distribution in order.
fn check_rows(dir: &Path, events: f64, configurations: &[(f64, f64)]) {
    let rows = csv_rows(dir);
    let got: Vec<(f64, f64)> = rows
        .iter()
        .map(|r| (number(r, "processes"), number(r, "workers")))
        .collect();
    assert_eq!(got, configurations);
    for r in &rows {
        assert_eq!(number(r, "events"), events, "{r:?}");
        let rate = number(r, "events") / number(r, "seconds");
        assert!((number(r, "events_per_sec") - rate).abs() <= rate * 0.001 + 1.0);
        let threads = number(r, "processes") * number(r, "workers");
        let per_worker = rate / threads;
        assert!(
            (number(r, "events_per_sec_per_worker") - per_worker).abs() <= per_worker * 0.001 + 1.0
        );
        assert!(number(r, "peak_rss_bytes") > 1e6, "{r:?}");
        assert!(number(r, "freshness_samples") >= 1.0, "{r:?}");
        let (p50, p99, max) = (
            number(r, "freshness_p50_ms"),
            number(r, "freshness_p99_ms"),
            number(r, "freshness_max_ms"),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max + 0.01, "{r:?}");
        assert!(max <= number(r, "seconds") * 1000.0 + 1.0, "{r:?}");
    }
    let svg = std::fs::read_to_string(dir.join("bench.svg")).expect("the plot was written");
    assert!(svg.starts_with("<svg"));
    for (p, w) in configurations {
        assert!(svg.contains(&format!("{p}×{w}")), "{p}×{w} not in the plot");
    }
}

#[test]
fn memory_source_over_processes_and_workers() {
    let dir = support::temp_dir("bench-memory");
    let stdout = bench(
        dir.as_path(),
        &[
            "--source",
            "memory",
            "--events",
            "30000",
            "--workers",
            "1,2",
            "--processes",
            "1,2",
            "--runs",
            "1",
        ],
    );
    assert!(stdout.contains("| 2×2 | 10000 | 30000 |"), "{stdout}");
    assert!(stdout.contains("| 1×1 | 10000 | 30000 |") && stdout.contains("| 1.00x |"));
    check_rows(
        dir.as_path(),
        30000.0,
        &[(1.0, 1.0), (1.0, 2.0), (2.0, 1.0), (2.0, 2.0)],
    );
    // Every process holds the generated input: the cluster's rows count both copies.
    let rows = csv_rows(dir.as_path());
    assert!(number(&rows[2], "input_bytes") > 1.9 * number(&rows[0], "input_bytes"));
}

#[test]
fn user_counts_are_measured_alternately_and_paired_with_the_first() {
    let dir = support::temp_dir("bench-users");
    let stdout = bench(
        dir.as_path(),
        &[
            "--source",
            "memory",
            "--events",
            "20000",
            "--users",
            "100,5000",
            "--workers",
            "2",
            "--runs",
            "2",
        ],
    );
    assert!(stdout.contains("users=100,5000"), "{stdout}");
    assert!(stdout.contains("| 1×2 | 100 | 20000 |"), "{stdout}");
    assert!(stdout.contains("| 1×2 | 5000 | 20000 |"), "{stdout}");
    let paired = stdout
        .lines()
        .find(|l| l.starts_with("paired: 1×2, 5000 users take "))
        .unwrap_or_else(|| panic!("no paired line: {stdout}"));
    assert!(
        paired.contains("of 100 users (median of 2 runs"),
        "{paired}"
    );
    check_rows(dir.as_path(), 20000.0, &[(1.0, 2.0), (1.0, 2.0)]);
    let users: Vec<f64> = csv_rows(dir.as_path())
        .iter()
        .map(|r| number(r, "users"))
        .collect();
    assert_eq!(users, [100.0, 5000.0]);
}

#[test]
fn file_source_counts_every_line_of_the_file() {
    let dir = support::temp_dir("bench-file");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad_lines.ndjson");
    let lines = std::fs::read_to_string(&fixture)
        .expect("the fixture")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    bench(
        dir.as_path(),
        &[
            "--source",
            "file",
            "--input",
            fixture.to_str().expect("a UTF-8 path"),
            "--workers",
            "2",
            "--runs",
            "2",
        ],
    );
    check_rows(dir.as_path(), lines as f64, &[(1.0, 2.0)]);
}

#[test]
fn kafka_source_pairs_the_pipeline_with_a_bare_consumer_and_the_archive() {
    let dir = support::temp_dir("bench-kafka");
    let stdout = bench(
        dir.as_path(),
        &[
            "--source",
            "kafka",
            "--events",
            "20000",
            "--partitions",
            "4",
            "--workers",
            "1",
            "--processes",
            "1,2",
            "--runs",
            "1",
            "--archive",
        ],
    );
    assert!(stdout.contains("bare consumer msgs/s"), "{stdout}");
    check_rows(dir.as_path(), 20000.0, &[(1.0, 1.0), (2.0, 1.0)]);
    for r in csv_rows(dir.as_path()) {
        let ratio = number(&r, "pipeline_over_bare");
        assert!(
            ratio > 0.0 && number(&r, "bare_msgs_per_sec") > 0.0,
            "{r:?}"
        );
        assert!(number(&r, "archive_events_per_sec") > 0.0, "{r:?}");
        // Parquet with zstd: tens of bytes an event, not hundreds.
        let bytes = number(&r, "archive_bytes_per_event");
        assert!(bytes > 1.0 && bytes < 200.0, "{r:?}");
    }
}

#[test]
fn bad_arguments_are_named() {
    let dir = support::temp_dir("bench-args");
    for (args, expected) in [
        (&["--source", "file"][..], "--source file needs --input"),
        (
            &["--source", "disk"][..],
            "--source must be memory, file or kafka",
        ),
        (&["--archive"][..], "--archive measures a Kafka drain"),
        (&["--processes", "0"][..], "from 1 to"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
            .arg("bench")
            .args(args)
            .arg("--csv")
            .arg(dir.as_path().join("bench.csv"))
            .output()
            .expect("emoflow bench runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn a_failing_run_is_reported_with_its_log_and_stops_the_others() {
    let dir = support::temp_dir("bench-failing");
    // Starts like Parquet, is not: every process of the run fails to read it.
    let bad = dir.join("bad.parquet");
    std::fs::write(&bad, b"PAR1 and then nothing a Parquet reader understands").unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args([
            "bench",
            "--source",
            "file",
            "--workers",
            "1",
            "--processes",
            "2",
        ])
        .arg("--input")
        .arg(&bad)
        .arg("--csv")
        .arg(dir.join("bench.csv"))
        .output()
        .expect("emoflow bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("benchmark process 0 failed"), "{stderr}");
    assert!(stderr.contains("bad.parquet"), "{stderr}");
    // Nobody waited for the cluster to form (that would take the join's minute).
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert!(!dir.join("bench.csv").exists());
}
