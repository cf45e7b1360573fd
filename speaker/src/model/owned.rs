//! The IPs this node owns, kept up to date from the L2 plan: patched for the
//! IPs the planner re-decided, or replaced whole after a full plan. The shell
//! hands the result to the announcer and the reporter through
//! `watch::Sender::send_if_modified`, so receivers wake only on a real change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::l2::{L2Decision, owned_by};

/// Brings `current` (the IPs this node owns, with
/// what `value` makes of each decision) up to date with `plan`, visiting only the
/// `redecided` IPs when known; whether anything changed.
pub fn patch_owned<V: PartialEq + Clone>(
    current: &mut BTreeMap<IpAddr, V>,
    plan: &BTreeMap<IpAddr, L2Decision>,
    node: &str,
    redecided: Option<&BTreeSet<IpAddr>>,
    value: impl Fn(&L2Decision) -> V,
) -> bool {
    let Some(redecided) = redecided else {
        let whole: BTreeMap<IpAddr, V> = owned_by(plan, node)
            .map(|(ip, decision)| (*ip, value(decision)))
            .collect();
        if *current == whole {
            return false;
        }
        *current = whole;
        return true;
    };
    let mut changed = false;
    for ip in redecided {
        let new = plan
            .get(ip)
            .filter(|decision| decision.owner.as_deref() == Some(node))
            .map(&value);
        match new {
            Some(new) if current.get(ip) != Some(&new) => {
                current.insert(*ip, new);
                changed = true;
            }
            Some(_) => {}
            None => changed |= current.remove(ip).is_some(),
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InterfaceSelection;

    #[test]
    fn patch_owned_visits_the_redecided_ips_and_reports_a_change() {
        let ip = |last: u8| IpAddr::from([203, 0, 113, last]);
        let decision = |owner: &str| L2Decision {
            owner: Some(owner.to_string()),
            services: BTreeSet::new(),
            interfaces: InterfaceSelection::AllSuitable,
        };
        let owner = |d: &L2Decision| d.owner.clone();
        let mut plan = BTreeMap::from([(ip(1), decision("a")), (ip(2), decision("b"))]);
        let mut current = BTreeMap::new();
        assert!(patch_owned(&mut current, &plan, "a", None, owner));
        assert_eq!(current, BTreeMap::from([(ip(1), Some("a".to_string()))]));
        assert!(!patch_owned(&mut current, &plan, "a", None, owner));

        // 1 moves to b, 2 to a, 3 appears for a; only 1 and 3 are said re-decided.
        plan.insert(ip(1), decision("b"));
        plan.insert(ip(2), decision("a"));
        plan.insert(ip(3), decision("a"));
        let redecided = BTreeSet::from([ip(1), ip(3)]);
        assert!(patch_owned(
            &mut current,
            &plan,
            "a",
            Some(&redecided),
            owner
        ));
        assert_eq!(current, BTreeMap::from([(ip(3), Some("a".to_string()))]));
        assert!(!patch_owned(
            &mut current,
            &plan,
            "a",
            Some(&redecided),
            owner
        ));
        // An IP won and nothing lost is a change too.
        plan.insert(ip(4), decision("a"));
        let redecided = BTreeSet::from([ip(4)]);
        assert!(patch_owned(
            &mut current,
            &plan,
            "a",
            Some(&redecided),
            owner
        ));
        assert_eq!(current.len(), 2);
    }
}
