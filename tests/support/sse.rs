//! A minimal SSE client over a plain TCP socket (HTTP/1.1, chunked), as a browser's
//! EventSource reads a stream: fields, comments, blank-line dispatch, `id` remembered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One dispatched SSE event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    /// `event:` (empty for the default, "message").
    pub event: String,
    /// `id:`, when the event had one.
    pub id: Option<String>,
    /// `data:` lines joined with newlines.
    pub data: String,
}

/// An open SSE stream.
pub struct Sse {
    r: BufReader<TcpStream>,
    /// Body bytes read but not yet de-chunked.
    raw: Vec<u8>,
    decoded: Vec<u8>,
    ended: bool,
    /// The last `id:` seen (what a reconnecting client sends as `Last-Event-ID`).
    pub last_id: Option<String>,
    /// The raw head of the response.
    pub head: String,
}

impl Sse {
    /// `GET path` on `addr`, with `Last-Event-ID` when given; the status and the stream.
    pub fn open(addr: &str, path: &str, last_event_id: Option<&str>) -> (u16, Sse) {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut req =
            format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            req += &format!("last-event-id: {id}\r\n");
        }
        req += "\r\n";
        s.write_all(req.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut r = BufReader::new(s);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head += &line;
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let sse = Sse {
            r,
            raw: Vec::new(),
            decoded: Vec::new(),
            ended: false,
            last_id: last_event_id.map(str::to_owned),
            head,
        };
        (status, sse)
    }

    /// Moves the next whole chunk of the body from `raw` to `decoded`, reading from the
    /// socket as needed; false at the body's end or on timeout (nothing is lost on timeout).
    fn fill(&mut self) -> bool {
        loop {
            if self.ended {
                return false;
            }
            if let Some(h) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size = String::from_utf8_lossy(&self.raw[..h]).trim().to_owned();
                let Ok(n) = usize::from_str_radix(&size, 16) else {
                    self.ended = true;
                    return false;
                };
                if n == 0 {
                    self.ended = true;
                    return false;
                }
                if self.raw.len() >= h + 2 + n + 2 {
                    self.decoded.extend_from_slice(&self.raw[h + 2..h + 2 + n]);
                    self.raw.drain(..h + 2 + n + 2);
                    return true;
                }
            }
            let mut buf = [0u8; 65536];
            match self.r.read(&mut buf) {
                Ok(0) => {
                    self.ended = true;
                    return false;
                }
                Ok(k) => self.raw.extend_from_slice(&buf[..k]),
                Err(_) => return false, // timed out: try again later
            }
        }
    }

    fn line(&mut self, deadline: Instant) -> Option<String> {
        loop {
            if let Some(i) = self.decoded.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.decoded.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let _ = self
                .r
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            if !self.fill() {
                return None;
            }
        }
    }

    /// The next event within `timeout`; `None` on timeout or when the stream ended.
    pub fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + timeout;
        let mut ev = SseEvent::default();
        let mut has_data = false;
        loop {
            let line = self.line(deadline)?;
            if line.is_empty() {
                if has_data {
                    return Some(ev);
                }
                ev = SseEvent::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => ev.event = value.to_owned(),
                "id" => {
                    ev.id = Some(value.to_owned());
                    self.last_id = Some(value.to_owned());
                }
                "data" => {
                    if has_data {
                        ev.data.push('\n');
                    }
                    ev.data += value;
                    has_data = true;
                }
                _ => {}
            }
        }
    }

    /// True once the server ended the stream.
    pub fn ended(&self) -> bool {
        self.ended
    }
}
