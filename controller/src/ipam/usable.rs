//! Arithmetic for MetalLB's `avoidBuggyIPs`: IPv4 addresses whose last octet
//! is 0 or 255 are never handed out (some old clients and routers mistake them
//! for network or broadcast addresses, whatever the actual prefix length).
//!
//! The *usable* addresses are the others: 254 in every /24. Numbering them
//! consecutively (`.1` to `.254` of block 0 are 0..=253, `.1` of block 1 is
//! 254, and so on) turns "the lowest usable free address" into "the lowest
//! free index" over a set where usable addresses are dense. That way, a /16
//! whose usable addresses are all taken is a single run of indices instead of
//! 256 runs separated by free-but-unusable `.255`/`.0` pairs, and the search
//! needs one lookup, not one per /24 it skips.

use super::set::AddressSet;
use ferrolb_crds::address::Family;

/// Usable addresses per /24 (`.1` to `.254`).
const PER_BLOCK: u128 = 254;

/// Whether `avoidBuggyIPs` rules out this IPv4 address (as an integer).
pub(crate) fn is_buggy(v4: u128) -> bool {
    matches!(v4 & 0xff, 0 | 255)
}

/// The number of usable IPv4 addresses strictly below `x`, for
/// `0 <= x <= 2^32`. Equivalently, the index of the first usable address at
/// or after `x`.
pub(crate) fn usable_below(x: u128) -> u128 {
    // Whole /24s below `x` contribute 254 each; in `x`'s own /24, the
    // addresses `.1` to `.(octet-1)` are below it (`.0` is not usable).
    (x >> 8) * PER_BLOCK + (x & 0xff).saturating_sub(1)
}

/// The index of a usable IPv4 address; `None` for a buggy one.
pub(crate) fn usable_index(v4: u128) -> Option<u128> {
    (!is_buggy(v4)).then(|| usable_below(v4))
}

/// The IPv4 address (as an integer) with the given usable index.
pub(crate) fn usable_address(index: u128) -> u128 {
    (index / PER_BLOCK) * 256 + index % PER_BLOCK + 1
}

/// The usable indices inside the IPv4 range `start..=end`, as a half-open
/// `lo..hi` (empty when `lo >= hi`, e.g. for `192.0.2.255-192.0.3.0`).
pub(crate) fn usable_indices(start: u128, end: u128) -> (u128, u128) {
    // `end <= u32::MAX`, so `end + 1` fits easily in a u128.
    (usable_below(start), usable_below(end + 1))
}

/// Number of addresses of `set` that `avoid_buggy` makes unusable (IPv4 `.0`
/// and `.255`). Computed per range from [`usable_below`], in `O(r)` whatever
/// the size of the ranges, so that "available" counts can be exact without
/// iterating over a /8. IPv6 ranges contribute nothing.
pub fn buggy_count(set: &AddressSet) -> u128 {
    set.spans()
        .filter(|span| span.family == Family::V4)
        .map(|span| {
            let (lo, hi) = usable_indices(span.start, span.end);
            // `len` is at most 2^32 for IPv4, and `hi - lo <= len`.
            span.len() - (hi - lo)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrolb_crds::address::IpRange;

    fn v4(s: &str) -> u128 {
        u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()))
    }

    #[test]
    fn indices_round_trip_and_skip_buggy() {
        assert_eq!(usable_index(v4("0.0.0.0")), None);
        assert_eq!(usable_index(v4("0.0.0.1")), Some(0));
        assert_eq!(usable_index(v4("0.0.0.254")), Some(253));
        assert_eq!(usable_index(v4("0.0.0.255")), None);
        assert_eq!(usable_index(v4("0.0.1.0")), None);
        assert_eq!(usable_index(v4("0.0.1.1")), Some(254));
        assert_eq!(
            usable_index(v4("255.255.255.254")),
            Some((1 << 24) * 254 - 1)
        );
        for v in (0..2000).chain(u128::from(u32::MAX) - 2000..=u128::from(u32::MAX)) {
            if let Some(i) = usable_index(v) {
                assert_eq!(usable_address(i), v);
            }
        }
    }

    #[test]
    fn buggy_count_per_range() {
        let count = |entries: &[&str]| {
            buggy_count(&AddressSet::new(
                entries.iter().map(|e| IpRange::parse(e).unwrap()),
            ))
        };
        assert_eq!(count(&["192.0.2.0/24"]), 2);
        assert_eq!(count(&["192.0.2.0/30"]), 1);
        assert_eq!(count(&["192.0.2.252/30"]), 1);
        assert_eq!(count(&["192.0.2.4/30"]), 0);
        assert_eq!(count(&["192.0.2.255-192.0.3.0"]), 2);
        assert_eq!(count(&["192.0.2.255/32"]), 1);
        assert_eq!(count(&["198.18.0.0/15"]), 2 * 512);
        assert_eq!(count(&["0.0.0.0/0"]), 2 << 24);
        assert_eq!(count(&["0.0.0.0/0", "::/0"]), 2 << 24);
        assert_eq!(count(&["2001:db8::/120"]), 0);
    }
}
