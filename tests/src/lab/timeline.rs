//! What the clients saw around an event, for the report's pictures: per
//! client (one per address family), the connections opened in each 10 ms
//! bucket by outcome, and the moments that explain them (the fault, the
//! VIP moving, the clients' neighbour entry changing). Plain data built
//! from client records, no IO; any row may add timelines to its verdict.
//!
//! Connections are counted in the bucket in which they were *opened*: the
//! connections opened during an outage fail (after their 1 s connect
//! timeout) and show up where the outage was, not a second later.

use std::time::Duration;

use super::load::Conn;

/// The width of a bucket.
pub const BUCKET: Duration = Duration::from_millis(10);

/// At most this many buckets per lane (a minute of 10 ms buckets): a
/// lane's memory is bounded whatever the client did.
pub const MAX_BUCKETS: usize = 6000;

/// One picture: what each client saw, on one time axis whose zero is the
/// fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// What happened, e.g. "node1 dies".
    pub title: String,
    /// One lane per client, in the order drawn (IPv4 first).
    pub lanes: Vec<Lane>,
}

/// What one client saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    /// The client, e.g. "IPv4".
    pub name: String,
    /// Index of the first bucket relative to zero: bucket `i` of the
    /// counts covers `(first_bucket + i) * BUCKET` from zero on. Negative
    /// when the client started before the fault, as it does.
    pub first_bucket: i64,
    /// Connections opened in each bucket that reached a server and echoed
    /// every byte.
    pub succeeded: Vec<u32>,
    /// Connections opened in each bucket that failed.
    pub failed: Vec<u32>,
    /// Connections left out because they would have needed more than
    /// [`MAX_BUCKETS`].
    pub left_out: u64,
    /// The moments drawn over the counts, in time order.
    pub events: Vec<Event>,
}

/// A moment on a lane.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub mark: Mark,
    /// What happened, e.g. "VIP on node2".
    pub label: String,
    /// Milliseconds from zero; `None` when it was not seen (the lab
    /// watched for it and gave up).
    pub at_ms: Option<f64>,
}

/// How an event is drawn: one colour per kind of moment, so the same kind
/// reads the same in every picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// What the lab did to break something.
    Fault,
    /// What the lab did to repair it (a restart, a link up).
    Repair,
    /// A node took the virtual address.
    VipMoved,
    /// The client's neighbour entry for the virtual address named the new
    /// holder's MAC.
    NeighbourMoved,
}

impl Lane {
    /// The lane of a client's connections opened up to `end_ns`, bucketed
    /// from `zero_ns`.
    pub fn of(name: &str, conns: &[Conn], zero_ns: u64, end_ns: u64) -> Lane {
        let bucket_ns = BUCKET.as_nanos() as i64;
        let index = |t: u64| (t as i64 - zero_ns as i64).div_euclid(bucket_ns);
        let opened = || conns.iter().filter(|c| c.start_ns <= end_ns);
        let first_bucket = opened().map(|c| index(c.start_ns)).min().unwrap_or(0);
        let mut lane = Lane {
            name: name.to_owned(),
            first_bucket,
            succeeded: Vec::new(),
            failed: Vec::new(),
            left_out: 0,
            events: Vec::new(),
        };
        for c in opened() {
            let i = (index(c.start_ns) - first_bucket) as usize;
            if i >= MAX_BUCKETS {
                lane.left_out += 1;
                continue;
            }
            if i >= lane.succeeded.len() {
                lane.succeeded.resize(i + 1, 0);
                lane.failed.resize(i + 1, 0);
            }
            if c.ok {
                lane.succeeded[i] += 1;
            } else {
                lane.failed[i] += 1;
            }
        }
        lane
    }

    /// Adds a moment, keeping the events in time order (unseen ones last).
    pub fn event(&mut self, mark: Mark, label: &str, at_ms: Option<f64>) -> &mut Self {
        self.events.push(Event {
            mark,
            label: label.to_owned(),
            at_ms,
        });
        self.events.sort_by(|a, b| match (a.at_ms, b.at_ms) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (a, b) => b.is_some().cmp(&a.is_some()),
        });
        self
    }

    /// The start of bucket `i` of the counts, in milliseconds from zero.
    pub fn bucket_start_ms(&self, i: usize) -> f64 {
        (self.first_bucket + i as i64) as f64 * BUCKET.as_secs_f64() * 1000.0
    }

    /// The time the counts span, in milliseconds from zero.
    pub fn span_ms(&self) -> (f64, f64) {
        (
            self.bucket_start_ms(0),
            self.bucket_start_ms(self.succeeded.len()),
        )
    }

    pub fn total_succeeded(&self) -> u64 {
        self.succeeded.iter().map(|&n| u64::from(n)).sum()
    }

    pub fn total_failed(&self) -> u64 {
        self.failed.iter().map(|&n| u64::from(n)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn conn(start_ms: u64, ok: bool) -> Conn {
        Conn {
            start_ns: start_ms * MS,
            greeted_ns: ok.then_some(start_ms * MS + MS),
            end_ns: start_ms * MS + 2 * MS,
            server: None,
            via: None,
            bytes_verified: 0,
            ok,
            error: None,
        }
    }

    // Input: the fault at 1000 ms; connections opened at 975, 982 (ok),
    // 1003 (failed), 1004 (ok), 1031 (failed) and 2000 (after the end).
    // Output: buckets from -30 ms (index -3), counted where each was opened.
    #[test]
    fn connections_count_in_the_bucket_they_were_opened_in() {
        let conns = [
            conn(975, true),
            conn(982, true),
            conn(1003, false),
            conn(1004, true),
            conn(1031, false),
            conn(2000, true),
        ];
        let lane = Lane::of("IPv4", &conns, 1000 * MS, 1500 * MS);
        assert_eq!(lane.first_bucket, -3);
        assert_eq!(lane.succeeded, [1, 1, 0, 1, 0, 0, 0]);
        assert_eq!(lane.failed, [0, 0, 0, 1, 0, 0, 1]);
        assert_eq!(lane.span_ms(), (-30.0, 40.0));
        assert_eq!((lane.total_succeeded(), lane.total_failed()), (3, 2));
        assert_eq!(lane.left_out, 0);
    }

    // Input: a client that ran far longer than a minute of buckets.
    // Output: the lane stops at MAX_BUCKETS and counts what it left out.
    #[test]
    fn a_lane_is_bounded() {
        let conns: Vec<Conn> = (0..100).map(|i| conn(i * 1000, true)).collect();
        let lane = Lane::of("IPv6", &conns, 0, u64::MAX);
        assert!(lane.succeeded.len() <= MAX_BUCKETS);
        assert_eq!(lane.total_succeeded() + lane.left_out, 100);
        assert_eq!(lane.left_out, 40);
    }

    #[test]
    fn events_stay_in_time_order_with_the_unseen_last() {
        let mut lane = Lane::of("IPv4", &[], 0, 0);
        lane.event(Mark::NeighbourMoved, "neighbour", None)
            .event(Mark::VipMoved, "VIP", Some(352.0))
            .event(Mark::Fault, "fault", Some(0.0));
        let labels: Vec<&str> = lane.events.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["fault", "VIP", "neighbour"]);
    }
}
