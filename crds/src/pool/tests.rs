use super::*;
use crate::address::AddressError;
use crate::test_support;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn pool(addresses: &[&str]) -> IPAddressPoolSpec {
    IPAddressPoolSpec {
        addresses: addresses.iter().map(|a| a.to_string()).collect(),
        auto_assign: true,
        avoid_buggy_ips: false,
        service_allocation: None,
    }
}

fn messages(spec: &IPAddressPoolSpec) -> Vec<String> {
    test_support::messages(spec.validate())
}

/// Each entry with the verdict a real kube-apiserver (v1.34) gave for the CRD's CEL rules;
/// the Rust check must agree on every one.
const ADMISSION_VERDICTS: &[(&str, bool)] = &[
    ("192.0.2.0/24", true),
    ("2001:db8::/64", true),
    ("192.0.2.10-192.0.2.20", true),
    ("192.0.2.10 - 192.0.2.20", true),
    ("2001:db8::1-2001:db8::ff", true),
    ("2001:DB8::1-2001:db8::2", true),
    ("64:ff9b::192.0.2.1-64:ff9b::192.0.2.9", true),
    ("::2-::3", true),
    (
        "feff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        true,
    ),
    ("192.0.2.1-192.0.2.1", true),
    ("1.0.0.0-223.255.255.255", false),
    ("128.0.0.0-223.255.255.255", true),
    // Reserved addresses.
    ("::-::1", false),
    (
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        false,
    ),
    ("0.0.0.0-255.255.255.255", false),
    ("fe00::-fec0::", false),
    ("127.0.0.1/32", false),
    ("255.255.255.255/32", false),
    ("2001:db8::/64 ", true),
    ("2001:db8::ff-2001:db8::1", false),
    ("192.0.2.20-192.0.2.10", false),
    ("192.0.2.1-2001:db8::1", false),
    ("192.0.2.0", false),
    ("192.0.2.0/33", false),
    ("192.0.2.0/024", false),
    ("::ffff:192.0.2.1-::ffff:192.0.2.9", false),
    ("garbage", false),
    ("2001:db8::1:0-2001:db8::0:ffff", false),
    ("2001:db8:1::-2001:db8::ffff", false),
    ("64:ff9b::192.0.2.9-64:ff9b::192.0.2.1", false),
    ("::1-::", false),
    ("8000::-7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
    ("255.255.255.255-0.0.0.0", false),
    ("192.0.2.0/00", false),
    ("2001:db8::/064", false),
    ("192.0.2.0/0", false),
    ("192.0.2.0/3", true),
    ("::ffff:192.0.2.0/120", false),
    ("192.0.2.1/24", true),
    ("fe80::1%eth0-fe80::2", false),
    ("1.2.3.4-x", false),
];

#[test]
fn entries_agree_with_the_api_server() {
    for (entry, admitted) in ADMISSION_VERDICTS {
        // A reserved entry parses; the pool check refuses it.
        let reserved = parse_address_entry(entry).is_ok_and(|r| reserved_overlap(&r).is_some());
        assert_eq!(
            parse_address_entry(entry).is_ok(),
            *admitted || reserved,
            "{entry:?}"
        );
        assert_eq!(pool(&[entry]).validate().is_ok(), *admitted, "{entry:?}");
    }
}

#[test]
fn entry_errors_say_what_is_wrong() {
    let cases = [
        (
            "192.0.2.0",
            "\"192.0.2.0\" is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.10-192.0.2.20)",
        ),
        (
            "192.0.2.20-192.0.2.10",
            "range \"192.0.2.20-192.0.2.10\" starts after it ends",
        ),
        (
            "192.0.2.1-2001:db8::1",
            "range \"192.0.2.1-2001:db8::1\" mixes IPv4 and IPv6",
        ),
        (
            "192.0.2.0/024",
            "\"192.0.2.0/024\" is not a valid CIDR: invalid IP address syntax",
        ),
        (
            "192.0.2.0/00",
            "\"192.0.2.0/00\": the prefix length must be a plain decimal number",
        ),
        (
            "2001:db8::/064",
            "\"2001:db8::/064\": the prefix length must be a plain decimal number",
        ),
        (
            "::ffff:192.0.2.1-::ffff:192.0.2.9",
            "\"::ffff:192.0.2.1\": IPv4-mapped IPv6 addresses are not allowed, write the IPv4 address instead",
        ),
        (
            "::ffff:192.0.2.0/120",
            "\"::ffff:192.0.2.0\": IPv4-mapped IPv6 addresses are not allowed, write the IPv4 address instead",
        ),
    ];
    for (entry, message) in cases {
        let errors = messages(&pool(&[entry]));
        assert_eq!(
            errors,
            vec![format!("spec.addresses[0]: {message}")],
            "{entry}"
        );
    }
    assert!(parse_address_entry("192.0.2.0/+24").is_err());
    assert_eq!(
        parse_address_entry("1.2.3.4-x"),
        Err(Problem::Address(AddressError::Ip("x".into())))
    );
}

#[test]
fn reserved_addresses_are_refused_naming_the_entry() {
    let refused = [
        ("0.0.0.0/0", "0.0.0.0/8"),
        ("0.0.0.1/32", "0.0.0.0/8"),
        ("127.0.0.1/32", "127.0.0.0/8"),
        ("112.0.0.0/4", "127.0.0.0/8"),
        ("224.0.0.5/32", "224.0.0.0/4"),
        ("255.255.255.255/32", "240.0.0.0/4"),
        ("::/0", "::/128"),
        ("::/128", "::/128"),
        ("::1/128", "::1/128"),
        ("fe80::/64", "fe80::/10"),
        ("ff02::1/128", "ff00::/8"),
        // Ranges: one end inside, or a whole block between the ends.
        ("0.0.0.0-198.51.100.1", "0.0.0.0/8"),
        ("126.255.255.0-128.0.0.5", "127.0.0.0/8"),
        ("223.255.255.0-223.255.255.255", ""),
        ("223.255.255.255-224.0.0.0", "224.0.0.0/4"),
        ("192.0.2.1-255.255.255.255", "224.0.0.0/4"),
        ("::-::5", "::/128"),
        ("::1-2001:db8::1", "::1/128"),
        ("fe00::-fec0::1", "fe80::/10"),
        ("fe00::-fe7f::1", ""),
        ("2001:db8::1-ff00::1", "fe80::/10"),
    ];
    for (entry, block) in refused {
        let got = messages(&pool(&[entry]));
        if block.is_empty() {
            assert_eq!(got, Vec::<String>::new(), "{entry} is not reserved");
        } else {
            assert_eq!(
                got,
                vec![format!(
                    "spec.addresses[0]: {entry:?} overlaps the reserved addresses {block}"
                )],
                "{entry}"
            );
        }
    }
    for allowed in [
        "1.0.0.0/8",
        "126.255.255.255/32",
        "128.0.0.0/3",
        "::2/127",
        "fec0::/10",
        "2001:db8::/32",
    ] {
        assert_eq!(pool(&[allowed]).validate(), Ok(()), "{allowed}");
    }
}

#[test]
fn whole_pool_rules() {
    assert_eq!(
        messages(&pool(&[])),
        vec!["spec.addresses: must not be empty"]
    );
    assert_eq!(
        messages(&pool(&["192.0.2.0/24", "192.0.2.0/24"])),
        vec!["spec.addresses[1]: duplicate value \"192.0.2.0/24\""]
    );
    assert_eq!(
        messages(&pool(&[
            "192.0.2.0/24",
            "2001:db8::/64",
            "192.0.2.128-192.0.3.5"
        ])),
        vec![
            "spec.addresses[2]: \"192.0.2.128-192.0.3.5\" overlaps \"192.0.2.0/24\" (spec.addresses[0])"
        ]
    );
    assert_eq!(
        messages(&pool(&[
            "192.0.2.0/25",
            "192.0.2.128/25",
            "2001:db8::/32",
            "192.0.0.0/8",
            "2001:db8::1-2001:db8::2",
        ])),
        vec![
            "spec.addresses[3]: \"192.0.0.0/8\" overlaps \"192.0.2.0/25\" (spec.addresses[0])",
            "spec.addresses[3]: \"192.0.0.0/8\" overlaps \"192.0.2.128/25\" (spec.addresses[1])",
            "spec.addresses[4]: \"2001:db8::1-2001:db8::2\" overlaps \"2001:db8::/32\" (spec.addresses[2])",
        ]
    );
    // Touching is not overlapping; sharing one address is.
    assert_eq!(
        pool(&["192.0.2.0-192.0.2.9", "192.0.2.10-192.0.2.19"]).validate(),
        Ok(())
    );
    assert_eq!(
        messages(&pool(&["192.0.2.0-192.0.2.10", "192.0.2.10-192.0.2.19"])).len(),
        1
    );
    let too_many: Vec<String> = (0..=MAX_ADDRESSES)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let spec = IPAddressPoolSpec {
        addresses: too_many,
        ..pool(&[])
    };
    assert_eq!(
        messages(&spec),
        vec![format!(
            "spec.addresses: at most {MAX_ADDRESSES} items allowed, got 129"
        )]
    );
    let long = format!(
        "2001:db8::1 {}- 2001:db8::2",
        " ".repeat(MAX_ADDRESS_ENTRY_LEN)
    );
    assert_eq!(
        messages(&pool(&[&long])),
        vec![format!(
            "spec.addresses[0]: at most 100 characters allowed, got {}",
            long.len()
        )]
    );
}

#[test]
fn ranges_in_order() {
    let spec = pool(&["192.0.2.0/30", "2001:db8::1-2001:db8::3"]);
    let ranges = spec
        .ranges()
        .map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>());
    assert_eq!(
        ranges,
        Ok(vec![
            "192.0.2.0-192.0.2.3".to_string(),
            "2001:db8::1-2001:db8::3".to_string()
        ])
    );
    let error = pool(&["192.0.2.0/30", "nope"]).ranges().unwrap_err();
    assert_eq!(error.field, "spec.addresses[1]");
}

