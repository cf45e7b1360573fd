use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::*;
use crate::model::eligibility::LABEL_EXCLUDE_FROM_LOAD_BALANCERS;
use crate::model::fixtures::*;
use crate::model::view::{ClusterView, NodeView, ServiceEndpoints};

const IP: &str = "203.0.113.10";

fn decision<'p>(plan: &'p BTreeMap<IpAddr, L2Decision>, at: &str) -> &'p L2Decision {
    plan.get(&ip(at)).expect("the IP is in the plan")
}

fn owner_of(view: &ClusterView, liveness: &Liveness, at: &str) -> Option<String> {
    decision(&l2_plan(view, liveness), at).owner.clone()
}

/// Three ready nodes and one Cluster-policy Service on [`IP`] with endpoints everywhere.
fn one_service() -> ClusterView {
    let mut view = cluster(&["node-a", "node-b", "node-c"]);
    add_service(&mut view, service("web", &[IP]), &["node-a"]);
    view
}

/// The owner among all nodes, and the view with that owner made unfit by `unfit`.
fn owner_made_unfit(unfit: impl Fn(&mut NodeView)) -> (String, Option<String>) {
    let mut view = one_service();
    let first = owner_of(&view, &Liveness::NodeReadyOnly, IP).expect("an owner");
    if let Some(node) = view.nodes.get_mut(&first) {
        unfit(node);
    }
    (first, owner_of(&view, &Liveness::NodeReadyOnly, IP))
}

#[test]
fn every_node_may_own_a_cluster_policy_service() {
    let view = one_service();
    let plan = l2_plan(&view, &Liveness::NodeReadyOnly);
    let expected = elect(ip(IP), ["node-a", "node-b", "node-c"]).map(str::to_string);
    assert_eq!(
        plan.get(&ip(IP)),
        Some(&L2Decision {
            owner: expected,
            services: [key("web")].into(),
            interfaces: InterfaceSelection::AllSuitable,
        })
    );
}

#[test]
fn local_policy_follows_the_endpoint() {
    let mut view = cluster(&["node-a", "node-b", "node-c"]);
    let mut web = service("web", &[IP]);
    web.local_traffic_policy = true;
    add_service(&mut view, web, &["node-b"]);
    assert_eq!(
        owner_of(&view, &Liveness::NodeReadyOnly, IP).as_deref(),
        Some("node-b")
    );
    view.insert_endpoints(key("web"), endpoints_on(&["node-c"]));
    assert_eq!(
        owner_of(&view, &Liveness::NodeReadyOnly, IP).as_deref(),
        Some("node-c")
    );
}

#[test]
fn local_policy_with_only_unplaced_endpoints_has_no_owner() {
    let mut view = cluster(&["node-a"]);
    let mut web = service("web", &[IP]);
    web.local_traffic_policy = true;
    view.insert_service(web);
    view.insert_endpoints(
        key("web"),
        ServiceEndpoints {
            nodes: Default::default(),
            unplaced: 2,
        },
    );
    assert_eq!(owner_of(&view, &Liveness::NodeReadyOnly, IP), None);
}

#[test]
fn no_endpoints_no_owner() {
    let mut view = cluster(&["node-a", "node-b"]);
    view.insert_service(service("web", &[IP]));
    let plan = l2_plan(&view, &Liveness::NodeReadyOnly);
    assert_eq!(
        plan.get(&ip(IP)),
        Some(&L2Decision {
            owner: None,
            services: [key("web")].into(),
            interfaces: InterfaceSelection::Named(BTreeSet::new()),
        })
    );
    view.insert_endpoints(key("web"), ServiceEndpoints::default());
    assert_eq!(owner_of(&view, &Liveness::NodeReadyOnly, IP), None);
}

