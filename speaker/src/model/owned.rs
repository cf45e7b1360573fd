//! The IPs this node owns, kept up to date from the L2 plan: patched for the
//! IPs the planner re-decided, or replaced whole after a full plan. The shell
//! hands the result to the announcer and the reporter through
//! `watch::Sender::send_if_modified`, so receivers wake only on a real change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::l2::{L2Decision, owned_by};
use super::view::ServiceKey;

/// One announcement as reported: a Service's IP and the interfaces it is on.
pub type Announced = BTreeMap<(ServiceKey, IpAddr), BTreeSet<String>>;

/// What the reporter reports: each IP announced (`applied`, with its
/// interfaces), once for each Service that owns it (`owned`). Whole: visits
/// every announced IP and clones its keys.
pub fn announced(
    applied: &BTreeMap<IpAddr, BTreeSet<String>>,
    owned: &BTreeMap<IpAddr, BTreeSet<ServiceKey>>,
) -> Announced {
    applied
        .iter()
        .flat_map(|(ip, interfaces)| {
            owned
                .get(ip)
                .into_iter()
                .flatten()
                .map(move |service| ((service.clone(), *ip), interfaces.clone()))
        })
        .collect()
}

/// What the reporter has to do to bring what it reported in line with `now`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReportDiff<'a> {
    /// Reported, and no longer announced.
    pub gone: Vec<(ServiceKey, IpAddr)>,
    /// Announced, and not reported as it is now.
    pub write: Vec<(&'a (ServiceKey, IpAddr), &'a BTreeSet<String>)>,
}

/// The difference from `reported` to `now`, in one merged pass over both
/// (no key cloned but those gone).
pub fn report_diff<'a>(reported: &Announced, now: &'a Announced) -> ReportDiff<'a> {
    let mut diff = ReportDiff::default();
    let mut old = reported.iter().peekable();
    for (key, interfaces) in now {
        while let Some((gone, _)) = old.next_if(|(old_key, _)| *old_key < key) {
            diff.gone.push(gone.clone());
        }
        match old.next_if(|(old_key, _)| *old_key == key) {
            Some((_, before)) if before == interfaces => {}
            _ => diff.write.push((key, interfaces)),
        }
    }
    diff.gone.extend(old.map(|(key, _)| key.clone()));
    diff
}

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
    fn the_report_diff_names_what_went_and_what_to_write() {
        let key = |name: &str, last: u8| {
            let service = ServiceKey {
                namespace: "apps".into(),
                name: name.into(),
            };
            (service, IpAddr::from([203, 0, 113, last]))
        };
        let on = |names: &[&str]| {
            names
                .iter()
                .map(|n| (*n).to_owned())
                .collect::<BTreeSet<_>>()
        };
        let reported = Announced::from([
            (key("a", 1), on(&["eth0"])),
            (key("b", 2), on(&["eth0"])),
            (key("c", 3), on(&["eth0"])),
            (key("e", 5), on(&["eth0"])),
        ]);
        let now = Announced::from([
            (key("b", 2), on(&["eth0", "eth1"])),
            (key("c", 3), on(&["eth0"])),
            (key("d", 4), on(&["eth1"])),
        ]);
        let diff = report_diff(&reported, &now);
        assert_eq!(diff.gone, vec![key("a", 1), key("e", 5)]);
        let write: Vec<_> = diff.write.iter().map(|(key, _)| (*key).clone()).collect();
        assert_eq!(write, vec![key("b", 2), key("d", 4)]);
        assert_eq!(report_diff(&now, &now), ReportDiff::default());
    }

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
