//! The bookkeeping of one change, from the desired announcements to what the
//! interfaces serve, with work in proportion to the change.
//!
//! - [`Assignment`] (the announcer): which IPs each interface announces, kept
//!   up to date with the IPs whose desired entry changed, and handed to each
//!   interface task as an [`OwnershipChange`] (the IPs whose place changed)
//!   rather than as its whole [`Ownership`].
//! - [`InterfaceState`] (an interface task): what the plan wants here and
//!   what is answered, brought up to date by a change through
//!   [`Arbiter::update`], reporting the IPs whose service changed.
//! - [`patch_applied`]: the announcer's `applied` map patched with them.
//!
//! Each incremental path has its whole-map counterpart ([`assign`] with
//! [`ownerships`], [`InterfaceState::replace`], [`applied_of`]), kept for the
//! property tests (`serving_proptests`) that check both give the same after
//! any sequence of changes, and for the bench (`speaker/benches/announcer.rs`).
//! At 10,000 IPs on 2 interfaces the whole-map path took milliseconds per
//! EndpointSlice change, between the end of the plan and the first packet.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::arbiter::{Action, Arbiter, Rank};
use super::interfaces::{ExcludePatterns, InterfaceInfo};
use super::plan::{Answers, Fit, GroupView, IgnoreReason, InterfaceFilter, Ownership, assign};
use crate::model::{EachTree, Regrow, Touched};

/// The desired announcements: each IP and where to announce it.
pub type Desired = BTreeMap<IpAddr, InterfaceFilter>;
/// What is announced: each IP and the interfaces it is announced on.
pub type Applied = BTreeMap<IpAddr, Interfaces>;
/// The interfaces one IP of [`Applied`] is announced on: shared by every IP
/// announced on the same interfaces (see [`InterfaceSets`]).
pub type Interfaces = crate::model::InterfaceNames;

/// The distinct sets of interfaces in an [`Applied`] map, so that each IP
/// holds a pointer to its set instead of a set of its own: a one-name
/// `BTreeSet<String>` allocates a node with room for eleven names (about 300
/// bytes) and the name, and nearly every IP is on the same one or two
/// interfaces (363 bytes per IP at 2,000 IPs before).
#[derive(Debug, Default)]
pub struct InterfaceSets {
    sets: Vec<Interfaces>,
}

impl InterfaceSets {
    /// The shared set equal to `names`. Sets no IP holds any more are dropped
    /// when a new one is made: there are as many as distinct combinations of
    /// interfaces announced on, a handful.
    pub fn of(&mut self, names: &BTreeSet<String>) -> Interfaces {
        if let Some(set) = self.sets.iter().find(|set| ***set == *names) {
            return set.clone();
        }
        self.sets.retain(|set| Arc::strong_count(set) > 1);
        let set = Arc::new(names.clone());
        self.sets.push(set.clone());
        set
    }

    /// `ip`'s set in `applied` with `interface` added (`served`) or taken
    /// away; whether that changed it.
    fn patch(&mut self, applied: &mut Applied, ip: IpAddr, interface: &str, served: bool) -> bool {
        let before = applied.get(&ip);
        if before.is_some_and(|names| names.contains(interface)) == served {
            return false;
        }
        let mut names = before.map(|names| (**names).clone()).unwrap_or_default();
        if served {
            names.insert(interface.to_owned());
        } else {
            names.remove(interface);
        }
        if names.is_empty() {
            applied.remove(&ip);
        } else {
            applied.insert(ip, self.of(&names));
        }
        true
    }
}

/// Where an IP stands for one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Announced on this interface (and so by this node).
    Here,
    /// Announced by this node on other interfaces only.
    Elsewhere,
    /// Not announced by this node.
    NotOurs,
}

impl Place {
    /// The place of `ip` in `ownership`.
    pub fn in_ownership(ownership: &Ownership, ip: &IpAddr) -> Place {
        if ownership.here.contains(ip) {
            Place::Here
        } else if ownership.elsewhere.contains(ip) {
            Place::Elsewhere
        } else {
            Place::NotOurs
        }
    }
}

