//! Which nodes may announce an IP: the rules shared by every announcement mode.
//!
//! A node may announce an IP for a Service when an advertisement that covers the IP's pool
//! and the Service selects the node, the node is fit (live, network up, not excluded), and,
//! for `externalTrafficPolicy: Local`, the node runs a usable endpoint of the Service. A
//! Service with no usable endpoint anywhere is announced by nobody: traffic would only be
//! dropped. Services sharing an IP must all accept a node for it to announce the IP.
//!
//! **Full disruption.** When not one Node of the cluster is `Ready`, the `Ready` condition
//! is ignored (see [`readiness_counts`]): every node turning unready at once is what a
//! partition between the kubelets and the API server looks like (the node lifecycle
//! controller marks them all `Unknown`), not every node dying, and withdrawing every IP
//! would turn a control-plane fault into a data-plane outage. Like that controller's
//! full-disruption mode, the plan then goes by the other signals (gossip liveness, network,
//! labels), so the IPs stay where they are.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::scope::AdvertisementScope;
use super::view::{ClusterView, NodeView, ServiceKey, ServiceView};

/// Nodes with this label never announce (the same rule as cloud load balancers).
pub const LABEL_EXCLUDE_FROM_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// How a speaker decides that a node is alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Only the Node's `Ready` condition: a speaker started with `--no-gossip`.
    NodeReadyOnly,
    /// `Ready`, and in this set of nodes the gossip failure detector considers alive.
    /// Ready alone reacts in tens of seconds (the node lifecycle controller's grace
    /// period); gossip notices a dead speaker in about a second.
    Gossip(BTreeSet<String>),
}

impl Liveness {
    /// Whether the speaker on `node` counts as alive under this source of liveness;
    /// its `Ready` condition is read only when `readiness_counts` (see [`readiness_counts`]).
    pub fn is_live(&self, node: &NodeView, readiness_counts: bool) -> bool {
        let ready = node.ready || !readiness_counts;
        match self {
            Liveness::NodeReadyOnly => ready,
            Liveness::Gossip(alive) => ready && alive.contains(&node.name),
        }
    }
}

/// Whether the Nodes' `Ready` condition is to be believed: `false` in a full disruption,
/// when the view holds nodes and not one of them is `Ready` (see the module's notes).
pub fn readiness_counts(view: &ClusterView) -> bool {
    view.nodes.is_empty() || view.nodes.values().any(|node| node.ready)
}

/// Whether `node` may announce anything at all; `readiness_counts` as [`Liveness::is_live`].
pub fn is_fit(node: &NodeView, liveness: &Liveness, readiness_counts: bool) -> bool {
    liveness.is_live(node, readiness_counts)
        && !node.network_unavailable
        && !node.labels.contains_key(LABEL_EXCLUDE_FROM_LOAD_BALANCERS)
}

/// An advertisement with the fit nodes it selects, computed once per plan rather than once
/// per IP.
#[derive(Debug)]
pub struct Advertised<'v, A> {
    /// The advertisement.
    pub advertisement: &'v A,
    /// Names of the fit nodes it selects.
    pub nodes: BTreeSet<&'v str>,
}

/// Pairs each advertisement with the fit nodes it selects.
pub fn advertised<'v, A: AdvertisementScope>(
    view: &'v ClusterView,
    advertisements: impl IntoIterator<Item = &'v A>,
    liveness: &Liveness,
) -> Vec<Advertised<'v, A>> {
    let readiness_counts = readiness_counts(view);
    let fit: Vec<&NodeView> = view
        .nodes
        .values()
        .filter(|node| is_fit(node, liveness, readiness_counts))
        .collect();
    advertisements
        .into_iter()
        .map(|advertisement| Advertised {
            advertisement,
            nodes: fit
                .iter()
                .filter(|node| advertisement.selects_node(&node.labels))
                .map(|node| node.name.as_str())
                .collect(),
        })
        .collect()
}

/// Who may announce one IP in one mode.
#[derive(Debug)]
pub struct IpCandidates<'v, 'a, A> {
    /// The Services on the IP that some advertisement covers.
    pub services: BTreeSet<ServiceKey>,
    /// Nodes every one of those Services accepts.
    pub eligible: BTreeSet<&'v str>,
    /// Advertisements covering the IP for at least one of those Services.
    pub advertisements: Vec<&'a Advertised<'v, A>>,
}

/// The candidates for `ip`, held by `services`, among `advertised`. `None` when the IP lies
/// in no pool, or no advertisement covers it for any of its Services: then this mode has
/// nothing to say about it.
pub fn ip_candidates<'v, 'a, A: AdvertisementScope>(
    view: &'v ClusterView,
    ip: &IpAddr,
    services: impl IntoIterator<Item = &'v ServiceView>,
    advertised: &'a [Advertised<'v, A>],
) -> Option<IpCandidates<'v, 'a, A>> {
    let pools: Vec<_> = view.pools_containing(ip).collect();
    if pools.is_empty() {
        return None;
    }
    let covering_pool: Vec<&Advertised<A>> = advertised
        .iter()
        .filter(|ad| pools.iter().any(|pool| ad.advertisement.selects_pool(pool)))
        .collect();

    let mut announced: Vec<&ServiceView> = Vec::new();
    let mut eligible: Option<BTreeSet<&str>> = None;
    for service in services {
        let mut matching = covering_pool
            .iter()
            .copied()
            .filter(|ad| ad.advertisement.selects_service(&service.labels))
            .peekable();
        if matching.peek().is_none() {
            continue;
        }
        let accepted = service_accepts(view, service, matching);
        eligible = Some(match eligible {
            None => accepted,
            Some(so_far) => so_far.intersection(&accepted).copied().collect(),
        });
        announced.push(service);
    }
    let advertisements = covering_pool
        .into_iter()
        .filter(|ad| {
            announced
                .iter()
                .any(|service| ad.advertisement.selects_service(&service.labels))
        })
        .collect();
    Some(IpCandidates {
        services: announced.iter().map(|s| s.key.clone()).collect(),
        eligible: eligible?,
        advertisements,
    })
}

/// The nodes that may announce for `service`: selected by one of its `matching`
/// advertisements, and holding an endpoint when the policy is Local.
fn service_accepts<'v, 'a, A: 'v>(
    view: &'v ClusterView,
    service: &ServiceView,
    matching: impl Iterator<Item = &'a Advertised<'v, A>>,
) -> BTreeSet<&'v str>
where
    'v: 'a,
{
    let Some(endpoints) = view
        .endpoints_of(&service.key)
        .filter(|endpoints| endpoints.any_usable())
    else {
        return BTreeSet::new();
    };
    matching
        .flat_map(|ad| ad.nodes.iter().copied())
        .filter(|node| !service.local_traffic_policy || endpoints.nodes.contains(*node))
        .collect()
}
