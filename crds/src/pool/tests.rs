use super::*;
use crate::address::AddressError;
use crate::test_support;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

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
    ("::-::1", true),
    (
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        true,
    ),
    ("192.0.2.1-192.0.2.1", true),
    ("0.0.0.0-255.255.255.255", true),
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
    ("192.0.2.0/0", true),
    ("::ffff:192.0.2.0/120", false),
    ("192.0.2.1/24", true),
    ("fe80::1%eth0-fe80::2", false),
    ("1.2.3.4-x", false),
];

#[test]
fn entries_agree_with_the_api_server() {
    for (entry, admitted) in ADMISSION_VERDICTS {
        assert_eq!(parse_address_entry(entry).is_ok(), *admitted, "{entry:?}");
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
            "::/0",
            "0.0.0.0/0",
            "2001:db8::1-2001:db8::2",
        ])),
        vec![
            "spec.addresses[3]: \"0.0.0.0/0\" overlaps \"192.0.2.0/25\" (spec.addresses[0])",
            "spec.addresses[3]: \"0.0.0.0/0\" overlaps \"192.0.2.128/25\" (spec.addresses[1])",
            "spec.addresses[4]: \"2001:db8::1-2001:db8::2\" overlaps \"::/0\" (spec.addresses[2])",
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
        prop_assert!(parse_address_entry(&entry).is_ok(), "{entry}");
        prop_assert_eq!(pool(&[&entry]).validate(), Ok(()));
    }

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