/// What changed for one interface: the IPs whose [`Place`] changed, with
/// their place now, and the group view if it changed. Changes merge (the
/// later place of an IP wins), so a task that falls behind takes them all at
/// once, as a `watch` channel would give it the latest whole value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnershipChange {
    /// The IPs whose place changed, and where they are now.
    pub ips: BTreeMap<IpAddr, Place>,
    /// The group view, if it changed.
    pub group: Option<GroupView>,
}

impl OwnershipChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.ips.is_empty() && self.group.is_none()
    }

    /// `later` on top of this change.
    pub fn merge(&mut self, later: OwnershipChange) {
        self.ips.extend(later.ips);
        if later.group.is_some() {
            self.group = later.group;
        }
    }

    /// The change that turns `before` into `after` (whole sets: O(IPs)).
    pub fn between(before: &Ownership, after: &Ownership) -> OwnershipChange {
        let mut ips = BTreeMap::new();
        let all = [
            &before.here,
            &before.elsewhere,
            &after.here,
            &after.elsewhere,
        ];
        let all: BTreeSet<&IpAddr> = all.into_iter().flatten().collect();
        for ip in all {
            let now = Place::in_ownership(after, ip);
            if Place::in_ownership(before, ip) != now {
                ips.insert(*ip, now);
            }
        }
        OwnershipChange {
            ips,
            group: (before.group != after.group).then_some(after.group),
        }
    }

    /// Applies this change to `ownership`.
    pub fn apply_to(&self, ownership: &mut Ownership) {
        for (ip, place) in &self.ips {
            match place {
                Place::Here => {
                    ownership.here.insert(*ip);
                    ownership.elsewhere.remove(ip);
                }
                Place::Elsewhere => {
                    ownership.here.remove(ip);
                    ownership.elsewhere.insert(*ip);
                }
                Place::NotOurs => {
                    ownership.here.remove(ip);
                    ownership.elsewhere.remove(ip);
                }
            }
        }
        if let Some(group) = self.group {
            ownership.group = group;
        }
    }
}

/// Every interface's whole [`Ownership`] from [`assign`] (interfaces with
/// nothing to announce left out): what [`Assignment`] keeps up to date.
pub fn ownerships(
    desired: &Desired,
    interfaces: &[InterfaceInfo],
    exclude: &ExcludePatterns,
    group: GroupView,
) -> BTreeMap<String, Ownership> {
    let plan = assign(desired, interfaces, exclude);
    plan.iter()
        .map(|(name, here)| {
            let ownership = Ownership {
                here: here.clone(),
                elsewhere: elsewhere(&plan, name),
                group,
            };
            (name.clone(), ownership)
        })
        .collect()
}

/// The IPs of `plan` on other interfaces than `interface` and not on it.
fn elsewhere(plan: &BTreeMap<String, BTreeSet<IpAddr>>, interface: &str) -> BTreeSet<IpAddr> {
    let here = plan.get(interface);
    plan.iter()
        .filter(|(name, _)| name.as_str() != interface)
        .flat_map(|(_, ips)| ips)
        .filter(|ip| here.is_none_or(|here| !here.contains(*ip)))
        .copied()
        .collect()
}

/// The announcer's plan per interface, kept up to date change by change.
#[derive(Debug, Default)]
pub struct Assignment {
    /// The listing the plan was made for (`None` before the first).
    listing: Option<Vec<InterfaceInfo>>,
    /// How each listed interface takes IPs.
    fits: Vec<Fit>,
    /// The IPs each interface announces; interfaces with none are left out.
    here: BTreeMap<String, BTreeSet<IpAddr>>,
    /// The sets of `here` grow an IP at a time: rebuilt now and then.
    here_regrow: Regrow,
    group: GroupView,
}

