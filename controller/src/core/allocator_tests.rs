//! Scenarios for every allocation rule, on the pure allocator.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{AllocationError, Allocator};
use crate::core::labels::Labels;
use crate::core::pools::{AllocationScope, PoolConfig, withheld};
use crate::core::service::{FamilyNeeds, PortKey, ServiceKey, ServiceRequest, SharingTerms};
use crate::ipam::{AddressSet, Family, IpRange};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pool(name: &str, created: i64, addresses: &[&str]) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        created,
        declared: AddressSet::new(addresses.iter().map(|a| IpRange::parse(a).unwrap())),
        auto_assign: true,
        avoid_buggy: false,
        withheld: withheld(addresses),
        scope: None,
    }
}

fn request(name: &str) -> ServiceRequest {
    ServiceRequest {
        key: ServiceKey::new("ns", name),
        labels: Labels::new(),
        needs: FamilyNeeds {
            families: vec![Family::V4],
            all_required: true,
        },
        requested_ips: vec![],
        requested_pool: None,
        sharing: None,
        current_ips: vec![],
        recorded_pool: None,
        legacy_annotations: vec![],
    }
}

fn shared(name: &str, key: &str, ports: &[i32]) -> ServiceRequest {
    ServiceRequest {
        sharing: Some(Box::new(SharingTerms {
            key: key.into(),
            ports: ports
                .iter()
                .map(|p| PortKey {
                    protocol: "TCP".into(),
                    port: *p,
                })
                .collect(),
            local_traffic_policy: false,
            selector: Labels::new(),
        })),
        ..request(name)
    }
}

fn none() -> Labels {
    Labels::new()
}

#[test]
fn lowest_free_address_first_and_stable_on_reassign() {
    let mut a = Allocator::new();
    a.set_pools(vec![pool("p", 0, &["198.51.100.0/30"])]);
    assert_eq!(
        a.assign(&request("a"), &none()).unwrap().ips,
        vec![ip("198.51.100.0")]
    );
    assert_eq!(
        a.assign(&request("b"), &none()).unwrap().ips,
        vec![ip("198.51.100.1")]
    );
    // Re-evaluating an unchanged Service keeps its IP.
    assert_eq!(
        a.assign(&request("a"), &none()).unwrap().ips,
        vec![ip("198.51.100.0")]
    );
    assert_eq!(a.usage("p").assigned_v4, 2);
    assert_eq!(a.usage("p").available_v4, 2);
}

#[test]
fn pool_full_is_reported_and_freeing_helps() {
    let mut a = Allocator::new();
    a.set_pools(vec![pool("p", 0, &["198.51.100.9/32"])]);
    a.assign(&request("a"), &none()).unwrap();
    assert_eq!(
        a.assign(&request("b"), &none()),
        Err(AllocationError::PoolFull {
            pool: "p".into(),
            family: Family::V4
        })
    );
    let (_, freed) = a.release(&ServiceKey::new("ns", "a")).unwrap();
    assert!(freed);
    assert_eq!(
        a.assign(&request("b"), &none()).unwrap().ips,
        vec![ip("198.51.100.9")]
    );
}

#[test]
fn requested_ip_rules() {
    let mut a = Allocator::new();
    a.set_pools(vec![
        pool("p", 0, &["198.51.100.0/28"]),
        pool("q", 1, &["203.0.113.200-203.0.113.210"]),
    ]);
    let want = ServiceRequest {
        requested_ips: vec![ip("203.0.113.205")],
        ..request("a")
    };
    assert_eq!(a.assign(&want, &none()).unwrap().pool, "q");
    let taken = ServiceRequest {
        requested_ips: vec![ip("203.0.113.205")],
        ..request("b")
    };
    assert_eq!(
        a.assign(&taken, &none()),
        Err(AllocationError::IpTaken {
            ip: ip("203.0.113.205"),
            by: ServiceKey::new("ns", "a")
        })
    );
    let nowhere = ServiceRequest {
        requested_ips: vec![ip("192.0.2.99")],
        ..request("c")
    };
    assert_eq!(
        a.assign(&nowhere, &none()),
        Err(AllocationError::RequestedIpInNoPool {
            ip: ip("192.0.2.99")
        })
    );
    let wrong_pool = ServiceRequest {
        requested_ips: vec![ip("203.0.113.201")],
        requested_pool: Some("p".into()),
        ..request("d")
    };
    assert!(matches!(
        a.assign(&wrong_pool, &none()),
        Err(AllocationError::RequestedIpNotInPool { .. })
    ));
    let unknown = ServiceRequest {
        requested_pool: Some("nope".into()),
        ..request("e")
    };
    assert_eq!(
        a.assign(&unknown, &none()),
        Err(AllocationError::UnknownPool {
            pool: "nope".into()
        })
    );
}

