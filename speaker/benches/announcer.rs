//! The L2 announcer's work per change at 10,000 IPs on 2 interfaces (issue 13 §2):
//! one EndpointSlice change makes this node gain one IPv4 address, all of them
//! `AllSuitable` on two suitable interfaces, the group agreeing (no probes). The
//! iterations alternate: the IP is gained, then lost again.
//!
//! Each part of the way from the desired map to what is reported, whole (the
//! way the announcer worked up to 6e2bc1c: every IP visited per change, as
//! the whole-map functions of `l2::serving` still do) and incremental (what it
//! does now):
//! - `assign_whole`: `serving::ownerships` (`plan::assign`, the IPs announced
//!   anywhere, each interface's whole `Ownership`), each compared with the
//!   last and kept (what `reconcile` did before sending them);
//!   `assign_incremental`: `Assignment::update`, handing out each interface's change;
//! - `tasks_whole`: for both interface tasks, a copy of the whole ownership (the
//!   task took one out of its watch channel) and `InterfaceState::replace`;
//!   `tasks_incremental`: `InterfaceState::apply` with the change;
//! - `applied_whole`: `applied_of` both tasks' served IPs, compared with the
//!   last and kept (the announcer's `publish`); `applied_incremental`:
//!   `patch_applied` with what each task reported changed;
//! - `report_whole`: the report loop's join of `applied` with the owned IPs'
//!   Services (`model::announced`), and the reporter's diff of it against
//!   what it reported, as 6e2bc1c did it (every announced key looked up, with
//!   its Service key cloned); `report_incremental`: the reporter's IPs to
//!   visit (`Reported::to_visit`), what is announced at them
//!   (`model::announced_at`), the diff (`Reported::diff`) and its bookkeeping.
//!
//! `cargo bench -p ferrolb-speaker --bench announcer`

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_speaker::l2::MacAddr;
use ferrolb_speaker::l2::arbiter::{Arbiter, Rank};
use ferrolb_speaker::l2::interfaces::{ExcludePatterns, InterfaceInfo};
use ferrolb_speaker::l2::plan::{GroupView, InterfaceFilter, Ownership};
use ferrolb_speaker::l2::serving::{
    Applied, Assignment, Desired, InterfaceSets, InterfaceState, OwnershipChange, Reception,
    applied_of, ownerships, patch_applied,
};
use ferrolb_speaker::model::{Announced, Reported, ServiceKey, Touched, announced, announced_at};

const IPS: u32 = 10_000;
const NODE: &str = "node-000";

fn ip(i: u32) -> IpAddr {
    // 198.18.0.0/17, as the end-to-end bench.
    let [_, _, high, low] = i.to_be_bytes();
    IpAddr::V4(Ipv4Addr::new(198, 18, high, low))
}

/// The IP the change adds: outside the others.
fn gained() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 100, 1))
}

fn interface(name: &str, index: u32) -> InterfaceInfo {
    InterfaceInfo {
        name: name.to_owned(),
        index,
        up: true,
        running: true,
        broadcast: true,
        loopback: false,
        bridge_port: false,
        mac: Some(MacAddr([0x02, 0, 0, 0, 0, index as u8])),
    }
}

/// Both sockets open, nothing IPv6.
struct Sockets;

impl Reception for Sockets {
    fn follow(&mut self, _: &BTreeSet<IpAddr>, _: bool) -> bool {
        false
    }
    fn can_serve(&self, _: &IpAddr) -> bool {
        true
    }
}

fn rank(ip: IpAddr) -> Rank {
    Rank::of(NODE, ip)
}

/// One interface task's state and arbiter, having taken `first` whole.
fn task(first: &Ownership, mac: u8, now: Instant) -> (InterfaceState, Arbiter) {
    let mut state = InterfaceState::default();
    let mut arbiter = Arbiter::new(MacAddr([0x02, 0, 0, 0, 0, mac]));
    state.replace(first.clone(), &mut arbiter, &mut Sockets, rank, now);
    (state, arbiter)
}