impl Assignment {
    /// Brings the plan in line with `desired`, `listing` and `group`, and
    /// returns what changed for each interface (only those with a change, and
    /// only interfaces that announce something before or after). A new listing
    /// assigns every IP again; otherwise only the IPs in `changed` (every
    /// IP whose desired entry may differ from the last call's; more do no
    /// harm) are placed again, so the plan keeps no copy of `desired`.
    pub fn update(
        &mut self,
        desired: &Desired,
        changed: &Touched,
        listing: &[InterfaceInfo],
        exclude: &ExcludePatterns,
        group: GroupView,
    ) -> BTreeMap<String, OwnershipChange> {
        let mut changes: BTreeMap<String, OwnershipChange> = BTreeMap::new();
        if self.listing.as_deref() != Some(listing) {
            let before = self.ownerships();
            let after = ownerships(desired, listing, exclude, group);
            let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
            for name in names {
                let empty = Ownership::default();
                let old = before.get(name).unwrap_or(&empty);
                let new = after.get(name).unwrap_or(&empty);
                let mut change = OwnershipChange::between(old, new);
                if !before.contains_key(name) || !after.contains_key(name) {
                    // A task is started or stopped with its whole ownership.
                    change.group = None;
                }
                if !change.is_empty() {
                    changes.insert(name.clone(), change);
                }
            }
            self.listing = Some(listing.to_vec());
            self.fits = listing.iter().map(|info| Fit::of(info, exclude)).collect();
            self.here = after
                .into_iter()
                .map(|(name, ownership)| (name, ownership.here))
                .collect();
            self.group = group;
            return changes;
        }
        let planned: BTreeSet<String> = self.here.keys().cloned().collect();
        let everything: BTreeSet<IpAddr>;
        let candidates = if changed.all {
            // An IP planned here but no longer desired is one of `anywhere`.
            everything = desired.keys().copied().chain(self.anywhere()).collect();
            &everything
        } else {
            &changed.ips
        };
        for &ip in candidates {
            let filter = desired.get(&ip);
            let before: BTreeSet<&str> = self
                .here
                .iter()
                .filter(|(_, ips)| ips.contains(&ip))
                .map(|(name, _)| name.as_str())
                .collect();
            let after: BTreeSet<&str> = filter.map_or_else(BTreeSet::new, |filter| {
                self.fits
                    .iter()
                    .filter(|fit| fit.takes(filter))
                    .map(|fit| fit.name.as_str())
                    .collect()
            });
            if before != after {
                let place = |on: &BTreeSet<&str>, name: &str| {
                    if on.contains(name) {
                        Place::Here
                    } else if on.is_empty() {
                        Place::NotOurs
                    } else {
                        Place::Elsewhere
                    }
                };
                for name in planned
                    .iter()
                    .map(String::as_str)
                    .chain(after.iter().copied())
                {
                    let now = place(&after, name);
                    if place(&before, name) != now {
                        changes
                            .entry(name.to_owned())
                            .or_default()
                            .ips
                            .insert(ip, now);
                    }
                }
                let after: BTreeSet<String> = after.into_iter().map(str::to_owned).collect();
                for name in &planned {
                    if !after.contains(name)
                        && let Some(ips) = self.here.get_mut(name)
                    {
                        ips.remove(&ip);
                    }
                }
                for name in after {
                    self.here.entry(name).or_default().insert(ip);
                }
            }
        }
        self.here.retain(|_, ips| !ips.is_empty());
        self.here_regrow
            .after_inserts(&mut EachTree(&mut self.here));
        if group != self.group {
            self.group = group;
            for name in self.here.keys() {
                changes.entry(name.clone()).or_default().group = Some(group);
            }
        }
        // Interfaces that start or stop are handed their whole ownership.
        changes.retain(|name, change| {
            if !planned.contains(name) || !self.here.contains_key(name) {
                change.group = None;
            }
            !change.is_empty()
        });
        changes
    }

    /// The interfaces with something to announce.
    pub fn interfaces(&self) -> impl Iterator<Item = &String> {
        self.here.keys()
    }

    /// The whole ownership of `interface` (empty if it announces nothing): for
    /// a task that starts. O(IPs).
    pub fn ownership(&self, interface: &str) -> Ownership {
        Ownership {
            here: self.here.get(interface).cloned().unwrap_or_default(),
            elsewhere: elsewhere(&self.here, interface),
            group: self.group,
        }
    }

    /// Every interface's whole ownership (O(IPs × interfaces)).
    pub fn ownerships(&self) -> BTreeMap<String, Ownership> {
        self.here
            .iter()
            .map(|(name, here)| {
                let ownership = Ownership {
                    here: here.clone(),
                    elsewhere: elsewhere(&self.here, name),
                    group: self.group,
                };
                (name.clone(), ownership)
            })
            .collect()
    }

    fn anywhere(&self) -> BTreeSet<IpAddr> {
        self.here.values().flatten().copied().collect()
    }
}

