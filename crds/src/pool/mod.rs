//! `IPAddressPool`: the addresses FerroLB may hand out, and which Services may get them.

use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::address::IpRange;
use crate::selector::{check_label_selectors, selectors_schema};
use crate::validation::{
    Errors, FieldError, Problem, check_len, check_namespace_name, check_unique, item, parse_ip,
};

mod crd_schema;
use crd_schema::{addresses_schema, conditions_schema, count_schema, namespaces_schema};

/// Most `addresses` entries in one pool. Bounds the API server's CEL cost estimate; a pool
/// needing more ranges than this can be split into several pools.
pub const MAX_ADDRESSES: usize = 128;
/// Longest `addresses` entry: two of the longest IPv6 addresses (45 characters with an
/// embedded IPv4 address), a '-' and some spaces.
pub const MAX_ADDRESS_ENTRY_LEN: usize = 100;
/// Addresses no pool may hold, refused at admission and by [`IPAddressPoolSpec::validate`]:
/// "this network", loopback, multicast, the former class E with the broadcast address
/// `255.255.255.255`, the unspecified and loopback IPv6 addresses, IPv6 link-local and
/// multicast. None of them can serve as a LoadBalancer address.
pub const RESERVED: [&str; 8] = [
    "0.0.0.0/8",
    "127.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fe80::/10",
    "ff00::/8",
];

/// The first [`RESERVED`] block that shares an address with `range`.
pub fn reserved_overlap(range: &IpRange) -> Option<&'static str> {
    reserved_blocks()
        .iter()
        .find(|(_, b)| {
            b.family() == range.family() && b.start() <= range.end() && range.start() <= b.end()
        })
        .map(|(text, _)| *text)
}

/// [`RESERVED`], parsed once (every pool entry is checked against all of them).
fn reserved_blocks() -> &'static [(&'static str, IpRange)] {
    static PARSED: LazyLock<Vec<(&'static str, IpRange)>> = LazyLock::new(|| {
        RESERVED
            .into_iter()
            .filter_map(|text| IpRange::parse(text).ok().map(|range| (text, range)))
            .collect()
    });
    &PARSED
}

/// Most namespaces in `serviceAllocation.namespaces`.
pub const MAX_NAMESPACES: usize = 256;

/// Desired state of an `IPAddressPool`: MetalLB's fields and defaults.
// Clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "IPAddressPool",
    plural = "ipaddresspools",
    singular = "ipaddresspool",
    shortname = "ippool",
    category = "ferrolb",
    namespaced,
    status = "IPAddressPoolStatus",
    derive = "PartialEq",
    doc = "IPAddressPool is a set of IP addresses that FerroLB may assign to LoadBalancer Services.",
    printcolumn(name = "Addresses", type_ = "string", json_path = ".spec.addresses"),
    printcolumn(
        name = "Auto Assign",
        type_ = "boolean",
        json_path = ".spec.autoAssign"
    ),
    printcolumn(
        name = "Assigned v4",
        type_ = "string",
        json_path = ".status.assignedIPv4"
    ),
    printcolumn(
        name = "Available v4",
        type_ = "string",
        json_path = ".status.availableIPv4"
    ),
    printcolumn(
        name = "Assigned v6",
        type_ = "string",
        json_path = ".status.assignedIPv6"
    ),
    printcolumn(
        name = "Available v6",
        type_ = "string",
        json_path = ".status.availableIPv6"
    ),
    printcolumn(name = "In Use", type_ = "boolean", json_path = ".status.inUse"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolSpec {
    /// The addresses of the pool: CIDRs (`192.0.2.0/24`, `2001:db8::/64`) or inclusive ranges
    /// (`192.0.2.10-192.0.2.20`), IPv4 and IPv6 mixed freely. Entries must not overlap each
    /// other; overlaps with other pools are reported in the `Conflicting` condition.
    #[schemars(schema_with = "addresses_schema")]
    pub addresses: Vec<String>,

    /// Whether Services that do not name a pool may get addresses from this one. A pool with
    /// `autoAssign: false` is used only by Services that ask for it (annotation or
    /// `loadBalancerIP`).
    #[serde(default = "default_true")]
    pub auto_assign: bool,

    /// Skips addresses ending in `.0` and `.255`, which some old or buggy clients and routers
    /// mishandle as broadcast addresses.
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,

    /// Limits which Services may get addresses from this pool, and orders pools by priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_allocation: Option<ServiceAllocation>,
}

fn default_true() -> bool {
    true
}

/// Which Services a pool serves. Among the pools a Service may use, the one with the lowest
/// `priority` is tried first; pools without a priority come after all pools with one.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAllocation {
    /// Lower values are tried first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,

    /// Namespaces whose Services may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "namespaces_schema")]
    pub namespaces: Vec<String>,

    /// Namespaces, selected by their labels, whose Services may use the pool; an alternative
    /// to listing them in `namespaces`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "selectors_schema")]
    pub namespace_selectors: Vec<LabelSelector>,

    /// Services, selected by their labels, that may use the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "selectors_schema")]
    pub service_selectors: Vec<LabelSelector>,
}

