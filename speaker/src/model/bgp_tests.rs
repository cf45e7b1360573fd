use std::collections::BTreeSet;
use std::net::IpAddr;

use ferrolb_crds::community::CommunityValue;
use ferrolb_crds::{
    BGPAdvertisement, BGPAdvertisementSpec, BGPPeer, BGPPeerSpec, Community, CommunityAlias,
    CommunitySpec,
};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::SecretReference;
use proptest::prelude::*;

use super::*;
use crate::model::bgp_convert::BgpWarning;
use crate::model::fixtures::*;
use crate::model::view::ServiceView;

const NODES: [&str; 3] = ["n0", "n1", "n2"];

pub(crate) fn peer(name: &str, address: &str, my_asn: u32, peer_asn: u32) -> BgpPeerView {
    BgpPeerView {
        name: name.into(),
        address: ip(address),
        port: 179,
        my_asn,
        peer_asn,
        source_address: None,
        router_id: None,
        hold_time: 90,
        keepalive_time: 30,
        connect_time: DEFAULT_CONNECT_TIME,
        password: None,
        ebgp_multihop: false,
        graceful_restart: false,
        node_selectors: Vec::new(),
    }
}

fn ad(name: &str) -> BgpAdvertisementView {
    BgpAdvertisementView {
        name: name.into(),
        aggregation_length: 32,
        aggregation_length_v6: 128,
        local_pref: None,
        communities: BTreeSet::new(),
        selectors: AdvertisementSelectors::default(),
        peers: Vec::new(),
    }
}

fn bgp_view(peers: Vec<BgpPeerView>, ads: Vec<BgpAdvertisementView>) -> BgpView {
    let mut view = BgpView::default();
    for p in peers {
        view.insert_peer(p);
    }
    for a in ads {
        view.insert_advertisement(a);
    }
    view
}

fn addresses(node: &str) -> Vec<IpAddr> {
    let i = NODES.iter().position(|n| *n == node).unwrap_or(9);
    vec![
        ip(&format!("198.51.100.{}", 10 + i)),
        ip(&format!("2001:db8:1::{}", 10 + i)),
    ]
}

fn plan_for(view: &ClusterView, bgp: &BgpView, node: &str) -> BgpPlan {
    let addresses = addresses(node);
    bgp_plan(
        view,
        bgp,
        &LocalNode {
            name: node,
            addresses: &addresses,
        },
        &Liveness::NodeReadyOnly,
        &BgpOptions::default(),
    )
}

fn prefixes(plan: &BgpPlan, peer: &str) -> Vec<String> {
    plan.peers
        .get(peer)
        .map(|p| p.routes.keys().map(ToString::to_string).collect())
        .unwrap_or_default()
}

fn one_peer() -> BgpView {
    bgp_view(
        vec![peer("r", "198.51.100.1", 64512, 64513)],
        vec![ad("all")],
    )
}

#[test]
fn cluster_policy_every_fit_node_advertises_while_an_endpoint_exists() {
    let mut view = cluster(&NODES);
    add_service(&mut view, service("web", &["203.0.113.5"]), &["n1"]);
    let bgp = one_peer();
    for node in NODES {
        let plan = plan_for(&view, &bgp, node);
        assert_eq!(prefixes(&plan, "r"), vec!["203.0.113.5/32"], "{node}");
        let route = &plan.peers["r"].routes[&"203.0.113.5/32".parse::<IpNet>().unwrap()];
        assert!(route.next_hop.is_unspecified(), "next-hop self");
        assert_eq!(route.local_pref, None);
        assert!(plan.services.contains_key(&key("web")));
    }
    add_service(&mut view, service("web", &["203.0.113.5"]), &[]);
    assert!(prefixes(&plan_for(&view, &bgp, "n0"), "r").is_empty());
    // The session is still wanted with nothing to advertise.
    assert!(plan_for(&view, &bgp, "n0").peers.contains_key("r"));
}

#[test]
fn local_policy_only_nodes_with_an_endpoint() {
    let mut view = cluster(&NODES);
    let mut web = service("web", &["203.0.113.5"]);
    web.local_traffic_policy = true;
    add_service(&mut view, web, &["n1", "n2"]);
    let bgp = one_peer();
    assert!(prefixes(&plan_for(&view, &bgp, "n0"), "r").is_empty());
    assert_eq!(prefixes(&plan_for(&view, &bgp, "n1"), "r").len(), 1);
    assert_eq!(prefixes(&plan_for(&view, &bgp, "n2"), "r").len(), 1);
}

