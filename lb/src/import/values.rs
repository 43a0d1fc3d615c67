//! Values shared by both dialects: their time formats in, coexist's out,
//! and addresses.

use std::net::IpAddr;
use std::time::Duration;

/// An HAProxy time: a number in milliseconds unless a unit follows
/// (`us`, `ms`, `s`, `m`, `h`, `d`).
pub(super) fn haproxy_time(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let d = match unit {
        "us" => Duration::from_micros(n),
        "" | "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        "d" => Duration::from_secs(n.checked_mul(86_400)?),
        _ => return None,
    };
    Some(d)
}

/// A keepalived timer: seconds, possibly fractional (`1`, `0.25`).
pub(super) fn keepalived_timer(text: &str) -> Option<Duration> {
    let seconds: f64 = text.parse().ok()?;
    (seconds.is_finite() && (0.0..=1e9).contains(&seconds))
        .then(|| Duration::from_micros((seconds * 1e6).round() as u64))
}

/// How coexist writes a duration: the largest whole unit (`5m`, `2s`,
/// `250ms`); below a millisecond, rounded up to one.
pub(super) fn duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// `192.0.2.1`, `2001:db8::1` or `[2001:db8::1]`.
pub(super) fn ip(text: &str) -> Option<IpAddr> {
    let bare = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    bare.parse().ok()
}

/// `ip[/prefix]`; without a prefix a host route, as keepalived (and
/// coexist's own addresses) read it.
pub(super) fn ip_prefix(text: &str) -> Option<(IpAddr, u8)> {
    let address: vrrp::VirtualAddress = text.parse().ok()?;
    Some((address.addr, address.prefix_len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_times_default_to_milliseconds() {
        assert_eq!(haproxy_time("5000"), Some(Duration::from_secs(5)));
        assert_eq!(haproxy_time("50s"), Some(Duration::from_secs(50)));
        assert_eq!(haproxy_time("1m"), Some(Duration::from_secs(60)));
        assert_eq!(haproxy_time("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(haproxy_time("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(haproxy_time("500us"), Some(Duration::from_micros(500)));
        assert_eq!(haproxy_time("5x"), None);
        assert_eq!(haproxy_time("s"), None);
    }

    #[test]
    fn keepalived_timers_are_fractional_seconds() {
        assert_eq!(keepalived_timer("1"), Some(Duration::from_secs(1)));
        assert_eq!(keepalived_timer("0.1"), Some(Duration::from_millis(100)));
        assert_eq!(keepalived_timer("-1"), None);
        assert_eq!(keepalived_timer("one"), None);
    }

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(duration(Duration::from_secs(7200)), "2h");
        assert_eq!(duration(Duration::from_micros(10)), "1ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn addresses_with_or_without_brackets() {
        assert_eq!(ip("[2001:db8::1]"), "2001:db8::1".parse().ok());
        assert_eq!(ip("192.0.2.1"), "192.0.2.1".parse().ok());
        assert_eq!(ip("host"), None);
    }
}
