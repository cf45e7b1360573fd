//! The BGP plan kept up to date, with work per change proportional to what the change
//! touches: [`BgpPlanner`] gives the same plan as [`bgp_plan`](super::bgp_plan) (the property tests prove
//! it over random sequences of changes), but re-decides only the IPs of the Services whose
//! view or endpoints changed, and names the prefixes whose route changed, per peer, so
//! that the sessions need not compare whole route sets.
//!
//! Only this node's own fitness enters its BGP plan (every eligible node advertises, no
//! election): another node dying or turning unready changes nothing here. Everything else
//! the plan reads (the peers, the advertisements and their communities, the pools, this
//! node's labels, addresses and fitness for each advertisement, the options) is compared
//! with the last plan's, and any difference, or a pass that does not know which Services
//! changed, plans everything again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_crds::labels::Labels;
use ipnet::IpNet;

use super::bgp::{
    BgpAdvertisementView, BgpOptions, BgpPeerView, BgpPlan, BgpView, IpRoutes, LocalNode,
    ip_routes, merge_routes, sessions,
};
use super::eligibility::{Advertised, Liveness, advertised};
use super::l2_incremental::differing_keys;
use super::service_ips::ServiceIps;
use super::view::{ClusterView, PoolView, ServiceKey};

/// Per peer, the prefixes whose route was added, changed or removed.
pub type ChangedPrefixes = BTreeMap<String, BTreeSet<IpNet>>;

/// Keeps the last BGP plan and what it was made from. Hand it every pass with
/// [`BgpPlanner::plan_touched`].
#[derive(Debug, Default)]
pub struct BgpPlanner {
    last: Option<Last>,
    /// Per peer present in the last two plans, the prefixes whose route changed between
    /// them.
    changed: ChangedPrefixes,
    /// The Services whose advertised IPs the last plan may have changed.
    changed_services: BTreeSet<ServiceKey>,
    full_recomputes: u64,
}

/// What the plan was made from, besides the Services and endpoints.
#[derive(Debug, PartialEq)]
struct Inputs {
    bgp: BgpView,
    pools: BTreeMap<String, PoolView>,
    /// This node's labels; `None` when the node is not in the view.
    labels: Option<Labels>,
    addresses: Vec<IpAddr>,
    options: BgpOptions,
    /// The advertisements whose fit nodes hold this node.
    fit_here: BTreeSet<String>,
}

#[derive(Debug)]
struct Last {
    inputs: Inputs,
    /// The Services holding each IP.
    ips: ServiceIps,
    /// What each advertised IP gives.
    decisions: BTreeMap<IpAddr, IpRoutes>,
    /// Per peer and prefix, the IPs whose routes roll up into it (sorted; one unless
    /// advertisements aggregate).
    rolled_up: BTreeMap<(String, IpNet), Vec<IpAddr>>,
    plan: BgpPlan,
}

impl BgpPlanner {
    /// The plan for `view`: [`bgp_plan`](super::bgp_plan)`(view, bgp, node, liveness, options)`, given the
    /// Services whose view or endpoints changed since the last call (`None`: any may
    /// have). Re-decides only their IPs when nothing else changed.
    pub fn plan_touched(
        &mut self,
        view: &ClusterView,
        touched_services: Option<&BTreeSet<ServiceKey>>,
        bgp: &BgpView,
        node: &LocalNode<'_>,
        liveness: &Liveness,
        options: &BgpOptions,
    ) -> &BgpPlan {
        let advertised = advertised(view, bgp.advertisements.values(), liveness);
        let fit_here = advertised
            .iter()
            .filter(|ad| ad.nodes.contains(node.name))
            .map(|ad| ad.advertisement.name.clone())
            .collect();
        let same_inputs = self.last.as_ref().is_some_and(|last| {
            last.inputs.fit_here == fit_here
                && last.inputs.bgp == *bgp
                && last.inputs.pools == view.pools
                && last.inputs.labels.as_ref() == view.nodes.get(node.name).map(|n| &n.labels)
                && last.inputs.addresses == node.addresses
                && last.inputs.options == *options
        });
        let next = match (self.last.take(), touched_services) {
            (Some(mut last), Some(services)) if same_inputs => {
                (self.changed, self.changed_services) =
                    last.redecide(view, services, &advertised, bgp, node);
                last
            }
            (previous, _) => {
                self.full_recomputes += 1;
                let inputs = Inputs {
                    bgp: bgp.clone(),
                    pools: view.pools.clone(),
                    labels: view.nodes.get(node.name).map(|n| n.labels.clone()),
                    addresses: node.addresses.to_vec(),
                    options: options.clone(),
                    fit_here,
                };
                let next = Last::whole(view, inputs, &advertised, bgp, node);
                let before = previous.map(|previous| previous.plan).unwrap_or_default();
                self.changed = changed_between(&before, &next.plan);
                self.changed_services.clear();
                differing_keys(
                    &before.services,
                    &next.plan.services,
                    &mut self.changed_services,
                );
                next
            }
        };
        &self.last.insert(next).plan
    }

