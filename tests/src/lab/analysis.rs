//! Figures from client records: plain functions over [`Conn`] lists, no IO.

use std::collections::BTreeMap;

use super::load::Conn;

/// The longest stretch without a successful new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub longest_ns: u64,
    /// When that stretch began.
    pub from_ns: u64,
}

/// The longest time in `from_ns..=to_ns` with no successful connection
/// reaching a server, counted from `from_ns` (usually the event) to the
/// first success and between successive successes. `None` when nothing
/// succeeded in the window: the clients never recovered.
pub fn longest_gap(conns: &[Conn], from_ns: u64, to_ns: u64) -> Option<Gap> {
    let mut times: Vec<u64> = conns
        .iter()
        .filter(|c| c.ok)
        .filter_map(|c| c.greeted_ns)
        .filter(|&t| t > from_ns && t <= to_ns)
        .collect();
    if times.is_empty() {
        return None;
    }
    times.sort_unstable();
    let mut best = Gap {
        longest_ns: times[0] - from_ns,
        from_ns,
    };
    for pair in times.windows(2) {
        if pair[1] - pair[0] > best.longest_ns {
            best = Gap {
                longest_ns: pair[1] - pair[0],
                from_ns: pair[0],
            };
        }
    }
    Some(best)
}

/// Successful connections per server (the greeting's name).
pub fn per_server(conns: &[Conn]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for c in conns.iter().filter(|c| c.ok) {
        let name = c.server.clone().unwrap_or_else(|| "?".to_owned());
        *counts.entry(name).or_default() += 1;
    }
    counts
}

/// Successful connections per server and the family the balancer used to
/// reach it (`srv4/IPv4`), for dual-stack servers.
pub fn per_server_family(conns: &[Conn]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for c in conns.iter().filter(|c| c.ok) {
        let name = c.server.clone().unwrap_or_else(|| "?".to_owned());
        let family = match c.via.as_deref().map(str::parse::<std::net::IpAddr>) {
            Some(Ok(std::net::IpAddr::V4(_))) => "IPv4",
            Some(Ok(std::net::IpAddr::V6(_))) => "IPv6",
            _ => "?",
        };
        *counts.entry(format!("{name}/{family}")).or_default() += 1;
    }
    counts
}

pub fn succeeded(conns: &[Conn]) -> usize {
    conns.iter().filter(|c| c.ok).count()
}

pub fn failed(conns: &[Conn]) -> usize {
    conns.iter().filter(|c| !c.ok).count()
}

/// Failed connections that were opened at or after `at_ns`.
pub fn failed_since(conns: &[Conn], at_ns: u64) -> usize {
    conns
        .iter()
        .filter(|c| !c.ok && c.start_ns >= at_ns)
        .count()
}

/// Failed connections that were already open at `at_ns`.
pub fn failed_in_flight(conns: &[Conn], at_ns: u64) -> usize {
    conns
        .iter()
        .filter(|c| !c.ok && c.start_ns < at_ns && c.end_ns >= at_ns)
        .count()
}

pub fn bytes_verified(conns: &[Conn]) -> u64 {
    conns.iter().map(|c| c.bytes_verified).sum()
}

/// Whether every one of `expected` got connections and the busiest got at
/// most `ratio` times as many as the least busy.
pub fn balanced(counts: &BTreeMap<String, u64>, expected: &[&str], ratio: f64) -> bool {
    let got: Vec<u64> = expected
        .iter()
        .map(|e| counts.get(*e).copied().unwrap_or(0))
        .collect();
    let (Some(&min), Some(&max)) = (got.iter().min(), got.iter().max()) else {
        return false;
    };
    min > 0 && max as f64 <= min as f64 * ratio
}

/// The first error message among failed connections, to show why.
pub fn first_error(conns: &[Conn]) -> Option<String> {
    conns.iter().find(|c| !c.ok).and_then(|c| c.error.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(start: u64, greeted: Option<u64>, ok: bool, server: &str) -> Conn {
        Conn {
            start_ns: start,
            greeted_ns: greeted,
            end_ns: greeted.unwrap_or(start) + 1,
            server: greeted.map(|_| server.to_owned()),
            via: None,
            bytes_verified: 0,
            ok,
            error: (!ok).then(|| "x".to_owned()),
        }
    }

    // Input: successes at 10, 20, 300, 310; event at 15.
    // Output: the gap runs from the success at 20 to the one at 300.
    #[test]
    fn gap_is_the_longest_stretch_between_successes_after_the_event() {
        let conns = [
            conn(5, Some(10), true, "a"),
            conn(15, Some(20), true, "a"),
            conn(30, None, false, "a"),
            conn(290, Some(300), true, "a"),
            conn(305, Some(310), true, "a"),
        ];
        assert_eq!(
            longest_gap(&conns, 15, 1000),
            Some(Gap {
                longest_ns: 280,
                from_ns: 20
            })
        );
    }

    // Input: the event at 100, the first success after it at 700.
    // Output: the gap counts from the event.
    #[test]
    fn gap_counts_from_the_event_to_the_first_success() {
        let conns = [
            conn(5, Some(10), true, "a"),
            conn(690, Some(700), true, "a"),
            conn(705, Some(710), true, "a"),
        ];
        assert_eq!(
            longest_gap(&conns, 100, 1000).map(|g| g.longest_ns),
            Some(600)
        );
    }

    // Input: no success after the event. Output: no gap (never recovered);
    // a greeting on a connection that failed later is no success.
    #[test]
    fn no_success_after_the_event_is_no_recovery() {
        let conns = [
            conn(5, Some(10), true, "a"),
            conn(150, Some(160), false, "a"),
        ];
        assert_eq!(longest_gap(&conns, 100, 1000), None);
    }

    #[test]
    fn balance_needs_every_server_and_a_bounded_spread() {
        let counts: BTreeMap<String, u64> = [("a".to_owned(), 10), ("b".to_owned(), 12)].into();
        assert!(balanced(&counts, &["a", "b"], 1.5));
        assert!(!balanced(&counts, &["a", "b", "c"], 1.5));
        assert!(!balanced(&counts, &["a", "b"], 1.1));
    }

    #[test]
    fn failures_split_into_in_flight_and_new() {
        let conns = [
            conn(10, Some(11), true, "a"),
            conn(40, Some(45), false, "a"), // open at 50, ended before
            conn(45, None, false, "a"),     // still open at 50? ends at 46: no
            Conn {
                end_ns: 60,
                ..conn(48, Some(49), false, "a")
            },
            conn(55, None, false, "a"),
        ];
        assert_eq!(failed_in_flight(&conns, 50), 1);
        assert_eq!(failed_since(&conns, 50), 1);
        assert_eq!(failed(&conns), 4);
    }
}