/// How requests for the IPs of one interface reach it (sockets, multicast
/// groups): the part of an interface task [`InterfaceState`] asks.
pub trait Reception {
    /// Brings reception in line with the IPs wanted here (`v6_changed`: some
    /// IPv6 address came or went). Whether what [`Reception::can_serve`] says
    /// may have changed for IPs other than those that came.
    fn follow(&mut self, here: &BTreeSet<IpAddr>, v6_changed: bool) -> bool;
    /// Whether requests for `ip` reach the interface and can be answered.
    fn can_serve(&self, ip: &IpAddr) -> bool;
}

/// What an interface task does after a change of ownership.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    /// IPs no longer wanted here that were announced (for the log).
    pub stopped: Vec<IpAddr>,
    /// IPs no longer wanted here: their gratuitous bursts end.
    pub lost: Vec<IpAddr>,
    /// IPs newly wanted here that cannot be served.
    pub unserved: Vec<IpAddr>,
    /// IPs announced again because a node joined.
    pub again: Vec<IpAddr>,
    /// What the arbiter decided.
    pub actions: Vec<Action>,
    /// The IPs whose service here changed: served now (`true`) or not.
    pub served: BTreeMap<IpAddr, bool>,
}

impl Steps {
    /// `ip` is no longer wanted here: its burst ends, and it was stopped if
    /// it was answered.
    fn lose(&mut self, ip: IpAddr, arbiter: &Arbiter) {
        if arbiter.owns(&ip) {
            self.stopped.push(ip);
        }
        self.lost.push(ip);
    }
}

/// What one interface task wants and answers for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceState {
    /// What the plan wants announced here.
    wanted: Ownership,
    /// The IPs answered here: those of `wanted.here` the arbiter owns. Every
    /// IP the arbiter holds can be served (it was wanted only then), so this
    /// is also what the interface serves.
    answering: BTreeSet<IpAddr>,
    /// `wanted.here` and `answering` grow an IP at a time: rebuilt now and then.
    regrow: [Regrow; 2],
}

impl Answers for InterfaceState {
    fn check(&self, ip: IpAddr) -> Result<(), IgnoreReason> {
        if self.answering.contains(&ip) {
            Ok(())
        } else if self.wanted.elsewhere.contains(&ip) {
            Err(IgnoreReason::WrongInterface)
        } else {
            Err(IgnoreReason::NotOurs)
        }
    }
}

impl InterfaceState {
    /// What the plan wants announced here.
    pub fn wanted(&self) -> &Ownership {
        &self.wanted
    }

    /// The IPs answered (and served) here.
    pub fn answering(&self) -> &BTreeSet<IpAddr> {
        &self.answering
    }

    /// Takes `next` as the whole ownership: visits every IP (for a task that
    /// starts, and as the reference [`InterfaceState::apply`] is tested against).
    pub fn replace(
        &mut self,
        next: Ownership,
        arbiter: &mut Arbiter,
        reception: &mut impl Reception,
        rank: impl Fn(IpAddr) -> Rank,
        now: Instant,
    ) -> Steps {
        let mut steps = Steps::default();
        for lost in self.wanted.here.difference(&next.here) {
            steps.lose(*lost, arbiter);
        }
        reception.follow(&next.here, true);
        let mut wanted = BTreeMap::new();
        for ip in &next.here {
            if reception.can_serve(ip) {
                wanted.insert(*ip, arbiter.rank(ip).unwrap_or_else(|| rank(*ip)));
            } else if !self.wanted.here.contains(ip) {
                steps.unserved.push(*ip);
            }
        }
        if next.group.joins != self.wanted.group.joins {
            steps.again = self
                .wanted
                .here
                .intersection(&next.here)
                .filter(|ip| arbiter.owns(ip))
                .copied()
                .collect();
        }
        self.wanted = next;
        steps.actions = arbiter.want(&wanted, self.wanted.group.probe_first, now);
        steps.served = self.refresh_all(arbiter);
        steps
    }

