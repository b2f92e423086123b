//! Shared parts of the end-to-end tests: a real Kafka-protocol broker (tansu) on a free
//! loopback port, `emoflow serve` as a child process, and requests through reqwest.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

include!("find_tansu.rs");

pub mod sse;

/// True when the broker tests must run (CI sets it); otherwise they skip without tansu.
pub fn broker_required() -> bool {
    std::env::var("EMOFLOW_REQUIRE_BROKER").is_ok_and(|v| v == "1")
}

/// Kills a child process when dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tansu broker with in-memory storage on a free loopback port.
pub struct Tansu {
    _child: ChildGuard,
    /// Its bootstrap address.
    pub brokers: String,
}

impl Tansu {
    /// Starts tansu with in-memory storage, or returns `None` (after saying so) when it is not
    /// installed and not required.
    pub fn start() -> Option<Tansu> {
        Self::start_with("memory://tansu/", &std::env::temp_dir())
    }

    /// Starts tansu with SQLite storage in `dir`, so that the topic outlives its readers.
    pub fn start_sqlite(dir: &std::path::Path) -> Option<Tansu> {
        std::fs::create_dir_all(dir).unwrap();
        Self::start_with("sqlite://tansu.db", dir)
    }

    fn start_with(storage: &str, cwd: &std::path::Path) -> Option<Tansu> {
        let Some(bin) = tansu_binary() else {
            assert!(
                !broker_required(),
                "tansu is required (EMOFLOW_REQUIRE_BROKER=1) but not installed; \
                 cargo install tansu --locked --features dynostore,libsql"
            );
            eprintln!("SKIPPED: tansu is not installed (cargo install tansu --locked --features dynostore,libsql)");
            return None;
        };
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log =
            std::fs::File::create(std::env::temp_dir().join(format!("tansu-{port}.log"))).unwrap();
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", storage])
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start tansu");
        let guard = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Tansu {
            _child: guard,
            brokers: format!("127.0.0.1:{port}"),
        })
    }
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("emoflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `emoflow serve` as a child process.
pub struct Serve {
    /// The process (killed when dropped).
    pub child: ChildGuard,
    /// The embedded broker's bootstrap address, when it runs one.
    pub embedded: Option<String>,
    /// `host:port` of its HTTP API.
    pub addr: String,
}

impl Serve {
    /// Starts `emoflow serve` with `args` on a free port; returns once it listens. Without
    /// `--data-dir` in `args`, it gets a fresh one of its own.
    pub fn start(args: &[&str]) -> Serve {
        let own_dir;
        let mut all: Vec<&str> = args.to_vec();
        if !args.contains(&"--data-dir") {
            own_dir = temp_dir(&format!("serve-{}", free_port()));
            all.extend(["--data-dir", own_dir.to_str().unwrap()]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_emoflow"))
            .arg("serve")
            .args(&all)
            .args(["--listen", "127.0.0.1:0"])
            .env("EMOFLOW_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start emoflow serve");
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard(child);
        let mut lines = BufReader::new(stdout).lines();
        let mut embedded = None;
        let addr = loop {
            let line = lines
                .next()
                .expect("emoflow serve ended before listening")
                .unwrap();
            if let Some(rest) = line.split("embedded Kafka broker at ").nth(1) {
                embedded = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some(rest) = line.split("serving http://").nth(1) {
                break rest.split('/').next().unwrap().to_owned();
            }
        };
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Serve {
            child: guard,
            embedded,
            addr,
        }
    }

    /// `GET path` as JSON, with its status.
    pub fn get(&self, path: &str) -> (u16, Value) {
        http(&self.addr, "GET", path, None, &[])
    }

    /// `POST path` with a body and a content type.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        http(
            &self.addr,
            "POST",
            path,
            Some(body),
            &[("content-type", content_type)],
        )
    }

    /// Polls `GET /stats` until accepted plus rejected events reach `n`.
    pub fn wait_for_events(&self, n: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, stats) = self.get("/stats");
            let seen = stats["total"].as_i64().unwrap_or(0)
                + stats["rejected"]
                    .as_object()
                    .map_or(0, |r| r.values().filter_map(Value::as_i64).sum());
            if seen >= n {
                assert_eq!(seen, n, "more events than produced: {stats}");
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "only {seen} of {n} events arrived: {stats}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One request with reqwest; the answer's status and JSON body (`Null` when not JSON).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let (status, bytes) = http_raw(addr, method, path, body, headers);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// One request with reqwest; the answer's status and body bytes.
pub fn http_raw(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Vec<u8>) {
    static CLIENT: std::sync::OnceLock<reqwest::blocking::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    });
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client.request(method, format!("http://{addr}{path}"));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    if let Some(body) = body {
        request = request.body(body.to_vec());
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().unwrap().to_vec())
}

/// Produces `lines` to `topic` with rdkafka: line i to partition i % `partitions` (offset
/// i / `partitions` on a fresh topic), with message time `base_ms + i` seconds.
pub fn produce_lines(brokers: &str, topic: &str, lines: &[String], partitions: i32, base_ms: i64) {
    use emoflow_ingest::kafka::{ensure_topic, BulkProducer};
    ensure_topic(brokers, topic, partitions, Duration::from_secs(10)).unwrap();
    let p = BulkProducer::new(brokers, topic).unwrap();
    for (i, line) in lines.iter().enumerate() {
        let ts = base_ms + i as i64 * 1000;
        p.send(
            &i.to_le_bytes(),
            line.as_bytes(),
            Some(i as i32 % partitions),
            Some(ts),
        )
        .unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Checks the archive (or export) at `path` with DuckDB and pyarrow against `expected` (see
/// `check_archive.py`); false when they are not installed and not required.
pub fn check_with_readers(path: &std::path::Path, expected: &Value) -> bool {
    let has_readers = Command::new("python3")
        .args(["-c", "import duckdb, pyarrow"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_readers {
        assert!(
            !broker_required(),
            "DuckDB and pyarrow are required: pip install duckdb pyarrow pytz"
        );
        eprintln!("SKIPPED the independent readers: pip install duckdb pyarrow pytz");
        return false;
    }
    let file = std::env::temp_dir().join(format!("emoflow-expected-{}.json", free_port()));
    std::fs::write(&file, expected.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/check_archive.py"
    );
    let out = Command::new("python3")
        .args([script, path.to_str().unwrap(), file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// `n` generated events (`users` users, a mean `step_ms` apart, seeded with `seed`) as NDJSON
/// lines, with the `bad` lines mixed in: bad line i goes in at `i * spacing + first`.
pub fn lines_with_bad(
    n: u64,
    cfg: emoflow_ingest::generator::GeneratorConfig,
    bad: &[&str],
    (spacing, first): (usize, usize),
) -> Vec<String> {
    let mut buf = Vec::new();
    emoflow_ingest::generator::Generator::new(cfg)
        .write_ndjson(n, &mut buf, |_| {})
        .unwrap();
    let mut lines: Vec<String> = String::from_utf8(buf)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for (i, b) in bad.iter().enumerate() {
        lines.insert(i * spacing + first, (*b).to_owned());
    }
    lines
}
