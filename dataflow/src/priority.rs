//! CPU priority of the dataflow's threads in a live service.
//!
//! When the machine is saturated, the HTTP threads (queries, acknowledged ingest) should get the
//! CPU first: a request cannot wait, while the dataflow can fall behind and catch up, because
//! Kafka holds its backlog (and `/health` shows the lag meanwhile).

use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};

/// Priority of the dataflow's threads, on the cross-platform 0..=99 scale: nice 10 on Linux,
/// where normal threads run at nice 0.
const BACKGROUND: u8 = 22;

/// Runs the calling thread (only) below normal priority. Best effort: a failure is logged and
/// otherwise ignored.
pub fn lower_this_thread() {
    let result = ThreadPriorityValue::try_from(BACKGROUND)
        .map_err(|e| format!("{e:?}"))
        .and_then(|value| {
            set_current_thread_priority(ThreadPriority::Crossplatform(value))
                .map_err(|e| e.to_string())
        });
    if let Err(e) = result {
        tracing::debug!("cannot lower the thread's priority: {e}");
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    use super::*;

    /// The calling thread's nice value, from `/proc` (field 19 of its `stat`).
    fn nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 1..];
        after_name
            .split_whitespace()
            .nth(16)
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn lowers_only_the_calling_thread() {
        let before = nice();
        let inside = std::thread::spawn(|| {
            lower_this_thread();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(inside, 10.max(before), "nice 10 on Linux");
        assert_eq!(nice(), before, "other threads keep their priority");
    }
}