fn per_change(c: &mut Criterion) {
    let before: Desired = (0..IPS)
        .map(|i| (ip(i), InterfaceFilter::AllSuitable))
        .collect();
    let mut after = before.clone();
    after.insert(gained(), InterfaceFilter::AllSuitable);
    let desired = [&before, &after];
    let listing = vec![interface("eth0", 2), interface("eth1", 3)];
    let exclude = ExcludePatterns::defaults();
    let group = GroupView {
        probe_first: false,
        joins: 0,
    };
    let whole = [
        ownerships(&before, &listing, &exclude, group),
        ownerships(&after, &listing, &exclude, group),
    ];
    assert_eq!(whole[0].len(), 2, "both interfaces announce");
    let eth0 = [&whole[0]["eth0"], &whole[1]["eth0"]];
    let changes = [
        OwnershipChange::between(eth0[1], eth0[0]),
        OwnershipChange::between(eth0[0], eth0[1]),
    ];
    let names = ["eth0".to_owned(), "eth1".to_owned()];
    let served = [&eth0[0].here, &eth0[1].here];
    let served_changes = [
        BTreeMap::from([(gained(), false)]),
        BTreeMap::from([(gained(), true)]),
    ];
    let owned: BTreeMap<IpAddr, BTreeSet<ServiceKey>> = (0..=IPS)
        .map(|i| {
            let ip = if i == IPS { gained() } else { ip(i) };
            let key = ServiceKey::new("apps", format!("svc-{i:05}"));
            (ip, BTreeSet::from([key]))
        })
        .collect();
    let applied = [
        applied_of(names.iter().zip([served[0], served[0]])),
        applied_of(names.iter().zip([served[1], served[1]])),
    ];
    let reported = [
        announced(&applied[0], &owned),
        announced(&applied[1], &owned),
    ];

    let mut group_bench = c.benchmark_group("announcer_10k_ips_2_interfaces");
    group_bench.sample_size(20);
    group_bench.warm_up_time(Duration::from_secs(1));
    group_bench.measurement_time(Duration::from_secs(4));

    let mut flip = 0usize;
    let mut current: BTreeMap<String, Ownership> = whole[0].clone();
    group_bench.bench_function("assign_whole", |b| {
        b.iter(|| {
            flip ^= 1;
            for (name, ownership) in ownerships(desired[flip], &listing, &exclude, group) {
                let kept = current.entry(name).or_default();
                if *kept != ownership {
                    *kept = ownership;
                }
            }
            black_box(current.len())
        })
    });
    let mut assignment = Assignment::default();
    assignment.update(
        desired[flip],
        &Touched::everything(),
        &listing,
        &exclude,
        group,
    );
    // What the plan loop tells the announcer: the one IP that changed.
    let told = Touched {
        all: false,
        ips: BTreeSet::from([gained()]),
    };
    group_bench.bench_function("assign_incremental", |b| {
        b.iter(|| {
            flip ^= 1;
            black_box(assignment.update(desired[flip], &told, &listing, &exclude, group))
        })
    });

    let now = Instant::now();
    let mut tasks = [task(eth0[flip], 1, now), task(eth0[flip], 2, now)];
    group_bench.bench_function("tasks_whole", |b| {
        b.iter(|| {
            flip ^= 1;
            for (state, arbiter) in &mut tasks {
                let next = eth0[flip].clone();
                black_box(state.replace(next, arbiter, &mut Sockets, rank, now));
            }
        })
    });
    let mut tasks = [task(eth0[flip], 1, now), task(eth0[flip], 2, now)];
    group_bench.bench_function("tasks_incremental", |b| {
        b.iter(|| {
            flip ^= 1;
            for (state, arbiter) in &mut tasks {
                black_box(state.apply(&changes[flip], arbiter, &mut Sockets, rank, now));
            }
        })
    });

    let mut current: Applied = applied[flip].clone();
    group_bench.bench_function("applied_whole", |b| {
        b.iter(|| {
            flip ^= 1;
            let applied = applied_of(names.iter().zip([served[flip], served[flip]]));
            if current != applied {
                current = applied;
            }
            black_box(current.len())
        })
    });
    let mut current: Applied = applied[flip].clone();
    let mut sets = InterfaceSets::default();
    group_bench.bench_function("applied_incremental", |b| {
        b.iter(|| {
            flip ^= 1;
            for name in &names {
                black_box(patch_applied(
                    &mut current,
                    &mut sets,
                    name,
                    &served_changes[flip],
                ));
            }
        })
    });

    let mut last = reported[flip].clone();
    group_bench.bench_function("report_whole", |b| {
        b.iter(|| {
            flip ^= 1;
            let now = announced(&applied[flip], &owned);
            black_box(old_diff(&last, &now));
            last = now;
        })
    });
    let mut book = Reported::default();
    for ((service, ip), interfaces) in &reported[flip] {
        book.written(
            service.clone(),
            *ip,
            std::sync::Arc::new(interfaces.clone()),
        );
    }
    let touched = Touched {
        all: false,
        ips: BTreeSet::from([gained()]),
    };
    group_bench.bench_function("report_incremental", |b| {
        b.iter(|| {
            flip ^= 1;
            let visit = book.to_visit(&touched, &applied[flip]);
            let now = announced_at(visit.iter().copied(), &applied[flip], &owned);
            let diff = book.diff(&now);
            for (service, ip) in diff.gone {
                book.withdrawn(&service, ip);
            }
            for ((service, ip), interfaces) in diff.write {
                book.written(service, ip, interfaces);
            }
            book.settle(visit, &BTreeSet::new());
        })
    });
    group_bench.finish();
}

/// The reporter's diff as 6e2bc1c did it: the keys gone, then each announced
/// key looked up in what was reported, its Service key cloned for the lookup.
fn old_diff(reported: &Announced, now: &Announced) -> usize {
    let gone = reported
        .keys()
        .filter(|key| !now.contains_key(*key))
        .cloned()
        .collect::<Vec<_>>();
    let write = now
        .iter()
        .filter(|((service, ip), interfaces)| {
            reported.get(&(service.clone(), *ip)) != Some(*interfaces)
        })
        .count();
    gone.len() + write
}

criterion_group!(benches, per_change);
criterion_main!(benches);
