//! The proof of the incremental paths: after any sequence of desired maps,
//! listings and group views, [`Assignment`] holds what [`ownerships`] computes
//! whole, and the changes it hands out bring each interface there; an
//! [`InterfaceState`] fed those changes ([`InterfaceState::apply`], some merged
//! as for a task that fell behind) does what one fed whole ownerships
//! ([`InterfaceState::replace`]) does; `applied` patched with what it reports
//! is `applied` rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::l2::MacAddr;
use crate::l2::arbiter::Claim;
use crate::model::Touched;

fn universe() -> Vec<IpAddr> {
    [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.3",
        "203.0.113.4",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::3",
    ]
    .iter()
    .map(|ip| ip.parse().unwrap())
    .collect()
}

const NAMES: [&str; 4] = ["eth0", "eth1", "veth9", "missing0"];

fn interface(name: &str, index: u32, up: bool) -> InterfaceInfo {
    InterfaceInfo {
        name: name.to_owned(),
        index,
        up,
        running: up,
        broadcast: true,
        loopback: false,
        bridge_port: false,
        mac: Some(MacAddr([0x02, 0, 0, 0, 0, index as u8])),
    }
}

/// A few listings: both uplinks, one down, a duplicate name, a veth.
fn listing(choice: usize) -> Vec<InterfaceInfo> {
    match choice % 4 {
        0 => vec![interface("eth0", 2, true), interface("eth1", 3, true)],
        1 => vec![
            interface("eth0", 2, true),
            interface("eth1", 3, false),
            interface("veth9", 4, true),
        ],
        2 => vec![interface("eth1", 3, true), interface("eth1", 5, true)],
        _ => vec![interface("eth0", 2, true)],
    }
}

fn filter() -> impl Strategy<Value = InterfaceFilter> {
    prop_oneof![
        3 => Just(InterfaceFilter::AllSuitable),
        1 => proptest::sample::subsequence(NAMES.to_vec(), 0..=3).prop_map(|names| {
            InterfaceFilter::Named(names.into_iter().map(str::to_owned).collect())
        }),
    ]
}

fn desired() -> impl Strategy<Value = Desired> {
    proptest::collection::vec(proptest::option::of(filter()), universe().len()).prop_map(
        |filters| {
            universe()
                .into_iter()
                .zip(filters)
                .filter_map(|(ip, filter)| filter.map(|filter| (ip, filter)))
                .collect()
        },
    )
}

fn group() -> impl Strategy<Value = GroupView> {
    (any::<bool>(), 0u64..3).prop_map(|(probe_first, joins)| GroupView { probe_first, joins })
}

/// How the announcer is told which desired entries changed: exactly, with
/// unchanged IPs besides (allowed), or "everything".
#[derive(Clone, Debug)]
enum Telling {
    Exactly,
    WithExtra(BTreeSet<IpAddr>),
    Everything,
}

fn telling() -> impl Strategy<Value = Telling> {
    prop_oneof![
        4 => Just(Telling::Exactly),
        2 => proptest::sample::subsequence(universe(), 0..=3)
            .prop_map(|ips| Telling::WithExtra(ips.into_iter().collect())),
        1 => Just(Telling::Everything),
    ]
}

/// What the plan loop tells the announcer between `before` and `after`.
fn told(before: &Desired, after: &Desired, telling: &Telling) -> Touched {
    let changed = || {
        before
            .keys()
            .chain(after.keys())
            .filter(|ip| before.get(ip) != after.get(ip))
            .copied()
            .collect::<BTreeSet<IpAddr>>()
    };
    match telling {
        Telling::Exactly => Touched {
            all: false,
            ips: changed(),
        },
        Telling::WithExtra(extra) => Touched {
            all: false,
            ips: changed().union(extra).copied().collect(),
        },
        Telling::Everything => Touched::everything(),
    }
}

/// One pass of the announcer: a desired map (and how its change is told),
/// maybe a new listing (index), a group view.
fn pass() -> impl Strategy<Value = (Desired, Telling, Option<usize>, GroupView)> {
    (
        desired(),
        telling(),
        prop_oneof![3 => Just(None), 1 => (0usize..4).prop_map(Some)],
        group(),
    )
}

