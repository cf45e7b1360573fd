//! The allocation table on small and huge pools: exhaustion, merging, family
//! boundaries, buggy-address skipping, and memory that follows allocations.

use super::super::buggy_count;
use super::*;

fn set(entries: &[&str]) -> AddressSet {
    AddressSet::parse(entries).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Allocates the lowest free address, as the controller would.
fn allocate(
    used: &mut UsedAddresses,
    pool: &AddressSet,
    family: Family,
    avoid_buggy: bool,
) -> Option<IpAddr> {
    let ip = used.lowest_free(pool, family, avoid_buggy)?;
    assert!(used.insert(ip), "lowest_free returned used {ip}");
    Some(ip)
}

fn lowest(
    used: &UsedAddresses,
    pool: &AddressSet,
    family: Family,
    avoid_buggy: bool,
) -> Option<String> {
    used.lowest_free(pool, family, avoid_buggy)
        .map(|ip| ip.to_string())
}

#[test]
fn full_slash_30() {
    let pool = set(&["192.0.2.0/30"]);
    let mut used = UsedAddresses::new();
    let got: Vec<_> =
        std::iter::from_fn(|| allocate(&mut used, &pool, Family::V4, false)).collect();
    assert_eq!(
        got,
        vec![
            ip("192.0.2.0"),
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.3")
        ]
    );
    assert_eq!(used.len(), 4);
    assert_eq!(used.count_within(&pool, Family::V4), 4);
    assert_eq!(used.free_count(&pool, Family::V4, false), 0);
    assert_eq!(
        used.used_ranges(Family::V4)
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
        vec!["192.0.2.0-192.0.2.3"]
    );
    // Freeing the middle splits the run and makes that address the lowest free.
    assert!(used.remove(ip("192.0.2.1")));
    assert!(!used.remove(ip("192.0.2.1")));
    assert_eq!(used.used_ranges(Family::V4).count(), 2);
    assert_eq!(
        lowest(&used, &pool, Family::V4, false).as_deref(),
        Some("192.0.2.1")
    );
    // The same /30 with avoid_buggy: .0 is not usable.
    let mut used = UsedAddresses::new();
    let got: Vec<_> = std::iter::from_fn(|| allocate(&mut used, &pool, Family::V4, true)).collect();
    assert_eq!(got, vec![ip("192.0.2.1"), ip("192.0.2.2"), ip("192.0.2.3")]);
    assert_eq!(buggy_count(&pool), 1);
    used.assert_invariants();
}

#[test]
fn slash_32_and_single_address_ranges() {
    let pool = set(&["192.0.2.7/32", "192.0.2.9-192.0.2.9", "2001:db8::5/128"]);
    let mut used = UsedAddresses::new();
    assert_eq!(
        allocate(&mut used, &pool, Family::V4, false),
        Some(ip("192.0.2.7"))
    );
    assert_eq!(
        allocate(&mut used, &pool, Family::V4, false),
        Some(ip("192.0.2.9"))
    );
    assert_eq!(allocate(&mut used, &pool, Family::V4, false), None);
    assert_eq!(
        allocate(&mut used, &pool, Family::V6, false),
        Some(ip("2001:db8::5"))
    );
    assert_eq!(allocate(&mut used, &pool, Family::V6, false), None);
    // An address used outside the pool does not count within it.
    used.insert(ip("192.0.2.8"));
    assert_eq!(used.count_within(&pool, Family::V4), 2);
    assert_eq!(used.used_ranges(Family::V4).count(), 1);
    // A /32 ending in .0 or .255 is useless with avoid_buggy.
    let buggy = set(&["192.0.2.255/32", "198.51.100.0/32"]);
    assert_eq!(
        lowest(&UsedAddresses::new(), &buggy, Family::V4, true),
        None
    );
    assert_eq!(
        lowest(&UsedAddresses::new(), &buggy, Family::V4, false).as_deref(),
        Some("192.0.2.255")
    );
    assert_eq!(UsedAddresses::new().free_count(&buggy, Family::V4, true), 0);
    used.assert_invariants();
}

#[test]
fn adjacent_ranges_merge_into_one_pool() {
    let pool = set(&["192.0.2.0-192.0.2.1", "192.0.2.2-192.0.2.3"]);
    assert_eq!(pool.ranges().len(), 1);
    let mut used = UsedAddresses::new();
    for _ in 0..4 {
        allocate(&mut used, &pool, Family::V4, false);
    }
    assert_eq!(used.used_ranges(Family::V4).count(), 1);
    assert_eq!(allocate(&mut used, &pool, Family::V4, false), None);
}

#[test]
fn touching_u32_max_stays_ipv4() {
    let pool = set(&["255.255.255.252/30", "::/126"]);
    let mut used = UsedAddresses::new();
    for _ in 0..4 {
        allocate(&mut used, &pool, Family::V4, false);
    }
    assert!(used.contains(ip("255.255.255.255")));
    assert_eq!(allocate(&mut used, &pool, Family::V4, false), None);
    // IPv6 :: is adjacent numerically but another family: still free.
    assert!(!used.contains(ip("::")));
    assert_eq!(
        allocate(&mut used, &pool, Family::V6, false),
        Some(ip("::"))
    );
    assert_eq!(used.used_ranges(Family::V4).count(), 1);
    assert_eq!(used.used_ranges(Family::V6).count(), 1);
    // avoid_buggy near the top: .255 is not usable.
    let mut used = UsedAddresses::new();
    assert_eq!(
        allocate(&mut used, &pool, Family::V4, true),
        Some(ip("255.255.255.252"))
    );
    assert_eq!(
        allocate(&mut used, &pool, Family::V4, true),
        Some(ip("255.255.255.253"))
    );
    assert_eq!(
        allocate(&mut used, &pool, Family::V4, true),
        Some(ip("255.255.255.254"))
    );
    assert_eq!(allocate(&mut used, &pool, Family::V4, true), None);
    assert_eq!(used.free_count(&pool, Family::V4, false), 1);
    assert_eq!(used.free_count(&pool, Family::V4, true), 0);
    // Removing at the very top and bottom of the spaces.
    let mut used: UsedAddresses = [
        ip("255.255.255.255"),
        ip("0.0.0.0"),
        ip("::"),
        ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ]
    .into_iter()
    .collect();
    assert_eq!(used.len(), 4);
    assert!(used.remove(ip("255.255.255.255")));
    assert!(used.remove(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    assert!(used.remove(ip("0.0.0.0")));
    assert!(used.remove(ip("::")));
    assert!(used.is_empty());
    used.assert_invariants();
}

#[test]
fn ipv6_slash_48_and_everything() {
    let pool = set(&["2001:db8:1::/48"]);
    let mut used = UsedAddresses::new();
    for _ in 0..1000 {
        allocate(&mut used, &pool, Family::V6, false);
    }
    assert_eq!(
        used.lowest_free(&pool, Family::V6, false),
        Some(ip("2001:db8:1::3e8"))
    );
    assert_eq!(
        used.free_count(&pool, Family::V6, false),
        (1u128 << 80) - 1000
    );
    // A used run reaching the end of the pool leaves nothing.
    let mut used = UsedAddresses::new();
    used.insert(ip("2001:db8:1:ffff:ffff:ffff:ffff:ffff"));
    let tiny = set(&["2001:db8:1:ffff:ffff:ffff:ffff:ffff/128"]);
    assert_eq!(used.lowest_free(&tiny, Family::V6, false), None);

    let everything = set(&["::/0"]);
    let mut used = UsedAddresses::new();
    assert_eq!(
        allocate(&mut used, &everything, Family::V6, false),
        Some(ip("::"))
    );
    assert_eq!(
        allocate(&mut used, &everything, Family::V6, true),
        Some(ip("::1"))
    );
    used.insert(ip("::3"));
    assert_eq!(
        allocate(&mut used, &everything, Family::V6, false),
        Some(ip("::2"))
    );
    assert_eq!(
        allocate(&mut used, &everything, Family::V6, false),
        Some(ip("::4"))
    );
    assert_eq!(used.count_within(&everything, Family::V6), 5);
    assert_eq!(used.lowest_free(&everything, Family::V4, false), None);
    // Fill the very top, then the only free addresses are low.
    let top = set(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe/127"]);
    for _ in 0..2 {
        allocate(&mut used, &top, Family::V6, false);
    }
    assert_eq!(used.lowest_free(&top, Family::V6, false), None);
    assert_eq!(
        used.lowest_free(&everything, Family::V6, false),
        Some(ip("::5"))
    );
    used.assert_invariants();
}

#[test]
fn avoid_buggy_crosses_255_and_0() {
    let pool = set(&["192.0.2.250-192.0.3.5"]);
    let mut used = UsedAddresses::new();
    let got: Vec<String> = std::iter::from_fn(|| allocate(&mut used, &pool, Family::V4, true))
        .map(|ip| ip.to_string())
        .collect();
    assert_eq!(
        got,
        vec![
            "192.0.2.250",
            "192.0.2.251",
            "192.0.2.252",
            "192.0.2.253",
            "192.0.2.254",
            "192.0.3.1",
            "192.0.3.2",
            "192.0.3.3",
            "192.0.3.4",
            "192.0.3.5"
        ]
    );
    // Only the buggy ones are left: none with avoid_buggy, .255 without.
    assert_eq!(lowest(&used, &pool, Family::V4, true), None);
    assert_eq!(used.free_count(&pool, Family::V4, true), 0);
    assert_eq!(
        lowest(&used, &pool, Family::V4, false).as_deref(),
        Some("192.0.2.255")
    );
    assert_eq!(used.free_count(&pool, Family::V4, false), 2);
    assert_eq!(buggy_count(&pool), 2);
    // Buggy addresses taken explicitly do not disturb avoid_buggy searches.
    used.insert(ip("192.0.2.255"));
    used.insert(ip("192.0.3.0"));
    assert_eq!(lowest(&used, &pool, Family::V4, false), None);
    used.remove(ip("192.0.3.2"));
    assert_eq!(
        lowest(&used, &pool, Family::V4, true).as_deref(),
        Some("192.0.3.2")
    );
    assert_eq!(used.count_within(&pool, Family::V4), 11);
    used.assert_invariants();
}

#[test]
fn avoid_buggy_skips_many_full_slash_24s_in_one_lookup() {
    // Every usable address of 198.18.0.0/20 is taken, the .0 and .255 are
    // free: 16 runs in address space, a single run in usable space.
    let pool = set(&["198.18.0.0/15"]);
    let mut used = UsedAddresses::new();
    for _ in 0..16 * 254 {
        allocate(&mut used, &pool, Family::V4, true);
    }
    assert_eq!(used.used_ranges(Family::V4).count(), 16);
    assert_eq!(used.v4_usable.run_count(), 1);
    assert_eq!(
        lowest(&used, &pool, Family::V4, true).as_deref(),
        Some("198.18.16.1")
    );
    assert_eq!(
        lowest(&used, &pool, Family::V4, false).as_deref(),
        Some("198.18.0.0")
    );
    assert_eq!(
        used.free_count(&pool, Family::V4, true),
        512 * 254 - 16 * 254
    );
    // A later range of the pool is tried once the first is exhausted.
    let two = set(&[
        "198.18.0.0/20",
        "198.18.200.255-198.18.201.0",
        "198.19.0.255-198.19.1.3",
    ]);
    assert_eq!(
        lowest(&used, &two, Family::V4, true).as_deref(),
        Some("198.19.1.1")
    );
    used.assert_invariants();
}

#[test]
fn memory_follows_allocations_not_pool_size() {
    for (pool, family) in [
        ("0.0.0.0/0", Family::V4),
        ("::/0", Family::V6),
        ("2001:db8::/64", Family::V6),
    ] {
        let pool = set(&[pool]);
        for avoid_buggy in [false, true] {
            let mut used = UsedAddresses::new();
            for _ in 0..5_000 {
                allocate(&mut used, &pool, family, avoid_buggy);
            }
            assert_eq!(used.len(), 5_000);
            // 5000 consecutive usable addresses: one run, or one per /24
            // in address space when .0 and .255 are skipped (but still one
            // in usable space, which is what the searches use).
            let runs = used.used_ranges(family).count();
            assert!(runs <= 5_000 / 254 + 1, "{runs} runs");
            assert!(used.v4_usable.run_count() <= 1);
            used.assert_invariants();
        }
    }
}

#[test]
fn mixed_families_do_not_interfere() {
    let pool = set(&["192.0.2.0/31", "2001:db8::/127"]);
    let mut used = UsedAddresses::new();
    used.insert(ip("192.0.2.0"));
    used.insert(ip("2001:db8::1"));
    assert_eq!(
        lowest(&used, &pool, Family::V4, false).as_deref(),
        Some("192.0.2.1")
    );
    assert_eq!(
        lowest(&used, &pool, Family::V6, false).as_deref(),
        Some("2001:db8::")
    );
    assert_eq!(used.count_within(&pool, Family::V4), 1);
    assert_eq!(used.count_within(&pool, Family::V6), 1);
    assert!(!used.contains(ip("::ffff:192.0.2.0")));
}