#[test]
fn auto_assign_false_only_on_request() {
    let mut a = Allocator::new();
    let mut manual = pool("manual", 0, &["198.51.100.0/30"]);
    manual.auto_assign = false;
    a.set_pools(vec![manual]);
    assert_eq!(
        a.assign(&request("a"), &none()),
        Err(AllocationError::NoEligiblePool { pools: 1 })
    );
    let by_pool = ServiceRequest {
        requested_pool: Some("manual".into()),
        ..request("a")
    };
    assert_eq!(a.assign(&by_pool, &none()).unwrap().pool, "manual");
    let by_ip = ServiceRequest {
        requested_ips: vec![ip("198.51.100.3")],
        ..request("b")
    };
    assert_eq!(
        a.assign(&by_ip, &none()).unwrap().ips,
        vec![ip("198.51.100.3")]
    );
}

#[test]
fn avoid_buggy_ips_skips_dot_zero_and_dot_255() {
    let mut a = Allocator::new();
    let mut p = pool("p", 0, &["198.51.100.254-198.51.101.1"]);
    p.avoid_buggy = true;
    a.set_pools(vec![p]);
    let got: Vec<IpAddr> = ["a", "b", "c"]
        .iter()
        .filter_map(|n| a.assign(&request(n), &none()).ok())
        .map(|x| x.ips[0])
        .collect();
    assert_eq!(got, vec![ip("198.51.100.254"), ip("198.51.101.1")]);
}

#[test]
fn ipv6_cidr_withholds_its_subnet_router_anycast_address() {
    let v6 = |n: &str| ServiceRequest {
        needs: FamilyNeeds {
            families: vec![Family::V6],
            all_required: true,
        },
        ..request(n)
    };
    let mut a = Allocator::new();
    a.set_pools(vec![
        pool("cidr", 0, &["2001:db8:100::/126"]),
        pool("range", 1, &["2001:db8:200::-2001:db8:200::1"]),
    ]);
    // RFC 4291 §2.6.1: `2001:db8:100::` is the subnet's routers, not handed out unasked.
    let got: Vec<IpAddr> = ["a", "b", "c", "d"]
        .iter()
        .filter_map(|n| a.assign(&v6(n), &none()).ok())
        .map(|x| x.ips[0])
        .collect();
    assert_eq!(
        got,
        vec![
            ip("2001:db8:100::1"),
            ip("2001:db8:100::2"),
            ip("2001:db8:100::3"),
            // A range names its addresses one by one: its first one is handed out.
            ip("2001:db8:200::"),
        ]
    );
    assert_eq!(a.usage("cidr").available_v6, 0);
    // Asked for, or already held, it is given and kept; the counters stay exact.
    let asked = ServiceRequest {
        requested_ips: vec![ip("2001:db8:100::")],
        ..v6("asked")
    };
    assert_eq!(
        a.assign(&asked, &none()).unwrap().ips,
        vec![ip("2001:db8:100::")]
    );
    let holder = ServiceRequest {
        current_ips: vec![ip("2001:db8:100::")],
        ..v6("asked")
    };
    assert_eq!(
        a.assign(&holder, &none()).unwrap().ips,
        vec![ip("2001:db8:100::")]
    );
    assert_eq!(a.usage("cidr").assigned_v6, 4);
    assert_eq!(a.usage("cidr").available_v6, 0);
}