#[test]
fn service_allocation_rules() {
    let mut spec = pool(&["192.0.2.0/24"]);
    spec.service_allocation = Some(ServiceAllocation {
        priority: Some(10),
        namespaces: vec!["default".into(), "Bad_NS".into(), "default".into()],
        namespace_selectors: vec![LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "team".into(),
                operator: "In".into(),
                values: None,
            }]),
            match_labels: None,
        }],
        service_selectors: vec![],
    });
    assert_eq!(
        messages(&spec),
        vec![
            "spec.serviceAllocation.namespaces[2]: duplicate value \"default\"",
            "spec.serviceAllocation.namespaces[1]: invalid namespace name \"Bad_NS\": use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
            "spec.serviceAllocation.namespaceSelectors[0].matchExpressions[0].values: values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
        ]
    );
}

#[test]
fn status_counts_are_exact_strings() {
    let mut status = IPAddressPoolStatus::default();
    assert_eq!(status.counts(), None);
    let counts = AddressCounts {
        assigned_ipv4: 2,
        available_ipv4: 254,
        assigned_ipv6: 0,
        available_ipv6: 1 << 80,
    };
    status.set_counts(counts);
    assert_eq!(
        status.available_ipv6.as_deref(),
        Some("1208925819614629174706176")
    );
    assert_eq!(status.counts(), Some(counts));
    let json = serde_json::to_value(&status).expect("the status serializes");
    assert_eq!(json["availableIPv6"], "1208925819614629174706176");
    assert_eq!(json["assignedIPv4"], "2");
    status.assigned_ipv4 = Some("-1".into());
    assert_eq!(status.counts(), None);
}