/// Observed state of an `IPAddressPool`, written by the controller.
///
/// The four counters are **strings holding exact decimal integers**, not numbers. MetalLB
/// uses `int64` here, but an IPv6 /64 alone holds 2^64 addresses and a /48 2^80: neither
/// fits in an `int64`, and JSON clients that read numbers as doubles would round them.
/// This is a deliberate difference from MetalLB.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPAddressPoolStatus {
    /// Number of IPv4 addresses of the pool assigned to Services, as a decimal string.
    #[serde(
        default,
        rename = "assignedIPv4",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "count_schema")]
    pub assigned_ipv4: Option<String>,

    /// Number of IPv4 addresses of the pool still free, as a decimal string.
    #[serde(
        default,
        rename = "availableIPv4",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "count_schema")]
    pub available_ipv4: Option<String>,

    /// Number of IPv6 addresses of the pool assigned to Services, as a decimal string.
    #[serde(
        default,
        rename = "assignedIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "count_schema")]
    pub assigned_ipv6: Option<String>,

    /// Number of IPv6 addresses of the pool still free, as a decimal string.
    #[serde(
        default,
        rename = "availableIPv6",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "count_schema")]
    pub available_ipv6: Option<String>,

    /// Whether any Service holds an address from this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_use: Option<bool>,

    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` and `Conflicting`; see [`condition`] for the types and reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Condition types and reasons the controller sets on `IPAddressPool` status.
pub mod condition {
    use crate::address::IpRange;

    /// True when the pool's addresses are valid and overlap no other pool.
    pub const TYPE_READY: &str = "Ready";
    /// Reason of `Ready=True`.
    pub const REASON_ADDRESSES_VALID: &str = "AddressesValid";
    /// Reason of `Ready=False` when `validate()` failed; the message lists the errors.
    pub const REASON_INVALID_ADDRESSES: &str = "InvalidAddresses";
    /// Reason of `Ready=False` when the pool overlaps another one.
    pub const REASON_CONFLICTING: &str = "Conflicting";

    /// True when the pool overlaps another pool. Overlapping addresses are not assigned from
    /// either pool until the conflict is resolved.
    pub const TYPE_CONFLICTING: &str = "Conflicting";
    /// Reason of `Conflicting=True`.
    pub const REASON_OVERLAP: &str = "Overlap";

    /// Message of `Conflicting=True`: names the other pool and the overlapping addresses.
    pub fn overlap_message(other_namespace: &str, other_name: &str, overlap: &IpRange) -> String {
        format!("addresses {overlap} overlap IPAddressPool {other_namespace}/{other_name}")
    }
}

/// Address counts of a pool, as numbers; [`IPAddressPoolStatus`] carries them as strings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressCounts {
    /// IPv4 addresses of the pool assigned to Services.
    pub assigned_ipv4: u128,
    /// IPv4 addresses of the pool still free to assign.
    pub available_ipv4: u128,
    /// IPv6 addresses of the pool assigned to Services.
    pub assigned_ipv6: u128,
    /// IPv6 addresses of the pool still free to assign (saturates at `u128::MAX` for a `::/0` pool).
    pub available_ipv6: u128,
}

impl IPAddressPoolStatus {
    /// Sets the four counters.
    pub fn set_counts(&mut self, counts: AddressCounts) {
        self.assigned_ipv4 = Some(counts.assigned_ipv4.to_string());
        self.available_ipv4 = Some(counts.available_ipv4.to_string());
        self.assigned_ipv6 = Some(counts.assigned_ipv6.to_string());
        self.available_ipv6 = Some(counts.available_ipv6.to_string());
    }

    /// The four counters, when all are present and well-formed.
    pub fn counts(&self) -> Option<AddressCounts> {
        let parse = |field: &Option<String>| field.as_deref()?.parse::<u128>().ok();
        Some(AddressCounts {
            assigned_ipv4: parse(&self.assigned_ipv4)?,
            available_ipv4: parse(&self.available_ipv4)?,
            assigned_ipv6: parse(&self.assigned_ipv6)?,
            available_ipv6: parse(&self.available_ipv6)?,
        })
    }
}

impl IPAddressPoolSpec {
    /// The ranges of `addresses`, in order, or the first entry that does not parse.
    /// Overlaps between entries are not checked here; [`IPAddressPoolSpec::validate`] does.
    pub fn ranges(&self) -> Result<Vec<IpRange>, FieldError> {
        self.addresses
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_address_entry(entry)
                    .map_err(|p| FieldError::new(item("spec.addresses", i), p))
            })
            .collect()
    }

    /// All the rules the CRD schema enforces (among them: no entry overlaps [`RESERVED`]),
    /// plus the one it cannot: entries of this pool must not overlap. Paths in the errors start at `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        let field = "spec.addresses";
        if self.addresses.is_empty() {
            errors.push(field, Problem::Empty);
        }
        check_len(&mut errors, field, &self.addresses, MAX_ADDRESSES);
        check_unique(&mut errors, field, &self.addresses);
        let mut seen = std::collections::HashSet::new();
        let mut parsed: Vec<(usize, IpRange)> = Vec::new();
        for (i, entry) in self.addresses.iter().enumerate() {
            let at = item(field, i);
            let len = entry.chars().count();
            if len > MAX_ADDRESS_ENTRY_LEN {
                errors.push(
                    at,
                    Problem::TooLong {
                        len,
                        max: MAX_ADDRESS_ENTRY_LEN,
                    },
                );
                continue;
            }
            let Some(range) = errors.check(&at, parse_address_entry(entry)) else {
                continue;
            };
            if let Some(block) = reserved_overlap(&range) {
                errors.push(
                    at.clone(),
                    Problem::Reserved {
                        entry: entry.clone(),
                        block,
                    },
                );
            }
            // A repeated entry is reported as a duplicate, not also as an overlap.
            if seen.insert(entry.as_str()) {
                parsed.push((i, range));
            }
        }
        for (later, earlier) in overlapping_pairs(parsed) {
            errors.push(
                item(field, later),
                Problem::Overlap {
                    entry: self.addresses[later].clone(),
                    other: self.addresses[earlier].clone(),
                    other_field: item(field, earlier),
                },
            );
        }
        if let Some(allocation) = &self.service_allocation {
            allocation.check(&mut errors);
        }
        errors.finish()
    }
}