#[test]
fn unfit_or_excluded_nodes_advertise_nothing_but_keep_sessions() {
    let mut view = cluster(&NODES);
    add_service(&mut view, service("web", &["203.0.113.5"]), &["n1"]);
    if let Some(n) = view.nodes.get_mut("n0") {
        n.ready = false;
    }
    if let Some(n) = view.nodes.get_mut("n1") {
        n.network_unavailable = true;
    }
    if let Some(n) = view.nodes.get_mut("n2") {
        n.labels.insert(LABEL_EXCLUDE.into(), String::new());
    }
    let bgp = one_peer();
    for node in NODES {
        let plan = plan_for(&view, &bgp, node);
        assert!(plan.peers.contains_key("r"));
        assert!(prefixes(&plan, "r").is_empty(), "{node}");
    }
}

const LABEL_EXCLUDE: &str = crate::model::LABEL_EXCLUDE_FROM_LOAD_BALANCERS;

#[test]
fn peer_node_selectors_choose_the_sessions() {
    let mut view = cluster(&NODES);
    if let Some(n) = view.nodes.get_mut("n1") {
        n.labels.insert("rack".into(), "a".into());
    }
    let mut racked = peer("tor-a", "198.51.100.1", 64512, 64513);
    racked.node_selectors = vec![selector(&[("rack", "a")])];
    let bgp = bgp_view(vec![racked], vec![ad("all")]);
    assert!(plan_for(&view, &bgp, "n0").peers.is_empty());
    assert!(plan_for(&view, &bgp, "n1").peers.contains_key("tor-a"));
    // A node missing from the view peers with nobody.
    assert!(plan_for(&view, &bgp, "ghost").peers.is_empty());
}

#[test]
fn advertisement_peers_and_node_selectors_and_service_selectors() {
    let mut view = cluster(&NODES);
    let mut web = service("web", &["203.0.113.5"]);
    web.labels.insert("app".into(), "web".into());
    add_service(&mut view, web, &["n0"]);
    add_service(&mut view, service("db", &["203.0.113.6"]), &["n0"]);
    if let Some(n) = view.nodes.get_mut("n1") {
        n.labels.insert("edge".into(), "yes".into());
    }
    let mut to_a = ad("to-a");
    to_a.peers = vec!["a".into()];
    to_a.selectors.service_selectors = vec![selector(&[("app", "web")])];
    let mut edge_to_b = ad("edge-to-b");
    edge_to_b.peers = vec!["b".into()];
    edge_to_b.selectors.node_selectors = vec![selector(&[("edge", "yes")])];
    let bgp = bgp_view(
        vec![
            peer("a", "198.51.100.1", 64512, 64513),
            peer("b", "198.51.100.2", 64512, 64514),
        ],
        vec![to_a, edge_to_b],
    );
    let n0 = plan_for(&view, &bgp, "n0");
    assert_eq!(prefixes(&n0, "a"), vec!["203.0.113.5/32"]);
    assert!(prefixes(&n0, "b").is_empty());
    let n1 = plan_for(&view, &bgp, "n1");
    assert_eq!(prefixes(&n1, "a"), vec!["203.0.113.5/32"]);
    assert_eq!(prefixes(&n1, "b"), vec!["203.0.113.5/32", "203.0.113.6/32"]);
}

#[test]
fn aggregation_merges_duplicates_and_attributes() {
    let mut view = cluster(&NODES);
    add_service(
        &mut view,
        service("a", &["203.0.113.5", "2001:db8::5"]),
        &["n0"],
    );
    add_service(
        &mut view,
        service("b", &["203.0.113.9", "2001:db8::9"]),
        &["n0"],
    );
    let mut wide = ad("wide");
    wide.aggregation_length = 24;
    wide.aggregation_length_v6 = 64;
    wide.local_pref = Some(50);
    wide.communities = [CommunityValue::Standard(64512, 1)].into();
    let mut narrow = ad("narrow");
    narrow.aggregation_length = 24;
    narrow.aggregation_length_v6 = 64;
    narrow.local_pref = Some(200);
    narrow.communities = [CommunityValue::Large(64512, 2, 3)].into();
    let bgp = bgp_view(
        vec![
            peer("ibgp", "198.51.100.1", 64512, 64512),
            peer("ebgp", "198.51.100.2", 64512, 64513),
        ],
        vec![wide, narrow],
    );
    let plan = plan_for(&view, &bgp, "n0");
    assert_eq!(
        prefixes(&plan, "ibgp"),
        vec!["203.0.113.0/24", "2001:db8::/64"]
    );
    let v4: IpNet = "203.0.113.0/24".parse().unwrap();
    let internal = &plan.peers["ibgp"].routes[&v4];
    assert_eq!(internal.local_pref, Some(200), "the highest wins");
    assert_eq!(
        internal.communities,
        [(64512u32 << 16) | 1].into_iter().collect()
    );
    assert_eq!(internal.large_communities.len(), 1);
    let external = &plan.peers["ebgp"].routes[&v4];
    assert_eq!(external.local_pref, None, "LOCAL_PREF to iBGP peers only");
    assert_eq!(external.communities, internal.communities);
}