proptest! {
    #[test]
    fn the_assignment_and_its_changes_follow_the_whole_plan(
        passes in proptest::collection::vec(pass(), 1..30),
    ) {
        let exclude = ExcludePatterns::defaults();
        let mut assignment = Assignment::default();
        let mut choice = 0;
        let mut last_desired = Desired::new();
        // Each interface's ownership as its task would hold it.
        let mut tasks: BTreeMap<String, Ownership> = BTreeMap::new();
        for (desired, telling, new_listing, group) in passes {
            choice = new_listing.unwrap_or(choice);
            let listing = listing(choice);
            let changed = told(&last_desired, &desired, &telling);
            let mut changes = assignment.update(&desired, &changed, &listing, &exclude, group);
            last_desired = desired.clone();
            let whole = ownerships(&desired, &listing, &exclude, group);
            prop_assert_eq!(&assignment.ownerships(), &whole);
            prop_assert!(assignment.interfaces().eq(whole.keys()));
            for (name, ownership) in &mut tasks {
                if let Some(change) = changes.remove(name) {
                    prop_assert!(!change.is_empty());
                    change.apply_to(ownership);
                }
            }
            // Changes are only for interfaces announcing before or after.
            for name in changes.keys() {
                prop_assert!(whole.contains_key(name), "a change for {} that announces nothing", name);
            }
            tasks.retain(|name, _| whole.contains_key(name));
            for name in whole.keys() {
                if !tasks.contains_key(name) {
                    tasks.insert(name.clone(), assignment.ownership(name));
                }
            }
            prop_assert_eq!(&tasks, &whole);
        }
    }
}

/// Sockets and groups as a task has them: IPv4 served when there is an ARP
/// socket; past one IPv6 address wanted, only even ones are received (groups
/// refused), which changes what can be served for IPs outside a change.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FakeReception {
    arp: bool,
    partial: bool,
}

impl Reception for FakeReception {
    fn follow(&mut self, here: &BTreeSet<IpAddr>, v6_changed: bool) -> bool {
        if !v6_changed {
            return false;
        }
        let before = self.partial;
        self.partial = here.iter().filter(|ip| ip.is_ipv6()).count() > 1;
        before != self.partial || self.partial
    }

    fn can_serve(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.arp,
            IpAddr::V6(v6) => !self.partial || v6.octets()[15] % 2 == 0,
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    /// A new ownership (here, elsewhere, group), delivered now or merged
    /// into the next delivery.
    Plan(BTreeSet<usize>, BTreeSet<usize>, GroupView, bool),
    /// Another MAC claims IP `n`, with a rank or without.
    Observe(usize, Option<[u8; 16]>),
    /// Time passes (ms), then a tick.
    Tick(u64),
}

fn event() -> impl Strategy<Value = Event> {
    let n = universe().len();
    let set = move || proptest::collection::btree_set(0..n, 0..=n);
    prop_oneof![
        3 => (set(), set(), group(), proptest::bool::weighted(0.8))
            .prop_map(|(here, elsewhere, group, deliver)| Event::Plan(here, elsewhere, group, deliver)),
        1 => (0..n, proptest::option::of(any::<[u8; 16]>())).prop_map(|(i, rank)| Event::Observe(i, rank)),
        1 => (0u64..700).prop_map(Event::Tick),
    ]
}

/// One side of the comparison: a task's state, arbiter and reception, and
/// `applied` as the announcer patches it from what the task reports.
struct Side {
    state: InterfaceState,
    arbiter: Arbiter,
    reception: FakeReception,
    applied: Applied,
    sets: InterfaceSets,
}

impl Side {
    fn new(arp: bool) -> Side {
        Side {
            state: InterfaceState::default(),
            arbiter: Arbiter::new(MacAddr([0x02, 0, 0, 0, 0, 1])),
            reception: FakeReception {
                arp,
                partial: false,
            },
            applied: Applied::new(),
            sets: InterfaceSets::default(),
        }
    }

