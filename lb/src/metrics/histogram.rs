//! Histograms with fixed buckets: a count per bucket and a sum, folded in as
//! each sample is recorded. Their memory is the same after one sample or a
//! billion, whether or not anybody ever renders `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{CONNECTION_DURATION_SECONDS, CONNECT_DURATION_SECONDS};

/// Seconds to connect to a server: milliseconds on a LAN.
const CONNECT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Seconds a connection lasts: from one request to a long-lived stream.
const DURATION_BOUNDS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// Any other histogram (none yet): the Prometheus clients' default buckets.
const DEFAULT_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The upper bounds of the buckets of histogram `name`, ascending.
pub fn bounds_for(name: &str) -> &'static [f64] {
    match name {
        CONNECT_DURATION_SECONDS => CONNECT_BOUNDS,
        CONNECTION_DURATION_SECONDS => DURATION_BOUNDS,
        _ => DEFAULT_BOUNDS,
    }
}

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Samples per bucket, not cumulative (one add a sample); the last one
    /// holds the samples above every bound.
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

/// A histogram as Prometheus shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// (upper bound, samples at or below it): cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0.0f64.to_bits()),
        }
    }

    pub fn record(&self, value: f64) {
        // NaN is at or below no bound: it lands above them all, as in the
        // exporter's histograms.
        let bucket = (self.bounds.iter())
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// The count is the sum of the buckets read, so `+Inf` and `_count`
    /// agree even while samples arrive.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let buckets = (self.bounds.iter().zip(self.counts.iter()))
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        let count = cumulative + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: f64::from_bits(self.sum.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Input: samples below, on and above the bounds. Output: cumulative
    // buckets where a sample equal to a bound counts in that bound's bucket
    // (Prometheus's `le`), the total and the sum.
    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 1.0, 7.0] {
            h.record(v);
        }
        let snap = h.snapshot();
        assert_eq!(snap.buckets, vec![(0.1, 2), (1.0, 4)]);
        assert_eq!(snap.count, 5);
        assert!((snap.sum - 8.65).abs() < 1e-9, "{}", snap.sum);
    }

    // Input: a million samples. Output: the same few words of memory,
    // counted right (nothing is kept per sample until a render).
    #[test]
    fn a_million_samples_are_counts_not_a_list() {
        let h = Histogram::new(bounds_for(CONNECT_DURATION_SECONDS));
        for i in 0..1_000_000u32 {
            h.record(f64::from(i % 4) * 0.001);
        }
        let snap = h.snapshot();
        assert_eq!(snap.count, 1_000_000);
        assert_eq!(snap.buckets[1], (0.001, 500_000));
        assert_eq!(snap.buckets.last(), Some(&(2.5, 1_000_000)));
    }

    #[test]
    fn the_daemons_histograms_have_their_own_buckets() {
        assert_eq!(bounds_for(CONNECT_DURATION_SECONDS)[0], 0.0005);
        assert_eq!(bounds_for(CONNECTION_DURATION_SECONDS)[0], 0.01);
        assert_eq!(bounds_for("other_seconds"), DEFAULT_BOUNDS);
    }
}
