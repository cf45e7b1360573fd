//! Properties of the L2 plan over random clusters, built as Kubernetes objects so that the
//! conversion is exercised too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_crds::l2::L2AdvertisementSpec;
use proptest::prelude::*;

use crate::election::elect;
use crate::model::ClassFilter;
use crate::model::eligibility::LABEL_EXCLUDE_FROM_LOAD_BALANCERS;
use crate::model::eligibility::Liveness;
use crate::model::fixtures::*;
use crate::model::l2::{L2Decision, l2_plan};
use crate::model::scope::{AdvertisementScope, AdvertisementSelectors};
use crate::model::view::{ClusterView, ServiceKey, ServiceSet};

/// Service IPs to choose from: in pool `low`, in pool `high`, and one in no pool.
pub(crate) const IPS: [&str; 6] = [
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.17",
    "2001:db8::5",
    "198.51.100.1",
];

#[derive(Debug, Clone)]
pub(crate) struct NodeCase {
    pub(crate) zone_west: bool,
    pub(crate) ready: bool,
    pub(crate) network_unavailable: bool,
    pub(crate) excluded: bool,
    pub(crate) gossip_alive: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct AdvertisementCase {
    by_name: Vec<&'static str>,
    by_tier: Option<&'static str>,
    node_zone: Option<&'static str>,
    service_app: Option<&'static str>,
    interfaces: Vec<&'static str>,
}

#[derive(Debug, Clone)]
pub(crate) struct ServiceCase {
    pub(crate) ips: BTreeSet<usize>,
    pub(crate) app: &'static str,
    pub(crate) local: bool,
    /// Node index (`None`: no nodeName; one past the last: a node that does not exist)
    /// and conditions.
    pub(crate) endpoints: Vec<(Option<usize>, Conditions)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Scenario {
    pub(crate) nodes: Vec<NodeCase>,
    pub(crate) advertisements: Vec<AdvertisementCase>,
    pub(crate) services: Vec<ServiceCase>,
}

fn node_case() -> impl Strategy<Value = NodeCase> {
    (
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(zone_west, ready, network_unavailable, excluded, gossip_alive)| NodeCase {
                zone_west,
                ready,
                network_unavailable,
                excluded,
                gossip_alive,
            },
        )
}

fn advertisement_case() -> impl Strategy<Value = AdvertisementCase> {
    (
        prop::sample::subsequence(vec!["low", "high"], 0..=2),
        prop::option::weighted(0.3, prop::sample::select(vec!["a", "b"])),
        prop::option::weighted(0.3, prop::sample::select(vec!["east", "west"])),
        prop::option::weighted(0.3, prop::sample::select(vec!["web", "db"])),
        prop::sample::subsequence(vec!["eth0", "eth1", "bond0"], 0..=2),
    )
        .prop_map(
            |(by_name, by_tier, node_zone, service_app, interfaces)| AdvertisementCase {
                by_name,
                by_tier,
                node_zone,
                service_app,
                interfaces,
            },
        )
}

fn service_case(node_count: usize) -> impl Strategy<Value = ServiceCase> {
    let endpoint = (
        prop::option::weighted(0.9, 0..node_count + 1),
        (
            prop::option::of(prop::bool::weighted(0.8)),
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
        ),
    );
    (
        prop::collection::btree_set(0..IPS.len(), 1..=2),
        prop::sample::select(vec!["web", "db"]),
        any::<bool>(),
        prop::collection::vec(endpoint, 0..4),
    )
        .prop_map(|(ips, app, local, endpoints)| ServiceCase {
            ips,
            app,
            local,
            endpoints,
        })
}

pub(crate) fn scenario() -> impl Strategy<Value = Scenario> {
    (1usize..7)
        .prop_flat_map(|node_count| {
            (
                prop::collection::vec(node_case(), node_count),
                prop::collection::vec(advertisement_case(), 0..4),
                prop::collection::vec(service_case(node_count), 0..10),
            )
        })
        .prop_map(|(nodes, advertisements, services)| Scenario {
            nodes,
            advertisements,
            services,
        })
}

pub(crate) fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The scenario's objects, each list rotated by `rotation` and reversed when `reverse`.
pub(crate) struct Objects {
    services: Vec<k8s_openapi::api::core::v1::Service>,
    slices: Vec<k8s_openapi::api::discovery::v1::EndpointSlice>,
    nodes: Vec<k8s_openapi::api::core::v1::Node>,
    pools: Vec<ferrolb_crds::pool::IPAddressPool>,
    advertisements: Vec<ferrolb_crds::l2::L2Advertisement>,
}

impl Objects {
    pub(crate) fn of(scenario: &Scenario) -> Objects {
        let mut objects = Objects {
            services: Vec::new(),
            slices: Vec::new(),
            nodes: Vec::new(),
            pools: vec![
                k8s_pool("low", labels(&[("tier", "a")]), &["203.0.113.0/28"]),
                k8s_pool(
                    "high",
                    labels(&[("tier", "b")]),
                    &["203.0.113.16/28", "2001:db8::/120"],
                ),
            ],
            advertisements: Vec::new(),
        };
        for (i, node) in scenario.nodes.iter().enumerate() {
            let mut node_labels = labels(&[("zone", if node.zone_west { "west" } else { "east" })]);
            if node.excluded {
                node_labels.insert(LABEL_EXCLUDE_FROM_LOAD_BALANCERS.into(), String::new());
            }
            let ready = if node.ready { "True" } else { "False" };
            let network = if node.network_unavailable {
                "True"
            } else {
                "False"
            };
            objects.nodes.push(k8s_node(
                &node_name(i),
                node_labels,
                &[("Ready", ready), ("NetworkUnavailable", network)],
            ));
        }
        for (i, ad) in scenario.advertisements.iter().enumerate() {
            let spec = L2AdvertisementSpec {
                selectors: AdvertisementSelectors {
                    ip_address_pools: ad.by_name.iter().map(|n| n.to_string()).collect(),
                    ip_address_pool_selectors: ad
                        .by_tier
                        .map(|t| selector(&[("tier", t)]))
                        .into_iter()
                        .collect(),
                    node_selectors: ad
                        .node_zone
                        .map(|z| selector(&[("zone", z)]))
                        .into_iter()
                        .collect(),
                    service_selectors: ad
                        .service_app
                        .map(|a| selector(&[("app", a)]))
                        .into_iter()
                        .collect(),
                },
                interfaces: ad.interfaces.iter().map(|n| n.to_string()).collect(),
            };
            objects
                .advertisements
                .push(k8s_l2_advertisement(&format!("ad-{i}"), spec));
        }
        for (i, case) in scenario.services.iter().enumerate() {
            let name = format!("svc-{i}");
            let ips: Vec<&str> = case
                .ips
                .iter()
                .filter_map(|&i| IPS.get(i).copied())
                .collect();
            let mut service = k8s_service(&name, None, &ips, case.local);
            service.metadata.labels = Some(labels(&[("app", case.app)]));
            objects.services.push(service);
            // Two slices per Service, to exercise merging.
            let (first, second) = case.endpoints.split_at(case.endpoints.len() / 2);
            for (part, endpoints) in [first, second].into_iter().enumerate() {
                let endpoints = endpoints
                    .iter()
                    .map(|(node, conditions)| {
                        let node = node.map(node_name);
                        k8s_endpoint(node.as_deref(), Some(*conditions))
                    })
                    .collect();
                objects
                    .slices
                    .push(k8s_slice(&format!("{name}-{part}"), &name, endpoints));
            }
        }
        objects
    }

