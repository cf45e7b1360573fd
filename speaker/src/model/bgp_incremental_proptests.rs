//! The proof of [`BgpPlanner`]: after any sequence of changes, its plan is [`bgp_plan`]'s
//! of the whole view, the prefixes it names as changed are those whose route changed,
//! and the routes a session ends with, fed only those changes (merged while it is
//! behind), are the whole plan's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_crds::community::CommunityValue;
use proptest::prelude::*;

use super::BgpPlanner;
use crate::bgp::message::AddressFamily;
use crate::bgp::route_feed::{RouteFeed, RouteFeeds};
use crate::bgp::session::{RouteSet, advertisable, changes_for, record};
use crate::model::bgp::{
    BgpAdvertisementView, BgpOptions, BgpPeerView, BgpView, LocalNode, bgp_plan,
};
use crate::model::eligibility::Liveness;
use crate::model::fixtures::*;
use crate::model::l2::proptests::IPS;
use crate::model::l2_incremental::differing_keys;
use crate::model::scope::AdvertisementSelectors;
use crate::model::view::{ClusterView, ServiceKey, ServiceView};

const NODES: [&str; 3] = ["n0", "n1", "n2"];
/// The node planned for.
const HERE: &str = "n0";
/// The session's local address: the next hop of IPv4 routes with next-hop self.
const LOCAL: &str = "192.0.2.10";

#[derive(Debug, Clone)]
struct NodeCase {
    ready: bool,
    network_unavailable: bool,
    alive: bool,
    zone_west: bool,
}

#[derive(Debug, Clone)]
struct ServiceCase {
    /// Indexes in [`IPS`]: three IPs in one /30 of pool `low`, one in pool `high`, one
    /// IPv6 in `low`, one in no pool.
    ips: BTreeSet<usize>,
    app_web: bool,
    local: bool,
    endpoints: BTreeSet<usize>,
}

#[derive(Debug, Clone)]
struct AdCase {
    /// /32, /30 or /24 for IPv4.
    length: u8,
    local_pref: Option<u32>,
    community: Option<u16>,
    /// Peers by index; empty: every peer.
    peers: BTreeSet<usize>,
    web_only: bool,
    west_only: bool,
    high_only: bool,
}

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<NodeCase>,
    services: Vec<Option<ServiceCase>>,
    peers: BTreeSet<usize>,
    ads: Vec<Option<AdCase>>,
    pool_high: bool,
    here_has_v6: bool,
}

fn node_case() -> impl Strategy<Value = NodeCase> {
    (
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.9),
        any::<bool>(),
    )
        .prop_map(|(ready, network_unavailable, alive, zone_west)| NodeCase {
            ready,
            network_unavailable,
            alive,
            zone_west,
        })
}

fn service_case() -> impl Strategy<Value = ServiceCase> {
    (
        prop::collection::btree_set(0..IPS.len(), 1..3),
        any::<bool>(),
        any::<bool>(),
        prop::collection::btree_set(0..NODES.len(), 0..3),
    )
        .prop_map(|(ips, app_web, local, endpoints)| ServiceCase {
            ips,
            app_web,
            local,
            endpoints,
        })
}

