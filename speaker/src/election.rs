//! Which node owns an IP: rendezvous (highest-random-weight) hashing.
//!
//! Every speaker runs this on its own with the same inputs and must reach the same answer,
//! so the weight is SHA-256 of `"<node>#<ip>"`: fixed forever, the same on every platform
//! and in every release. (std's `DefaultHasher` is seeded differently per process and its
//! algorithm may change between Rust releases, so it must never be used here.)
//!
//! Rendezvous hashing moves as little as possible when nodes come and go: removing a node
//! that does not own an IP leaves that IP where it is, and removing the owner moves only
//! the IPs it owned, each to its own runner-up.

use std::cmp::Reverse;
use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// The owner of `ip` among `candidates`, or `None` when there are none.
///
/// The candidate with the highest weight wins. Weights of distinct names collide only if
/// SHA-256 does, but for completeness ties go to the smaller name. Duplicate candidates
/// are harmless, and the order of candidates never matters.
pub fn elect<'a>(ip: IpAddr, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let ip_text = ip.to_string();
    candidates
        .into_iter()
        .map(|node| ((weight(node, &ip_text), Reverse(node)), node))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, node)| node)
}

/// The weight of `node` for `ip`: the ranking [`elect`] uses (the largest wins). The L2
/// arbitration compares these on the wire, so both sides of a conflict agree on the
/// winner without talking.
pub fn rank(node: &str, ip: IpAddr) -> [u8; 32] {
    weight(node, &ip.to_string())
}

/// The weight of `node` for the IP written as `ip_text`: SHA-256 of `"<node>#<ip_text>"`,
/// compared as a big-endian number. Node names cannot contain `#`, so no two (node, IP)
/// pairs share an input.
fn weight(node: &str, ip_text: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(node.as_bytes());
    hasher.update(b"#");
    hasher.update(ip_text.as_bytes());
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
    }

    /// A documentation-range address for index `i` (IPv4 for even, IPv6 for odd).
    fn test_ip(i: u32) -> IpAddr {
        if i.is_multiple_of(2) {
            let [_, _, b, c] = (i / 2).to_be_bytes();
            IpAddr::V4(Ipv4Addr::new(198, 51, b, c))
        } else {
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16))
        }
    }

    fn node_names() -> impl Strategy<Value = Vec<String>> {
        prop::collection::btree_set("[a-z][a-z0-9-]{0,8}", 1..8)
            .prop_map(|set| set.into_iter().collect())
    }

    #[test]
    fn no_candidates_no_owner() {
        assert_eq!(elect(v4(1), std::iter::empty()), None);
    }

    #[test]
    fn single_candidate_wins() {
        assert_eq!(elect(v4(1), ["node-a"]), Some("node-a"));
    }

    /// Pins the hash: if this changes, speakers of different versions would disagree about
    /// owners during a rolling upgrade and announce the same IP from two nodes.
    #[test]
    fn weight_is_fixed_forever() {
        let hex: String = weight("node-a", "203.0.113.1")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // `printf 'node-a#203.0.113.1' | sha256sum`
        assert_eq!(
            hex,
            "6439b210f1c2785a9e710a3b1bcbfe5d96219482ce2088e2429b8141418cf886"
        );
        let owners: Vec<&str> = (1..=6)
            .filter_map(|i| elect(v4(i), ["node-a", "node-b", "node-c"]))
            .collect();
        assert_eq!(owners, PINNED_OWNERS);
    }

    /// Owners of 203.0.113.1..=6 among node-a, node-b, node-c, computed with `sha256sum`.
    const PINNED_OWNERS: [&str; 6] = ["node-c", "node-a", "node-b", "node-b", "node-c", "node-b"];

    #[test]
    fn spread_is_even() {
        for node_count in 3..=5 {
            let nodes: Vec<String> = (0..node_count).map(|i| format!("node-{i}")).collect();
            let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
            const IPS: u32 = 3000;
            for i in 0..IPS {
                let owner = elect(test_ip(i), nodes.iter().map(String::as_str));
                if let Some(owner) = owner {
                    *counts.entry(owner).or_default() += 1;
                }
            }
            let mean = f64::from(IPS) / f64::from(node_count);
            assert_eq!(counts.len(), node_count as usize);
            for (node, count) in counts {
                let deviation = (f64::from(count) - mean).abs() / mean;
                assert!(
                    deviation <= 0.15,
                    "{node} owns {count} of {IPS} IPs with {node_count} nodes (mean {mean})"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn independent_of_candidate_order(
            names in node_names(),
            ip in 0u32..100_000,
            seed in any::<u64>(),
        ) {
            let ip = test_ip(ip);
            let forward = elect(ip, names.iter().map(String::as_str));
            let mut shuffled = names.clone();
            // A deterministic permutation derived from the seed.
            shuffled.sort_by_key(|name| weight(name, &seed.to_string()));
            let backward = elect(ip, shuffled.iter().rev().map(String::as_str));
            prop_assert_eq!(forward, elect(ip, shuffled.iter().map(String::as_str)));
            prop_assert_eq!(forward, backward);
            prop_assert_eq!(forward, elect(ip, names.iter().map(String::as_str)));
        }

        #[test]
        fn owner_is_a_candidate(names in node_names(), ip in 0u32..100_000) {
            let owner = elect(test_ip(ip), names.iter().map(String::as_str));
            prop_assert!(owner.is_some_and(|o| names.iter().any(|n| n == o)));
        }

        #[test]
        fn duplicates_do_not_matter(names in node_names(), ip in 0u32..100_000) {
            let ip = test_ip(ip);
            let twice = names.iter().chain(names.iter()).map(String::as_str);
            prop_assert_eq!(elect(ip, twice), elect(ip, names.iter().map(String::as_str)));
        }

        #[test]
        fn removing_a_non_owner_keeps_the_owner(
            names in node_names(),
            ip in 0u32..100_000,
            victim in any::<prop::sample::Index>(),
        ) {
            let ip = test_ip(ip);
            let owner = elect(ip, names.iter().map(String::as_str));
            let victim = victim.get(&names);
            prop_assume!(Some(victim.as_str()) != owner);
            let remaining = names.iter().filter(|n| *n != victim).map(String::as_str);
            prop_assert_eq!(elect(ip, remaining), owner);
        }

        #[test]
        fn removing_an_owner_moves_only_its_ips(
            names in prop::collection::btree_set("[a-z][a-z0-9-]{0,8}", 2..8),
            first_ip in 0u32..100_000,
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let ips: Vec<IpAddr> = (first_ip..first_ip + 64).map(test_ip).collect();
            let before: Vec<Option<&str>> = ips
                .iter()
                .map(|ip| elect(*ip, names.iter().map(String::as_str)))
                .collect();
            let gone = before[0].unwrap_or_default();
            let remaining: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| *n != gone)
                .collect();
            for (ip, owner_before) in ips.iter().zip(&before) {
                let owner_after = elect(*ip, remaining.iter().copied());
                if *owner_before == Some(gone) {
                    prop_assert!(owner_after.is_some_and(|o| o != gone));
                } else {
                    prop_assert_eq!(owner_after, *owner_before);
                }
            }
        }
    }
}
