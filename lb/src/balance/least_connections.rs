//! Weighted least connections: the server with the lowest `active / weight`.
//! Ties go to the heavier server, then rotate: each scan starts just after
//! the previous pick, so equally loaded servers take turns instead of the
//! first index taking every connection of a burst.

use std::cmp::Ordering;

use super::{load_cmp, Candidate};

#[derive(Default)]
pub(super) struct LeastConnections {
    next: usize,
}

impl LeastConnections {
    pub(super) fn pick(&mut self, candidates: &[Candidate]) -> Option<usize> {
        let n = candidates.len();
        let mut best: Option<usize> = None;
        let start = self.next.min(n);
        for i in (start..n).chain(0..start) {
            let c = &candidates[i];
            if !c.usable() {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    let cur = &candidates[b];
                    match load_cmp(c, cur) {
                        Ordering::Less => true,
                        Ordering::Equal => c.weight > cur.weight,
                        Ordering::Greater => false,
                    }
                }
            };
            if better {
                best = Some(i);
            }
        }
        let b = best?;
        self.next = (b + 1) % n;
        Some(b)
    }
}
