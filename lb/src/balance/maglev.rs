//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, §3.4): a lookup
//! table of prime size M filled from one permutation of the slots per
//! server, so a client address maps to the same server on every node, and
//! removing a server moves little more than that server's own clients.
//!
//! Two nodes with the same servers must build the same table, so servers are
//! sorted by id before filling and the hash is FNV-1a with fixed keys (a
//! documented algorithm, unlike std's `DefaultHasher`).

use std::hash::Hasher;
use std::net::IpAddr;

use fnv::FnvHasher;

use super::{Candidate, ServerKey};

const EMPTY: u32 = u32::MAX;
// Arbitrary distinct keys: the offset and skip of a permutation must come
// from independent hashes.
const OFFSET_KEY: u64 = 0x6d61_676c_6576_6f66; // "maglevof"
const SKIP_KEY: u64 = 0x6d61_676c_6576_736b; // "maglevsk"
const CLIENT_KEY: u64 = 0x636f_6578_6973_7463; // "coexistc"

pub(super) struct Maglev {
    /// Slot → index of the server in the order given to `build`.
    table: Vec<u32>,
    /// The servers present in the table (non-zero weight).
    members: Vec<u32>,
}

impl Maglev {
    pub(super) fn build(servers: &[ServerKey<'_>], table_size: usize) -> Maglev {
        let live: Vec<usize> = {
            let mut v: Vec<usize> = (0..servers.len())
                .filter(|&i| servers[i].weight > 0)
                .collect();
            // Canonical order: configs listing servers differently agree.
            v.sort_by(|&a, &b| {
                (servers[a].id, servers[a].weight).cmp(&(servers[b].id, servers[b].weight))
            });
            v
        };
        if live.is_empty() {
            return Maglev {
                table: Vec::new(),
                members: Vec::new(),
            };
        }
        let m = next_prime(table_size.max(live.len()).max(2));
        // Turns per round in proportion to weight. Dividing by the gcd makes
        // equal weights one turn each, which keeps shares within one slot of
        // M/N even when the table fills mid-round.
        let g = live.iter().fold(0, |g, &i| gcd(g, servers[i].weight));
        struct Perm {
            server: u32,
            turns: u32,
            pos: u64,
            skip: u64,
        }
        let m64 = m as u64;
        let mut perms: Vec<Perm> = live
            .iter()
            .map(|&i| {
                let id = servers[i].id.as_bytes();
                Perm {
                    server: i as u32,
                    turns: servers[i].weight / g,
                    pos: keyed_hash(OFFSET_KEY, id) % m64,
                    skip: keyed_hash(SKIP_KEY, id) % (m64 - 1) + 1,
                }
            })
            .collect();
        let mut table = vec![EMPTY; m];
        let mut filled = 0;
        'fill: loop {
            for p in perms.iter_mut() {
                for _ in 0..p.turns {
                    // Each permutation visits every slot once (M prime,
                    // 0 < skip < M), so this finds a free slot.
                    while table[p.pos as usize] != EMPTY {
                        // pos, skip < M: one subtraction replaces a
                        // division on the hot loop of the build.
                        p.pos += p.skip;
                        if p.pos >= m64 {
                            p.pos -= m64;
                        }
                    }
                    table[p.pos as usize] = p.server;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        let members = live.iter().map(|&i| i as u32).collect();
        Maglev { table, members }
    }

    pub(super) fn pick(&self, candidates: &[Candidate], client: IpAddr) -> Option<usize> {
        let m = self.table.len();
        if m == 0 {
            return None;
        }
        let start = (client_hash(client) % m as u64) as usize;
        let usable = |slot: usize| {
            let s = self.table[slot] as usize;
            candidates
                .get(s)
                .is_some_and(Candidate::usable)
                .then_some(s)
        };
        if let Some(s) = usable(start) {
            return Some(s);
        }
        // Walking forward keeps the fallback stable per client too. Check
        // first that it ends, rather than scanning all M slots for nothing.
        let any = self
            .members
            .iter()
            .any(|&s| candidates.get(s as usize).is_some_and(Candidate::usable));
        if !any {
            return None;
        }
        (1..m).find_map(|k| usable((start + k) % m))
    }

    #[cfg(test)]
    pub(super) fn table(&self) -> &[u32] {
        &self.table
    }
}

fn keyed_hash(key: u64, bytes: &[u8]) -> u64 {
    let mut h = FnvHasher::with_key(key);
    h.write(bytes);
    mix(h.finish())
}

/// IPv4-mapped IPv6 addresses hash as the IPv4 address they carry, so a
/// client is placed the same whichever socket family accepted it.
fn client_hash(client: IpAddr) -> u64 {
    match client.to_canonical() {
        IpAddr::V4(a) => keyed_hash(CLIENT_KEY, &a.octets()),
        IpAddr::V6(a) => keyed_hash(CLIENT_KEY, &a.octets()),
    }
}

/// FNV's last step leaves the low bits weakly mixed for short inputs that
/// differ in their final byte (`web1`, `web2`); the splitmix64 finalizer
/// spreads every input bit over the whole word before the modulo.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

fn next_prime(mut n: usize) -> usize {
    while !is_prime(n as u64) {
        n += 1;
    }
    n
}
