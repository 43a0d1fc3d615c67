//! Server selection: which server of a backend takes the next connection.
//!
//! Pure: no IO and no clocks. The caller describes each server's current
//! weight, load and eligibility (health, `max_connections`, servers already
//! tried on a retry, backup rules) in a [`Candidate`] slice and gets back an
//! index. A weight of 0 means drain: never picked, whatever the algorithm.

mod least_connections;
mod maglev;
mod random_two;
mod round_robin;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::net::IpAddr;

pub(crate) use maglev::is_prime;

/// A backend's `balance`: which algorithm picks its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Balance {
    RoundRobin,
    LeastConnections,
    Maglev,
    RandomTwo,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
            Balance::Maglev => "maglev",
            Balance::RandomTwo => "random-two",
        }
    }
}

/// A server as configured: `id` is its stable identity (the server name),
/// which Maglev hashes so that every node builds the same table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerKey<'a> {
    pub id: &'a str,
    pub weight: u32,
}

/// A server's state at the moment of a pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Current weight (may differ from the configured one, e.g. drained to 0).
    pub weight: u32,
    /// Connections open to the server now.
    pub active: usize,
    /// False when the caller rules the server out for this pick.
    pub eligible: bool,
}

impl Candidate {
    fn usable(&self) -> bool {
        self.eligible && self.weight > 0
    }
}

/// Orders by load per unit of weight, `active / weight`, without division.
/// Only meaningful for candidates with a non-zero weight.
fn load_cmp(a: &Candidate, b: &Candidate) -> Ordering {
    let lhs = a.active as u128 * u128::from(b.weight);
    let rhs = b.active as u128 * u128::from(a.weight);
    lhs.cmp(&rhs)
}

/// Picks servers for one backend with the algorithm named by `balance`.
pub struct Selector {
    balance: Balance,
    algo: Algo,
}

enum Algo {
    RoundRobin(round_robin::SmoothRoundRobin),
    LeastConnections(least_connections::LeastConnections),
    Maglev(maglev::Maglev),
    RandomTwo(random_two::RandomTwo),
}

impl Selector {
    /// `servers` fixes the index order of every later `pick`'s candidates.
    /// `maglev_table_size` is used by `maglev` only; it should be a prime of
    /// at least `servers.len()` (validated config guarantees it), otherwise
    /// the next such prime is used.
    pub fn new(balance: Balance, servers: &[ServerKey<'_>], maglev_table_size: usize) -> Selector {
        let algo = match balance {
            Balance::RoundRobin => {
                Algo::RoundRobin(round_robin::SmoothRoundRobin::new(servers.len()))
            }
            Balance::LeastConnections => {
                Algo::LeastConnections(least_connections::LeastConnections::default())
            }
            Balance::Maglev => Algo::Maglev(maglev::Maglev::build(servers, maglev_table_size)),
            Balance::RandomTwo => Algo::RandomTwo(random_two::RandomTwo::from_entropy()),
        };
        Selector { balance, algo }
    }

    /// Makes `random-two` deterministic (tests, benchmarks); no effect on the
    /// other algorithms, which are deterministic already.
    pub fn with_seed(mut self, seed: u64) -> Selector {
        if let Algo::RandomTwo(r) = &mut self.algo {
            *r = random_two::RandomTwo::seeded(seed);
        }
        self
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// `candidates[i]` describes server `i`, in the order given to [`Selector::new`].
    /// Returns `None` if no candidate is eligible with a non-zero weight.
    /// `client` matters to `maglev` only.
    pub fn pick(&mut self, candidates: &[Candidate], client: IpAddr) -> Option<usize> {
        match &mut self.algo {
            Algo::RoundRobin(a) => a.pick(candidates),
            Algo::LeastConnections(a) => a.pick(candidates),
            Algo::Maglev(a) => a.pick(candidates, client),
            Algo::RandomTwo(a) => a.pick(candidates),
        }
    }
}