#[test]
fn sharing_rules() {
    let mut a = Allocator::new();
    a.set_pools(vec![pool("p", 0, &["198.51.100.0/29"])]);
    let first = a.assign(&shared("a", "k", &[80]), &none()).unwrap();
    // Same key, disjoint ports: same IP.
    assert_eq!(
        a.assign(&shared("b", "k", &[443]), &none()).unwrap().ips,
        first.ips
    );
    // Same key, overlapping port: a different IP (a new one is allocated).
    let c = a.assign(&shared("c", "k", &[80]), &none()).unwrap();
    assert_ne!(c.ips, first.ips);
    // Different key asking for the shared IP: conflict.
    let other_key = ServiceRequest {
        requested_ips: first.ips.clone(),
        ..shared("d", "other", &[8080])
    };
    assert!(matches!(
        a.assign(&other_key, &none()),
        Err(AllocationError::SharingConflict { .. })
    ));
    // No key asking for it: taken.
    let exclusive = ServiceRequest {
        requested_ips: first.ips.clone(),
        ..request("e")
    };
    assert!(matches!(
        a.assign(&exclusive, &none()),
        Err(AllocationError::IpTaken { .. })
    ));
    // Local policy needs identical selectors.
    let mut local = ServiceRequest {
        requested_ips: first.ips.clone(),
        ..shared("f", "k", &[9000])
    };
    if let Some(t) = local.sharing.as_mut() {
        t.local_traffic_policy = true;
        t.selector = [("app".to_string(), "x".to_string())].into();
    }
    assert!(matches!(
        a.assign(&local, &none()),
        Err(AllocationError::SharingConflict { .. })
    ));
    // The IP is freed only when its last user goes.
    assert!(!a.release(&ServiceKey::new("ns", "a")).unwrap().1);
    assert!(a.release(&ServiceKey::new("ns", "b")).unwrap().1);
}

#[test]
fn dual_stack_policies() {
    let mut a = Allocator::new();
    a.set_pools(vec![
        pool("v4only", 0, &["198.51.100.0/30"]),
        pool("dual", 1, &["203.0.113.128/30", "2001:db8:1::/64"]),
    ]);
    let require = ServiceRequest {
        needs: FamilyNeeds {
            families: vec![Family::V6, Family::V4],
            all_required: true,
        },
        ..request("r")
    };
    let got = a.assign(&require, &none()).unwrap();
    assert_eq!(got.pool, "dual");
    assert_eq!(got.ips, vec![ip("2001:db8:1::1"), ip("203.0.113.128")]);
    let prefer = ServiceRequest {
        needs: FamilyNeeds {
            families: vec![Family::V4, Family::V6],
            all_required: false,
        },
        ..request("p")
    };
    let got = a.assign(&prefer, &none()).unwrap();
    assert_eq!(
        (got.pool.as_str(), got.ips.len()),
        ("dual", 2),
        "pools are tried in name order; dual first"
    );
    let v6 = ServiceRequest {
        needs: FamilyNeeds {
            families: vec![Family::V6],
            all_required: true,
        },
        ..request("s")
    };
    a.set_pools(vec![pool("v4only", 0, &["198.51.100.0/30"])]);
    assert_eq!(
        a.assign(&v6, &none()),
        Err(AllocationError::FamilyUnavailable {
            pool: "v4only".into(),
            family: Family::V6
        })
    );
}

#[test]
fn service_allocation_scope_and_priority() {
    let mut a = Allocator::new();
    let mut gold = pool("gold", 0, &["198.51.100.0/30"]);
    gold.scope = Some(AllocationScope {
        priority: Some(10),
        namespaces: vec!["prod".into()],
        ..Default::default()
    });
    let mut silver = pool("silver", 1, &["198.51.100.8/30"]);
    silver.scope = Some(AllocationScope {
        priority: Some(5),
        namespace_selectors: vec![LabelSelector {
            match_labels: Some([("tier".to_string(), "paid".to_string())].into()),
            ..Default::default()
        }],
        ..Default::default()
    });
    let fallback = pool("any", 2, &["203.0.113.200/30"]);
    a.set_pools(vec![gold, silver, fallback]);
    let paid: Labels = [("tier".to_string(), "paid".to_string())].into();
    let mut prod = request("web");
    prod.key = ServiceKey::new("prod", "web");
    // prod is admitted by gold; with paid labels also by silver, which has the better priority.
    assert_eq!(a.assign(&prod, &none()).unwrap().pool, "gold");
    let mut prod2 = request("api");
    prod2.key = ServiceKey::new("prod", "api");
    assert_eq!(a.assign(&prod2, &paid).unwrap().pool, "silver");
    assert_eq!(a.assign(&request("other"), &none()).unwrap().pool, "any");
}