impl ServiceAllocation {
    fn check(&self, errors: &mut Errors) {
        let field = "spec.serviceAllocation.namespaces";
        check_len(errors, field, &self.namespaces, MAX_NAMESPACES);
        check_unique(errors, field, &self.namespaces);
        for (i, namespace) in self.namespaces.iter().enumerate() {
            errors.check(item(field, i), check_namespace_name(namespace));
        }
        check_label_selectors(
            errors,
            "spec.serviceAllocation.namespaceSelectors",
            &self.namespace_selectors,
        );
        check_label_selectors(
            errors,
            "spec.serviceAllocation.serviceSelectors",
            &self.service_selectors,
        );
    }
}

/// Pairs `(later, earlier)` of list indices whose ranges overlap. Not every overlapping pair
/// is listed, but every entry that overlaps another is in at least one pair. A sweep over
/// the ranges sorted by start, so that an object with very many entries (one that bypassed
/// admission's `maxItems`) costs O(n log n), not O(n²).
fn overlapping_pairs(mut ranges: Vec<(usize, IpRange)>) -> Vec<(usize, usize)> {
    ranges.sort_by_key(|(i, range)| (range.family(), range.start(), *i));
    let mut pairs = Vec::new();
    // The entry reaching furthest so far within the current family.
    let mut furthest: Option<(usize, IpRange)> = None;
    for (i, range) in ranges {
        match furthest {
            Some((j, reach))
                if reach.family() == range.family() && range.start() <= reach.end() =>
            {
                pairs.push((i.max(j), i.min(j)));
                if range.end() > reach.end() {
                    furthest = Some((i, range));
                }
            }
            _ => furthest = Some((i, range)),
        }
    }
    pairs.sort_unstable();
    pairs
}

/// Parses one `addresses` entry exactly as admission does: [`IpRange::parse`], plus the two
/// things the API server's CEL `isIP()`/`isCIDR()` reject and Rust's parsers accept
/// (IPv4-mapped IPv6 addresses, and prefix lengths like `/024`).
pub fn parse_address_entry(entry: &str) -> Result<IpRange, Problem> {
    let range = IpRange::parse(entry)?;
    let trimmed = entry.trim();
    match trimmed.split_once('-') {
        Some((start, end)) => {
            parse_ip(start.trim())?;
            parse_ip(end.trim())?;
        }
        None => {
            if let Some((address, bits)) = trimmed.split_once('/') {
                parse_ip(address)?;
                let plain_decimal = bits == "0"
                    || (bits.starts_with(|c: char| matches!(c, '1'..='9'))
                        && bits.bytes().all(|b| b.is_ascii_digit()));
                if !plain_decimal {
                    return Err(Problem::PrefixLengthSyntax(entry.to_string()));
                }
            }
        }
    }
    Ok(range)
}

#[cfg(test)]
mod tests;
