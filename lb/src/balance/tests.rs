//! Each algorithm's contract, by example and by property.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::maglev::Maglev;
use super::*;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn keys<'a>(ids: &'a [String], weights: &[u32]) -> Vec<ServerKey<'a>> {
    ids.iter()
        .zip(weights)
        .map(|(id, &weight)| ServerKey { id, weight })
        .collect()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

fn up(weights: &[u32]) -> Vec<Candidate> {
    weights
        .iter()
        .map(|&weight| Candidate {
            weight,
            active: 0,
            eligible: true,
        })
        .collect()
}

fn selector(balance: Balance, weights: &[u32]) -> Selector {
    let ids = ids(weights.len());
    Selector::new(balance, &keys(&ids, weights), 65537).with_seed(9)
}

const ALL: [Balance; 4] = [
    Balance::RoundRobin,
    Balance::LeastConnections,
    Balance::Maglev,
    Balance::RandomTwo,
];

// --- every algorithm --------------------------------------------------------

#[test]
fn no_candidate_gives_none() {
    for balance in ALL {
        let mut s = selector(balance, &[1, 1]);
        let mut c = up(&[1, 1]);
        c[0].eligible = false;
        c[1].eligible = false;
        assert_eq!(s.pick(&c, CLIENT), None, "{balance:?}");
        assert_eq!(s.pick(&[], CLIENT), None, "{balance:?}");
    }
}

#[test]
fn weight_zero_is_never_picked() {
    for balance in ALL {
        let mut s = selector(balance, &[1, 1, 1]);
        // Server 1 drained at run time (configured weight 1, current 0).
        let c = up(&[1, 0, 1]);
        for i in 0..300u32 {
            let client = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            assert_ne!(s.pick(&c, client), Some(1), "{balance:?}");
        }
        assert_eq!(s.pick(&up(&[0, 0, 0]), CLIENT), None, "{balance:?}");
    }
}

#[test]
fn ineligible_is_never_picked() {
    for balance in ALL {
        let mut s = selector(balance, &[1, 1, 1]);
        let mut c = up(&[1, 1, 1]);
        c[2].eligible = false;
        for i in 0..300u32 {
            let client = IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)));
            let p = s.pick(&c, client).unwrap();
            assert!(p < 2, "{balance:?} picked {p}");
        }
    }
}

// --- round robin --------------------------------------------------------------

