//! The Parquet archive written while the views read a topic on the embedded broker: every
//! accepted event exactly once (checked row by row against the produced lines), after a second
//! read of the same range, after a simulated crash (hour files lost, half-written files left),
//! and across a writer failure that must pause reading rather than drop events; the views over
//! the archive equal the oracle's. (The binary's end-to-end tests check the same against tansu,
//! with DuckDB and pyarrow as the readers.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use emoflow_dataflow::{
    run_views, start_kafka, InputData, KafkaInput, KafkaRun, KafkaRunOptions, RunOptions,
    ViewConfig, ViewsDocument,
};
use emoflow_fixtures::{diff, expected, Params};
use emoflow_ingest::archive_format::{hour_dir, hour_of};
use emoflow_ingest::decode_event;
use emoflow_ingest::generator::{Generator, GeneratorConfig};
use emoflow_ingest::kafka::{resolve_range, BulkProducer, EmbeddedBroker, OffsetSpec};
use emoflow_ingest::parquet_source::ParquetInput;
use emoflow_storage::archive::STOP_PATIENCE;
use emoflow_storage::{ArchiveConfig, ArchiveReport, ArchiveSink};

const PARTITIONS: usize = 4;
const BAD: [&str; 3] = ["not json", r#"{"emoji":"x","ts":1}"#, "[1,2]"];

fn lines() -> Vec<Vec<u8>> {
    let mut buf = Vec::new();
    Generator::new(GeneratorConfig {
        users: 40,
        step_ms: 5_000.0,
        ..Default::default()
    })
    .write_ndjson(4000, &mut buf, |_| {})
    .unwrap();
    let mut lines: Vec<Vec<u8>> = buf.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    lines.retain(|l| !l.is_empty());
    for (i, bad) in BAD.iter().enumerate() {
        lines.insert(i * 900 + 5, bad.as_bytes().to_vec());
    }
    lines
}

struct Topic {
    _broker: EmbeddedBroker,
    brokers: String,
    lines: Vec<Vec<u8>>,
}

/// Line i goes to partition i % 4, at offset i / 4.
fn topic() -> Topic {
    let broker = EmbeddedBroker::start().unwrap();
    let brokers = broker.bootstrap_servers().to_owned();
    broker.create_topic("events", PARTITIONS as i32).unwrap();
    let lines = lines();
    let producer = BulkProducer::new(&brokers, "events").unwrap();
    for (i, line) in lines.iter().enumerate() {
        producer
            .send(&i.to_le_bytes(), line, Some((i % PARTITIONS) as i32), None)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    Topic {
        _broker: broker,
        brokers,
        lines,
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emoflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Starts reading the whole topic with 2 workers, archiving into `dir` in ranges of
/// `roll_rows`.
fn start_archiving(
    t: &Topic,
    dir: &Path,
    roll_rows: usize,
    batch_messages: usize,
) -> (KafkaRun, ArchiveSink) {
    let ranges = resolve_range(
        &t.brokers,
        "events",
        OffsetSpec::Earliest,
        OffsetSpec::Latest,
    )
    .unwrap();
    let sink = ArchiveSink::open(ArchiveConfig {
        roll_rows,
        ..ArchiveConfig::new(dir.to_owned(), "events".into())
    })
    .unwrap();
    let opts = KafkaRunOptions {
        workers: 2,
        batch_messages,
        archive: Some(sink.tap()),
        ..Default::default()
    };
    let input = KafkaInput {
        brokers: t.brokers.clone(),
        topic: "events".into(),
        ranges,
    };
    (start_kafka(input, opts, None, |_| {}).unwrap(), sink)
}

/// Reads the whole topic, archiving; what the archive did.
fn archive(t: &Topic, dir: &Path, roll_rows: usize) -> ArchiveReport {
    let (run, sink) = start_archiving(t, dir, roll_rows, 300);
    run.wait().unwrap();
    sink.finish(STOP_PATIENCE)
}

/// Every archived row as `(partition, offset) -> normalised event`, failing on a duplicate.
fn archived(dir: &Path) -> BTreeMap<(i32, i64), serde_json::Value> {
    let input = ParquetInput::open(dir).unwrap();
    assert!(input.problems().is_empty(), "{:?}", input.problems());
    let mut rows = BTreeMap::new();
    for g in input.row_groups() {
        input
            .read(g, |row| {
                let e = row.event.expect("archived rows are valid events");
                let old = rows.insert((row.partition, row.offset), e.to_json());
                assert!(old.is_none(), "({}, {}) twice", row.partition, row.offset);
            })
            .unwrap();
    }
    rows
}

/// What the archive must hold: every accepted line at its position.
fn wanted(lines: &[Vec<u8>]) -> BTreeMap<(i32, i64), serde_json::Value> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let e = decode_event(l, None).ok()?;
            Some((
                ((i % PARTITIONS) as i32, (i / PARTITIONS) as i64),
                e.to_json(),
            ))
        })
        .collect()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_accepted_event_is_archived_once_across_rereads_and_crashes() {
    let t = topic();
    let want = wanted(&t.lines);
    let dir = temp_dir("archive-once");
    let first = archive(&t, &dir, 700);
    assert_eq!(first.rows_written as usize, want.len());
    assert_eq!(first.rows_already_archived, 0);
    assert_eq!(archived(&dir), want);

    // The same range again, rolled differently: nothing new.
    let again = archive(&t, &dir, 450);
    assert_eq!(again.rows_written, 0);
    assert_eq!(again.rows_already_archived as usize, want.len());
    assert_eq!(archived(&dir), want);

    // A crash: some hour files of some ranges never renamed, half-written files left behind.
    let all = files(&dir);
    let lost: Vec<&PathBuf> = all.iter().step_by(3).collect();
    for p in &lost {
        let tmp = p.with_file_name(format!(".{}.tmp", p.file_name().unwrap().to_string_lossy()));
        std::fs::rename(p, &tmp).unwrap();
        // Half written: cut short.
        let f = std::fs::OpenOptions::new().write(true).open(&tmp).unwrap();
        f.set_len(100).unwrap();
    }
    assert!(archived_count(&dir) < want.len());
    let after_crash = archive(&t, &dir, 700);
    assert_eq!(after_crash.leftovers_removed, lost.len());
    assert!(after_crash.rows_written > 0);
    assert_eq!(
        after_crash.rows_written + after_crash.rows_already_archived,
        want.len() as u64
    );
    assert_eq!(archived(&dir), want);
    assert!(
        files(&dir)
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "parquet")),
        "leftovers remain: {:?}",
        files(&dir)
    );

    // The views over the archive equal the oracle's over the accepted lines.
    let accepted: Vec<&[u8]> = t
        .lines
        .iter()
        .filter(|l| decode_event(l, None).is_ok())
        .map(Vec::as_slice)
        .collect();
    let oracle = expected(&accepted, &[], Params::default());
    for workers in [1, 3] {
        let input = Arc::new(ParquetInput::open(&dir).unwrap());
        let out = run_views(
            InputData::Parquet(input),
            RunOptions {
                workers,
                ..Default::default()
            },
            None,
            None,
        )
        .unwrap();
        let doc = ViewsDocument::render(out.state.as_ref().unwrap(), &ViewConfig::default(), &[]);
        if let Some(d) = diff(&serde_json::to_value(&doc).unwrap(), &oracle) {
            panic!("{workers} workers: {d}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn archived_count(dir: &Path) -> usize {
    ParquetInput::open(dir).unwrap().total_rows() as usize
}

#[test]
fn a_failing_writer_pauses_reading_and_loses_nothing() {
    let t = topic();
    let want = wanted(&t.lines);
    let dir = temp_dir("archive-blocked");
    // A file where the newest events' date directory must go: writing them fails until it
    // is removed.
    let newest = want
        .values()
        .map(|e| e["ts"].as_i64().unwrap())
        .max()
        .unwrap();
    let date = hour_dir(hour_of(newest));
    let blocker = dir.join(date.split('/').next().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&blocker, b"in the way").unwrap();

    let (run, sink) = start_archiving(&t, &dir, 200, 100);
    let monitor = sink.monitor();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while monitor.report().error.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        monitor.must_wait(),
        "readers must pause while the writer fails"
    );
    std::fs::remove_file(&blocker).unwrap();
    run.wait().unwrap();
    let report = sink.finish(STOP_PATIENCE);
    assert_eq!(report.error, None);
    assert_eq!(report.rows_abandoned, 0);
    assert_eq!(report.rows_written as usize, want.len());
    assert_eq!(archived(&dir), want);
    let seen: BTreeSet<i32> = archived(&dir).keys().map(|(p, _)| *p).collect();
    assert_eq!(seen.len(), PARTITIONS);
    let _ = std::fs::remove_dir_all(&dir);
}
