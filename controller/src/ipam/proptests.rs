//! Property tests: the allocator and the set operations against brute-force
//! models over small windows of addresses, where scanning every address is
//! cheap.
//!
//! Each case picks, per family, a window of 1024 addresses at the bottom of
//! the space, in the middle, or at the very top (touching 255.255.255.255 or
//! `ffff:…:ffff`). Positions favour the last octets 0, 1, 2, 253, 254 and 255
//! so that `avoid_buggy` boundaries are hit often, and ranges up to ~300 long
//! span /24 boundaries.

use std::collections::BTreeSet;
use std::net::IpAddr;

use proptest::prelude::*;
use proptest::sample::Index;

use super::usable::is_buggy;
use super::{AddressSet, Family, IpRange, UsedAddresses, buggy_count};
use ferrolb_crds::address::{from_u128, to_u128};

const WINDOW: u128 = 1024;

/// The first address of a case's window.
fn base(family: Family, which: u8) -> u128 {
    match (family, which % 3) {
        (_, 0) => 0,
        (Family::V4, 1) => 0xC612_0000, // 198.18.0.0
        (Family::V6, 1) => 0x2001_0db8 << 96,
        (Family::V4, _) => u128::from(u32::MAX) - (WINDOW - 1),
        (Family::V6, _) => u128::MAX - (WINDOW - 1),
    }
}

fn family() -> impl Strategy<Value = Family> {
    prop_oneof![3 => Just(Family::V4), 1 => Just(Family::V6)]
}

/// An offset inside the window, often next to a /24 boundary.
fn position() -> impl Strategy<Value = u128> {
    prop_oneof![
        (
            0u128..WINDOW / 256,
            prop::sample::select(vec![0u128, 1, 2, 253, 254, 255])
        )
            .prop_map(|(b, o)| b * 256 + o),
        0u128..WINDOW,
    ]
}

/// A range of the window as `(family, first offset, last offset)`.
fn raw_range() -> impl Strategy<Value = (Family, u128, u128)> {
    (family(), position(), prop_oneof![0u128..4, 0u128..300])
        .prop_map(|(f, start, len)| (f, start, (start + len).min(WINDOW - 1)))
}

/// A world: the two windows, and the pools as raw ranges.
#[derive(Debug, Clone)]
struct World {
    v4_base: u128,
    v6_base: u128,
    pools: Vec<Vec<(Family, u128, u128)>>,
}

impl World {
    fn value(&self, family: Family, offset: u128) -> u128 {
        match family {
            Family::V4 => self.v4_base + offset,
            Family::V6 => self.v6_base + offset,
        }
    }

    fn ip(&self, family: Family, offset: u128) -> IpAddr {
        from_u128(family, self.value(family, offset)).unwrap()
    }

    fn range(&self, &(family, start, end): &(Family, u128, u128)) -> IpRange {
        IpRange::new(self.ip(family, start), self.ip(family, end)).unwrap()
    }

    fn set(&self, raw: &[(Family, u128, u128)]) -> AddressSet {
        AddressSet::new(raw.iter().map(|r| self.range(r)))
    }

    /// Every address of the raw ranges, by brute force.
    fn expand(&self, raw: &[(Family, u128, u128)]) -> BTreeSet<(Family, u128)> {
        raw.iter()
            .flat_map(|&(f, s, e)| (s..=e).map(move |o| (f, o)))
            .map(|(f, o)| (f, self.value(f, o)))
            .collect()
    }
}