#[test]
fn cluster_policy_counts_endpoints_without_a_node() {
    let mut view = cluster(&["node-a"]);
    view.insert_service(service("web", &[IP]));
    view.insert_endpoints(
        key("web"),
        ServiceEndpoints {
            nodes: Default::default(),
            unplaced: 1,
        },
    );
    assert_eq!(
        owner_of(&view, &Liveness::NodeReadyOnly, IP).as_deref(),
        Some("node-a")
    );
}

#[test]
fn node_selectors_limit_the_owners() {
    let mut view = one_service();
    for name in ["node-a", "node-b", "node-c"] {
        let zone = if name == "node-b" { "west" } else { "east" };
        if let Some(node) = view.nodes.get_mut(name) {
            node.labels = labels(&[("zone", zone)]);
        }
    }
    let mut west = advertisement("all");
    west.selectors.node_selectors = vec![selector(&[("zone", "west")])];
    view.insert_l2_advertisement(west);
    assert_eq!(
        owner_of(&view, &Liveness::NodeReadyOnly, IP).as_deref(),
        Some("node-b")
    );
    let mut nowhere = advertisement("all");
    nowhere.selectors.node_selectors = vec![selector(&[("zone", "north")])];
    view.insert_l2_advertisement(nowhere);
    assert_eq!(owner_of(&view, &Liveness::NodeReadyOnly, IP), None);
}

#[test]
fn excluded_nodes_never_own() {
    let (first, second) = owner_made_unfit(|node| {
        node.labels = labels(&[(LABEL_EXCLUDE_FROM_LOAD_BALANCERS, "")]);
    });
    assert!(second.is_some_and(|second| second != first));
}

#[test]
fn nodes_without_network_never_own() {
    let (first, second) = owner_made_unfit(|node| node.network_unavailable = true);
    assert!(second.is_some_and(|second| second != first));
}

#[test]
fn not_ready_nodes_never_own() {
    let (first, second) = owner_made_unfit(|node| node.ready = false);
    assert!(second.is_some_and(|second| second != first));
}

/// `view` with every node's Ready condition set to `ready`.
fn all_ready(mut view: ClusterView, ready: bool) -> ClusterView {
    for node in view.nodes.values_mut() {
        node.ready = ready;
    }
    view
}

#[test]
fn every_node_unready_at_once_keeps_the_owner() {
    let view = one_service();
    let all = names(&["node-a", "node-b", "node-c"]);
    for liveness in [Liveness::NodeReadyOnly, Liveness::Gossip(all.clone())] {
        let before = owner_of(&view, &liveness, IP);
        assert!(before.is_some());
        let partitioned = all_ready(view.clone(), false);
        assert_eq!(
            owner_of(&partitioned, &liveness, IP),
            before,
            "{liveness:?}"
        );
    }
    // Gossip still counts: a dead speaker loses its IPs during the disruption.
    let partitioned = all_ready(view.clone(), false);
    let first = owner_of(&partitioned, &Liveness::Gossip(all.clone()), IP).expect("an owner");
    let mut alive = all;
    alive.remove(&first);
    let second = owner_of(&partitioned, &Liveness::Gossip(alive), IP);
    assert!(second.is_some_and(|second| second != first));
}

#[test]
fn one_ready_node_is_no_full_disruption() {
    let mut view = all_ready(one_service(), false);
    if let Some(node) = view.nodes.get_mut("node-b") {
        node.ready = true;
    }
    assert_eq!(
        owner_of(&view, &Liveness::NodeReadyOnly, IP).as_deref(),
        Some("node-b")
    );
    assert!(crate::model::eligibility::readiness_counts(&view));
    assert!(!crate::model::eligibility::readiness_counts(&all_ready(
        view, false
    )));
    assert!(crate::model::eligibility::readiness_counts(
        &ClusterView::default()
    ));
}

#[test]
fn the_guard_keeps_the_other_rules() {
    let mut view = all_ready(one_service(), false);
    let first = owner_of(&view, &Liveness::NodeReadyOnly, IP).expect("an owner");
    if let Some(node) = view.nodes.get_mut(&first) {
        node.network_unavailable = true;
    }
    let second = owner_of(&view, &Liveness::NodeReadyOnly, IP);
    assert!(second.is_some_and(|second| second != first));
}