#[test]
fn ipv6_routes_over_an_ipv4_session_use_the_nodes_ipv6_address() {
    let mut view = cluster(&NODES);
    add_service(
        &mut view,
        service("a", &["203.0.113.5", "2001:db8::5"]),
        &["n0"],
    );
    let bgp = bgp_view(
        vec![
            peer("v4", "198.51.100.1", 64512, 64513),
            peer("v6", "2001:db8:1::1", 64512, 64513),
        ],
        vec![ad("all")],
    );
    let plan = plan_for(&view, &bgp, "n0");
    let v6: IpNet = "2001:db8::5/128".parse().unwrap();
    let v4: IpNet = "203.0.113.5/32".parse().unwrap();
    assert_eq!(plan.peers["v4"].routes[&v6].next_hop, ip("2001:db8:1::10"));
    assert!(plan.peers["v4"].routes[&v4].next_hop.is_unspecified());
    assert!(plan.peers["v6"].routes[&v6].next_hop.is_unspecified());
    assert_eq!(plan.peers["v6"].routes[&v4].next_hop, ip("198.51.100.10"));
}

#[test]
fn session_settings_come_from_the_peer() {
    let view = cluster(&NODES);
    let mut p = peer("r", "198.51.100.1", 4_200_000_000, 64513);
    p.port = 1790;
    p.hold_time = 3;
    p.keepalive_time = 1;
    p.password = Some(PasswordSource::Secret("bgp-pass".into()));
    p.ebgp_multihop = true;
    p.source_address = Some(ip("198.51.100.99"));
    let bgp = bgp_view(vec![p], vec![]);
    let plan = plan_for(&view, &bgp, "n1");
    let r = &plan.peers["r"];
    assert_eq!(r.session.peer, "198.51.100.1:1790".parse().unwrap());
    assert_eq!(r.session.fsm.local_as, 4_200_000_000);
    assert_eq!(r.session.fsm.hold_time, 3);
    assert_eq!(r.session.fsm.keepalive_time, Some(1));
    assert_eq!(
        r.session.fsm.router_id,
        "198.51.100.99".parse::<std::net::Ipv4Addr>().unwrap(),
        "the source address when no routerID"
    );
    assert!(r.session.ebgp_multihop);
    assert_eq!(r.session.md5_password, None);
    assert_eq!(r.password_secret.as_deref(), Some("bgp-pass"));
}

#[test]
fn graceful_restart_is_offered_only_to_peers_that_enable_it() {
    let view = cluster(&NODES);
    let mut on = peer("on", "198.51.100.1", 64512, 64513);
    on.graceful_restart = true;
    let off = peer("off", "198.51.100.2", 64512, 64513);
    let bgp = bgp_view(vec![on, off], vec![]);
    let addresses = addresses("n1");
    let options = BgpOptions {
        graceful_restart_time: Some(120),
        ..BgpOptions::default()
    };
    let node = LocalNode {
        name: "n1",
        addresses: &addresses,
    };
    let plan = bgp_plan(&view, &bgp, &node, &Liveness::NodeReadyOnly, &options);
    assert_eq!(
        plan.peers["on"].session.fsm.graceful_restart_time,
        Some(120)
    );
    assert_eq!(plan.peers["off"].session.fsm.graceful_restart_time, None);
    // A restart time of 0 (None) turns it off for every peer.
    let plan = plan_for(&view, &bgp, "n1");
    assert_eq!(plan.peers["on"].session.fsm.graceful_restart_time, None);
}

