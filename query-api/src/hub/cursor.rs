//! A subscriber's position in the log: per partition, the next offset it has not received.
//! Offsets are the log's, not the process's, so a cursor survives restarts, and every delivery
//! is idempotent: an event is sent only at or past the cursor, which then moves past it.

use std::collections::BTreeMap;

use emoflow_dataflow::update::ShownEvent;

/// Where a subscriber stands: per partition, the next offset it has not received. Rendered
/// `0:15,1:7` (the id of SSE events and of WebSocket messages).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub(super) BTreeMap<i32, i64>);

impl Cursor {
    /// Reads `0:15,1:7`; partitions not named start from the oldest retained event.
    pub fn parse(text: &str) -> Result<Cursor, String> {
        let mut at = BTreeMap::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let parsed = part.split_once(':').and_then(|(p, o)| {
                Some((p.trim().parse::<i32>().ok()?, o.trim().parse::<i64>().ok()?))
            });
            match parsed {
                Some((p, o)) if p >= 0 && o >= 0 => {
                    at.insert(p, o);
                }
                _ => {
                    return Err(format!(
                        "{part:?} is not PARTITION:OFFSET (a resume point looks like 0:15,1:7)"
                    ))
                }
            }
        }
        Ok(Cursor(at))
    }

    /// The cursor as text.
    pub fn render(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        parts.join(",")
    }

    pub(super) fn next(&self, partition: i32) -> i64 {
        self.0.get(&partition).copied().unwrap_or(0)
    }

    /// Moves past `e` if it is ahead of the cursor; false when it was delivered already.
    pub(super) fn admit(&mut self, e: &ShownEvent) -> bool {
        if e.offset < self.next(e.partition) {
            return false;
        }
        self.0.insert(e.partition, e.offset + 1);
        true
    }

    pub(super) fn skip_to(&mut self, partition: i32, offset: i64) {
        if self.next(partition) < offset {
            self.0.insert(partition, offset);
        }
    }
}
