//! The proof of [`L2Planner`]: after any sequence of changes, its plan is the full
//! recompute's.

use std::sync::Arc;

use proptest::prelude::*;

use super::L2Planner;
use crate::model::eligibility::Liveness;
use crate::model::l2::l2_plan_within;
use crate::model::l2::proptests::{Objects, Scenario, gossip, node_name, scenario};
use crate::model::reach::{Reach, Reaches};

/// One change between two plans.
#[derive(Debug, Clone)]
enum Change {
    /// A node's speaker dies or comes back (gossip).
    ToggleAlive(prop::sample::Index),
    /// A Node's `Ready` condition flips.
    ToggleReady(prop::sample::Index),
    /// A Node's `NetworkUnavailable` condition flips.
    ToggleNetwork(prop::sample::Index),
    /// A Service's endpoints all move onto one node, or none is left.
    MoveEndpoints(prop::sample::Index, Option<prop::sample::Index>),
    /// A Service's traffic policy flips.
    TogglePolicy(prop::sample::Index),
    /// A Service's first IP is replaced, or the Service is deleted.
    ReplaceIp(prop::sample::Index, Option<usize>),
    /// A node loses (or regains) every suitable interface.
    ToggleReach(prop::sample::Index),
    /// A Node's zone label flips, so it may leave some advertisements and stay in others.
    ToggleZone(prop::sample::Index),
}

fn change() -> impl Strategy<Value = Change> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        3 => index().prop_map(Change::ToggleAlive),
        1 => index().prop_map(Change::ToggleReady),
        1 => index().prop_map(Change::ToggleNetwork),
        3 => (index(), prop::option::of(index())).prop_map(|(s, n)| Change::MoveEndpoints(s, n)),
        1 => index().prop_map(Change::TogglePolicy),
        2 => (index(), prop::option::of(0usize..6)).prop_map(|(s, ip)| Change::ReplaceIp(s, ip)),
        1 => index().prop_map(Change::ToggleReach),
        1 => index().prop_map(Change::ToggleZone),
    ]
}

/// Applies `change` to the scenario (and to the nodes without suitable interfaces).
fn apply(change: &Change, scenario: &mut Scenario, unreachable: &mut [bool]) {
    let nodes = scenario.nodes.len();
    match change {
        Change::ToggleAlive(i) => {
            let node = &mut scenario.nodes[i.index(nodes)];
            node.gossip_alive = !node.gossip_alive;
        }
        Change::ToggleReady(i) => {
            let node = &mut scenario.nodes[i.index(nodes)];
            node.ready = !node.ready;
        }
        Change::ToggleNetwork(i) => {
            let node = &mut scenario.nodes[i.index(nodes)];
            node.network_unavailable = !node.network_unavailable;
        }
        Change::ToggleZone(i) => {
            let node = &mut scenario.nodes[i.index(nodes)];
            node.zone_west = !node.zone_west;
        }
        Change::ToggleReach(i) => {
            let i = i.index(nodes);
            unreachable[i] = !unreachable[i];
        }
        Change::MoveEndpoints(..) | Change::TogglePolicy(_) | Change::ReplaceIp(..)
            if scenario.services.is_empty() => {}
        Change::MoveEndpoints(s, to) => {
            let service = s.index(scenario.services.len());
            let endpoints = &mut scenario.services[service].endpoints;
            endpoints.clear();
            if let Some(to) = to {
                endpoints.push((Some(to.index(nodes)), (Some(true), None, None)));
            }
        }
        Change::TogglePolicy(s) => {
            let i = s.index(scenario.services.len());
            let service = &mut scenario.services[i];
            service.local = !service.local;
        }
        Change::ReplaceIp(s, ip) => {
            let i = s.index(scenario.services.len());
            match ip {
                Some(ip) => {
                    let service = &mut scenario.services[i];
                    if let Some(first) = service.ips.iter().next().copied() {
                        service.ips.remove(&first);
                    }
                    service.ips.insert(*ip);
                }
                None => {
                    scenario.services.remove(i);
                }
            }
        }
    }
}

fn reaches(unreachable: &[bool]) -> Reaches {
    unreachable
        .iter()
        .enumerate()
        .filter(|(_, cut)| **cut)
        .map(|(i, _)| {
            let reach = Reach {
                no_suitable: true,
                unusable: ["eth1".to_string()].into(),
            };
            (node_name(i), reach)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn incremental_plan_equals_the_full_recompute(
        scenario in scenario(),
        changes in prop::collection::vec(change(), 1..10),
        use_gossip in any::<bool>(),
    ) {
        let mut scenario = scenario;
        let mut unreachable = vec![false; scenario.nodes.len()];
        let mut planner = L2Planner::default();
        let mut before = std::collections::BTreeMap::new();
        for step in 0..=changes.len() {
            if step > 0 {
                apply(&changes[step - 1], &mut scenario, &mut unreachable);
            }
            let view = Arc::new(Objects::of(&scenario).view());
            let liveness = if use_gossip { gossip(&scenario) } else { Liveness::NodeReadyOnly };
            let within = reaches(&unreachable);
            let full = l2_plan_within(&view, &liveness, &within);
            let incremental = planner.plan(view, &liveness, &within);
            prop_assert_eq!(incremental, &full, "after {:?}", &changes[..step]);
            // What the shell patches: every IP whose decision changed was re-decided.
            if let Some(redecided) = planner.redecided() {
                for ip in full.keys().chain(before.keys()) {
                    let changed = full.get(ip) != before.get(ip);
                    prop_assert!(!changed || redecided.contains(ip), "{ip} changed, not re-decided");
                }
            }
            before = full;
        }
    }
}
