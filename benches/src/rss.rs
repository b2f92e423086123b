//! Resident memory of processes, from Linux's `/proc` (0 or `None` elsewhere).

/// A `/proc/PID/status` field in KiB.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's peak resident memory (`VmHWM`) in bytes, 0 where unknown.
pub fn peak_rss_bytes() -> u64 {
    status_kib("self", "VmHWM:").map_or(0, |kb| kb * 1024)
}

/// Resident memory of process `pid` now (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&pid.to_string(), "VmRSS:")
}