fn ad_case() -> impl Strategy<Value = AdCase> {
    (
        prop::sample::select(vec![32u8, 30, 24]),
        prop::option::of(prop::sample::select(vec![100u32, 200])),
        prop::option::of(1u16..4),
        prop::collection::btree_set(0usize..3, 0..3),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(length, local_pref, community, peers, web_only, west_only, high_only)| AdCase {
                length,
                local_pref,
                community,
                peers,
                web_only,
                west_only,
                high_only,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(node_case(), NODES.len()),
        prop::collection::vec(prop::option::weighted(0.9, service_case()), 0..7),
        prop::collection::btree_set(0usize..3, 0..=3),
        prop::collection::vec(prop::option::weighted(0.7, ad_case()), 2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(nodes, services, peers, ads, pool_high, here_has_v6)| Case {
                nodes,
                services,
                peers,
                ads,
                pool_high,
                here_has_v6,
            },
        )
}

/// One change between two plans.
#[derive(Debug, Clone)]
enum Change {
    ToggleReady(prop::sample::Index),
    ToggleNetwork(prop::sample::Index),
    ToggleAlive(prop::sample::Index),
    ToggleZone(prop::sample::Index),
    /// A Service's endpoints move onto these nodes (none: no endpoint left).
    MoveEndpoints(prop::sample::Index, BTreeSet<usize>),
    TogglePolicy(prop::sample::Index),
    ToggleApp(prop::sample::Index),
    /// A Service's IPs are replaced; `None` deletes it.
    ReplaceIps(prop::sample::Index, Option<BTreeSet<usize>>),
    AddService(ServiceCase),
    TogglePeer(usize),
    /// An advertisement changes, appears or goes.
    SetAd(usize, Option<AdCase>),
    TogglePoolHigh,
    ToggleV6Address,
}

fn change() -> impl Strategy<Value = Change> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        2 => index().prop_map(Change::ToggleReady),
        1 => index().prop_map(Change::ToggleNetwork),
        2 => index().prop_map(Change::ToggleAlive),
        1 => index().prop_map(Change::ToggleZone),
        6 => (index(), prop::collection::btree_set(0..NODES.len(), 0..3))
            .prop_map(|(s, to)| Change::MoveEndpoints(s, to)),
        2 => index().prop_map(Change::TogglePolicy),
        1 => index().prop_map(Change::ToggleApp),
        3 => (index(), prop::option::weighted(0.7, prop::collection::btree_set(0..IPS.len(), 1..3)))
            .prop_map(|(s, ips)| Change::ReplaceIps(s, ips)),
        2 => service_case().prop_map(Change::AddService),
        1 => (0usize..3).prop_map(Change::TogglePeer),
        1 => (0usize..2, prop::option::weighted(0.8, ad_case())).prop_map(|(a, ad)| Change::SetAd(a, ad)),
        1 => Just(Change::TogglePoolHigh),
        1 => Just(Change::ToggleV6Address),
    ]
}

/// The Service at `i`, unless there is none or it was deleted.
fn service<'c>(i: &prop::sample::Index, case: &'c mut Case) -> Option<&'c mut ServiceCase> {
    let count = case.services.len();
    if count == 0 {
        return None;
    }
    case.services[i.index(count)].as_mut()
}

fn apply(change: &Change, case: &mut Case) {
    let nodes = case.nodes.len();
    let services = case.services.len();
    match change {
        Change::ToggleReady(i) => {
            let node = &mut case.nodes[i.index(nodes)];
            node.ready = !node.ready;
        }
        Change::ToggleNetwork(i) => {
            let node = &mut case.nodes[i.index(nodes)];
            node.network_unavailable = !node.network_unavailable;
        }
        Change::ToggleAlive(i) => {
            let node = &mut case.nodes[i.index(nodes)];
            node.alive = !node.alive;
        }
        Change::ToggleZone(i) => {
            let node = &mut case.nodes[i.index(nodes)];
            node.zone_west = !node.zone_west;
        }
        Change::MoveEndpoints(i, to) => {
            if let Some(service) = service(i, case) {
                service.endpoints.clone_from(to);
            }
        }
        Change::TogglePolicy(i) => {
            if let Some(service) = service(i, case) {
                service.local = !service.local;
            }
        }
        Change::ToggleApp(i) => {
            if let Some(service) = service(i, case) {
                service.app_web = !service.app_web;
            }
        }
        Change::ReplaceIps(i, ips) => {
            if services > 0 {
                let slot = &mut case.services[i.index(services)];
                match (slot.as_mut(), ips) {
                    (Some(service), Some(ips)) => service.ips.clone_from(ips),
                    (_, None) => *slot = None,
                    (None, Some(_)) => {}
                }
            }
        }
        Change::AddService(service) => case.services.push(Some(service.clone())),
        Change::TogglePeer(p) => {
            if !case.peers.remove(p) {
                case.peers.insert(*p);
            }
        }
        Change::SetAd(a, ad) => case.ads[*a].clone_from(ad),
        Change::TogglePoolHigh => case.pool_high = !case.pool_high,
        Change::ToggleV6Address => case.here_has_v6 = !case.here_has_v6,
    }
}