    /// The last plan (empty before the first).
    pub fn last_plan(&self) -> &BgpPlan {
        static EMPTY: std::sync::OnceLock<BgpPlan> = std::sync::OnceLock::new();
        self.last
            .as_ref()
            .map_or_else(|| EMPTY.get_or_init(BgpPlan::default), |last| &last.plan)
    }

    /// For each peer in the last plan and the one before, the prefixes whose route the
    /// last plan added, changed or removed. A peer new in the last plan is not named:
    /// all its routes are new.
    pub fn changed(&self) -> &ChangedPrefixes {
        &self.changed
    }

    /// The Services whose advertised IPs (`services` of the plan) the last plan may have
    /// changed, those it stopped advertising included.
    pub fn changed_services(&self) -> &BTreeSet<ServiceKey> {
        &self.changed_services
    }

    /// How many plans were computed whole.
    pub fn full_recomputes(&self) -> u64 {
        self.full_recomputes
    }
}

impl Last {
    /// Everything planned again, as [`super::bgp_plan`] does, keeping what each IP gives.
    fn whole(
        view: &ClusterView,
        inputs: Inputs,
        advertised: &[Advertised<'_, BgpAdvertisementView>],
        bgp: &BgpView,
        node: &LocalNode<'_>,
    ) -> Last {
        let (plan, peers) = sessions(view, bgp, node, &inputs.options);
        // With no session (L2 mode) the index stays empty: a peer coming is a change of
        // the inputs, planned whole again, and 10,000 IPs' index is megabytes.
        let ips = if peers.is_empty() {
            ServiceIps::default()
        } else {
            ServiceIps::of(view)
        };
        let decisions: Vec<(IpAddr, IpRoutes)> = ips
            .iter()
            .filter_map(|(ip, keys)| {
                ip_routes(view, *ip, keys, advertised, &peers, node).map(|d| (*ip, d))
            })
            .collect();
        let mut last = Last {
            inputs,
            ips,
            decisions: BTreeMap::new(),
            rolled_up: BTreeMap::new(),
            plan,
        };
        for (ip, decision) in decisions {
            last.add(ip, decision);
        }
        let prefixes: Vec<(String, IpNet)> = last.rolled_up.keys().cloned().collect();
        for (peer, prefix) in prefixes {
            last.merge(&peer, prefix);
        }
        last
    }

    /// Re-decides the IPs the Services `services` held and hold; returns, per peer, the
    /// prefixes whose route changed, and the Services whose advertised IPs may have.
    fn redecide(
        &mut self,
        view: &ClusterView,
        services: &BTreeSet<ServiceKey>,
        advertised: &[Advertised<'_, BgpAdvertisementView>],
        bgp: &BgpView,
        node: &LocalNode<'_>,
    ) -> (ChangedPrefixes, BTreeSet<ServiceKey>) {
        let mut changed = ChangedPrefixes::new();
        let mut changed_services = BTreeSet::new();
        if self.plan.peers.is_empty() {
            return (changed, changed_services);
        }
        let touched = self.ips.update(view, services);
        let peers: Vec<&BgpPeerView> = self
            .plan
            .peers
            .keys()
            .filter_map(|name| bgp.peers.get(name))
            .collect();
        let mut dirty: BTreeSet<(String, IpNet)> = BTreeSet::new();
        for ip in touched {
            let decision = self
                .ips
                .at(&ip)
                .and_then(|keys| ip_routes(view, ip, keys, advertised, &peers, node));
            if self.decisions.get(&ip) == decision.as_ref() {
                continue;
            }
            if let Some(old) = self.remove(ip) {
                dirty.extend(old.routes.into_iter().map(|(key, _)| key));
                changed_services.extend(old.services);
            }
            if let Some(decision) = decision {
                dirty.extend(decision.keys().cloned());
                changed_services.extend(decision.services.iter().cloned());
                self.add(ip, decision);
            }
        }
        for (peer, prefix) in dirty {
            let before = self
                .plan
                .peers
                .get(&peer)
                .and_then(|p| p.routes.get(&prefix))
                .cloned();
            self.merge(&peer, prefix);
            let after = self
                .plan
                .peers
                .get(&peer)
                .and_then(|p| p.routes.get(&prefix));
            if before.as_ref() != after {
                changed.entry(peer).or_default().insert(prefix);
            }
        }
        (changed, changed_services)
    }

    /// Records what `ip` gives (its routes are merged later, by [`Last::merge`]).
    fn add(&mut self, ip: IpAddr, decision: IpRoutes) {
        for key in decision.keys() {
            let ips = self.rolled_up.entry(key.clone()).or_default();
            if let Err(at) = ips.binary_search(&ip) {
                ips.insert(at, ip);
            }
        }
        for service in &decision.services {
            self.plan
                .services
                .entry(service.clone())
                .or_default()
                .insert(ip);
        }
        self.decisions.insert(ip, decision);
    }

    /// Forgets what `ip` gave (its prefixes are to be merged again).
    fn remove(&mut self, ip: IpAddr) -> Option<IpRoutes> {
        let old = self.decisions.remove(&ip)?;
        for key in old.keys() {
            if let Some(ips) = self.rolled_up.get_mut(key) {
                ips.retain(|held| *held != ip);
                if ips.is_empty() {
                    self.rolled_up.remove(key);
                }
            }
        }
        for service in &old.services {
            if let Some(ips) = self.plan.services.get_mut(service) {
                ips.remove(&ip);
                if ips.is_empty() {
                    self.plan.services.remove(service);
                }
            }
        }
        Some(old)
    }

    /// Sets the route of `prefix` to `peer` from the IPs rolled up into it.
    fn merge(&mut self, peer: &str, prefix: IpNet) {
        let key = (peer.to_string(), prefix);
        let mut merged = None;
        for ip in self.rolled_up.get(&key).into_iter().flatten() {
            let Some(route) = self.decisions.get(ip).and_then(|d| d.route(&key)) else {
                continue;
            };
            match merged.as_mut() {
                None => merged = Some(route.clone()),
                Some(merged) => merge_routes(merged, route),
            }
        }
        let Some(routes) = self.plan.peers.get_mut(peer).map(|p| &mut p.routes) else {
            return;
        };
        match merged {
            Some(route) => routes.insert(prefix, route),
            None => routes.remove(&prefix),
        };
    }
}

/// Per peer in both plans, the prefixes whose route differs.
fn changed_between(before: &BgpPlan, after: &BgpPlan) -> ChangedPrefixes {
    let mut changed = ChangedPrefixes::new();
    for (peer, now) in &after.peers {
        if let Some(then) = before.peers.get(peer) {
            let mut prefixes = BTreeSet::new();
            differing_keys(&then.routes, &now.routes, &mut prefixes);
            if !prefixes.is_empty() {
                changed.insert(peer.clone(), prefixes);
            }
        }
    }
    changed
}

#[cfg(test)]
#[path = "bgp_incremental_proptests.rs"]
mod proptests;