#[test]
fn overlap_message_names_pool_and_range() {
    let overlap = IpRange::parse("192.0.2.16-192.0.2.31").expect("a valid range");
    assert_eq!(
        condition::overlap_message("lb", "other-pool", &overlap),
        "addresses 192.0.2.16-192.0.2.31 overlap IPAddressPool lb/other-pool"
    );
}

fn any_ipv4_cidr() -> impl Strategy<Value = String> {
    (any::<u32>(), 0u8..=32).prop_map(|(ip, len)| format!("{}/{len}", Ipv4Addr::from(ip)))
}

fn any_ipv6_cidr() -> impl Strategy<Value = String> {
    (any::<u128>(), 0u8..=128).prop_map(|(ip, len)| format!("{}/{len}", Ipv6Addr::from(ip)))
}

fn any_ipv4_range() -> impl Strategy<Value = String> {
    (any::<u32>(), any::<u32>())
        .prop_map(|(a, b)| format!("{}-{}", Ipv4Addr::from(a.min(b)), Ipv4Addr::from(a.max(b))))
}

fn any_ipv6_range() -> impl Strategy<Value = String> {
    // Exclude the IPv4-mapped block ::ffff:0:0/96, which admission rejects.
    let not_mapped = any::<u128>().prop_filter("not IPv4-mapped", |v| v >> 32 != 0xffff);
    (not_mapped.clone(), not_mapped).prop_map(|(a, b)| {
        format!(
            "{} - {}",
            Ipv6Addr::from(a.min(b)),
            Ipv6Addr::from(a.max(b))
        )
    })
}

