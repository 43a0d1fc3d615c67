//! Smooth weighted round robin, as in nginx: every pick adds each eligible
//! server's weight to its running score, takes the highest score and
//! subtracts the total from it. Over one cycle of `sum(weights)` picks each
//! server is chosen exactly `weight` times, interleaved rather than in bursts
//! (weights 5,1,1 give a a b a c a a, not a a a a a b c).

use super::Candidate;

pub(super) struct SmoothRoundRobin {
    current: Vec<i64>,
}

impl SmoothRoundRobin {
    pub(super) fn new(servers: usize) -> Self {
        SmoothRoundRobin {
            current: vec![0; servers],
        }
    }

    pub(super) fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        if self.current.len() != candidates.len() {
            self.current.resize(candidates.len(), 0);
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, c) in candidates.iter().enumerate() {
            if !c.usable() {
                continue;
            }
            let w = i64::from(c.weight);
            self.current[i] += w;
            total += w;
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.current[b] -= total;
        Some(b)
    }
}