#[test]
fn gossip_dead_nodes_never_own() {
    let view = one_service();
    let all = names(&["node-a", "node-b", "node-c"]);
    let first = owner_of(&view, &Liveness::Gossip(all.clone()), IP).expect("an owner");
    let mut alive = all;
    alive.remove(&first);
    let second = owner_of(&view, &Liveness::Gossip(alive.clone()), IP).expect("an owner");
    assert_ne!(second, first);
    // Gossip alone is not enough: the node must be Ready too.
    let mut not_ready = view.clone();
    if let Some(node) = not_ready.nodes.get_mut(&second) {
        node.ready = false;
    }
    let third = owner_of(&not_ready, &Liveness::Gossip(alive), IP);
    assert!(third.is_some_and(|third| third != first && third != second));
    assert_eq!(
        owner_of(&view, &Liveness::Gossip(BTreeSet::new()), IP),
        None
    );
}

#[test]
fn services_sharing_an_ip_share_the_owner() {
    let mut view = cluster(&["node-a", "node-b", "node-c"]);
    add_service(&mut view, service("web", &[IP]), &["node-a"]);
    add_service(&mut view, service("dns", &[IP, "2001:db8::1"]), &["node-a"]);
    let plan = l2_plan(&view, &Liveness::NodeReadyOnly);
    assert_eq!(
        decision(&plan, IP).services,
        [key("dns"), key("web")].into()
    );
    assert_eq!(decision(&plan, "2001:db8::1").services, [key("dns")].into());
    assert!(decision(&plan, IP).owner.is_some());
}

#[test]
fn shared_ip_goes_where_every_local_service_has_an_endpoint() {
    let mut view = cluster(&["node-a", "node-b", "node-c"]);
    let mut web = service("web", &[IP]);
    web.local_traffic_policy = true;
    let mut dns = service("dns", &[IP]);
    dns.local_traffic_policy = true;
    add_service(&mut view, web, &["node-a", "node-b"]);
    add_service(&mut view, dns, &["node-b", "node-c"]);
    assert_eq!(
        owner_of(&view, &Liveness::NodeReadyOnly, IP).as_deref(),
        Some("node-b")
    );
    view.insert_endpoints(key("dns"), endpoints_on(&["node-c"]));
    assert_eq!(owner_of(&view, &Liveness::NodeReadyOnly, IP), None);
}

#[test]
fn interfaces_are_the_union_for_the_owner() {
    let mut view = cluster(&["node-a"]);
    view.l2_advertisements.clear();
    add_service(&mut view, service("web", &[IP]), &["node-a"]);
    let mut first = advertisement("first");
    first.interfaces = vec!["eth0".into()];
    let mut second = advertisement("second");
    second.interfaces = vec!["eth1".into(), "eth0".into()];
    let mut elsewhere = advertisement("elsewhere");
    elsewhere.interfaces = vec!["eth9".into()];
    elsewhere.selectors.node_selectors = vec![selector(&[("zone", "far")])];
    for ad in [first, second, elsewhere] {
        view.insert_l2_advertisement(ad);
    }
    let interfaces = |view: &ClusterView| {
        decision(&l2_plan(view, &Liveness::NodeReadyOnly), IP)
            .interfaces
            .clone()
    };
    assert_eq!(
        interfaces(&view),
        InterfaceSelection::Named(names(&["eth0", "eth1"]))
    );
    view.insert_l2_advertisement(advertisement("any-interface"));
    assert_eq!(interfaces(&view), InterfaceSelection::AllSuitable);
}

#[test]
fn ips_outside_every_pool_are_ignored() {
    let mut view = cluster(&["node-a"]);
    add_service(
        &mut view,
        service("web", &["198.51.100.7", IP]),
        &["node-a"],
    );
    let plan = l2_plan(&view, &Liveness::NodeReadyOnly);
    assert_eq!(plan.keys().copied().collect::<Vec<_>>(), vec![ip(IP)]);
}