    fn shuffled(mut self, rotation: usize, reverse: bool) -> Objects {
        fn mix<T>(items: &mut [T], rotation: usize, reverse: bool) {
            if reverse {
                items.reverse();
            }
            if !items.is_empty() {
                let len = items.len();
                items.rotate_left(rotation % len);
            }
        }
        mix(&mut self.services, rotation, reverse);
        mix(&mut self.slices, rotation / 2, !reverse);
        mix(&mut self.nodes, rotation / 3, reverse);
        mix(&mut self.pools, rotation, reverse);
        mix(&mut self.advertisements, rotation / 5, !reverse);
        self
    }

    pub(crate) fn view(&self) -> ClusterView {
        let (view, warnings) = ClusterView::from_objects(
            &self.services,
            &self.slices,
            &self.nodes,
            &self.pools,
            &self.advertisements,
            &ClassFilter::default(),
        );
        assert_eq!(warnings, Vec::new());
        view
    }
}

pub(crate) fn gossip(scenario: &Scenario) -> Liveness {
    Liveness::Gossip(
        scenario
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.gossip_alive)
            .map(|(i, _)| node_name(i))
            .collect(),
    )
}

/// The eligibility rules restated node by node, independently of the plan's code.
fn oracle_eligible(
    view: &ClusterView,
    liveness: &Liveness,
    ip: &IpAddr,
    services: &BTreeSet<ServiceKey>,
) -> BTreeSet<String> {
    let alive = |name: &str| match liveness {
        Liveness::NodeReadyOnly => true,
        Liveness::Gossip(alive) => alive.contains(name),
    };
    // Full disruption: when no node is Ready, Ready is ignored.
    let none_ready = view.nodes.values().all(|node| !node.ready);
    view.nodes
        .values()
        .filter(|node| {
            (node.ready || none_ready)
                && alive(&node.name)
                && !node.network_unavailable
                && !node.labels.contains_key(LABEL_EXCLUDE_FROM_LOAD_BALANCERS)
        })
        .filter(|node| {
            services.iter().all(|key| {
                let Some(service) = view.services.get(key) else {
                    return false;
                };
                let endpoints = view.endpoints.get(key).cloned().unwrap_or_default();
                let endpoint_ok = if service.local_traffic_policy {
                    endpoints.nodes.contains(&node.name)
                } else {
                    !endpoints.nodes.is_empty() || endpoints.unplaced > 0
                };
                endpoint_ok
                    && view.l2_advertisements.values().any(|ad| {
                        view.pools
                            .values()
                            .any(|pool| pool.contains(ip) && ad.selects_pool(pool))
                            && ad.selects_service(&service.labels)
                            && ad.selects_node(&node.labels)
                    })
            })
        })
        .map(|node| node.name.clone())
        .collect()
}

/// Services on `ip` that some advertisement covers, restated.
fn oracle_services(view: &ClusterView, ip: &IpAddr) -> BTreeSet<ServiceKey> {
    view.services
        .values()
        .filter(|service| service.ips.as_slice().contains(ip))
        .filter(|service| {
            view.l2_advertisements.values().any(|ad| {
                view.pools
                    .values()
                    .any(|pool| pool.contains(ip) && ad.selects_pool(pool))
                    && ad.selects_service(&service.labels)
            })
        })
        .map(|service| service.key.clone())
        .collect()
}

fn owners(plan: &BTreeMap<IpAddr, L2Decision>) -> BTreeMap<IpAddr, Option<String>> {
    plan.iter()
        .map(|(ip, decision)| (*ip, decision.owner.clone()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn owner_is_elected_among_exactly_the_eligible(scenario in scenario(), use_gossip in any::<bool>()) {
        let view = Objects::of(&scenario).view();
        let liveness = if use_gossip { gossip(&scenario) } else { Liveness::NodeReadyOnly };
        let plan = l2_plan(&view, &liveness);
        for address in IPS.iter().map(|text| ip(text)) {
            let services = oracle_services(&view, &address);
            let Some(decision) = plan.get(&address) else {
                prop_assert!(services.is_empty(), "{} missing from the plan", address);
                continue;
            };
            prop_assert_eq!(&decision.services, &ServiceSet::from(services.clone()));
            let eligible = oracle_eligible(&view, &liveness, &address, &services);
            let expected = elect(address, eligible.iter().map(String::as_str));
            prop_assert_eq!(decision.owner.as_deref(), expected);
            prop_assert_eq!(decision.owner.is_some(), !eligible.is_empty());
        }
        prop_assert!(!plan.contains_key(&ip("198.51.100.1")));
    }

    #[test]
    fn plan_ignores_input_order(
        scenario in scenario(),
        rotation in 0usize..64,
        reverse in any::<bool>(),
    ) {
        let liveness = gossip(&scenario);
        let straight = l2_plan(&Objects::of(&scenario).view(), &liveness);
        let mixed = l2_plan(&Objects::of(&scenario).shuffled(rotation, reverse).view(), &liveness);
        prop_assert_eq!(straight, mixed);
    }

    #[test]
    fn a_dying_node_moves_only_its_own_ips(scenario in scenario(), victim in any::<prop::sample::Index>()) {
        let view = Objects::of(&scenario).view();
        let all: BTreeSet<String> = view.nodes.keys().cloned().collect();
        let victim = victim.get(&all.iter().collect::<Vec<_>>()).to_string();
        let before = owners(&l2_plan(&view, &Liveness::Gossip(all.clone())));
        let mut alive = all;
        alive.remove(&victim);
        let after = owners(&l2_plan(&view, &Liveness::Gossip(alive)));
        prop_assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
        for (ip, owner_before) in &before {
            let owner_after = after.get(ip).cloned().flatten();
            if owner_before.as_deref() == Some(victim.as_str()) {
                prop_assert_ne!(owner_after.as_deref(), Some(victim.as_str()));
            } else {
                prop_assert_eq!(&owner_after, owner_before);
            }
        }
    }
}

#[path = "l2_reach_proptests.rs"]
mod reach;
