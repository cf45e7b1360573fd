//! BGP mode: every eligible node advertises (no election), and the router spreads
//! traffic over the next hops by ECMP.
//!
//! For one node, [`bgp_plan`] picks the BGPPeers whose `nodeSelectors` select it and, per
//! peer, the routes it should advertise: every Service IP whose pool a BGPAdvertisement
//! covers for this node and this peer, rolled up to the advertisement's aggregation
//! length, with its communities and (to iBGP peers only) its LOCAL_PREF. Which nodes may
//! advertise an IP follows [`super::eligibility`]: with `externalTrafficPolicy: Cluster`
//! every selected fit node while the Service has a usable endpoint anywhere, with `Local`
//! only the nodes running one.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ferrolb_crds::community::CommunityValue;
use ferrolb_crds::labels::{Labels, any_selector_matches};
use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::eligibility::{Advertised, Liveness, advertised, ip_candidates};
use super::scope::{AdvertisementScope, AdvertisementSelectors};
use super::view::{ClusterView, ServiceKey};
use crate::bgp::fsm::FsmConfig;
use crate::bgp::message::{AddressFamily, LargeCommunity};
use crate::bgp::session::{RouteSet, SessionConfig};
use crate::bgp::update_builder::Route;

/// First connect retry delay when a peer sets no `connectTime`.
pub const DEFAULT_CONNECT_TIME: Duration = Duration::from_secs(5);
/// The cap of the doubling connect retry delay.
pub const MAX_CONNECT_RETRY: Duration = Duration::from_secs(60);

/// Where the TCP MD5 password of a peer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The password itself, from `spec.password`.
    Inline(String),
    /// Key `password` of this Secret in the speaker's namespace.
    Secret(String),
}

/// A `BGPPeer`, parsed and defaulted.
#[derive(Debug, Clone, PartialEq)]
pub struct BgpPeerView {
    /// The BGPPeer's name; sessions and status objects are keyed by it.
    pub name: String,
    /// `peerAddress`: the router to connect to.
    pub address: IpAddr,
    /// `peerPort`: the router's TCP port (179 unless set).
    pub port: u16,
    /// `myASN`: our AS number on this session.
    pub my_asn: u32,
    /// `peerASN`: the AS the router must present; equal to `my_asn` for iBGP.
    pub peer_asn: u32,
    /// `sourceAddress`: the local address to connect from; `None` lets the kernel choose.
    pub source_address: Option<IpAddr>,
    /// `routerID`; `None` uses the node's IPv4 InternalIP.
    pub router_id: Option<Ipv4Addr>,
    /// Whole seconds, 0 or 3..=65535 (validated on conversion).
    pub hold_time: u16,
    /// Whole seconds between our KEEPALIVEs, never above `hold_time`.
    pub keepalive_time: u16,
    /// `connectTime`: the first connect retry delay, which also bounds one attempt.
    pub connect_time: Duration,
    /// Where the TCP MD5 password comes from; `None` for no MD5 signature.
    pub password: Option<PasswordSource>,
    /// `ebgpMultiHop`: the router is more than one hop away, so packets are sent with TTL 255 instead of 1.
    pub ebgp_multihop: bool,
    /// `enableGracefulRestart`: offer Graceful Restart (RFC 4724) to this peer.
    pub graceful_restart: bool,
    /// `nodeSelectors`: the nodes that peer with this router; empty means every node.
    pub node_selectors: Vec<LabelSelector>,
}

impl BgpPeerView {
    /// Whether the session is iBGP (both AS numbers equal).
    pub fn is_internal(&self) -> bool {
        self.my_asn == self.peer_asn
    }
}

/// A `BGPAdvertisement`, parsed, with community aliases resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct BgpAdvertisementView {
    /// The BGPAdvertisement's name.
    pub name: String,
    /// 0..=32.
    pub aggregation_length: u8,
    /// 0..=128.
    pub aggregation_length_v6: u8,
    /// `localPref`, sent to iBGP peers only; `None` sends the default 100.
    pub local_pref: Option<u32>,
    /// `communities`, aliases already replaced by their values.
    pub communities: BTreeSet<CommunityValue>,
    /// The pools, nodes and Services it covers.
    pub selectors: AdvertisementSelectors,
    /// Peers by name; empty means every peer.
    pub peers: Vec<String>,
}