proptest! {
    #[test]
    fn valid_cidrs_and_ranges_pass(entry in prop_oneof![any_ipv4_cidr(), any_ipv6_cidr(), any_ipv4_range(), any_ipv6_range()]) {
        let mapped = entry.starts_with("::ffff:") && entry.contains('.');
        prop_assume!(!mapped);
        let range = parse_address_entry(&entry);
        prop_assert!(range.is_ok(), "{entry}");
        let expected = match range.ok().and_then(|r| reserved_overlap(&r)) {
            None => Ok(()),
            Some(block) => Err(vec![FieldError::new(
                "spec.addresses[0]",
                Problem::Reserved { entry: entry.clone(), block },
            )]),
        };
        prop_assert_eq!(pool(&[&entry]).validate(), expected);
    }

    /// The CEL range rule, which cannot order IPs, judges ordered ranges as the Rust check
    /// does. Modelled here on `IpRange`s: an end inside a block, or one of the two spans
    /// that `range_reserved_rule` names. Ends are drawn near the blocks' edges.
    #[test]
    fn cel_range_rule_model_agrees(a in near_reserved_edges(), b in near_reserved_edges(), v6 in any::<bool>()) {
        let (a, b) = if v6 { (IpAddr::V6(a.into()), IpAddr::V6(b.into())) } else {
            (IpAddr::V4(Ipv4Addr::from((a >> 96) as u32)), IpAddr::V4(Ipv4Addr::from((b >> 96) as u32)))
        };
        let range = IpRange::new(a.min(b), a.max(b)).expect("ordered");
        let inside = |block: &str, ip: IpAddr| IpRange::parse(block).is_ok_and(|r| r.contains(&ip));
        let (start, end) = (range.start(), range.end());
        let cel_refuses = RESERVED.iter().any(|b| inside(b, start) || inside(b, end))
            || (inside("0.0.0.0/1", start) && inside("128.0.0.0/1", end))
            || (inside("fec0::/10", end) && !inside("fec0::/10", start));
        prop_assert_eq!(cel_refuses, reserved_overlap(&range).is_some(), "{}", range);
    }
}

/// A 128-bit value whose top bits sit at or next to an edge of a reserved block, for IPv6
/// as is and for IPv4 through its top 32 bits.
fn near_reserved_edges() -> impl Strategy<Value = u128> {
    let edges: Vec<u128> = RESERVED
        .iter()
        .chain(&["0.0.0.0/1", "128.0.0.0/1", "fec0::/10"])
        .flat_map(|block| {
            let r = IpRange::parse(block).expect("a block");
            let (s, e) = (
                crate::address::to_u128(&r.start()),
                crate::address::to_u128(&r.end()),
            );
            match r.family() {
                crate::address::Family::V4 => vec![
                    s << 96,
                    e << 96,
                    (s << 96).wrapping_sub(1 << 96),
                    (e + 1) << 96,
                ],
                crate::address::Family::V6 => vec![s, e, s.wrapping_sub(1), e.wrapping_add(1)],
            }
        })
        .collect();
    (proptest::sample::select(edges), any::<u128>(), 0u32..100).prop_map(|(edge, noise, bits)| {
        // Mostly the edge itself, sometimes nudged by a few low bits either way.
        let nudge = noise >> (28 + bits);
        if noise & 1 == 0 {
            edge.wrapping_add(nudge)
        } else {
            edge.wrapping_sub(nudge)
        }
    })
}

proptest! {

    #[test]
    fn reversed_ranges_fail(a in any::<u32>(), b in any::<u32>()) {
        prop_assume!(a != b);
        let entry = format!("{}-{}", Ipv4Addr::from(a.max(b)), Ipv4Addr::from(a.min(b)));
        prop_assert!(parse_address_entry(&entry).is_err());
    }

    #[test]
    fn overlap_sweep_matches_pairwise_check(ranges in proptest::collection::vec((0u32..64, 0u32..8), 0..12)) {
        let entries: Vec<String> = ranges
            .iter()
            .map(|(start, len)| format!("10.0.0.{start}-10.0.0.{}", start + len))
            .collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        let spec = pool(&refs);
        // Every entry an error points at: either side of an overlap, or a duplicate.
        let mut reported = std::collections::BTreeSet::new();
        for error in spec.validate().err().unwrap_or_default() {
            match error.problem {
                Problem::Overlap { other_field, .. } => {
                    reported.insert(error.field);
                    reported.insert(other_field);
                }
                Problem::Duplicate(_) => {
                    reported.insert(error.field);
                }
                _ => {}
            }
        }
        // Pairwise: of two overlapping entries, at least one must be pointed at.
        for (i, a) in ranges.iter().enumerate() {
            for (j, b) in ranges.iter().enumerate().take(i) {
                let overlap = a.0 <= b.0 + b.1 && b.0 <= a.0 + a.1;
                if overlap && entries[i] != entries[j] {
                    let flagged = reported.contains(&format!("spec.addresses[{i}]"))
                        || reported.contains(&format!("spec.addresses[{j}]"));
                    prop_assert!(flagged, "{} and {} overlap but neither is reported", entries[i], entries[j]);
                }
            }
        }
    }

    #[test]
    fn validate_never_panics(entries in proptest::collection::vec(".{0,60}", 0..6)) {
        let spec = IPAddressPoolSpec { addresses: entries, ..pool(&[]) };
        let _ = spec.validate();
        let _ = spec.ranges();
    }

    #[test]
    fn validate_never_panics_on_address_like_text(entry in "[0-9a-fA-F:./ -]{0,50}") {
        let _ = pool(&[&entry]).validate();
    }
}