#[test]
fn no_router_id_is_a_warning_not_a_session() {
    let view = cluster(&NODES);
    let bgp = bgp_view(vec![peer("r", "2001:db8:1::1", 1, 2)], vec![]);
    let plan = bgp_plan(
        &view,
        &bgp,
        &LocalNode {
            name: "n0",
            addresses: &[ip("2001:db8:1::10")],
        },
        &Liveness::NodeReadyOnly,
        &BgpOptions::default(),
    );
    assert!(plan.peers.is_empty());
    assert_eq!(plan.warnings.len(), 1);
}

// --- conversion ---------------------------------------------------------------------------

fn k8s_peer(name: &str, spec: BGPPeerSpec) -> BGPPeer {
    let mut peer = BGPPeer::new(name, spec);
    peer.metadata.namespace = Some("ferrolb-system".into());
    peer
}

fn peer_spec() -> BGPPeerSpec {
    serde_json::from_value(serde_json::json!({
        "myASN": 64512, "peerASN": 64513, "peerAddress": "198.51.100.1",
    }))
    .expect("a minimal peer spec")
}

#[test]
fn peers_convert_with_defaults_and_bad_ones_are_named() {
    let good = k8s_peer("good", peer_spec());
    let mut short = peer_spec();
    short.hold_time = Some("3s".into());
    short.password_secret = Some(SecretReference {
        name: Some("s".into()),
        namespace: None,
    });
    let short = k8s_peer("short", short);
    let mut bad_address = peer_spec();
    bad_address.peer_address = "not-an-ip".into();
    let mut foreign = peer_spec();
    foreign.password_secret = Some(SecretReference {
        name: Some("s".into()),
        namespace: Some("elsewhere".into()),
    });
    let mut dynamic = peer_spec();
    dynamic.peer_asn = None;
    dynamic.dynamic_asn = Some(ferrolb_crds::DynamicASNMode::External);
    let objects = [
        good,
        short,
        k8s_peer("bad", bad_address),
        k8s_peer("foreign", foreign),
        k8s_peer("dynamic", dynamic),
    ];
    let (view, warnings) = BgpView::from_objects(&objects, [], [], "ferrolb-system");
    assert_eq!(
        view.peers.keys().cloned().collect::<Vec<_>>(),
        vec!["good", "short"]
    );
    assert_eq!(view.peers["good"].hold_time, 90);
    assert_eq!(view.peers["good"].keepalive_time, 30);
    assert_eq!(view.peers["good"].port, 179);
    assert_eq!(view.peers["short"].hold_time, 3);
    assert_eq!(view.peers["short"].keepalive_time, 1);
    assert_eq!(
        view.peers["short"].password,
        Some(PasswordSource::Secret("s".into()))
    );
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| matches!(w, BgpWarning::InvalidPeer { peer, .. } if peer == "bad"))
    );
    assert!(
        warnings.iter().any(
            |w| matches!(w, BgpWarning::ForeignPasswordSecret { peer, .. } if peer == "foreign")
        )
    );
    assert!(warnings.iter().any(
        |w| matches!(w, BgpWarning::UnsupportedPeerFeature { peer, .. } if peer == "dynamic")
    ));
}

fn k8s_ad(name: &str, communities: &[&str]) -> BGPAdvertisement {
    let mut ad = BGPAdvertisement::new(
        name,
        BGPAdvertisementSpec {
            communities: communities.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        },
    );
    ad.metadata.namespace = Some("ferrolb-system".into());
    ad
}

#[test]
fn community_aliases_resolve_and_unknown_ones_skip_the_advertisement() {
    let aliases = Community::new(
        "aliases",
        CommunitySpec {
            communities: vec![
                CommunityAlias {
                    name: "NO_ADVERTISE".into(),
                    value: "65535:65282".into(),
                },
                CommunityAlias {
                    name: "big".into(),
                    value: "large:1:2:3".into(),
                },
            ],
        },
    );
    let ads = [
        k8s_ad("ok", &["NO_ADVERTISE", "big", "64512:7"]),
        k8s_ad("unknown", &["missing"]),
        k8s_ad("garbage", &["1:2:3"]),
    ];
    let (view, warnings) = BgpView::from_objects([], &ads, [&aliases], "ferrolb-system");
    assert_eq!(
        view.advertisements["ok"].communities,
        [
            CommunityValue::Standard(65535, 65282),
            CommunityValue::Large(1, 2, 3),
            CommunityValue::Standard(64512, 7),
        ]
        .into()
    );
    assert_eq!(view.advertisements.len(), 1);
    assert!(warnings.iter().any(
        |w| matches!(w, BgpWarning::UnknownCommunityAlias { alias, .. } if alias == "missing")
    ));
    assert!(warnings.iter().any(
        |w| matches!(w, BgpWarning::InvalidAdvertisement { advertisement, .. } if advertisement == "garbage")
    ));
}

