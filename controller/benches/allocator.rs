//! Allocator throughput: `lowest_free` + `insert`, as the controller allocates.
//!
//! Scenarios, each reported in allocations per second:
//! - `fill`: allocate `n` addresses in a row into an empty table;
//! - `churn_compact`: with `n` addresses allocated as one block (as `fill`
//!   leaves them), free one (chosen pseudo-randomly) and allocate again,
//!   which finds the hole just made; the table stays at one or two runs;
//! - `churn_spread`: the `n` addresses are spread evenly over the pool, so the
//!   table holds up to `n` runs (the fragmented worst case for the `BTreeMap`);
//!   free one pseudo-randomly and allocate the lowest free address, which is
//!   usually another hole.
//!
//! Pools: an IPv4 /16 (198.18.0.0/16) for 10k; 100k addresses do not fit in a
//! /16 (65,536), so the 100k IPv4 case uses the /15 (198.18.0.0/15, the RFC
//! 2544 benchmarking block, 131,072 addresses); an IPv6 /64 (2001:db8::/64)
//! for both. The IPv4 pools are also run with `avoid_buggy`.
//!
//! `cargo bench -p ferrolb-controller --bench allocator`

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrolb_controller::ipam::{AddressSet, Family, UsedAddresses};
use ferrolb_crds::address::{from_u128, to_u128};

struct Scenario {
    name: &'static str,
    pool: &'static str,
    family: Family,
    avoid_buggy: bool,
    n: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ipv4_/16",
        pool: "198.18.0.0/16",
        family: Family::V4,
        avoid_buggy: false,
        n: 10_000,
    },
    Scenario {
        name: "ipv4_/15",
        pool: "198.18.0.0/15",
        family: Family::V4,
        avoid_buggy: false,
        n: 100_000,
    },
    Scenario {
        name: "ipv4_/16_avoid_buggy",
        pool: "198.18.0.0/16",
        family: Family::V4,
        avoid_buggy: true,
        n: 10_000,
    },
    Scenario {
        name: "ipv4_/15_avoid_buggy",
        pool: "198.18.0.0/15",
        family: Family::V4,
        avoid_buggy: true,
        n: 100_000,
    },
    Scenario {
        name: "ipv6_/64",
        pool: "2001:db8::/64",
        family: Family::V6,
        avoid_buggy: false,
        n: 10_000,
    },
    Scenario {
        name: "ipv6_/64",
        pool: "2001:db8::/64",
        family: Family::V6,
        avoid_buggy: false,
        n: 100_000,
    },
];

/// Allocates the lowest free address of `pool`, as the controller does.
fn allocate(used: &mut UsedAddresses, pool: &AddressSet, s: &Scenario) -> Option<IpAddr> {
    let ip = used.lowest_free(pool, s.family, s.avoid_buggy)?;
    used.insert(ip);
    Some(ip)
}

fn fill(used: &mut UsedAddresses, pool: &AddressSet, s: &Scenario) -> Vec<IpAddr> {
    (0..s.n).map_while(|_| allocate(used, pool, s)).collect()
}

/// `n` addresses spread evenly over the (single-range) pool; with
/// `avoid_buggy`, over its usable addresses only, so that `lowest_free`
/// could have returned each of them.
fn spread(pool: &AddressSet, s: &Scenario) -> Vec<IpAddr> {
    let Some(range) = pool.ranges().first() else {
        return Vec::new();
    };
    let start = to_u128(&range.start());
    let n = s.n as u128;
    (0..n)
        .filter_map(|k| {
            let offset = if s.avoid_buggy {
                // Pools here are /24-aligned: 254 usable addresses per /24.
                let index = k * (range.len() / 256 * 254) / n;
                (index / 254) * 256 + index % 254 + 1
            } else {
                k * range.len() / n
            };
            from_u128(s.family, start + offset)
        })
        .collect()
}

/// A small xorshift generator, so that the freed addresses are spread over
/// the pool the same way on every run.
struct XorShift(u64);

impl XorShift {
    fn next_index(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn bench(c: &mut Criterion) {
    let mut fills = c.benchmark_group("fill");
    fills
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for s in SCENARIOS {
        let Ok(pool) = AddressSet::parse([s.pool]) else {
            panic!("bad pool {}", s.pool)
        };
        fills.throughput(Throughput::Elements(s.n as u64));
        fills.bench_function(BenchmarkId::new(s.name, s.n), |b| {
            b.iter_batched(
                UsedAddresses::new,
                |mut used| {
                    let mut count = 0;
                    while count < s.n && allocate(&mut used, &pool, s).is_some() {
                        count += 1;
                    }
                    assert_eq!(count, s.n, "pool {} too small", s.pool);
                    // Returned, so that dropping the table is not timed.
                    used
                },
                BatchSize::LargeInput,
            );
        });
    }
    fills.finish();

    for (group, layout) in [
        ("churn_compact", fill as Layout),
        ("churn_spread", |_, pool, s| spread(pool, s)),
    ] {
        let mut churn = c.benchmark_group(group);
        churn
            .sample_size(20)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        churn.throughput(Throughput::Elements(1));
        for s in SCENARIOS {
            let Ok(pool) = AddressSet::parse([s.pool]) else {
                panic!("bad pool {}", s.pool)
            };
            let mut used = UsedAddresses::new();
            let mut allocated = layout(&mut used, &pool, s);
            used.extend(allocated.iter().copied());
            assert_eq!(allocated.len(), s.n, "pool {} too small", s.pool);
            assert_eq!(used.len(), s.n);
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
            churn.bench_function(BenchmarkId::new(s.name, s.n), |b| {
                b.iter(|| {
                    let slot = rng.next_index(allocated.len());
                    used.remove(allocated[slot]);
                    // Never `None`: the address just freed is free.
                    if let Some(ip) = allocate(&mut used, &pool, s) {
                        allocated[slot] = black_box(ip);
                    }
                });
            });
        }
        churn.finish();
    }
}

/// How the table is laid out before churning.
type Layout = fn(&mut UsedAddresses, &AddressSet, &Scenario) -> Vec<IpAddr>;

criterion_group!(benches, bench);
criterion_main!(benches);
