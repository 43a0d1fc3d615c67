//! Server selection cost: nanoseconds per pick for each algorithm at 10 and
//! 100 servers, and Maglev table build time at 10, 100 and 1000 servers.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use lb::balance::{Candidate, Selector, ServerKey};
use lb::config::Balance;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const ALGORITHMS: [Balance; 4] = [
    Balance::RoundRobin,
    Balance::LeastConnections,
    Balance::Maglev,
    Balance::RandomTwo,
];
const TABLE_SIZE: usize = 65537;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("server-{i}")).collect()
}

fn keys(names: &[String]) -> Vec<ServerKey<'_>> {
    names
        .iter()
        .enumerate()
        .map(|(i, id)| ServerKey {
            id,
            weight: 1 + (i % 3) as u32,
        })
        .collect()
}

/// A realistic mix: varied load, one server in ten ineligible (down or full).
fn candidates(keys: &[ServerKey<'_>], rng: &mut SmallRng) -> Vec<Candidate> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| Candidate {
            weight: k.weight,
            active: rng.gen_range(0..500),
            eligible: i % 10 != 3,
        })
        .collect()
}

/// Half IPv4, half IPv6 clients, so Maglev hashes both widths.
fn clients(rng: &mut SmallRng) -> Vec<IpAddr> {
    (0..1024)
        .map(|i| {
            if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(rng.gen::<u32>()))
            } else {
                IpAddr::V6(Ipv6Addr::from(rng.gen::<u128>()))
            }
        })
        .collect()
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    let mut rng = SmallRng::seed_from_u64(7);
    let clients = clients(&mut rng);
    for n in [10, 100] {
        let names = names(n);
        let keys = keys(&names);
        let cands = candidates(&keys, &mut rng);
        for balance in ALGORITHMS {
            let mut sel = Selector::new(balance, &keys, TABLE_SIZE).with_seed(1);
            let mut i = 0usize;
            group.bench_with_input(BenchmarkId::new(balance.as_str(), n), &cands, |b, cands| {
                b.iter(|| {
                    i = (i + 1) % clients.len();
                    black_box(sel.pick(black_box(cands), clients[i]))
                })
            });
        }
    }
    group.finish();
}

fn maglev_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    group.sample_size(10);
    for n in [10, 100, 1000] {
        let names = names(n);
        let keys = keys(&names);
        group.bench_with_input(BenchmarkId::from_parameter(n), &keys, |b, keys| {
            b.iter(|| black_box(Selector::new(Balance::Maglev, black_box(keys), TABLE_SIZE)))
        });
    }
    group.finish();
}

criterion_group!(benches, pick, maglev_build);
criterion_main!(benches);
