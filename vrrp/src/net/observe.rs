//! Metrics and rate-limited logs of the wire layer.
//!
//! Log lines have constant messages and carry their values as fields; the
//! instance's name comes from the `vrrp` span its task runs in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use metrics::{counter, gauge};

use crate::instance::State;

/// Packets dropped, by `reason` (and `vrrp_instance` once it is known).
pub const PACKETS_DISCARDED_TOTAL: &str = "vrrp_packets_discarded_total";
/// 0 initialize, 1 backup, 2 master, by `vrrp_instance` (the instance's name).
pub const STATE: &str = "vrrp_state";
/// Transitions, by `vrrp_instance` and `to`.
pub const TRANSITIONS_TOTAL: &str = "vrrp_transitions_total";
/// Adverts sent, by `vrrp_instance`.
pub const ADVERTS_SENT_TOTAL: &str = "vrrp_adverts_sent_total";
/// Adverts received and handed to the instance, by `vrrp_instance`.
pub const ADVERTS_RECEIVED_TOTAL: &str = "vrrp_adverts_received_total";
/// Immediate adverts that received packets called for but the reply limit
/// held back (see `Instance::adverts_suppressed`), by `vrrp_instance`.
pub const ADVERTS_SUPPRESSED_TOTAL: &str = "vrrp_adverts_suppressed_total";

/// At most one log line per key and period; the rest are counted and
/// reported with the next line.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Per (instance, reason): when the last line was logged, and how many
/// discards were not logged since.
type LogTimes = HashMap<(String, &'static str), (Instant, u64)>;

static LAST_LOG: Mutex<Option<LogTimes>> = Mutex::new(None);

/// Counts a discarded packet and logs it, rate-limited per reason: a
/// warning, or at debug when `routine` (see `Discard::is_routine`).
/// `instance` becomes the counter's `vrrp_instance` label (the log line has it from its span).
pub(super) fn discard(
    instance: Option<&str>,
    reason: &'static str,
    routine: bool,
    from: Option<IpAddr>,
    detail: &dyn std::fmt::Display,
) {
    match instance {
        Some(i) => {
            counter!(PACKETS_DISCARDED_TOTAL, "vrrp_instance" => i.to_owned(), "reason" => reason)
                .increment(1)
        }
        None => counter!(PACKETS_DISCARDED_TOTAL, "reason" => reason).increment(1),
    }
    let now = Instant::now();
    let key = (instance.unwrap_or("").to_owned(), reason);
    let suppressed = {
        let mut guard = LAST_LOG.lock().expect("discard log lock");
        let map = guard.get_or_insert_with(HashMap::new);
        match map.get_mut(&key) {
            Some((last, n)) if now.duration_since(*last) < LOG_PERIOD => {
                *n += 1;
                return;
            }
            Some((last, n)) => {
                *last = now;
                std::mem::take(n)
            }
            None => {
                map.insert(key, (now, 0));
                0
            }
        }
    };
    // Routine discards are counted, but not worth an operator's attention.
    if routine {
        tracing::debug!(reason, from = ?from, %detail, suppressed, "VRRP packet discarded");
        return;
    }
    match from {
        Some(from) => tracing::warn!(
            reason,
            %from,
            %detail,
            suppressed,
            "VRRP packet discarded"
        ),
        None => tracing::warn!(reason, %detail, suppressed, "VRRP packet discarded"),
    }
}

pub(super) fn state(instance: &str, state: State) {
    gauge!(STATE, "vrrp_instance" => instance.to_owned()).set(f64::from(state.code()));
}

pub(super) fn transition(instance: &str, to: State) {
    counter!(TRANSITIONS_TOTAL, "vrrp_instance" => instance.to_owned(), "to" => to.as_str())
        .increment(1);
}

pub(super) fn sent(instance: &str) {
    counter!(ADVERTS_SENT_TOTAL, "vrrp_instance" => instance.to_owned()).increment(1);
}

pub(super) fn received(instance: &str) {
    counter!(ADVERTS_RECEIVED_TOTAL, "vrrp_instance" => instance.to_owned()).increment(1);
}

/// `n` more replies held back; `n = 0` makes the series exist from the
/// instance's start, so a rate over it is defined before the first flood.
pub(super) fn suppressed(instance: &str, n: u64) {
    counter!(ADVERTS_SUPPRESSED_TOTAL, "vrrp_instance" => instance.to_owned()).increment(n);
}