fn view_of(case: &Case) -> ClusterView {
    let mut view = ClusterView::default();
    for (name, n) in NODES.iter().zip(&case.nodes) {
        let mut node = node(name);
        node.ready = n.ready;
        node.network_unavailable = n.network_unavailable;
        let zone = if n.zone_west { "west" } else { "east" };
        node.labels = labels(&[("zone", zone)]);
        view.insert_node(node);
    }
    view.insert_pool(pool("low", &["203.0.113.0/28", "2001:db8::/120"]));
    if case.pool_high {
        view.insert_pool(pool("high", &["203.0.113.16/28"]));
    }
    for (i, service) in case.services.iter().enumerate() {
        let Some(service) = service else { continue };
        let key = key(&format!("s{i}"));
        let nodes: Vec<&str> = service.endpoints.iter().map(|n| NODES[*n]).collect();
        view.insert_endpoints(key.clone(), endpoints_on(&nodes));
        let app = if service.app_web { "web" } else { "db" };
        view.insert_service(ServiceView {
            key,
            labels: labels(&[("app", app)]),
            ips: service.ips.iter().map(|i| ip(IPS[*i])).collect(),
            local_traffic_policy: service.local,
        });
    }
    view
}

fn peer(i: usize) -> BgpPeerView {
    let (address, peer_asn, west_only) = match i {
        0 => ("198.51.100.1", 64513, false),
        1 => ("198.51.100.2", 64512, true),
        _ => ("2001:db8:ffff::1", 64514, false),
    };
    let mut peer = crate::model::bgp::tests::peer(&format!("p{i}"), address, 64512, peer_asn);
    if west_only {
        peer.node_selectors = vec![selector(&[("zone", "west")])];
    }
    peer
}

fn bgp_of(case: &Case) -> BgpView {
    let mut bgp = BgpView::default();
    for p in &case.peers {
        bgp.insert_peer(peer(*p));
    }
    for (i, ad) in case.ads.iter().enumerate() {
        let Some(ad) = ad else { continue };
        let mut selectors = AdvertisementSelectors::default();
        if ad.web_only {
            selectors.service_selectors = vec![selector(&[("app", "web")])];
        }
        if ad.west_only {
            selectors.node_selectors = vec![selector(&[("zone", "west")])];
        }
        if ad.high_only {
            selectors.ip_address_pools = vec!["high".into()];
        }
        bgp.insert_advertisement(BgpAdvertisementView {
            name: format!("a{i}"),
            aggregation_length: ad.length,
            aggregation_length_v6: 128 - (32 - ad.length),
            local_pref: ad.local_pref,
            communities: ad
                .community
                .map(|c| CommunityValue::Standard(64512, c))
                .into_iter()
                .collect(),
            selectors,
            peers: ad.peers.iter().map(|p| format!("p{p}")).collect(),
        });
    }
    bgp
}

fn liveness(case: &Case, gossip: bool) -> Liveness {
    if !gossip {
        return Liveness::NodeReadyOnly;
    }
    Liveness::Gossip(
        NODES
            .iter()
            .zip(&case.nodes)
            .filter(|(_, n)| n.alive)
            .map(|(name, _)| name.to_string())
            .collect(),
    )
}

fn addresses(case: &Case) -> Vec<IpAddr> {
    let mut addresses = vec![ip("192.0.2.10")];
    if case.here_has_v6 {
        addresses.push(ip("2001:db8:1::10"));
    }
    addresses
}

/// The Services whose view or endpoints differ between two views.
fn touched(before: &ClusterView, after: &ClusterView) -> BTreeSet<ServiceKey> {
    let mut touched = BTreeSet::new();
    differing_keys(&before.services, &after.services, &mut touched);
    differing_keys(&before.endpoints, &after.endpoints, &mut touched);
    touched
}

/// What a session of both families from [`LOCAL`] advertises for `routes`.
fn advertised_by_session(routes: &RouteSet) -> RouteSet {
    routes
        .values()
        .filter_map(|route| advertisable(route, &families(), Some(ip(LOCAL))))
        .map(|route| (route.prefix, route))
        .collect()
}

