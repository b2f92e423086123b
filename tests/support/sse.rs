//! An SSE client on reqwest that reads a stream as a browser's EventSource does: fields,
//! comments, blank-line dispatch, `id` remembered. A thread reads the body's lines a few ahead
//! of the reader, so that waiting for the next event can time out without losing a line (an
//! event half read when the time runs out is dropped; the tests wait for whole events).

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
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
    lines: Receiver<String>,
    ended: bool,
    /// The last `id:` seen (what a reconnecting client sends as `Last-Event-ID`).
    pub last_id: Option<String>,
    /// The response's status line and headers, for messages.
    pub head: String,
}

impl Sse {
    /// `GET path` on `addr`, with `Last-Event-ID` when given; the status and the stream.
    pub fn open(addr: &str, path: &str, last_event_id: Option<&str>) -> (u16, Sse) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(None)
            .build()
            .unwrap();
        let mut request = client
            .get(format!("http://{addr}{path}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let head = format!("{:?} {:?}", response.status(), response.headers());
        // Bounded: a client that reads nothing leaves the stream unread, as a slow one does.
        let (tx, lines) = std::sync::mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let sse = Sse {
            lines,
            ended: false,
            last_id: last_event_id.map(str::to_owned),
            head,
        };
        (status, sse)
    }

    fn line(&mut self, deadline: Instant) -> Option<String> {
        if self.ended {
            return None;
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        match self.lines.recv_timeout(left) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                None
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
