//! [`UsedAddresses`]: the allocation table.

use std::net::IpAddr;

use ferrolb_crds::address::{Family, IpRange, from_u128, to_u128};

use super::runs::Runs;
use super::set::AddressSet;
use super::usable::{usable_address, usable_index, usable_indices};

/// The addresses in use, stored as merged runs of consecutive addresses (per
/// family), so that finding the lowest free address of a set is `O(r log n)`
/// for a set of `r` ranges and `n` runs, and memory grows with the number of
/// allocations only, whatever the size of the pools.
///
/// The families are kept apart so that `255.255.255.255` and `::` never meet
/// in one run. IPv4 has a second index, over the *usable* addresses (last
/// octet neither 0 nor 255), which answers `avoid_buggy` searches in one
/// lookup per range; see [`super::usable`].
#[derive(Debug, Clone, Default)]
pub struct UsedAddresses {
    v4: Runs,
    /// The used IPv4 addresses that are usable under `avoid_buggy`, by usable
    /// index. Always the image of `v4` minus its `.0` and `.255` addresses.
    v4_usable: Runs,
    v6: Runs,
    /// Number of used addresses of both families, kept as a counter so that
    /// `len` need not walk the runs.
    len: usize,
}

impl UsedAddresses {
    /// A set with nothing used.
    pub fn new() -> UsedAddresses {
        UsedAddresses::default()
    }

    fn runs(&self, family: Family) -> &Runs {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// Marks `ip` used. Returns `true` when it was free. `O(log n)`.
    pub fn insert(&mut self, ip: IpAddr) -> bool {
        let value = to_u128(&ip);
        let inserted = match ip {
            IpAddr::V4(_) => {
                let inserted = self.v4.insert(value);
                if inserted && let Some(index) = usable_index(value) {
                    self.v4_usable.insert(index);
                }
                inserted
            }
            IpAddr::V6(_) => self.v6.insert(value),
        };
        if inserted {
            self.len += 1;
        }
        inserted
    }

    /// Marks `ip` free. Returns `true` when it was used. `O(log n)`.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        let value = to_u128(&ip);
        let removed = match ip {
            IpAddr::V4(_) => {
                let removed = self.v4.remove(value);
                if removed && let Some(index) = usable_index(value) {
                    self.v4_usable.remove(index);
                }
                removed
            }
            IpAddr::V6(_) => self.v6.remove(value),
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Whether `ip` is used. `O(log n)`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.runs(Family::of(&ip)).contains(to_u128(&ip))
    }

    /// Number of used addresses, both families.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no address is used.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lowest address of `set` of `family` that is free. With
    /// `avoid_buggy`, IPv4 addresses whose last octet is 0 or 255 are never
    /// returned (MetalLB's avoidBuggyIPs); IPv6 is unaffected.
    ///
    /// `O(r log n)`: ranges are tried in ascending order, each with a single
    /// lookup, because merged runs guarantee that the address after a run is
    /// free. With `avoid_buggy` that lookup is done in usable-index space,
    /// where the `.255`/`.0` pairs between fully used /24s do not split runs;
    /// a search in address space would instead have to hop over one run per
    /// /24, which is unbounded (a /8 allocated that way has 65536 runs).
    pub fn lowest_free(
        &self,
        set: &AddressSet,
        family: Family,
        avoid_buggy: bool,
    ) -> Option<IpAddr> {
        if avoid_buggy && family == Family::V4 {
            return set.spans_of(Family::V4).find_map(|span| {
                let (lo, hi) = usable_indices(span.start, span.end);
                let index = self.v4_usable.first_absent_from(lo).filter(|&i| i < hi)?;
                from_u128(Family::V4, usable_address(index))
            });
        }
        let runs = self.runs(family);
        set.spans_of(family).find_map(|span| {
            let candidate = runs
                .first_absent_from(span.start)
                .filter(|&v| v <= span.end)?;
            from_u128(family, candidate)
        })
    }

    /// How many used addresses lie inside `set` (for status counters on
    /// rebuild). `O(r log n + k)` for the `k` runs overlapping `set`.
    pub fn count_within(&self, set: &AddressSet, family: Family) -> u128 {
        let runs = self.runs(family);
        set.spans_of(family)
            .map(|span| runs.count_in(span.start, span.end))
            .sum()
    }

    /// How many addresses `lowest_free` could still hand out from `set`: the
    /// addresses of `family` in `set` that are free and, with `avoid_buggy`,
    /// usable. Exact even when buggy addresses were assigned explicitly.
    /// `O(r log n + k)`. For a set holding all of `::/0` the size saturates
    /// one short of 2^128, so the result is one short too.
    pub fn free_count(&self, set: &AddressSet, family: Family, avoid_buggy: bool) -> u128 {
        if avoid_buggy && family == Family::V4 {
            return set
                .spans_of(Family::V4)
                .map(|span| {
                    let (lo, hi) = usable_indices(span.start, span.end);
                    if lo >= hi {
                        return 0;
                    }
                    (hi - lo) - self.v4_usable.count_in(lo, hi - 1)
                })
                .sum();
        }
        set.size(family)
            .saturating_sub(self.count_within(set, family))
    }

    /// The used addresses of `family` as merged ranges, in ascending order.
    pub fn used_ranges(&self, family: Family) -> impl Iterator<Item = IpRange> + '_ {
        self.runs(family).iter().filter_map(move |(start, end)| {
            // Runs only hold values inserted from addresses of this family.
            IpRange::new(from_u128(family, start)?, from_u128(family, end)?)
        })
    }

    /// Checks that the three indices and the counter agree.
    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        self.v4.assert_invariants();
        self.v4_usable.assert_invariants();
        self.v6.assert_invariants();
        let count = |runs: &Runs| runs.iter().map(|(s, e)| e - s + 1).sum::<u128>();
        assert_eq!(count(&self.v4) + count(&self.v6), self.len as u128);
        let mut expected = Runs::default();
        for (start, end) in self.v4.iter() {
            for v in start..=end {
                if let Some(i) = usable_index(v) {
                    expected.insert(i);
                }
            }
        }
        assert_eq!(
            expected, self.v4_usable,
            "usable index out of step with the IPv4 runs"
        );
    }
}

impl Extend<IpAddr> for UsedAddresses {
    fn extend<I: IntoIterator<Item = IpAddr>>(&mut self, iter: I) {
        for ip in iter {
            self.insert(ip);
        }
    }
}

impl FromIterator<IpAddr> for UsedAddresses {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> UsedAddresses {
        let mut used = UsedAddresses::default();
        used.extend(iter);
        used
    }
}

#[cfg(test)]
#[path = "used_tests.rs"]
mod tests;
