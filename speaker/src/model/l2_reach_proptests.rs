//! Properties of the L2 plan when nodes report less than full reach.

use super::*;
use crate::model::l2::{InterfaceSelection, l2_plan_within};
use crate::model::reach::{Reach, Reaches};

/// A reach over the interface names the scenarios' advertisements use.
fn reach_case() -> impl Strategy<Value = Reach> {
    (
        prop::bool::weighted(0.2),
        prop::sample::subsequence(vec!["eth0", "eth1", "bond0"], 0..=3),
    )
        .prop_map(|(no_suitable, unusable)| Reach {
            no_suitable,
            unusable: unusable.into_iter().map(str::to_owned).collect(),
        })
}

fn reaches_of(cases: &[Reach]) -> Reaches {
    cases
        .iter()
        .enumerate()
        .map(|(i, reach)| (node_name(i), reach.clone()))
        .collect()
}

/// Where `node` would announce `ip` for `services`, restated from the advertisements.
fn oracle_selection(
    view: &ClusterView,
    ip: &IpAddr,
    services: &BTreeSet<ServiceKey>,
    node: &str,
) -> InterfaceSelection {
    let Some(node) = view.nodes.get(node) else {
        return InterfaceSelection::Named(BTreeSet::new());
    };
    let mut named = BTreeSet::new();
    for ad in view.l2_advertisements.values() {
        let covers = view
            .pools
            .values()
            .any(|pool| pool.contains(ip) && ad.selects_pool(pool))
            && ad.selects_node(&node.labels)
            && services.iter().any(|key| {
                view.services
                    .get(key)
                    .is_some_and(|service| ad.selects_service(&service.labels))
            });
        if !covers {
            continue;
        }
        if ad.interfaces.is_empty() {
            return InterfaceSelection::AllSuitable;
        }
        named.extend(ad.interfaces.iter().cloned());
    }
    InterfaceSelection::Named(named)
}

fn covers(reach: &Reach, selection: &InterfaceSelection) -> bool {
    match selection {
        InterfaceSelection::AllSuitable => !reach.no_suitable,
        InterfaceSelection::Named(names) => names.iter().any(|name| !reach.unusable.contains(name)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The owner is elected among the eligible nodes that reach the IP's interfaces: a node
    /// that cannot serve an IP never owns it, and the IP has an owner whenever one can.
    #[test]
    fn owner_is_elected_among_the_eligible_that_reach(
        scenario in scenario(),
        cases in prop::collection::vec(reach_case(), 7),
    ) {
        let view = Objects::of(&scenario).view();
        let liveness = gossip(&scenario);
        let reaches = reaches_of(&cases);
        let plan = l2_plan_within(&view, &liveness, &reaches);
        for address in IPS.iter().map(|text| ip(text)) {
            let Some(decision) = plan.get(&address) else { continue };
            let services: BTreeSet<ServiceKey> = decision.services.iter().cloned().collect();
            let reaching: BTreeSet<String> = oracle_eligible(&view, &liveness, &address, &services)
                .into_iter()
                .filter(|node| {
                    let reach = reaches.get(node).cloned().unwrap_or_default();
                    covers(&reach, &oracle_selection(&view, &address, &services, node))
                })
                .collect();
            let expected = elect(address, reaching.iter().map(String::as_str));
            prop_assert_eq!(decision.owner.as_deref(), expected);
            if let Some(owner) = &decision.owner {
                prop_assert!(covers(&reaches[owner], &decision.interfaces));
            }
        }
    }

    /// Full reach everywhere is the plan without reach; a node losing reach moves only IPs
    /// it owned, and only those it can no longer serve.
    #[test]
    fn a_node_losing_reach_moves_only_its_own_ips(
        scenario in scenario(),
        victim in any::<prop::sample::Index>(),
        lost in reach_case(),
    ) {
        let view = Objects::of(&scenario).view();
        let liveness = gossip(&scenario);
        let before = l2_plan_within(&view, &liveness, &Reaches::new());
        prop_assert_eq!(&before, &l2_plan(&view, &liveness));
        let victim = node_name(victim.index(scenario.nodes.len()));
        let reaches = Reaches::from([(victim.clone(), lost.clone())]);
        let after = l2_plan_within(&view, &liveness, &reaches);
        prop_assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
        for (ip, decision) in &before {
            let owner_after = after.get(ip).and_then(|d| d.owner.clone());
            if decision.owner.as_deref() == Some(victim.as_str()) && !covers(&lost, &decision.interfaces) {
                prop_assert_ne!(owner_after.as_deref(), Some(victim.as_str()));
            } else {
                prop_assert_eq!(&owner_after, &decision.owner);
            }
        }
    }
}