    /// Takes `change`: the same as [`InterfaceState::replace`] with the
    /// ownership it leads to, visiting only the IPs it names (and those the
    /// arbiter holds in doubt), unless reception changed for others.
    pub fn apply(
        &mut self,
        change: &OwnershipChange,
        arbiter: &mut Arbiter,
        reception: &mut impl Reception,
        rank: impl Fn(IpAddr) -> Rank,
        now: Instant,
    ) -> Steps {
        let mut steps = Steps::default();
        let mut gained = Vec::new();
        let mut lost = BTreeSet::new();
        let mut v6_changed = false;
        for (ip, place) in &change.ips {
            let was = self.wanted.here.contains(ip);
            let is = *place == Place::Here;
            if was && !is {
                steps.lose(*ip, arbiter);
                lost.insert(*ip);
            } else if is && !was {
                gained.push(*ip);
            }
            v6_changed |= was != is && ip.is_ipv6();
        }
        let next_group = change.group.unwrap_or(self.wanted.group);
        if next_group.joins != self.wanted.group.joins {
            steps.again = self
                .wanted
                .here
                .iter()
                .filter(|ip| !lost.contains(ip) && arbiter.owns(ip))
                .copied()
                .collect();
        }
        change.apply_to(&mut self.wanted);
        let recheck_all = reception.follow(&self.wanted.here, v6_changed);
        let mut wanted = BTreeMap::new();
        for ip in &gained {
            if reception.can_serve(ip) {
                wanted.insert(*ip, rank(*ip));
            } else {
                steps.unserved.push(*ip);
            }
        }
        let probe_first = self.wanted.group.probe_first;
        if recheck_all {
            let whole: BTreeMap<IpAddr, Rank> = self
                .wanted
                .here
                .iter()
                .filter(|ip| reception.can_serve(ip))
                .map(|ip| (*ip, arbiter.rank(ip).unwrap_or_else(|| rank(*ip))))
                .collect();
            steps.actions = arbiter.want(&whole, probe_first, now);
            steps.served = self.refresh_all(arbiter);
            return steps;
        }
        steps.actions = arbiter.update(&wanted, &lost, probe_first, now);
        let touched = lost
            .iter()
            .chain(&gained)
            .copied()
            .chain(steps.actions.iter().map(action_ip))
            .collect::<Vec<_>>();
        steps.served = self.refresh(arbiter, touched);
        steps
    }

    /// Rebuilds the sets that grew ([`Regrow`]).
    fn regrow(&mut self) {
        let [here, answering] = &mut self.regrow;
        here.after_inserts(&mut self.wanted.here);
        answering.after_inserts(&mut self.answering);
    }

    /// After the arbiter acted on its own (a tick, a claim seen): the IPs
    /// whose service here changed.
    pub fn after(&mut self, arbiter: &Arbiter, actions: &[Action]) -> BTreeMap<IpAddr, bool> {
        self.refresh(arbiter, actions.iter().map(action_ip))
    }

    /// `answering` made again from every IP wanted (O(IPs)); the IPs whose service changed.
    fn refresh_all(&mut self, arbiter: &Arbiter) -> BTreeMap<IpAddr, bool> {
        let answering: BTreeSet<IpAddr> = self
            .wanted
            .here
            .iter()
            .filter(|ip| arbiter.owns(ip))
            .copied()
            .collect();
        let served = self
            .answering
            .symmetric_difference(&answering)
            .map(|ip| (*ip, answering.contains(ip)))
            .collect();
        self.answering = answering;
        self.regrow();
        served
    }

    fn refresh(
        &mut self,
        arbiter: &Arbiter,
        ips: impl IntoIterator<Item = IpAddr>,
    ) -> BTreeMap<IpAddr, bool> {
        let mut served = BTreeMap::new();
        for ip in ips {
            let answered = self.wanted.here.contains(&ip) && arbiter.owns(&ip);
            let changed = if answered {
                self.answering.insert(ip)
            } else {
                self.answering.remove(&ip)
            };
            if changed {
                served.insert(ip, answered);
            }
        }
        self.regrow();
        served
    }
}

fn action_ip(action: &Action) -> IpAddr {
    match *action {
        Action::Probe(ip) | Action::Claim(ip) | Action::Defend(ip) | Action::Yield(ip) => ip,
    }
}