#[test]
fn advertisements_select_pools_and_services() {
    let mut view = cluster(&["node-a"]);
    view.l2_advertisements.clear();
    let mut gold = pool("gold", &["198.51.100.0/28"]);
    gold.labels = labels(&[("tier", "gold")]);
    view.insert_pool(gold);
    let mut web = service("web", &[IP]);
    web.labels = labels(&[("app", "web")]);
    add_service(&mut view, web, &["node-a"]);
    add_service(&mut view, service("db", &["198.51.100.3"]), &["node-a"]);
    let announced = |view: &ClusterView| -> Vec<IpAddr> {
        l2_plan(view, &Liveness::NodeReadyOnly)
            .into_keys()
            .collect()
    };
    assert_eq!(announced(&view), Vec::<IpAddr>::new());

    let mut by_name = advertisement("by-name");
    by_name.selectors.ip_address_pools = vec!["default".into()];
    view.insert_l2_advertisement(by_name);
    assert_eq!(announced(&view), vec![ip(IP)]);

    let mut by_label = advertisement("by-label");
    by_label.selectors.ip_address_pool_selectors = vec![selector(&[("tier", "gold")])];
    by_label.selectors.service_selectors = vec![selector(&[("app", "db")])];
    view.insert_l2_advertisement(by_label);
    assert_eq!(announced(&view), vec![ip(IP)]);

    if let Some(db) = view.services.get_mut(&key("db")) {
        db.labels = labels(&[("app", "db")]);
    }
    assert_eq!(announced(&view), vec![ip("198.51.100.3"), ip(IP)]);
    if let Some(db) = view.services.get_mut(&key("db")) {
        db.labels = labels(&[("app", "cache")]);
    }
    assert_eq!(announced(&view), vec![ip(IP)]);
}

#[test]
fn owned_by_lists_the_nodes_ips() {
    let mut view = cluster(&["node-a", "node-b"]);
    let ips: Vec<String> = (1..=20).map(|i| format!("203.0.113.{i}")).collect();
    for (i, address) in ips.iter().enumerate() {
        add_service(
            &mut view,
            service(&format!("svc-{i}"), &[address.as_str()]),
            &["node-a"],
        );
    }
    let plan = l2_plan(&view, &Liveness::NodeReadyOnly);
    let of_a: Vec<IpAddr> = owned_by(&plan, "node-a").map(|(ip, _)| *ip).collect();
    let of_b: Vec<IpAddr> = owned_by(&plan, "node-b").map(|(ip, _)| *ip).collect();
    assert_eq!(of_a.len() + of_b.len(), ips.len());
    assert!(!of_a.is_empty() && !of_b.is_empty());
    for ip in &of_a {
        assert_eq!(elect(*ip, ["node-a", "node-b"]), Some("node-a"));
    }
    assert_eq!(owned_by(&plan, "node-z").count(), 0);
}

#[test]
fn probe_first_when_no_majority_is_heard_or_without_gossip() {
    let names =
        |list: &[&str]| -> BTreeSet<String> { list.iter().map(|n| n.to_string()).collect() };
    let peers = names(&["b", "c"]);
    let alive = |list: &[&str]| Liveness::Gossip(names(list));
    assert!(!probe_first(&alive(&["a", "b", "c"]), &peers));
    assert!(
        !probe_first(&alive(&["a", "b"]), &peers),
        "2 of 3: a failover"
    );
    assert!(probe_first(&alive(&["a"]), &peers), "1 of 3: cut off");
    assert!(
        probe_first(&alive(&["a", "b"]), &names(&["b", "c", "d"])),
        "2 of 4"
    );
    assert!(
        !probe_first(&alive(&["a"]), &BTreeSet::new()),
        "alone by design"
    );
    assert!(probe_first(&Liveness::NodeReadyOnly, &peers));
}