impl BgpAdvertisementView {
    /// Whether routes under this advertisement go to the peer named `peer`.
    pub fn selects_peer(&self, peer: &str) -> bool {
        self.peers.is_empty() || self.peers.iter().any(|name| name == peer)
    }

    /// `ip` rolled up to this advertisement's prefix length for its family.
    pub fn prefix_of(&self, ip: IpAddr) -> Option<IpNet> {
        let length = match ip {
            IpAddr::V4(_) => self.aggregation_length,
            IpAddr::V6(_) => self.aggregation_length_v6,
        };
        IpNet::new(ip, length).ok().map(|net| net.trunc())
    }
}

impl AdvertisementScope for BgpAdvertisementView {
    fn selectors(&self) -> &AdvertisementSelectors {
        &self.selectors
    }
}

/// The BGP configuration of the speaker's namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BgpView {
    /// Usable BGPPeers, by name.
    pub peers: BTreeMap<String, BgpPeerView>,
    /// Usable BGPAdvertisements, by name.
    pub advertisements: BTreeMap<String, BgpAdvertisementView>,
}

impl BgpView {
    /// Adds or replaces a peer, keyed by its name.
    pub fn insert_peer(&mut self, peer: BgpPeerView) {
        self.peers.insert(peer.name.clone(), peer);
    }

    /// Adds or replaces an advertisement, keyed by its name.
    pub fn insert_advertisement(&mut self, advertisement: BgpAdvertisementView) {
        self.advertisements
            .insert(advertisement.name.clone(), advertisement);
    }
}

/// This node as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode<'a> {
    /// The node's name, matched by peers' node selectors and advertisements.
    pub name: &'a str,
    /// The node's own addresses (InternalIPs): the default router ID, and the next hop
    /// of routes of the other family than the session's.
    pub addresses: &'a [IpAddr],
}

/// Settings of the speaker that are not in any object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpOptions {
    /// Keep routes with GRACEFUL_SHUTDOWN this long before withdrawing on a graceful stop.
    pub graceful_shutdown_drain: Option<Duration>,
    /// The Graceful Restart time offered to routers, in seconds; `None`: no Graceful Restart.
    pub graceful_restart_time: Option<u16>,
}

/// One session this node should run.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerPlan {
    /// The session settings, without the password when it lives in a Secret.
    pub session: SessionConfig,
    /// The Secret holding the password, to be read by the shell.
    pub password_secret: Option<String>,
    /// The routes to advertise on the session.
    pub routes: RouteSet,
}

/// What this node does in BGP mode.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BgpPlan {
    /// The sessions to run, by BGPPeer name.
    pub peers: BTreeMap<String, PeerPlan>,
    /// The Services this node advertises to at least one peer, with their IPs.
    pub services: BTreeMap<ServiceKey, BTreeSet<IpAddr>>,
    /// Peers skipped on this node, and why.
    pub warnings: Vec<BgpPlanWarning>,
    /// What the sessions do if the speaker stops now (set by the shell from the Node).
    pub on_stop: super::BgpStop,
}

/// A peer that cannot be used on this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BgpPlanWarning {
    /// The peer sets no routerID and the node has no IPv4 address to use as one.
    #[error(
        "BGPPeer {peer}: no routerID and node {node} has no IPv4 address to use instead; no session"
    )]
    NoRouterId {
        /// The BGPPeer's name.
        peer: String,
        /// This node's name.
        node: String,
    },
}