/// `applied` as the interfaces serve: each IP with the interfaces serving it
/// (whole: O(IPs × interfaces), a set per IP).
pub fn applied_of<'a>(
    served: impl IntoIterator<Item = (&'a String, &'a BTreeSet<IpAddr>)>,
) -> Applied {
    let mut applied: BTreeMap<IpAddr, BTreeSet<String>> = BTreeMap::new();
    for (name, ips) in served {
        for ip in ips {
            applied.entry(*ip).or_default().insert(name.clone());
        }
    }
    applied
        .into_iter()
        .map(|(ip, names)| (ip, Arc::new(names)))
        .collect()
}

/// Patches `applied` with what `interface` serves now or no longer
/// (`changes`), its sets drawn from `sets`; whether it changed.
pub fn patch_applied(
    applied: &mut Applied,
    sets: &mut InterfaceSets,
    interface: &str,
    changes: &BTreeMap<IpAddr, bool>,
) -> bool {
    let mut changed = false;
    for (ip, served) in changes {
        changed |= sets.patch(applied, *ip, interface, *served);
    }
    changed
}

/// Removes `interface` from `applied` (its task stopped); whether it changed. O(IPs).
pub fn withdraw_interface(
    applied: &mut Applied,
    sets: &mut InterfaceSets,
    interface: &str,
) -> bool {
    let on: Vec<IpAddr> = applied
        .iter()
        .filter(|(_, names)| names.contains(interface))
        .map(|(ip, _)| *ip)
        .collect();
    for ip in &on {
        sets.patch(applied, *ip, interface, false);
    }
    !on.is_empty()
}

#[cfg(test)]
#[path = "serving_proptests.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::MacAddr;

    struct Both;

    impl Reception for Both {
        fn follow(&mut self, _: &BTreeSet<IpAddr>, _: bool) -> bool {
            false
        }
        fn can_serve(&self, _: &IpAddr) -> bool {
            true
        }
    }

    #[test]
    fn ips_on_the_same_interfaces_share_one_set() {
        let [a, b]: [IpAddr; 2] = ["198.51.100.1", "198.51.100.2"].map(|ip| ip.parse().unwrap());
        let mut applied = Applied::new();
        let mut sets = InterfaceSets::default();
        for (name, ip) in [("eth0", a), ("eth0", b), ("eth1", b), ("eth1", a)] {
            patch_applied(&mut applied, &mut sets, name, &BTreeMap::from([(ip, true)]));
        }
        assert!(Arc::ptr_eq(&applied[&a], &applied[&b]));
        assert_eq!(*applied[&a], BTreeSet::from(["eth0".into(), "eth1".into()]));
        withdraw_interface(&mut applied, &mut sets, "eth0");
        assert!(Arc::ptr_eq(&applied[&a], &applied[&b]));
        assert_eq!(*applied[&a], BTreeSet::from(["eth1".into()]));
        // The sets no IP holds are gone once another one is made.
        sets.of(&BTreeSet::from(["eth2".into()]));
        assert_eq!(sets.sets.len(), 2);
    }

    #[test]
    fn an_ip_lost_as_a_node_joins_is_not_announced_again() {
        let [a, b]: [IpAddr; 2] = ["198.51.100.1", "198.51.100.2"].map(|ip| ip.parse().unwrap());
        let rank = |ip| Rank::of("node-a", ip);
        let now = Instant::now();
        let first = Ownership {
            here: BTreeSet::from([a, b]),
            elsewhere: BTreeSet::new(),
            group: GroupView::default(),
        };
        let joined = GroupView {
            probe_first: false,
            joins: 1,
        };
        let next = Ownership {
            here: BTreeSet::from([a]),
            elsewhere: BTreeSet::new(),
            group: joined,
        };
        let change = OwnershipChange::between(&first, &next);
        for whole in [true, false] {
            let mut state = InterfaceState::default();
            let mut arbiter = Arbiter::new(MacAddr([0x02, 0, 0, 0, 0, 1]));
            state.replace(first.clone(), &mut arbiter, &mut Both, rank, now);
            let steps = if whole {
                state.replace(next.clone(), &mut arbiter, &mut Both, rank, now)
            } else {
                state.apply(&change, &mut arbiter, &mut Both, rank, now)
            };
            assert_eq!(steps.again, vec![a], "whole: {whole}");
            assert_eq!(steps.lost, vec![b]);
            assert_eq!(steps.served, BTreeMap::from([(b, false)]));
        }
    }
}
