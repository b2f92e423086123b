//! `emoflow query` on the checked-in fixtures prints exactly their checked-in expected views,
//! for 1 and 2 workers; the expected files in turn equal the oracle's output.
//!
//! After changing a fixture, `UPDATE_FIXTURES=1 cargo test --test fixtures` rewrites the
//! expected files from the oracle (never from emoflow itself).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail by panicking.

use std::path::Path;
use std::process::Command;

use emoflow_fixtures::{diff, expected, fixtures_dir, Params};
use serde_json::Value;

const FIXTURES: [&str; 4] = ["ties", "late_sessions", "aliases", "bad_lines"];

fn filters(dir: &Path) -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(dir.join("filters.json")).unwrap();
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    list.into_iter()
        .enumerate()
        .map(|(i, f)| {
            let id = match f.get("id") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => i.to_string(),
            };
            (id, f)
        })
        .collect()
}

fn query(input: &Path, filters: &Path, workers: usize) -> Value {
    query_with(input, filters, workers, &[])
}

fn query_with(input: &Path, filters: &Path, workers: usize, more: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args([
            "query",
            "--top-k",
            "3",
            "--workers",
            &workers.to_string(),
            "--batch-lines",
            "3",
        ])
        .arg("--input")
        .arg(input)
        .arg("--filters")
        .arg(filters)
        .args(more)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn query_prints_the_expected_views_of_every_fixture() {
    let dir = fixtures_dir();
    let update = std::env::var_os("UPDATE_FIXTURES").is_some();
    for name in FIXTURES {
        let input = dir.join(format!("{name}.ndjson"));
        let data = std::fs::read(&input).unwrap();
        let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
        let oracle = expected(&lines, &filters(&dir), Params::default());
        let expected_path = dir.join(format!("{name}.expected.json"));
        if update {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&oracle).unwrap() + "\n",
            )
            .unwrap();
        }
        let checked_in: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        assert_eq!(
            diff(&oracle, &checked_in),
            None,
            "{name}: the oracle disagrees with the checked-in file"
        );
        for workers in [1, 2] {
            let actual = query(&input, &dir.join("filters.json"), workers);
            assert_eq!(
                diff(&actual, &checked_in),
                None,
                "{name} with {workers} workers"
            );
        }
    }
}

#[test]
fn sessions_summary_prints_the_views_without_each_users_sessions() {
    let dir = fixtures_dir();
    for name in FIXTURES {
        let input = dir.join(format!("{name}.ndjson"));
        let expected_path = dir.join(format!("{name}.expected.json"));
        let mut want: Value =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        if let Some(sessions) = want["sessions"].as_object_mut() {
            sessions.remove("by_user");
        }
        let filters = dir.join("filters.json");
        let got = query_with(&input, &filters, 2, &["--sessions", "summary", "--pretty"]);
        assert!(got["sessions"].get("by_user").is_none(), "{name}");
        assert_eq!(diff(&got, &want), None, "{name}");
    }
}

#[test]
fn fixtures_cover_ties_late_merges_aliases_and_every_rejection() {
    let dir = fixtures_dir();
    let read = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap()
    };
    let ties = read("ties");
    assert_eq!(
        ties["top"].as_array().unwrap().len(),
        5,
        "five emojis tied for first, k = 3"
    );
    let late = read("late_sessions");
    assert_eq!(
        late["sessions"]["by_user"]["ann"].as_array().unwrap().len(),
        1,
        "the late event merged ann's sessions"
    );
    let bad = read("bad_lines");
    let reasons: Vec<&str> = bad["rejected"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // Files are history: only live sources judge event times against a clock.
    let live_only = [emoflow_ingest::RejectReason::FutureTimestamp];
    for r in emoflow_ingest::RejectReason::ALL
        .into_iter()
        .filter(|r| !live_only.contains(r))
    {
        assert!(reasons.contains(&r.as_str()), "bad_lines.ndjson lacks {r}");
    }
    let aliases = std::fs::read_to_string(dir.join("aliases.ndjson")).unwrap();
    for alias in [
        "emoji_type",
        "\"event\"",
        "user_tier",
        "\"timestamp\":\"",
        "\"timestamp\":1",
    ] {
        assert!(aliases.contains(alias), "aliases.ndjson lacks {alias}");
    }
}

#[test]
fn dead_letters_keep_line_numbers_and_reasons() {
    let dir = fixtures_dir();
    let out_dir = std::env::temp_dir().join(format!("emoflow-dl-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let dl = out_dir.join("dead.ndjson");
    let status = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args(["query", "--workers", "2", "--batch-lines", "2"])
        .arg("--input")
        .arg(dir.join("bad_lines.ndjson"))
        .arg("--dead-letters")
        .arg(&dl)
        .output()
        .unwrap();
    assert!(status.status.success());
    let letters: Vec<Value> = std::fs::read_to_string(&dl)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let source = std::fs::read_to_string(dir.join("bad_lines.ndjson")).unwrap();
    let source_lines: Vec<&str> = source.lines().collect();
    assert_eq!(letters.len(), 15);
    for l in &letters {
        let n = l["line"].as_u64().unwrap() as usize;
        let original = source_lines[n - 1];
        let payload = l["payload"].as_str().unwrap();
        assert!(
            original.starts_with(payload),
            "line {n}: {payload} is not the start of {original}"
        );
        assert!(emoflow_ingest::RejectReason::from_name(l["reason"].as_str().unwrap()).is_some());
    }
    std::fs::remove_dir_all(&out_dir).unwrap();
}