/// The peers and routes of `node`.
pub fn bgp_plan(
    view: &ClusterView,
    bgp: &BgpView,
    node: &LocalNode<'_>,
    liveness: &Liveness,
    options: &BgpOptions,
) -> BgpPlan {
    let (mut plan, peers) = sessions(view, bgp, node, options);
    if plan.peers.is_empty() {
        return plan;
    }
    let advertised = advertised(view, bgp.advertisements.values(), liveness);
    for (ip, keys) in view.services_by_ip() {
        let Some(decision) = ip_routes(view, ip, keys, &advertised, &peers, node) else {
            continue;
        };
        for ((peer, prefix), route) in decision.routes {
            if let Some(peer_plan) = plan.peers.get_mut(&peer) {
                match peer_plan.routes.entry(prefix) {
                    Entry::Vacant(vacant) => {
                        vacant.insert(route);
                    }
                    Entry::Occupied(mut occupied) => merge_routes(occupied.get_mut(), &route),
                }
            }
        }
        for service in decision.services {
            plan.services.entry(service).or_default().insert(ip);
        }
    }
    plan
}

/// The sessions of `node` (routes still empty), and the peers they are with.
pub(super) fn sessions<'b>(
    view: &ClusterView,
    bgp: &'b BgpView,
    node: &LocalNode<'_>,
    options: &BgpOptions,
) -> (BgpPlan, Vec<&'b BgpPeerView>) {
    let mut plan = BgpPlan::default();
    let mut with_session = Vec::new();
    let Some(node_view) = view.nodes.get(node.name) else {
        return (plan, with_session);
    };
    let peers = bgp
        .peers
        .values()
        .filter(|peer| any_selector_matches(&peer.node_selectors, &node_view.labels));
    for peer in peers {
        match session_config(peer, node, options) {
            Some(session) => {
                with_session.push(peer);
                plan.peers.insert(
                    peer.name.clone(),
                    PeerPlan {
                        session,
                        password_secret: match &peer.password {
                            Some(PasswordSource::Secret(name)) => Some(name.clone()),
                            _ => None,
                        },
                        routes: RouteSet::new(),
                    },
                );
            }
            None => plan.warnings.push(BgpPlanWarning::NoRouterId {
                peer: peer.name.clone(),
                node: node.name.to_string(),
            }),
        }
    }
    (plan, with_session)
}

/// What one Service IP gives `node` to advertise. Vectors, not maps: they hold one or
/// a few entries, and a map's node is sized for eleven.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IpRoutes {
    /// The routes, by peer name and prefix (several advertisements may roll the IP up
    /// to different prefixes), in that order.
    pub routes: Vec<((String, IpNet), Route)>,
    /// The Services advertised through the IP, in order.
    pub services: Vec<ServiceKey>,
}

impl IpRoutes {
    /// The route to `peer` for `prefix`.
    pub fn route(&self, key: &(String, IpNet)) -> Option<&Route> {
        let at = self.routes.binary_search_by(|(k, _)| k.cmp(key)).ok()?;
        self.routes.get(at).map(|(_, route)| route)
    }

    /// The peers and prefixes it has routes for.
    pub fn keys(&self) -> impl Iterator<Item = &(String, IpNet)> {
        self.routes.iter().map(|(key, _)| key)
    }
}

/// The routes `ip`, held by the Services `keys`, gives `node` for each of `peers` (the
/// peers selecting the node); `None` when it gives none.
pub(super) fn ip_routes<'v>(
    view: &'v ClusterView,
    ip: IpAddr,
    keys: impl IntoIterator<Item = &'v ServiceKey>,
    advertised: &[Advertised<'v, BgpAdvertisementView>],
    peers: &[&BgpPeerView],
    node: &LocalNode<'_>,
) -> Option<IpRoutes> {
    let services = keys.into_iter().filter_map(|key| view.services.get(key));
    let candidates = ip_candidates(view, &ip, services, advertised)?;
    if !candidates.eligible.contains(node.name) {
        return None;
    }
    let mut routes: BTreeMap<(String, IpNet), Route> = BTreeMap::new();
    for ad in candidates
        .advertisements
        .iter()
        .filter(|ad| ad.nodes.contains(node.name))
        .map(|ad| ad.advertisement)
    {
        let Some(prefix) = ad.prefix_of(ip) else {
            continue;
        };
        for peer in peers.iter().filter(|peer| ad.selects_peer(&peer.name)) {
            let route = routes
                .entry((peer.name.clone(), prefix))
                .or_insert_with(|| Route::new(prefix, next_hop(peer, ip, node.addresses)));
            merge_attributes(route, ad, peer.is_internal());
        }
    }
    (!routes.is_empty()).then(|| IpRoutes {
        routes: routes.into_iter().collect(),
        services: candidates.services.into_iter().collect(),
    })
}

