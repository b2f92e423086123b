//! The HTTP API as a new user meets it: described by `/openapi.json` (valid, every route,
//! every JSON answer as described), `/metrics` agreeing with `/stats`, and the errors the
//! docs promise (415 for anything but JSON, one empty-body message, JSON for every error).
//! The description, the schemas and the metrics are checked with tools nobody here wrote
//! (openapi-spec-validator, jsonschema, prometheus_client; see `support/check_api.py`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{broker_required, http, produce_lines, Serve};

const GOOD: usize = 300;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A service on the embedded broker holding `GOOD` events and 3 rejected messages, a filter
/// `f1` and a registered client `c1`.
fn service_with_history() -> Serve {
    let serve = Serve::start(&["--workers", "2"]);
    let brokers = serve
        .embedded
        .clone()
        .expect("the embedded broker's address");
    let mut lines: Vec<String> = (0..GOOD)
        .map(|i| {
            format!(
                r#"{{"user_id":"u{}","emoji":"{}"}}"#,
                i % 7,
                ["🎉", "👍", "🔥"][i % 3]
            )
        })
        .collect();
    lines.insert(10, "not json".into());
    lines.insert(20, r#"{"emoji":"🎉"}"#.into());
    lines.insert(30, r#"{"user_id":"u1","emoji":""}"#.into());
    produce_lines(&brokers, "emoji-events", &lines, 4, now_ms() - 600_000);
    serve.wait_for_events(lines.len() as i64);
    let json_ct = [("content-type", "application/json")];
    let (status, body) = http(
        &serve.addr,
        "POST",
        "/filters",
        Some(json!({"id": "f1", "emojis": ["🔥"]}).to_string().as_bytes()),
        &json_ct,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = http(
        &serve.addr,
        "POST",
        "/register",
        Some(
            json!({"client_id": "c1", "emojis": ["🎉"]})
                .to_string()
                .as_bytes(),
        ),
        &json_ct,
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = serve.post(
        "/events",
        "application/json",
        br#"[{"user_id":"h1","emoji":"x"},{"user_id":"h2","emoji":"y"}]"#,
    );
    assert_eq!(status, 202, "{body}");
    serve.wait_for_events(lines.len() as i64 + 2);
    serve
}

#[test]
fn the_description_names_every_route_and_the_metrics_agree_with_stats() {
    let has_tools = Command::new("python3")
        .args([
            "-c",
            "import openapi_spec_validator, jsonschema, prometheus_client",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !has_tools {
        assert!(
            !broker_required(),
            "pip install openapi-spec-validator jsonschema prometheus-client"
        );
        eprintln!("SKIPPED: pip install openapi-spec-validator jsonschema prometheus-client");
        return;
    }
    let serve = service_with_history();
    let params = json!({
        "id": "f1", "user_id": "u1", "client_id": "c1", "name": "dashboard.js",
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/check_api.py");
    let out = Command::new("python3")
        .args([
            script,
            &format!("http://{}", serve.addr),
            &params.to_string(),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the API checks failed:\n{report}");
    // The checks really ran over every route.
    assert!(
        report.matches("ok: ").count() >= 25,
        "too few checks ran:\n{report}"
    );
}

#[test]
fn errors_are_json_and_say_what_to_send() {
    let serve = Serve::start(&["--workers", "1", "--no-archive"]);
    let addr = &serve.addr;
    let ingest = ["/emoji", "/events", "/register_event", "/v1/event"];
    let event = br#"{"user_id":"a","emoji":"x"}"#;
    for route in ingest.iter().chain(&["/filters", "/register"]) {
        for ct in [
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
            let (status, body) = http(addr, "POST", route, Some(event), &headers);
            assert_eq!(status, 415, "POST {route} with {ct:?}: {body}");
            assert!(
                body["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("application/json")),
                "POST {route} says what to send: {body}"
            );
        }
    }
    // An empty body: the same message on every ingest route and content type.
    let mut messages = Vec::new();
    for route in ingest {
        for ct in ["application/json", "application/x-ndjson"] {
            if route == "/emoji" && ct == "application/x-ndjson" {
                continue;
            }
            let (status, body) = http(addr, "POST", route, Some(b"  \n"), &[("content-type", ct)]);
            assert_eq!(status, 400, "POST {route} ({ct}) empty: {body}");
            messages.push(body["error"].as_str().unwrap().to_owned());
        }
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "one message for an empty body: {messages:?}"
    );
    assert!(messages[0].contains("empty"), "{messages:?}");
    // POST /emoji without an emoji says so.
    let (status, body) = serve.post("/emoji", "application/json", br#"{"user_id":"a"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`emoji`"),
        "{body}"
    );
    // 404, 405, and axum's own rejections are JSON too.
    for (method, path, want) in [
        ("GET", "/no/such/route", 404),
        ("PUT", "/stats", 405),
        ("GET", "/top?k=abc", 400),
        ("GET", "/ws?filter=x", 400),
        ("GET", "/stream?window=soon", 400),
        ("DELETE", "/deregister", 400),
    ] {
        let (status, body) = http(addr, method, path, None, &[]);
        assert_eq!(status, want, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path} in JSON: {body}");
    }
    // The happy path still works, and answers in gzip when asked.
    let (status, body) = serve.post("/emoji", "application/json", event);
    assert_eq!(status, 202, "{body}");
    let (status, raw) =
        support::http_raw(addr, "GET", "/stats", None, &[("accept-encoding", "gzip")]);
    assert_eq!(status, 200);
    assert!(
        serde_json::from_slice::<Value>(&raw).is_err() && raw.starts_with(&[0x1f, 0x8b]),
        "a client asking for gzip gets gzip"
    );
}

/// A log written to a file carries no colour codes, and a clean stop (SIGTERM) of `demo`, with
/// its load and a live stream open, logs no ERROR: the broker's clients stop before it does.
#[test]
fn a_clean_stop_logs_no_error_and_no_colour() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = support::temp_dir("clean-stop");
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args([
            "demo",
            "--rate",
            "500",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("demo ended before listening").unwrap();
        if let Some(rest) = line.split("serving http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let (_, mut stream) = support::sse::Sse::open(&addr, "/stream", None);
    assert!(
        stream.next(Duration::from_secs(10)).is_some(),
        "/stream sends"
    );
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "demo stops cleanly on SIGTERM: {status}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("stopped"), "the log was written: {text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file:\n{text}"
    );
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(errors.is_empty(), "a clean stop logs no ERROR: {errors:#?}");
}

/// Browsers on the origins given to `--cors-origin` may call the API (a preflight included);
/// others, and everyone by default, get no CORS headers; a value that is no origin stops
/// `serve` with a clear error.
#[test]
fn cors_allows_only_the_origins_given() {
    let allowed = "https://show.example";
    let serve = Serve::start(&["--workers", "1", "--no-archive", "--cors-origin", allowed]);
    let client = reqwest::blocking::Client::new();
    let url = format!("http://{}/stats", serve.addr);
    let allow_origin = |origin: &str| {
        let r = client.get(&url).header("origin", origin).send().unwrap();
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(allow_origin(allowed).as_deref(), Some(allowed));
    assert_eq!(allow_origin("https://elsewhere.example"), None);
    let preflight = client
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{}/events", serve.addr),
        )
        .header("origin", allowed)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,authorization",
        )
        .send()
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let plain = Serve::start(&["--workers", "1", "--no-archive"]);
    let r = client
        .get(format!("http://{}/stats", plain.addr))
        .header("origin", allowed)
        .send()
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let bad = Command::new(env!("CARGO_BIN_EXE_emoflow"))
        .args([
            "serve",
            "--cors-origin",
            "show.example",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("--cors-origin"), "{stderr}");
}
