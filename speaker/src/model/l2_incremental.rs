//! The L2 plan kept up to date, with work per change proportional to what the change
//! touches: [`L2Planner`] gives the same plan as [`l2_plan_within`] (the property tests
//! prove it over random sequences of changes), but re-decides only the IPs whose inputs
//! changed.
//!
//! * A Service or its endpoints changed: the IPs it held and holds.
//! * Nodes left every advertisement's fit set (a speaker died, a Node turned unready) and
//!   nothing else about the nodes changed: only the IPs those nodes owned. Rendezvous
//!   hashing keeps every other owner (the maximum of a set stays the maximum of any subset
//!   that holds it), and the remaining nodes' eligibility and interfaces are untouched.
//! * Anything else (pools, advertisements, reaches, nodes joining or changing labels):
//!   everything, as [`l2_plan_within`] does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::eligibility::{Liveness, advertised};
use super::l2::{L2Decision, decide, l2_plan_within};
use super::reach::Reaches;
use super::regrow::Regrow;
use super::service_ips::ServiceIps;
use super::view::{ClusterView, L2AdvertisementView, PoolView, ServiceKey};

/// Keeps the last plan and what it was made from. Hand it every new view with
/// [`L2Planner::plan`], or with [`L2Planner::plan_touched`] when the caller knows which
/// Services changed (as [`super::ViewCache`] does).
#[derive(Debug, Default)]
pub struct L2Planner {
    last: Option<Last>,
    /// The view of the last [`L2Planner::plan`], to find the Services that changed.
    previous: Option<Arc<ClusterView>>,
    /// The IPs the last plan re-decided; `None` when it decided all.
    redecided: Option<BTreeSet<IpAddr>>,
    full_recomputes: u64,
}

#[derive(Debug)]
struct Last {
    pools: BTreeMap<String, PoolView>,
    l2_advertisements: BTreeMap<String, L2AdvertisementView>,
    reaches: Reaches,
    /// The fit nodes of each L2Advertisement, by its name.
    fit: BTreeMap<String, BTreeSet<String>>,
    /// The Services holding each IP.
    ips: ServiceIps,
    plan: BTreeMap<IpAddr, L2Decision>,
    /// The plan grows an IP at a time: rebuilt now and then ([`Regrow`]).
    plan_regrow: Regrow,
}

/// How the fit nodes changed since the last plan.
enum FitChange {
    Same,
    /// These nodes left every advertisement; no other change.
    Gone(BTreeSet<String>),
    Other,
}

impl L2Planner {
    /// The plan for `view`: [`l2_plan_within`]`(view, liveness, reaches)`, re-deciding only
    /// the IPs the changes since the last call touch.
    pub fn plan(
        &mut self,
        view: Arc<ClusterView>,
        liveness: &Liveness,
        reaches: &Reaches,
    ) -> &BTreeMap<IpAddr, L2Decision> {
        let touched = self
            .previous
            .take()
            .map(|previous| changed_services(&previous, &view));
        self.previous = Some(view.clone());
        self.plan_touched(&view, touched.as_ref(), liveness, reaches)
    }

    /// The plan for `view`, given the Services whose view or endpoints changed since the
    /// last call (`None`: any may have). Do not mix with [`L2Planner::plan`].
    pub fn plan_touched(
        &mut self,
        view: &ClusterView,
        touched_services: Option<&BTreeSet<ServiceKey>>,
        liveness: &Liveness,
        reaches: &Reaches,
    ) -> &BTreeMap<IpAddr, L2Decision> {
        let advertised = advertised(view, view.l2_advertisements.values(), liveness);
        let fit: BTreeMap<String, BTreeSet<String>> = advertised
            .iter()
            .map(|ad| {
                let nodes = ad.nodes.iter().map(|n| n.to_string()).collect();
                (ad.advertisement.name.clone(), nodes)
            })
            .collect();
        let last = match (self.last.take(), touched_services) {
            (Some(last), Some(_))
                if last.pools == view.pools
                    && last.l2_advertisements == view.l2_advertisements
                    && last.reaches == *reaches =>
            {
                Some(last)
            }
            _ => None,
        };
        let change = last
            .as_ref()
            .map_or(FitChange::Other, |last| fit_change(&last.fit, &fit));
        let next = match (last, change, touched_services) {
            (Some(mut last), change @ (FitChange::Same | FitChange::Gone(_)), Some(services)) => {
                let gone = match change {
                    FitChange::Gone(gone) => gone,
                    _ => BTreeSet::new(),
                };
                let mut touched: BTreeSet<IpAddr> = last
                    .plan
                    .iter()
                    .filter(|(_, d)| d.owner.as_ref().is_some_and(|o| gone.contains(o)))
                    .map(|(ip, _)| *ip)
                    .collect();
                touched.extend(last.ips.update(view, services));
                for ip in &touched {
                    let decision = last
                        .ips
                        .at(ip)
                        .and_then(|keys| decide(view, *ip, keys, &advertised, reaches));
                    match decision {
                        Some(decision) => last.plan.insert(*ip, decision),
                        None => last.plan.remove(ip),
                    };
                }
                last.plan_regrow.after_inserts(&mut last.plan);
                self.redecided = Some(touched);
                Last { fit, ..last }
            }
            _ => {
                self.full_recomputes += 1;
                self.redecided = None;
                Last {
                    plan: l2_plan_within(view, liveness, reaches),
                    ips: ServiceIps::of(view),
                    pools: view.pools.clone(),
                    l2_advertisements: view.l2_advertisements.clone(),
                    reaches: reaches.clone(),
                    fit,
                    plan_regrow: Regrow::default(),
                }
            }
        };
        &self.last.insert(next).plan
    }