fn families() -> Vec<AddressFamily> {
    vec![AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn incremental_bgp_plan_equals_the_whole_plan_and_sessions_follow(
        case in case(),
        steps in prop::collection::vec((change(), prop::bool::weighted(0.1), prop::bool::weighted(0.7)), 1..12),
        gossip in any::<bool>(),
    ) {
        let mut case = case;
        let mut planner = BgpPlanner::default();
        let mut feeds = RouteFeeds::default();
        // Per peer, the feed its session reads and what the session has sent (`None`
        // until it is up).
        let mut sessions: BTreeMap<String, (Arc<RouteFeed>, Option<RouteSet>)> = BTreeMap::new();
        let mut previous: Option<ClusterView> = None;
        let mut before_plan = None;
        for step in 0..=steps.len() {
            let (unknown, session_syncs) = match step {
                0 => (true, true),
                _ => {
                    let (change, unknown, syncs) = &steps[step - 1];
                    apply(change, &mut case);
                    (*unknown, *syncs || step == steps.len())
                }
            };
            let view = view_of(&case);
            let bgp = bgp_of(&case);
            let addresses = addresses(&case);
            let node = LocalNode { name: HERE, addresses: &addresses };
            let liveness = liveness(&case, gossip);
            let options = BgpOptions::default();
            let touched = previous.as_ref().map(|before| touched(before, &view));
            let touched = touched.filter(|_| !unknown);
            let whole = bgp_plan(&view, &bgp, &node, &liveness, &options);
            let plan = planner.plan_touched(&view, touched.as_ref(), &bgp, &node, &liveness, &options);
            prop_assert_eq!(plan, &whole, "after {:?}", &steps[..step]);

            // Every prefix whose route changed is named.
            if let Some(before) = &before_plan {
                let before: &crate::model::BgpPlan = before;
                for (peer, now) in &whole.peers {
                    let Some(then) = before.peers.get(peer) else { continue };
                    let mut differ = BTreeSet::new();
                    differing_keys(&then.routes, &now.routes, &mut differ);
                    let named = planner.changed().get(peer).cloned().unwrap_or_default();
                    prop_assert!(differ.is_subset(&named), "{peer}: {differ:?} changed, {named:?} named");
                }
                let mut services = BTreeSet::new();
                differing_keys(&before.services, &whole.services, &mut services);
                prop_assert!(services.is_subset(planner.changed_services()));
            }

            // The hand-over to the sessions, as the shell does it.
            feeds.follow(
                whole.peers.iter().map(|(peer, planned)| (peer, &planned.routes)),
                planner.changed(),
            );
            sessions.retain(|peer, _| whole.peers.contains_key(peer));
            for (peer, planned) in &whole.peers {
                let Some(feed) = feeds.get(peer) else {
                    prop_assert!(false, "no feed for {}", peer);
                    continue;
                };
                prop_assert_eq!(&feed.with_routes(|routes| routes.clone()), &planned.routes);
                let (session_feed, sent) = sessions
                    .entry(peer.clone())
                    .or_insert_with(|| (feed.clone(), None));
                if !Arc::ptr_eq(session_feed, feed) {
                    // A new session on the new feed: it sends the whole set when up.
                    *session_feed = feed.clone();
                    *sent = None;
                }
                if !session_syncs {
                    continue;
                }
                let sent = match sent {
                    None => {
                        feed.take();
                        sent.insert(feed.with_routes(|routes| advertised_by_session(routes)))
                    }
                    Some(sent) => {
                        let prefixes = feed.take();
                        let changes = feed.with_routes(|routes| {
                            changes_for(sent, routes, &prefixes, &families(), Some(ip(LOCAL)))
                        });
                        record(sent, changes);
                        sent
                    }
                };
                prop_assert_eq!(
                    &*sent,
                    &advertised_by_session(&planned.routes),
                    "session {} after {:?}", peer, &steps[..step]
                );
            }
            previous = Some(view);
            before_plan = Some(whole);
        }
    }
}
