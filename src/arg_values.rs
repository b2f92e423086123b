//! Parsers of command-line values: each refuses what would make no sense (no workers, a
//! zero-length tick, a negative count) with a message that names the allowed range, so that
//! nothing panics or silently falls back later.

use std::time::Duration;

/// A whole number in `min..=max`, as `T`.
pub fn whole<T>(min: u64, max: u64) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: TryFrom<u64>,
{
    move |s: &str| {
        let range = if max == u64::MAX {
            format!("at least {min}")
        } else {
            format!("from {min} to {max}")
        };
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("{s:?} is not a whole number {range}"))
    }
}

/// A duration such as `30m`, `10s`, `500ms` or `7d`, in ms (zero allowed).
pub fn duration_ms(s: &str) -> Result<i64, String> {
    let d: Duration = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration such as 500ms, 10s, 30m or 7d: {e}"))?;
    i64::try_from(d.as_millis()).map_err(|_| format!("{s:?} is too long"))
}

/// A browser origin for `--cors-origin`: `http(s)://host[:port]` with no path, or `*`.
pub fn origin(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    if s == "*" {
        return Ok(s.to_owned());
    }
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an origin: it must start with http:// or https://"))?;
    let host = rest.split(':').next().unwrap_or("");
    let port_ok = rest
        .split_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_ok());
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]".contains(&b));
    if host_ok && port_ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an origin such as https://show.example.com or http://localhost:3000 (scheme, host and port only)"
        ))
    }
}

/// A duration of at least one millisecond, in ms.
pub fn positive_duration_ms(s: &str) -> Result<i64, String> {
    match duration_ms(s)? {
        0 => Err(format!("{s:?} must be at least 1ms")),
        ms => Ok(ms),
    }
}

/// An RFC 3339 time or integer milliseconds since 1970.
pub fn time_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Ok(ms);
    }
    emoflow_ingest::parse_rfc3339_ms(s).map_err(|e| e.detail)
}

#[cfg(test)]
mod tests {

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            origin("https://show.example/").unwrap(),
            "https://show.example"
        );
        assert!(origin("http://localhost:3000").is_ok());
        assert!(origin("*").is_ok());
        for bad in [
            "show.example",
            "https://",
            "https://a.example/path",
            "http://a:x",
            "ftp://a",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn whole_numbers_are_range_checked() {
        let workers = whole::<usize>(1, 256);
        assert_eq!(workers("4"), Ok(4));
        for bad in ["0", "-1", "257", "2.5", "", "x"] {
            let e = workers(bad).unwrap_err();
            assert!(e.contains("from 1 to 256"), "{bad}: {e}");
        }
        assert!(whole::<u64>(1, u64::MAX)("0")
            .unwrap_err()
            .contains("at least 1"));
        // The target type's own range counts too.
        assert!(whole::<i32>(1, u64::MAX)("3000000000").is_err());
    }

    #[test]
    fn durations_are_checked() {
        assert_eq!(duration_ms("10s"), Ok(10_000));
        assert_eq!(duration_ms("0ms"), Ok(0));
        assert!(positive_duration_ms("0ms")
            .unwrap_err()
            .contains("at least 1ms"));
        assert_eq!(positive_duration_ms("1ms"), Ok(1));
        assert!(duration_ms("ten").unwrap_err().contains("not a duration"));
    }
}
