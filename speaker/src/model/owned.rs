//! The IPs this node owns, kept up to date from the L2 plan: patched for the
//! IPs the planner re-decided, or replaced whole after a full plan. The shell
//! hands the result to the announcer and the reporter through
//! `watch::Sender::send_if_modified`, so receivers wake only on a real change.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::few::Few;
use super::l2::{L2Decision, owned_by};
use super::regrow::Regrow;
use super::view::ServiceKey;

/// One announcement as reported: a Service's IP and the interfaces it is on.
pub type Announced = BTreeMap<(ServiceKey, IpAddr), BTreeSet<String>>;

/// What the reporter reports: each IP announced (`applied`, with its
/// interfaces), once for each Service that owns it (`owned`). Whole: visits
/// every announced IP and clones its keys.
pub fn announced<I, S>(applied: &BTreeMap<IpAddr, I>, owned: &BTreeMap<IpAddr, S>) -> Announced
where
    I: Borrow<BTreeSet<String>>,
    for<'s> &'s S: IntoIterator<Item = &'s ServiceKey>,
{
    applied
        .iter()
        .flat_map(|(ip, interfaces)| {
            owned
                .get(ip)
                .into_iter()
                .flatten()
                .map(move |service| ((service.clone(), *ip), interfaces.borrow().clone()))
        })
        .collect()
}

/// The IPs whose entry changed in maps handed to another task, gathered
/// until it looks: these, or all of them (a map replaced whole).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Every IP may have changed.
    pub all: bool,
    /// The IPs that changed (when not `all`).
    pub ips: BTreeSet<IpAddr>,
}

impl Touched {
    /// Every IP may have changed.
    pub fn everything() -> Touched {
        Touched {
            all: true,
            ips: BTreeSet::new(),
        }
    }

    /// Adds a later change: the IPs of both, or every IP if either says so.
    pub fn merge(&mut self, later: Touched) {
        if later.all {
            *self = Touched::everything();
        } else if !self.all {
            self.ips.extend(later.ips);
        }
    }

    /// The IPs of `redecided`, or all when it is `None` (a whole plan).
    pub fn add(&mut self, redecided: Option<&BTreeSet<IpAddr>>) {
        match redecided {
            Some(ips) if !self.all => self.ips.extend(ips),
            Some(_) => {}
            None => *self = Touched::everything(),
        }
    }
}

/// The interfaces an IP is announced on, as the announcer holds them: one shared
/// set per combination (nearly every IP is on the same one or two), which the
/// reporter keeps too instead of a copy per IP.
pub type InterfaceNames = Arc<BTreeSet<String>>;

/// Per IP, the Services announcing it here and the interfaces it is on: what
/// the reporter reports, by IP.
pub type AnnouncedAt = BTreeMap<IpAddr, BTreeMap<ServiceKey, InterfaceNames>>;

/// [`announced`] at `ips` only: each of them with what is to be reported for
/// it now (empty: nothing). Work in proportion to `ips`.
pub fn announced_at<S>(
    ips: impl IntoIterator<Item = IpAddr>,
    applied: &BTreeMap<IpAddr, InterfaceNames>,
    owned: &BTreeMap<IpAddr, S>,
) -> AnnouncedAt
where
    for<'s> &'s S: IntoIterator<Item = &'s ServiceKey>,
{
    ips.into_iter()
        .map(|ip| {
            let services = match (applied.get(&ip), owned.get(&ip)) {
                (Some(interfaces), Some(services)) => services
                    .into_iter()
                    .map(|service| (service.clone(), Arc::clone(interfaces)))
                    .collect(),
                _ => BTreeMap::new(),
            };
            (ip, services)
        })
        .collect()
}

/// What the reporter has to do for some IPs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReportDiff {
    /// Reported, and no longer announced.
    pub gone: Vec<(ServiceKey, IpAddr)>,
    /// Announced, and not reported as it is now: with its interfaces.
    pub write: Vec<((ServiceKey, IpAddr), InterfaceNames)>,
}

/// What was reported for one IP: each Service, sorted by key, with the interfaces
/// (sized to their few members: a `BTreeMap` allocates room for eleven; the usual one
/// Service held in place).
type ReportedAt = Few<(ServiceKey, InterfaceNames)>;