/// Two routes for one prefix (from several IPs rolled up into it): the union of their
/// communities and the highest LOCAL_PREF. Their next hops are equal: both are the
/// next-hop self of the prefix's family towards the same peer.
pub(super) fn merge_routes(route: &mut Route, other: &Route) {
    if let Some(local_pref) = other.local_pref {
        route.local_pref = Some(route.local_pref.map_or(local_pref, |l| l.max(local_pref)));
    }
    route.communities.extend(other.communities.iter().copied());
    route
        .large_communities
        .extend(other.large_communities.iter().copied());
}

/// Next-hop self: unspecified for the session's family (the session fills in its local
/// address); for the other family, the node's address of that family when it has one,
/// else unspecified, and the session leaves the route out.
fn next_hop(peer: &BgpPeerView, ip: IpAddr, addresses: &[IpAddr]) -> IpAddr {
    let unspecified = match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    if peer.address.is_ipv4() == ip.is_ipv4() {
        return unspecified;
    }
    addresses
        .iter()
        .find(|address| address.is_ipv4() == ip.is_ipv4())
        .copied()
        .unwrap_or(unspecified)
}

/// Several advertisements (or several IPs rolled up into one prefix) give the same prefix:
/// one route with the union of their communities and the highest LOCAL_PREF.
fn merge_attributes(route: &mut Route, ad: &BgpAdvertisementView, internal_peer: bool) {
    if internal_peer && let Some(local_pref) = ad.local_pref {
        route.local_pref = Some(route.local_pref.map_or(local_pref, |l| l.max(local_pref)));
    }
    for community in &ad.communities {
        match *community {
            CommunityValue::Standard(high, low) => {
                route
                    .communities
                    .insert((u32::from(high) << 16) | u32::from(low));
            }
            CommunityValue::Large(global_admin, local_data_1, local_data_2) => {
                route.large_communities.insert(LargeCommunity {
                    global_admin,
                    local_data_1,
                    local_data_2,
                });
            }
        }
    }
}

/// The session settings of `peer` from `node`; `None` without a usable router ID.
fn session_config(
    peer: &BgpPeerView,
    node: &LocalNode<'_>,
    options: &BgpOptions,
) -> Option<SessionConfig> {
    let router_id = peer.router_id.or_else(|| {
        let from_source = match peer.source_address {
            Some(IpAddr::V4(v4)) => Some(v4),
            _ => None,
        };
        from_source.or_else(|| {
            node.addresses.iter().find_map(|address| match address {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
        })
    })?;
    Some(SessionConfig {
        peer: std::net::SocketAddr::new(peer.address, peer.port),
        source: peer.source_address,
        md5_password: match &peer.password {
            Some(PasswordSource::Inline(password)) => Some(password.clone()),
            _ => None,
        },
        ebgp_multihop: peer.ebgp_multihop,
        ipv6_link_local_next_hop: None,
        fsm: FsmConfig {
            local_as: peer.my_asn,
            peer_as: peer.peer_asn,
            router_id,
            hold_time: peer.hold_time,
            keepalive_time: Some(peer.keepalive_time).filter(|_| peer.hold_time > 0),
            connect_retry_time: peer.connect_time,
            connect_retry_max: MAX_CONNECT_RETRY.max(peer.connect_time),
            families: vec![AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST],
            graceful_shutdown_drain: options.graceful_shutdown_drain,
            graceful_restart_time: options
                .graceful_restart_time
                .filter(|_| peer.graceful_restart),
        },
    })
}

/// Whether `labels` of a node are selected by a peer (exposed for the shell's logs).
pub fn peer_selects_node(peer: &BgpPeerView, labels: &Labels) -> bool {
    any_selector_matches(&peer.node_selectors, labels)
}

#[cfg(test)]
#[path = "bgp_tests.rs"]
pub(super) mod tests;