// --- properties ---------------------------------------------------------------------------

fn arb_cluster() -> impl Strategy<Value = (ClusterView, Vec<(bool, bool)>)> {
    let service = (
        prop::collection::btree_set(0u8..16, 1..3),
        any::<bool>(),
        prop::collection::btree_set(0usize..3, 0..3),
    );
    (
        prop::collection::vec(service, 0..6),
        prop::collection::vec((any::<bool>(), any::<bool>()), 3),
    )
        .prop_map(|(services, fitness)| {
            let mut view = cluster(&NODES);
            for (i, (ips, local, endpoint_nodes)) in services.into_iter().enumerate() {
                let ips: Vec<IpAddr> = ips
                    .into_iter()
                    .map(|o| ip(&format!("203.0.113.{o}")))
                    .collect();
                let key = key(&format!("s{i}"));
                let nodes: Vec<&str> = endpoint_nodes.iter().map(|&n| NODES[n]).collect();
                view.insert_endpoints(key.clone(), endpoints_on(&nodes));
                view.insert_service(ServiceView {
                    key,
                    labels: Default::default(),
                    ips: ips.into(),
                    local_traffic_policy: local,
                });
            }
            for (node, (ready, network_unavailable)) in NODES.iter().zip(&fitness) {
                if let Some(n) = view.nodes.get_mut(*node) {
                    n.ready = *ready;
                    n.network_unavailable = *network_unavailable;
                }
            }
            (view, fitness)
        })
}

proptest! {
    #[test]
    fn routes_follow_the_traffic_policy((view, fitness) in arb_cluster(), length in 24u8..=32) {
        let mut all = ad("all");
        all.aggregation_length = length;
        let bgp = bgp_view(vec![peer("r", "198.51.100.1", 1, 2)], vec![all]);
        for (i, node) in NODES.iter().enumerate() {
            let plan = plan_for(&view, &bgp, node);
            let routes = &plan.peers["r"].routes;
            let (ready, network_unavailable) = fitness[i];
            // Full disruption: when no node is Ready, Ready is ignored.
            let none_ready = fitness.iter().all(|(ready, _)| !ready);
            let fit = (ready || none_ready) && !network_unavailable;
            // Every route covers an IP of a Service that lets this node advertise.
            let mut expected: BTreeSet<IpNet> = BTreeSet::new();
            for (ip, keys) in view.services_by_ip() {
                let accepted = fit && keys.iter().all(|key| {
                    let endpoints = &view.endpoints[*key];
                    endpoints.any_usable()
                        && (!view.services[*key].local_traffic_policy || endpoints.nodes.contains(*node))
                });
                if accepted {
                    expected.insert(IpNet::new(ip, length).unwrap().trunc());
                }
            }
            prop_assert_eq!(routes.keys().copied().collect::<BTreeSet<_>>(), expected);
            for (prefix, route) in routes {
                prop_assert_eq!(prefix.prefix_len(), length);
                prop_assert!(route.next_hop.is_unspecified());
            }
        }
    }

    #[test]
    fn plans_never_panic_on_arbitrary_lengths_and_peers(
        (view, _) in arb_cluster(),
        v4 in 0u8..=40,
        v6 in 0u8..=140,
        peers in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut all = ad("all");
        all.aggregation_length = v4;
        all.aggregation_length_v6 = v6;
        all.peers = peers.iter().map(|p| format!("p{}", p % 3)).collect();
        let bgp = bgp_view(
            (0..3).map(|i| peer(&format!("p{i}"), "198.51.100.1", 1, 1 + i)).collect(),
            vec![all.clone()],
        );
        let plan = plan_for(&view, &bgp, "n0");
        for (name, peer_plan) in &plan.peers {
            if !all.selects_peer(name) || v4 > 32 {
                prop_assert!(peer_plan.routes.is_empty());
            }
        }
    }
}