#[test]
fn smooth_round_robin_interleaves_like_nginx() {
    let mut s = selector(Balance::RoundRobin, &[5, 1, 1]);
    let c = up(&[5, 1, 1]);
    let seq: Vec<usize> = (0..14).map(|_| s.pick(&c, CLIENT).unwrap()).collect();
    assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn round_robin_skips_ineligible_and_follows_current_weight() {
    let mut s = selector(Balance::RoundRobin, &[1, 1, 1]);
    let mut c = up(&[1, 1, 1]);
    c[1].eligible = false;
    let seq: Vec<usize> = (0..4).map(|_| s.pick(&c, CLIENT).unwrap()).collect();
    assert_eq!(seq, [0, 2, 0, 2]);
    // The weight given at pick time counts, not the configured one.
    let c = up(&[3, 0, 1]);
    let mut counts = [0; 3];
    for _ in 0..40 {
        counts[s.pick(&c, CLIENT).unwrap()] += 1;
    }
    assert_eq!(counts, [30, 0, 10]);
}

// --- least connections ----------------------------------------------------------

#[test]
fn least_connections_picks_lowest_load_per_weight() {
    let mut s = selector(Balance::LeastConnections, &[1, 1, 1]);
    let mut c = up(&[1, 4, 1]);
    c[0].active = 2;
    c[1].active = 4; // 1 per unit of weight: the least loaded
    c[2].active = 3;
    assert_eq!(s.pick(&c, CLIENT), Some(1));
    c[1].active = 9;
    assert_eq!(s.pick(&c, CLIENT), Some(0));
}

#[test]
fn least_connections_rotates_among_ties() {
    let mut s = selector(Balance::LeastConnections, &[1, 1, 1]);
    let c = up(&[1, 1, 1]);
    let seq: Vec<usize> = (0..6).map(|_| s.pick(&c, CLIENT).unwrap()).collect();
    assert_eq!(seq, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn least_connections_prefers_heavier_server_on_tie() {
    let mut s = selector(Balance::LeastConnections, &[1, 3]);
    let c = up(&[1, 3]);
    assert_eq!(s.pick(&c, CLIENT), Some(1));
    assert_eq!(s.pick(&c, CLIENT), Some(1));
}

// --- random two -------------------------------------------------------------------

#[test]
fn random_two_with_two_candidates_always_takes_less_loaded() {
    let mut s = selector(Balance::RandomTwo, &[1, 1]);
    let mut c = up(&[1, 1]);
    c[0].active = 5;
    c[1].active = 4;
    for _ in 0..100 {
        assert_eq!(s.pick(&c, CLIENT), Some(1));
    }
}

#[test]
fn random_two_prefers_less_loaded() {
    // Loads 0..10: a uniform pick would average load 4.5; the lesser of two
    // distinct uniform samples averages (n - 2) / 3 ≈ 2.67.
    let mut s = selector(Balance::RandomTwo, &[1; 10]);
    let mut c = up(&[1; 10]);
    for (i, cand) in c.iter_mut().enumerate() {
        cand.active = i;
    }
    let picks = 10_000;
    let total: usize = (0..picks)
        .map(|_| c[s.pick(&c, CLIENT).unwrap()].active)
        .sum();
    let mean = total as f64 / picks as f64;
    assert!((2.4..2.95).contains(&mean), "mean load picked {mean}");
}

#[test]
fn random_two_is_deterministic_with_a_seed() {
    let run = || {
        let mut s = selector(Balance::RandomTwo, &[1; 8]);
        let c = up(&[1; 8]);
        (0..32)
            .map(|_| s.pick(&c, CLIENT).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

// --- maglev -------------------------------------------------------------------------

fn client(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(i.wrapping_mul(2_654_435_761)))
}

/// Slot → server id, to compare tables built from differently ordered input.
fn table_ids(ids: &[String], weights: &[u32], m: usize) -> Vec<String> {
    let m = Maglev::build(&keys(ids, weights), m);
    m.table().iter().map(|&s| ids[s as usize].clone()).collect()
}

fn shares(table: &[u32], n: usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for &s in table {
        counts[s as usize] += 1;
    }
    counts
}

#[test]
fn maglev_same_client_same_server() {
    let mut s = selector(Balance::Maglev, &[1; 5]);
    let c = up(&[1; 5]);
    for i in 0..100 {
        let first = s.pick(&c, client(i));
        assert_eq!(s.pick(&c, client(i)), first);
    }
}

#[test]
fn maglev_walks_forward_past_ineligible_consistently() {
    let mut s = selector(Balance::Maglev, &[1; 5]);
    let mut c = up(&[1; 5]);
    let mut moved = HashMap::new();
    for i in 0..1000 {
        let home = s.pick(&c, client(i)).unwrap();
        moved.insert(i, home);
    }
    c[2].eligible = false;
    for i in 0..1000 {
        let now = s.pick(&c, client(i)).unwrap();
        assert_ne!(now, 2);
        if moved[&i] != 2 {
            assert_eq!(now, moved[&i], "client {i} of a healthy server must stay");
        }
        assert_eq!(s.pick(&c, client(i)), Some(now), "fallback is stable too");
    }
}

#[test]
fn maglev_ipv4_mapped_client_hashes_as_ipv4() {
    let mut s = selector(Balance::Maglev, &[1; 7]);
    let c = up(&[1; 7]);
    for i in 0..50 {
        let IpAddr::V4(v4) = client(i) else {
            unreachable!()
        };
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert_eq!(s.pick(&c, mapped), s.pick(&c, IpAddr::V4(v4)));
    }
    // IPv6 clients spread too.
    let spread: std::collections::HashSet<_> = (0..200u128)
        .map(|i| {
            s.pick(&c, IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | i)))
                .unwrap()
        })
        .collect();
    assert_eq!(spread.len(), 7);
}

#[test]
fn maglev_weight_zero_servers_hold_no_slot() {
    let ids = ids(3);
    let m = Maglev::build(&keys(&ids, &[1, 0, 1]), 1009);
    assert!(m.table().iter().all(|&s| s != 1));
    assert_eq!(m.table().len(), 1009);
}

#[test]
fn maglev_uses_a_prime_covering_the_servers_when_given_less() {
    let ids = ids(10);
    let m = Maglev::build(&keys(&ids, &[1; 10]), 4);
    assert_eq!(m.table().len(), 11);
    assert!(shares(m.table(), 10).iter().all(|&c| c >= 1));
}

#[test]
fn maglev_hash_is_pinned() {
    // Two nodes, or two releases, must agree: this table prefix is part of
    // the contract (change it only with a release note).
    let ids = ids(3);
    let t = table_ids(&ids, &[1, 1, 1], 13);
    assert_eq!(t.concat(), "s2s0s1s2s0s2s2s0s1s0s0s1s1", "{t:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Maglev §3.4: each server takes one slot per round, so equal weights
    /// give every server floor(M/N) or ceil(M/N) slots.
    #[test]
    fn maglev_equal_weights_within_one_slot(n in 1usize..60, m in prop::sample::select(vec![1009usize, 4099, 65537])) {
        let ids = ids(n);
        let table = Maglev::build(&keys(&ids, &vec![1; n]), m);
        let counts = shares(table.table(), n);
        let ideal = m as f64 / n as f64;
        for c in counts {
            prop_assert!((c as f64 - ideal).abs() <= 1.0, "{c} vs {ideal}");
        }
    }

    /// Maglev §3.4 and §5.3: removing a server reassigns its own slots and
    /// only a little more.
    #[test]
    fn maglev_removal_moves_little_more_than_own_share(n in 3usize..40, gone in any::<prop::sample::Index>()) {
        let m = 65537;
        let all = ids(n);
        let gone = gone.index(n);
        let rest: Vec<String> = all.iter().enumerate().filter(|(i, _)| *i != gone).map(|(_, s)| s.clone()).collect();
        let before = table_ids(&all, &vec![1; n], m);
        let after = table_ids(&rest, &vec![1; n - 1], m);
        let own = before.iter().filter(|s| **s == all[gone]).count();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        prop_assert!(moved >= own);
        let extra = moved - own;
        // Measured: at most 0.5% of M beyond the server's own slots for N < 40.
        prop_assert!(extra <= own / 4 + m / 200, "own {own}, moved {moved}");
    }

    /// Two nodes listing the same servers in another order build the same table.
    #[test]
    fn maglev_table_independent_of_input_order(
        weights in prop::collection::vec(0u32..5, 1..30),
        seed in any::<u64>(),
    ) {
        let ids = ids(weights.len());
        let mut order: Vec<usize> = (0..weights.len()).collect();
        let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(seed);
        rand::seq::SliceRandom::shuffle(order.as_mut_slice(), &mut rng);
        let shuffled_ids: Vec<String> = order.iter().map(|&i| ids[i].clone()).collect();
        let shuffled_w: Vec<u32> = order.iter().map(|&i| weights[i]).collect();
        prop_assert_eq!(table_ids(&ids, &weights, 1009), table_ids(&shuffled_ids, &shuffled_w, 1009));
    }

    /// Shares follow weights: a server of weight w gets M·w/W slots, off by
    /// at most its turns in the last, partial round.
    #[test]
    fn maglev_shares_proportional_to_weight(weights in prop::collection::vec(1u32..10, 2..20)) {
        let m = 65537;
        let ids = ids(weights.len());
        let table = Maglev::build(&keys(&ids, &weights), m);
        let counts = shares(table.table(), weights.len());
        let total: u32 = weights.iter().sum();
        for (c, w) in counts.iter().zip(&weights) {
            let ideal = m as f64 * *w as f64 / total as f64;
            prop_assert!((*c as f64 - ideal).abs() <= *w as f64, "weight {w}: {c} vs {ideal}");
        }
    }

    /// Over one cycle of sum(weights) picks, each usable server is picked
    /// exactly weight times; the state then returns to zero, so every cycle does.
    #[test]
    fn smooth_round_robin_exact_proportions(
        servers in prop::collection::vec((0u32..8, any::<bool>()), 1..12),
    ) {
        let weights: Vec<u32> = servers.iter().map(|s| s.0).collect();
        let mut s = selector(Balance::RoundRobin, &weights);
        let c: Vec<Candidate> = servers.iter().map(|&(weight, eligible)| Candidate { weight, active: 0, eligible }).collect();
        let cycle: u32 = c.iter().filter(|c| c.eligible).map(|c| c.weight).sum();
        for _ in 0..2 {
            let mut counts = vec![0u32; c.len()];
            for _ in 0..cycle {
                counts[s.pick(&c, CLIENT).unwrap()] += 1;
            }
            let expected: Vec<u32> = c.iter().map(|c| if c.eligible { c.weight } else { 0 }).collect();
            prop_assert_eq!(&counts, &expected);
        }
        if cycle == 0 {
            prop_assert_eq!(s.pick(&c, CLIENT), None);
        }
    }

    /// The pick has the minimum active/weight among usable servers.
    #[test]
    fn least_connections_picks_a_least_loaded(
        servers in prop::collection::vec((0u32..5, 0usize..50, any::<bool>()), 1..20),
    ) {
        let c: Vec<Candidate> = servers.iter().map(|&(weight, active, eligible)| Candidate { weight, active, eligible }).collect();
        let mut s = selector(Balance::LeastConnections, &vec![1; c.len()]);
        let usable: Vec<&Candidate> = c.iter().filter(|c| c.eligible && c.weight > 0).collect();
        match s.pick(&c, CLIENT) {
            None => prop_assert!(usable.is_empty()),
            Some(p) => {
                prop_assert!(c[p].eligible && c[p].weight > 0);
                for u in usable {
                    prop_assert!(load_cmp(&c[p], u).is_le());
                }
            }
        }
    }

    /// Never an ineligible or drained server; never the single most loaded
    /// one when there is a choice (it always loses its comparison).
    #[test]
    fn random_two_never_ineligible_nor_unique_heaviest(
        servers in prop::collection::vec((0u32..5, 0usize..50, any::<bool>()), 1..20),
        seed in any::<u64>(),
    ) {
        let c: Vec<Candidate> = servers.iter().map(|&(weight, active, eligible)| Candidate { weight, active, eligible }).collect();
        let ids = ids(c.len());
        let mut s = Selector::new(Balance::RandomTwo, &keys(&ids, &vec![1; c.len()]), 1009).with_seed(seed);
        let usable: Vec<usize> = (0..c.len()).filter(|&i| c[i].eligible && c[i].weight > 0).collect();
        let heaviest = usable.iter().copied().filter(|&i| usable.iter().all(|&j| j == i || load_cmp(&c[j], &c[i]).is_lt()));
        let heaviest: Vec<usize> = heaviest.collect();
        for _ in 0..20 {
            match s.pick(&c, CLIENT) {
                None => prop_assert!(usable.is_empty()),
                Some(p) => {
                    prop_assert!(usable.contains(&p));
                    if usable.len() > 1 {
                        prop_assert!(!heaviest.contains(&p));
                    }
                }
            }
        }
    }
}
