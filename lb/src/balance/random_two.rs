//! Power of two choices: sample two distinct eligible servers at random and
//! take the less loaded (`active / weight`). Nearly as even as least
//! connections, without every balancer instance herding onto the same
//! server after a burst.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{load_cmp, Candidate};

/// Random probes before falling back to listing the usable servers. With
/// most servers usable a probe nearly always lands, keeping a pick O(1).
const PROBES: usize = 8;

pub(super) struct RandomTwo {
    rng: SmallRng,
    /// Indices of usable candidates for the fallback; kept to avoid an
    /// allocation per pick.
    usable: Vec<usize>,
}

impl RandomTwo {
    pub(super) fn from_entropy() -> Self {
        Self::with_rng(SmallRng::from_entropy())
    }

    pub(super) fn seeded(seed: u64) -> Self {
        Self::with_rng(SmallRng::seed_from_u64(seed))
    }

    fn with_rng(rng: SmallRng) -> Self {
        RandomTwo {
            rng,
            usable: Vec::new(),
        }
    }

    pub(super) fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        let (a, b) = match self.probe_two(candidates) {
            Some(pair) => pair,
            None => self.scan_two(candidates)?,
        };
        let Some(b) = b else { return Some(a) };
        let (ca, cb) = (&candidates[a], &candidates[b]);
        let b_wins = load_cmp(cb, ca).then(ca.weight.cmp(&cb.weight)).is_lt();
        Some(if b_wins { b } else { a })
    }

    /// Two distinct usable indices by rejection sampling, each uniform over
    /// the usable ones; `None` when the probes run out.
    fn probe_two(&mut self, candidates: &[Candidate]) -> Option<(usize, Option<usize>)> {
        let n = candidates.len();
        if n < 2 {
            return None;
        }
        let a = (0..PROBES)
            .map(|_| self.rng.gen_range(0..n))
            .find(|&i| candidates[i].usable())?;
        let b = (0..PROBES)
            .map(|_| self.rng.gen_range(0..n))
            .find(|&i| i != a && candidates[i].usable())?;
        Some((a, Some(b)))
    }

    /// The exact method: list the usable servers, sample two distinct ones.
    fn scan_two(&mut self, candidates: &[Candidate]) -> Option<(usize, Option<usize>)> {
        self.usable.clear();
        self.usable.extend(
            candidates
                .iter()
                .enumerate()
                .filter(|(_, c)| c.usable())
                .map(|(i, _)| i),
        );
        let n = self.usable.len();
        match n {
            0 => None,
            1 => Some((self.usable[0], None)),
            _ => {
                let a = self.rng.gen_range(0..n);
                let mut b = self.rng.gen_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                Some((self.usable[a], Some(self.usable[b])))
            }
        }
    }
}