#[test]
fn restart_rebuild_keeps_ips_even_out_of_order() {
    let mut a = Allocator::new();
    a.set_pools(vec![pool("p", 0, &["198.51.100.0/28"])]);
    // A rebuilt allocator sees a Service that already shows .7 in its status.
    let restored = ServiceRequest {
        current_ips: vec![ip("198.51.100.7")],
        ..request("old")
    };
    assert_eq!(
        a.assign(&restored, &none()).unwrap().ips,
        vec![ip("198.51.100.7")]
    );
    assert_eq!(
        a.assign(&request("new"), &none()).unwrap().ips,
        vec![ip("198.51.100.0")]
    );
    // A duplicate claim on .7 (two statuses showing it) loses it to the first.
    let dup = ServiceRequest {
        current_ips: vec![ip("198.51.100.7")],
        ..request("dup")
    };
    assert_eq!(
        a.assign(&dup, &none()).unwrap().ips,
        vec![ip("198.51.100.1")]
    );
}

#[test]
fn pool_shrink_and_delete_orphan_services() {
    let mut a = Allocator::new();
    a.set_pools(vec![
        pool("p", 0, &["198.51.100.0/29"]),
        pool("q", 1, &["203.0.113.200/30"]),
    ]);
    let x = ServiceRequest {
        requested_ips: vec![ip("198.51.100.6")],
        ..request("x")
    };
    a.assign(&x, &none()).unwrap();
    a.assign(&request("y"), &none()).unwrap();
    // Shrinking to .0-.3 orphans x only; y (.0) stays put.
    let orphans = a.set_pools(vec![
        pool("p", 0, &["198.51.100.0/30"]),
        pool("q", 1, &["203.0.113.200/30"]),
    ]);
    assert_eq!(orphans, vec![ServiceKey::new("ns", "x")]);
    assert!(matches!(
        a.assign(&x, &none()),
        Err(AllocationError::RequestedIpInNoPool { .. })
    ));
    // Deleting p orphans y, which moves to q.
    let orphans = a.set_pools(vec![pool("q", 1, &["203.0.113.200/30"])]);
    assert_eq!(orphans, vec![ServiceKey::new("ns", "y")]);
    assert_eq!(a.assign(&request("y"), &none()).unwrap().pool, "q");
}

#[test]
fn overlapping_pools_never_allocate_the_overlap_but_keep_existing() {
    let mut a = Allocator::new();
    a.set_pools(vec![pool("early", 0, &["198.51.100.0/30"])]);
    let held = a.assign(&request("a"), &none()).unwrap();
    assert_eq!(held.ips, vec![ip("198.51.100.0")]);
    let orphans = a.set_pools(vec![
        pool("early", 0, &["198.51.100.0/30"]),
        pool("late", 1, &["198.51.100.0/29"]),
    ]);
    assert!(orphans.is_empty(), "existing IPs in the overlap stay");
    assert!(a.pools()["late"].conflict.is_some());
    assert_eq!(a.assign(&request("a"), &none()).unwrap().ips, held.ips);
    // New Services get addresses outside the overlap only.
    let mut got = BTreeSet::new();
    for n in ["b", "c", "d", "e", "f"] {
        if let Ok(x) = a.assign(&request(n), &none()) {
            got.insert(x.ips[0]);
        }
    }
    let expected: BTreeSet<IpAddr> = (4..8).map(|i| ip(&format!("198.51.100.{i}"))).collect();
    assert_eq!(got, expected);
}

#[test]
fn ipv6_pool_of_any_size_is_cheap() {
    let mut a = Allocator::new();
    a.set_pools(vec![pool("huge", 0, &["2001:db8::/32"])]);
    let v6 = |n: &str| ServiceRequest {
        needs: FamilyNeeds {
            families: vec![Family::V6],
            all_required: true,
        },
        ..request(n)
    };
    for i in 0..1000 {
        a.assign(&v6(&format!("s{i}")), &none()).unwrap();
    }
    let usage = a.usage("huge");
    assert_eq!(usage.assigned_v6, 1000);
    // The subnet-router anycast address `2001:db8::` is not available.
    assert_eq!(usage.available_v6, (1u128 << 96) - 1 - 1000);
}