    /// The last plan (empty before the first).
    pub fn last_plan(&self) -> &BTreeMap<IpAddr, L2Decision> {
        static EMPTY: BTreeMap<IpAddr, L2Decision> = BTreeMap::new();
        self.last.as_ref().map_or(&EMPTY, |last| &last.plan)
    }

    /// The IPs whose decision the last plan may have changed; `None` when it decided
    /// every IP again.
    pub fn redecided(&self) -> Option<&BTreeSet<IpAddr>> {
        self.redecided.as_ref()
    }

    /// How many plans were computed whole (the first, and after changes other than
    /// Services, endpoints and nodes leaving).
    pub fn full_recomputes(&self) -> u64 {
        self.full_recomputes
    }
}

/// How the fit nodes of each advertisement changed from `before` to `after`.
fn fit_change(
    before: &BTreeMap<String, BTreeSet<String>>,
    after: &BTreeMap<String, BTreeSet<String>>,
) -> FitChange {
    if before == after {
        return FitChange::Same;
    }
    if !before.keys().eq(after.keys()) {
        return FitChange::Other;
    }
    let mut gone = BTreeSet::new();
    for (old, new) in before.values().zip(after.values()) {
        if !new.is_subset(old) {
            return FitChange::Other;
        }
        gone.extend(old.difference(new).cloned());
    }
    // A node that left one advertisement but stays in another changed its interfaces,
    // which can change its reach for other IPs.
    if after.values().any(|nodes| !nodes.is_disjoint(&gone)) {
        return FitChange::Other;
    }
    FitChange::Gone(gone)
}

/// The Services whose view or endpoints differ between `before` and `after` (added and
/// removed ones included).
fn changed_services(before: &ClusterView, after: &ClusterView) -> BTreeSet<ServiceKey> {
    let mut changed = BTreeSet::new();
    differing_keys(&before.services, &after.services, &mut changed);
    differing_keys(&before.endpoints, &after.endpoints, &mut changed);
    changed
}

/// Adds to `out` the keys whose values differ between two maps, or that only one holds:
/// one merge walk over both, in key order.
pub(super) fn differing_keys<K: Ord + Clone, V: PartialEq>(
    before: &BTreeMap<K, V>,
    after: &BTreeMap<K, V>,
    out: &mut BTreeSet<K>,
) {
    let (mut old, mut new) = (before.iter().peekable(), after.iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => return,
            (Some((key, _)), None) => {
                out.insert((*key).clone());
                old.next();
            }
            (None, Some((key, _))) => {
                out.insert((*key).clone());
                new.next();
            }
            (Some((old_key, old_value)), Some((new_key, new_value))) => {
                match old_key.cmp(new_key) {
                    std::cmp::Ordering::Less => {
                        out.insert((*old_key).clone());
                        old.next();
                    }
                    std::cmp::Ordering::Greater => {
                        out.insert((*new_key).clone());
                        new.next();
                    }
                    std::cmp::Ordering::Equal => {
                        if old_value != new_value {
                            out.insert((*old_key).clone());
                        }
                        old.next();
                        new.next();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "l2_incremental_proptests.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::fixtures::*;
    use crate::model::reach::Reach;

    /// A node that leaves one advertisement and stays in another changes the interfaces
    /// it would announce on, and with them its reach: it may win IPs it did not own.
    #[test]
    fn a_node_leaving_one_advertisement_of_two_is_planned_whole() {
        let mut view = cluster(&[]);
        view.l2_advertisements.clear();
        let mut west = advertisement("west");
        west.selectors.node_selectors = vec![selector(&[("zone", "west")])];
        view.insert_l2_advertisement(west);
        let mut named = advertisement("named");
        named.interfaces = vec!["eth0".into()];
        view.insert_l2_advertisement(named);
        let mut a = node("a");
        a.labels = labels(&[("zone", "west")]);
        view.insert_node(a);
        view.insert_node(node("b"));
        for i in 1..=8 {
            let service = service(&format!("s{i}"), &[&format!("203.0.113.{i}")]);
            add_service(&mut view, service, &["a", "b"]);
        }
        // a has no suitable interface: it cannot serve the west advertisement's "all".
        let reaches: Reaches = [(
            "a".to_string(),
            Reach {
                no_suitable: true,
                unusable: Default::default(),
            },
        )]
        .into();
        let liveness = Liveness::NodeReadyOnly;
        let mut planner = L2Planner::default();
        let before = planner
            .plan(Arc::new(view.clone()), &liveness, &reaches)
            .clone();
        assert!(before.values().all(|d| d.owner.as_deref() == Some("b")));

        if let Some(a) = view.nodes.get_mut("a") {
            a.labels = labels(&[("zone", "east")]);
        }
        let full = l2_plan_within(&view, &liveness, &reaches);
        assert!(full.values().any(|d| d.owner.as_deref() == Some("a")));
        assert_eq!(planner.plan(Arc::new(view), &liveness, &reaches), &full);
    }
}