    fn report(&mut self, served: &BTreeMap<IpAddr, bool>) {
        patch_applied(&mut self.applied, &mut self.sets, "eth0", served);
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let answering: BTreeSet<IpAddr> = self
            .state
            .wanted()
            .here
            .iter()
            .filter(|ip| self.arbiter.owns(ip))
            .copied()
            .collect();
        prop_assert_eq!(self.state.answering(), &answering);
        let name = "eth0".to_owned();
        prop_assert_eq!(&self.applied, &applied_of([(&name, &answering)]));
        Ok(())
    }
}

fn rank(ip: IpAddr) -> Rank {
    Rank::of("node-a", ip)
}

proptest! {
    #[test]
    fn an_interface_fed_changes_does_what_one_fed_whole_ownerships_does(
        arp in proptest::bool::weighted(0.8),
        first in (proptest::collection::btree_set(0..7usize, 0..=7), group()),
        events in proptest::collection::vec(event(), 1..40),
    ) {
        let ips = universe();
        let ownership = |here: &BTreeSet<usize>, elsewhere: &BTreeSet<usize>, group: GroupView| {
            let here: BTreeSet<IpAddr> = here.iter().map(|i| ips[*i]).collect();
            let elsewhere: BTreeSet<IpAddr> = elsewhere.iter().map(|i| ips[*i]).filter(|ip| !here.contains(ip)).collect();
            Ownership { here, elsewhere, group }
        };
        let mut now = Instant::now();
        let mut whole = Side::new(arp);
        let mut patched = Side::new(arp);
        let start = ownership(&first.0, &BTreeSet::new(), first.1);
        let a = whole.state.replace(start.clone(), &mut whole.arbiter, &mut whole.reception, rank, now);
        let b = patched.state.replace(start.clone(), &mut patched.arbiter, &mut patched.reception, rank, now);
        prop_assert_eq!(&a, &b);
        whole.report(&a.served);
        patched.report(&b.served);
        // The last ownership planned, and the changes since the last delivery, merged.
        let mut latest = start;
        let mut pending = OwnershipChange::default();
        for event in events {
            match event {
                Event::Plan(here, elsewhere, group, deliver) => {
                    let next = ownership(&here, &elsewhere, group);
                    pending.merge(OwnershipChange::between(&latest, &next));
                    latest = next;
                    if !deliver {
                        continue;
                    }
                    let change = std::mem::take(&mut pending);
                    let a = whole.state.replace(latest.clone(), &mut whole.arbiter, &mut whole.reception, rank, now);
                    let b = patched.state.apply(&change, &mut patched.arbiter, &mut patched.reception, rank, now);
                    prop_assert_eq!(&a, &b);
                    whole.report(&a.served);
                    patched.report(&b.served);
                }
                Event::Observe(i, theirs) => {
                    let claim = Claim { mac: MacAddr([0x02, 0, 0, 0, 0, 2]), rank: theirs.map(Rank) };
                    for side in [&mut whole, &mut patched] {
                        let (action, _) = side.arbiter.observe(ips[i], claim, now);
                        let actions: Vec<Action> = action.into_iter().collect();
                        let served = side.state.after(&side.arbiter, &actions);
                        side.report(&served);
                    }
                }
                Event::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    for side in [&mut whole, &mut patched] {
                        let actions = side.arbiter.tick(now);
                        let served = side.state.after(&side.arbiter, &actions);
                        side.report(&served);
                    }
                }
            }
            prop_assert_eq!(&whole.state, &patched.state);
            prop_assert_eq!(&whole.arbiter, &patched.arbiter);
            prop_assert_eq!(&whole.reception, &patched.reception);
            whole.check()?;
            patched.check()?;
        }
    }

    /// Changes merged while a task is behind equal the change over the whole span.
    #[test]
    fn merged_changes_are_the_change_over_the_span(
        steps in proptest::collection::vec(
            (proptest::collection::btree_set(0..7usize, 0..=7), proptest::collection::btree_set(0..7usize, 0..=7), group()),
            2..8,
        ),
    ) {
        let ips = universe();
        let ownerships: Vec<Ownership> = steps
            .iter()
            .map(|(here, elsewhere, group)| {
                let here: BTreeSet<IpAddr> = here.iter().map(|i| ips[*i]).collect();
                let elsewhere: BTreeSet<IpAddr> = elsewhere.iter().map(|i| ips[*i]).filter(|ip| !here.contains(ip)).collect();
                Ownership { here, elsewhere, group: *group }
            })
            .collect();
        let mut merged = OwnershipChange::default();
        for pair in ownerships.windows(2) {
            merged.merge(OwnershipChange::between(&pair[0], &pair[1]));
        }
        let mut applied = ownerships[0].clone();
        merged.apply_to(&mut applied);
        prop_assert_eq!(&applied, ownerships.last().unwrap());
    }
}
