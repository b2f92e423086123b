//! The live dashboard (`GET /`) in headless Chromium under live load, driven by playwright-core
//! (`tests/browser/dashboard.mjs`): no console error and no outside request; the total shown
//! equals `/stats` at the same `as_of` and moves as events arrive; an emoji button's event shows
//! up; a filter created in the page gets live matches. Desktop and phone screenshots are kept
//! under `target/tmp/dashboard/` for a person to look at.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::Serve;

const SCRIPT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");

/// True when the browser test must run (CI sets it); otherwise it skips without a browser.
fn browser_required() -> bool {
    std::env::var("EMOFLOW_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn browser_ready() -> bool {
    let chromium = Path::new("/usr/bin/chromium").exists();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = Path::new(SCRIPT_DIR)
        .join("node_modules/playwright-core")
        .exists();
    chromium && node && playwright
}

/// Posts a few events every 200 ms until `stop`: the live load the page must follow.
fn load(addr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            let body: String = (0..5)
                .map(|i| {
                    let emoji = ["🎉", "👍", "🔥", "😂"][(sent + i) % 4];
                    format!(
                        "{{\"user_id\":\"load{}\",\"emoji\":\"{emoji}\"}}\n",
                        (sent + i) % 13
                    )
                })
                .collect();
            let (status, _) = support::http(
                &addr,
                "POST",
                "/events",
                Some(body.as_bytes()),
                &[("content-type", "application/x-ndjson")],
            );
            if status == 202 {
                sent += 5;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        sent
    })
}

#[test]
fn the_dashboard_follows_the_views_in_chromium() {
    if !browser_ready() {
        assert!(
            !browser_required(),
            "the browser test needs /usr/bin/chromium (apt-get install chromium), node and \
             `npm ci --prefix tests/browser`"
        );
        eprintln!("SKIPPED: apt-get install chromium; npm ci --prefix tests/browser");
        return;
    }
    let serve = Serve::start(&["--workers", "2", "--no-archive"]);
    let stop = Arc::new(AtomicBool::new(false));
    let loader = load(serve.addr.clone(), stop.clone());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out).unwrap();
    let result = Command::new("node")
        .arg(Path::new(SCRIPT_DIR).join("dashboard.mjs"))
        .args(["--url", &format!("http://{}", serve.addr)])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let sent = loader.join().unwrap();
    let report = String::from_utf8_lossy(&result.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&result.stderr));
    assert!(
        result.status.success(),
        "the dashboard checks failed:\n{report}"
    );
    assert!(sent > 0, "the background load sent nothing");
    for shot in ["dashboard-desktop.png", "dashboard-phone.png"] {
        let size = std::fs::metadata(out.join(shot)).map_or(0, |m| m.len());
        assert!(size > 10_000, "{shot} is missing or empty ({size} bytes)");
    }
    eprintln!("screenshots: {}", out.display());
}