/// Whether `reported` interfaces are `interfaces`: mostly the very same set.
fn same_interfaces(reported: &InterfaceNames, interfaces: &InterfaceNames) -> bool {
    Arc::ptr_eq(reported, interfaces) || reported == interfaces
}

/// What the reporter reported successfully, and the IPs it has to visit
/// again. Pure bookkeeping; the reporter does the writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reported {
    reported: BTreeMap<IpAddr, ReportedAt>,
    /// `reported` grows an IP at a time: rebuilt now and then ([`Regrow`]).
    reported_regrow: Regrow,
    /// IPs some write or delete of failed: visited again at the next sync.
    unsettled: BTreeSet<IpAddr>,
}

impl Reported {
    /// The IPs to visit after `touched`: those (with the unsettled ones), or
    /// when all were touched, every IP announced or reported.
    pub fn to_visit<I>(
        &self,
        touched: &Touched,
        applied: &BTreeMap<IpAddr, I>,
    ) -> BTreeSet<IpAddr> {
        let mut ips = self.unsettled.clone();
        if touched.all {
            ips.extend(self.reported.keys());
            ips.extend(applied.keys());
        } else {
            ips.extend(&touched.ips);
        }
        ips
    }

    /// Every IP reported (to withdraw them all).
    pub fn ips(&self) -> BTreeSet<IpAddr> {
        self.reported.keys().copied().collect()
    }

    /// What to do to report `now` (the IPs visited, [`announced_at`]) instead of what was reported for them.
    pub fn diff(&self, now: &AnnouncedAt) -> ReportDiff {
        let mut diff = ReportDiff::default();
        for (ip, services) in now {
            let before: &[_] = self.reported.get(ip).map_or(&[], Few::as_slice);
            for (service, _) in before.iter().filter(|(key, _)| !services.contains_key(key)) {
                diff.gone.push((service.clone(), *ip));
            }
            for (service, interfaces) in services {
                let reported = before
                    .binary_search_by(|(key, _)| key.cmp(service))
                    .ok()
                    .map(|at| &before[at].1);
                if !reported.is_some_and(|reported| same_interfaces(reported, interfaces)) {
                    diff.write
                        .push(((service.clone(), *ip), interfaces.clone()));
                }
            }
        }
        diff
    }

    /// `service`'s announcement of `ip` was withdrawn.
    pub fn withdrawn(&mut self, service: &ServiceKey, ip: IpAddr) {
        if let Some(services) = self.reported.get_mut(&ip) {
            services.retain(|(key, _)| key != service);
            if services.is_empty() {
                self.reported.remove(&ip);
            }
        }
    }

    /// `service`'s announcement of `ip` on `interfaces` was written.
    pub fn written(&mut self, service: ServiceKey, ip: IpAddr, interfaces: InterfaceNames) {
        let services = self.reported.entry(ip).or_default();
        match services
            .as_slice()
            .binary_search_by(|(key, _)| key.cmp(&service))
        {
            Ok(at) => services.as_mut_slice()[at].1 = interfaces,
            Err(at) => services.insert(at, (service, interfaces)),
        }
        self.reported_regrow.after_inserts(&mut self.reported);
    }

    /// After a sync of `visited`: `failed` are to be visited again, the rest are settled.
    pub fn settle(&mut self, visited: impl IntoIterator<Item = IpAddr>, failed: &BTreeSet<IpAddr>) {
        for ip in visited {
            if failed.contains(&ip) {
                self.unsettled.insert(ip);
            } else {
                self.unsettled.remove(&ip);
            }
        }
    }

    /// Whether every write of the last syncs went through.
    pub fn settled(&self) -> bool {
        self.unsettled.is_empty()
    }

    /// Everything reported, as [`announced`] gives it.
    pub fn flat(&self) -> Announced {
        self.reported
            .iter()
            .flat_map(|(ip, services)| {
                services
                    .as_slice()
                    .iter()
                    .map(move |(service, interfaces)| {
                        ((service.clone(), *ip), (**interfaces).clone())
                    })
            })
            .collect()
    }
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
    fn patch_owned_visits_the_redecided_ips_and_reports_a_change() {
        let ip = |last: u8| IpAddr::from([203, 0, 113, last]);
        let decision = |owner: &str| L2Decision {
            owner: Some(owner.to_string()),
            services: Default::default(),
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

#[cfg(test)]
#[path = "owned_proptests.rs"]
mod proptests;