fn world() -> impl Strategy<Value = World> {
    (
        0u8..3,
        0u8..3,
        prop::collection::vec(prop::collection::vec(raw_range(), 0..4), 1..4),
    )
        .prop_map(|(v4, v6, pools)| World {
            v4_base: base(Family::V4, v4),
            v6_base: base(Family::V6, v6),
            pools,
        })
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Family, u128),
    /// Inserts `len` consecutive addresses, to fill /24s quickly.
    InsertRun(Family, u128, u128),
    Remove(Family, u128),
    RemoveRun(Family, u128, u128),
    /// `lowest_free` followed by `insert`, as the controller allocates.
    Allocate(Index, Family, bool),
    LowestFree(Index, Family, bool),
    Contains(Family, u128),
    CountWithin(Index, Family),
    FreeCount(Index, Family, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (family(), position()).prop_map(|(f, p)| Op::Insert(f, p)),
        1 => (family(), position(), 0u128..300).prop_map(|(f, p, n)| Op::InsertRun(f, p, n)),
        2 => (family(), position()).prop_map(|(f, p)| Op::Remove(f, p)),
        1 => (family(), position(), 0u128..20).prop_map(|(f, p, n)| Op::RemoveRun(f, p, n)),
        4 => (any::<Index>(), family(), any::<bool>()).prop_map(|(i, f, a)| Op::Allocate(i, f, a)),
        2 => (any::<Index>(), family(), any::<bool>()).prop_map(|(i, f, a)| Op::LowestFree(i, f, a)),
        1 => (family(), position()).prop_map(|(f, p)| Op::Contains(f, p)),
        1 => (any::<Index>(), family()).prop_map(|(i, f)| Op::CountWithin(i, f)),
        1 => (any::<Index>(), family(), any::<bool>()).prop_map(|(i, f, a)| Op::FreeCount(i, f, a)),
    ]
}

/// The reference allocator: a plain set of used addresses.
#[derive(Default)]
struct Model {
    used: BTreeSet<(Family, u128)>,
}

