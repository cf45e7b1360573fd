//! L2 mode: exactly one node answers ARP/NDP for each IP.
//!
//! Every speaker computes the whole plan from the same view and then acts only on the IPs
//! it owns ([`owned_by`]), so the speakers agree without talking to each other.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::eligibility::{Advertised, Liveness, advertised, ip_candidates};
use super::reach::{Reaches, reach_of};
use super::view::{ClusterView, L2AdvertisementView, ServiceKey, ServiceSet};
use crate::election::elect;

/// Interfaces the owner answers on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceSelection {
    /// Some covering advertisement names no interfaces: every interface of the node that
    /// can carry the IP (the shell decides which are suitable).
    AllSuitable,
    /// Only these, the union of the covering advertisements' `interfaces`.
    Named(BTreeSet<String>),
}

/// What happens to one IP in L2 mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Decision {
    /// The node that announces the IP; `None` when no node is eligible, so that the former
    /// owner withdraws and the Services can be reported as unannounced.
    pub owner: Option<String>,
    /// The Services on this IP that some L2Advertisement covers.
    pub services: ServiceSet,
    /// Where the owner announces; `Named` and empty when there is no owner.
    pub interfaces: InterfaceSelection,
}

/// The L2 plan for the whole cluster: every IP that lies in a pool and that some
/// L2Advertisement covers for one of its Services, with its owner. Every node has full
/// reach: [`l2_plan_within`] with no reports.
pub fn l2_plan(view: &ClusterView, liveness: &Liveness) -> BTreeMap<IpAddr, L2Decision> {
    l2_plan_within(view, liveness, &Reaches::new())
}

/// [`l2_plan`], where a node is a candidate for an IP only if its reach covers the
/// interfaces it would announce the IP on ([`super::reach`]): a node that lost the
/// interface an L2Advertisement names leaves the election for that advertisement's IPs.
pub fn l2_plan_within(
    view: &ClusterView,
    liveness: &Liveness,
    reaches: &Reaches,
) -> BTreeMap<IpAddr, L2Decision> {
    let advertised = advertised(view, view.l2_advertisements.values(), liveness);
    view.services_by_ip()
        .into_iter()
        .filter_map(|(ip, keys)| Some((ip, decide(view, ip, keys, &advertised, reaches)?)))
        .collect()
}

/// The decision for one IP held by the Services `keys`; `None` when L2 mode has nothing
/// to say about it (no pool, no covering advertisement).
pub(super) fn decide<'k>(
    view: &ClusterView,
    ip: IpAddr,
    keys: impl IntoIterator<Item = &'k ServiceKey>,
    advertised: &[Advertised<'_, L2AdvertisementView>],
    reaches: &Reaches,
) -> Option<L2Decision> {
    let services = keys.into_iter().filter_map(|key| view.services.get(key));
    let candidates = ip_candidates(view, &ip, services, advertised)?;
    let reaching = candidates.eligible.iter().copied().filter(|node| {
        reach_of(reaches, node).covers(&selection_for(&candidates.advertisements, node))
    });
    let owner = elect(ip, reaching);
    let interfaces = match owner {
        None => InterfaceSelection::Named(BTreeSet::new()),
        Some(owner) => selection_for(&candidates.advertisements, owner),
    };
    Some(L2Decision {
        owner: owner.map(str::to_string),
        services: candidates.services.into(),
        interfaces,
    })
}

/// Where `node` would announce an IP covered by `advertisements`: the interfaces of
/// those that select it.
fn selection_for(
    advertisements: &[&Advertised<'_, L2AdvertisementView>],
    node: &str,
) -> InterfaceSelection {
    interfaces_of(
        advertisements
            .iter()
            .filter(|ad| ad.nodes.contains(node))
            .map(|ad| ad.advertisement),
    )
}

/// The union of the advertisements' interfaces; any advertisement without a list means all.
fn interfaces_of<'a>(
    advertisements: impl Iterator<Item = &'a L2AdvertisementView>,
) -> InterfaceSelection {
    let mut named = BTreeSet::new();
    for advertisement in advertisements {
        if advertisement.interfaces.is_empty() {
            return InterfaceSelection::AllSuitable;
        }
        named.extend(advertisement.interfaces.iter().cloned());
    }
    InterfaceSelection::Named(named)
}

/// Whether this speaker probes an IP on the wire before claiming it
/// ([`crate::l2::arbiter`]): when it cannot be sure the IP's previous owner is
/// gone. That is when it hears, itself included, from no strict majority of
/// the nodes it expects (`expected_peers`: the other Ready nodes with a gossip
/// address), as a node cut off from gossip does; or when it runs without
/// gossip. A failover that the majority agrees on (the owner's speaker died)
/// claims at once, with no probe delay; conflicts that remain are settled on
/// the wire by rank.
pub fn probe_first(liveness: &Liveness, expected_peers: &BTreeSet<String>) -> bool {
    match liveness {
        Liveness::NodeReadyOnly => true,
        Liveness::Gossip(alive) => {
            let heard = 1 + expected_peers.iter().filter(|n| alive.contains(*n)).count();
            heard * 2 <= expected_peers.len() + 1
        }
    }
}

/// The IPs `node` announces.
pub fn owned_by<'a>(
    plan: &'a BTreeMap<IpAddr, L2Decision>,
    node: &str,
) -> impl Iterator<Item = (&'a IpAddr, &'a L2Decision)> {
    let node = node.to_string();
    plan.iter()
        .filter(move |(_, decision)| decision.owner.as_deref() == Some(node.as_str()))
}

#[cfg(test)]
#[path = "l2_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "l2_proptests.rs"]
pub(crate) mod proptests;
