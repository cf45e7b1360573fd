//! The proof of the reporter's bookkeeping: visiting only the IPs touched
//! (and those a write failed for), it reports what the whole join
//! ([`announced`]) gives, after any sequence of changes and failed writes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

fn ip(i: usize) -> IpAddr {
    IpAddr::from([203, 0, 113, i as u8])
}

fn service(i: usize) -> ServiceKey {
    ServiceKey::new("apps", format!("svc-{i}"))
}

const IPS: usize = 5;

/// Per IP: the interfaces it is applied on (mask of 2) and the Services owning it (mask of 3).
fn maps() -> impl Strategy<Value = Vec<(u8, u8)>> {
    proptest::collection::vec((0u8..4, 0u8..8), IPS)
}

/// One step: the maps, extra IPs said touched, whether all are, the IPs whose writes fail.
type Step = (Vec<(u8, u8)>, BTreeSet<usize>, bool, BTreeSet<usize>);

fn step() -> impl Strategy<Value = Step> {
    (
        maps(),
        proptest::collection::btree_set(0..IPS, 0..2),
        proptest::bool::weighted(0.1),
        prop_oneof![3 => Just(BTreeSet::new()), 1 => proptest::collection::btree_set(0..IPS, 1..3)],
    )
}

type Applied = BTreeMap<IpAddr, InterfaceNames>;
type Owned = BTreeMap<IpAddr, BTreeSet<ServiceKey>>;

fn build(masks: &[(u8, u8)]) -> (Applied, Owned) {
    let mut applied = Applied::new();
    let mut owned = Owned::new();
    for (i, (interfaces, services)) in masks.iter().enumerate() {
        let names: BTreeSet<String> = ["eth0", "eth1"]
            .iter()
            .enumerate()
            .filter(|(b, _)| interfaces & (1 << b) != 0)
            .map(|(_, name)| (*name).to_owned())
            .collect();
        if !names.is_empty() {
            applied.insert(ip(i), Arc::new(names));
        }
        let keys: BTreeSet<ServiceKey> = (0..3)
            .filter(|b| services & (1 << b) != 0)
            .map(service)
            .collect();
        if !keys.is_empty() {
            owned.insert(ip(i), keys);
        }
    }
    (applied, owned)
}

proptest! {
    #[test]
    fn visiting_the_touched_ips_reports_what_the_whole_join_gives(
        steps in proptest::collection::vec(step(), 1..25),
    ) {
        let mut reported = Reported::default();
        let (mut applied, mut owned) = (Applied::new(), Owned::new());
        for (masks, extra, all, failing) in steps {
            let (next_applied, next_owned) = build(&masks);
            let mut touched = Touched::default();
            let changed: BTreeSet<IpAddr> = (0..IPS)
                .map(ip)
                .filter(|ip| applied.get(ip) != next_applied.get(ip) || owned.get(ip) != next_owned.get(ip))
                .chain(extra.iter().map(|i| ip(*i)))
                .collect();
            touched.add(Some(&changed));
            if all {
                touched.add(None);
            }
            (applied, owned) = (next_applied, next_owned);

            let visit = reported.to_visit(&touched, &applied);
            let now = announced_at(visit.iter().copied(), &applied, &owned);
            let diff = reported.diff(&now);
            let failing: BTreeSet<IpAddr> = failing.iter().map(|i| ip(*i)).collect();
            let mut failed = BTreeSet::new();
            for (service, ip) in diff.gone {
                if failing.contains(&ip) {
                    failed.insert(ip);
                } else {
                    reported.withdrawn(&service, ip);
                }
            }
            for ((service, ip), interfaces) in diff.write {
                if failing.contains(&ip) {
                    failed.insert(ip);
                } else {
                    reported.written(service, ip, interfaces);
                }
            }
            reported.settle(visit, &failed);
            if failed.is_empty() {
                prop_assert!(reported.settled());
                prop_assert_eq!(reported.flat(), announced(&applied, &owned));
            }
        }
    }
}