impl Model {
    /// Candidates of a pool for `family`, ascending, with `avoid_buggy` applied.
    fn candidates<'a>(
        pool: &'a BTreeSet<(Family, u128)>,
        family: Family,
        avoid_buggy: bool,
    ) -> impl Iterator<Item = u128> + 'a {
        pool.iter()
            .filter(move |(f, _)| *f == family)
            .map(|&(_, v)| v)
            .filter(move |&v| !(avoid_buggy && family == Family::V4 && is_buggy(v)))
    }

    fn lowest_free(
        &self,
        pool: &BTreeSet<(Family, u128)>,
        family: Family,
        avoid_buggy: bool,
    ) -> Option<u128> {
        Self::candidates(pool, family, avoid_buggy).find(|&v| !self.used.contains(&(family, v)))
    }

    fn count_within(&self, pool: &BTreeSet<(Family, u128)>, family: Family) -> u128 {
        Self::candidates(pool, family, false)
            .filter(|&v| self.used.contains(&(family, v)))
            .count() as u128
    }

    fn free_count(
        &self,
        pool: &BTreeSet<(Family, u128)>,
        family: Family,
        avoid_buggy: bool,
    ) -> u128 {
        Self::candidates(pool, family, avoid_buggy)
            .filter(|&v| !self.used.contains(&(family, v)))
            .count() as u128
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn allocator_matches_model(world in world(), ops in prop::collection::vec(op(), 1..60)) {
        let pools: Vec<AddressSet> = world.pools.iter().map(|raw| world.set(raw)).collect();
        let expanded: Vec<BTreeSet<(Family, u128)>> = world.pools.iter().map(|raw| world.expand(raw)).collect();
        let mut used = UsedAddresses::default();
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Insert(f, p) => {
                    prop_assert_eq!(used.insert(world.ip(f, p)), model.used.insert((f, world.value(f, p))));
                }
                Op::InsertRun(f, p, n) => {
                    for o in p..=(p + n).min(WINDOW - 1) {
                        prop_assert_eq!(used.insert(world.ip(f, o)), model.used.insert((f, world.value(f, o))));
                    }
                }
                Op::Remove(f, p) => {
                    prop_assert_eq!(used.remove(world.ip(f, p)), model.used.remove(&(f, world.value(f, p))));
                }
                Op::RemoveRun(f, p, n) => {
                    for o in p..=(p + n).min(WINDOW - 1) {
                        prop_assert_eq!(used.remove(world.ip(f, o)), model.used.remove(&(f, world.value(f, o))));
                    }
                }
                Op::Allocate(i, f, avoid) => {
                    let i = i.index(pools.len());
                    let got = used.lowest_free(&pools[i], f, avoid);
                    let want = model.lowest_free(&expanded[i], f, avoid);
                    prop_assert_eq!(got.map(|ip| to_u128(&ip)), want);
                    if let (Some(ip), Some(v)) = (got, want) {
                        prop_assert_eq!(Family::of(&ip), f);
                        prop_assert!(used.insert(ip));
                        model.used.insert((f, v));
                    }
                }
                Op::LowestFree(i, f, avoid) => {
                    let i = i.index(pools.len());
                    let got = used.lowest_free(&pools[i], f, avoid).map(|ip| to_u128(&ip));
                    prop_assert_eq!(got, model.lowest_free(&expanded[i], f, avoid));
                }
                Op::Contains(f, p) => {
                    prop_assert_eq!(used.contains(world.ip(f, p)), model.used.contains(&(f, world.value(f, p))));
                }
                Op::CountWithin(i, f) => {
                    let i = i.index(pools.len());
                    prop_assert_eq!(used.count_within(&pools[i], f), model.count_within(&expanded[i], f));
                }
                Op::FreeCount(i, f, avoid) => {
                    let i = i.index(pools.len());
                    prop_assert_eq!(used.free_count(&pools[i], f, avoid), model.free_count(&expanded[i], f, avoid));
                }
            }
            prop_assert_eq!(used.len(), model.used.len());
            prop_assert_eq!(used.is_empty(), model.used.is_empty());
            used.assert_invariants();
        }
        // The runs describe exactly the used addresses.
        let from_runs: BTreeSet<(Family, u128)> = [Family::V4, Family::V6]
            .into_iter()
            .flat_map(|f| used.used_ranges(f).collect::<Vec<_>>())
            .flat_map(|r| (to_u128(&r.start())..=to_u128(&r.end())).map(move |v| (r.family(), v)))
            .collect();
        prop_assert_eq!(from_runs, model.used);
    }

    #[test]
    fn address_set_matches_model(world in world()) {
        let raw_a = &world.pools[0];
        let raw_b = world.pools.get(1).cloned().unwrap_or_default();
        let (a, b) = (world.set(raw_a), world.set(&raw_b));
        let (ma, mb) = (world.expand(raw_a), world.expand(&raw_b));
        let expand = |s: &AddressSet| -> BTreeSet<(Family, u128)> {
            s.ranges()
                .iter()
                .flat_map(|r| (to_u128(&r.start())..=to_u128(&r.end())).map(move |v| (r.family(), v)))
                .collect()
        };

        // Canonical form: sorted, disjoint, never adjacent within a family.
        for pair in a.ranges().windows(2) {
            let (x, y) = (pair[0], pair[1]);
            prop_assert!(x.end() < y.start());
            if x.family() == y.family() {
                prop_assert!(to_u128(&y.start()) - to_u128(&x.end()) >= 2, "{} and {} touch", x, y);
            }
        }
        prop_assert_eq!(expand(&a), ma.clone());
        // Order of the input does not matter.
        prop_assert_eq!(&AddressSet::new(raw_a.iter().rev().map(|r| world.range(r))), &a);

        for family in [Family::V4, Family::V6] {
            let count = ma.iter().filter(|(f, _)| *f == family).count() as u128;
            prop_assert_eq!(a.size(family), count);
            prop_assert_eq!(a.has_family(family), count > 0);
            // Probe every address of the window, and its neighbours outside.
            let base = world.value(family, 0);
            for v in base.saturating_sub(1)..=base.saturating_add(WINDOW) {
                if let Some(ip) = from_u128(family, v) {
                    prop_assert_eq!(a.contains(ip), ma.contains(&(family, v)), "contains({})", ip);
                }
            }
        }
        prop_assert_eq!(a.is_empty(), ma.is_empty());
        prop_assert_eq!(buggy_count(&a), ma.iter().filter(|&&(f, v)| f == Family::V4 && is_buggy(v)).count() as u128);

        prop_assert_eq!(expand(&a.intersection(&b)), ma.intersection(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(expand(&a.difference(&b)), ma.difference(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(expand(&a.union(&b)), ma.union(&mb).copied().collect::<BTreeSet<_>>());
        prop_assert_eq!(a.overlaps(&b), !ma.is_disjoint(&mb));
        prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
        // Results are canonical too, so equal sets compare equal.
        prop_assert_eq!(a.intersection(&b), b.intersection(&a));
        prop_assert_eq!(a.difference(&b).union(&a.intersection(&b)), a.clone());
        prop_assert_eq!(a.difference(&a), AddressSet::default());
    }
}
