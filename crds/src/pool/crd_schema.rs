//! The hand-written parts of the `IPAddressPool` CRD schema: the CEL rules on each
//! `addresses` entry, and the bounded lists.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, SchemaGenerator, json_schema};

use super::{MAX_ADDRESS_ENTRY_LEN, MAX_ADDRESSES, MAX_NAMESPACES, RESERVED};
use crate::schema::{cel_string, pattern_string, rule, string_set};
use crate::validation::{DNS1123_LABEL_PATTERN, MAX_NAMESPACE_NAME_LEN};

/// CEL guard shared by the range rules: true when `self` is not a well-formed `a-b` range
/// (those entries are reported by the syntax rule instead).
const NOT_A_RANGE: &str = "!self.contains('-') || self.split('-').size() != 2 \
    || !isIP(self.split('-')[0].trim()) || !isIP(self.split('-')[1].trim())";
const RANGE_START: &str = "self.split('-')[0].trim()";
const RANGE_END: &str = "self.split('-')[1].trim()";

/// Bit positions of an IPv6 address checked per order rule. The API server bounds the
/// estimated cost of each rule; one rule over all 128 bits would exceed it with
/// [`MAX_ADDRESSES`] entries, four rules over 32 bits each do not.
const IPV6_BITS_PER_RULE: u32 = 32;

/// CEL: the IPv4 address `ip` (an expression of type string) as an integer.
fn cel_ipv4_value(ip: &str) -> String {
    let octet = |i: u32| format!("int({ip}.split('.')[{i}])");
    format!(
        "({} * 16777216 + {} * 65536 + {} * 256 + {})",
        octet(0),
        octet(1),
        octet(2),
        octet(3)
    )
}

/// CEL: an IPv4 range does not start after it ends.
fn ipv4_order_rule() -> String {
    format!(
        "{NOT_A_RANGE} || ip({RANGE_START}).family() != 4 || ip({RANGE_END}).family() != 4 \
         || {} <= {}",
        cel_ipv4_value(RANGE_START),
        cel_ipv4_value(RANGE_END)
    )
}

/// CEL: an IPv6 range does not start after it ends, judged on bits `first..=last` (1-based).
///
/// CEL has no order on IPs, and rebuilding fixed-width text from an address costs too much
/// in the API server's estimate. So this walks prefix lengths instead: if start and end
/// share the first n-1 bits but not the first n (`end` is in `start/(n-1)` but not in
/// `start/n`), they first differ at bit n, and the start must have a 0 there, which is
/// when `start/n` and `start/(n-1)` have the same network address.
fn ipv6_order_rule(first: u32, last: u32) -> String {
    let list = |range: std::ops::RangeInclusive<u32>| {
        let items: Vec<String> = range.map(|n| format!("'/{n}'")).collect();
        format!("[{}]", items.join(", "))
    };
    let (prefixes, shorter) = (list(first..=last), list(first - 1..=last - 1));
    let (start, end) = (RANGE_START, RANGE_END);
    format!(
        "{NOT_A_RANGE} || ip({start}).family() != 6 || ip({end}).family() != 6 \
         || {prefixes}.all(i, p, !(cidr({start} + {shorter}[i]).containsIP({end}) && !cidr({start} + p).containsIP({end})) \
         || cidr({start} + p).masked().ip() == cidr({start} + {shorter}[i]).masked().ip())"
    )
}

/// CEL: a CIDR entry shares no address with a [`RESERVED`] block. Two prefixes overlap
/// exactly when one contains the other's network address.
fn cidr_reserved_rule() -> String {
    let entry = "cidr(self.trim())";
    format!(
        "self.contains('-') || !isCIDR(self.trim()) || {}.all(b, \
         !cidr(b).containsIP({entry}.masked().ip()) && !{entry}.containsIP(cidr(b).ip()))",
        cel_list(&RESERVED)
    )
}

/// CEL: a range entry shares no address with a [`RESERVED`] block. CEL has no order on IPs,
/// so besides "neither end is reserved" this names the two ways an ordered range can
/// hold a whole block with both ends outside it (every other block touches a reserved
/// neighbour or an end of the address space): spanning `127.0.0.0/8` means starting in
/// `0.0.0.0/1` and ending in `128.0.0.0/1`; spanning `fe80::/10` means ending in
/// `fec0::/10` and starting below it. A disordered range is refused by the order rules.
fn range_reserved_rule() -> String {
    let (start, end) = (RANGE_START, RANGE_END);
    format!(
        "{NOT_A_RANGE} || ({}.all(b, !cidr(b).containsIP({start}) && !cidr(b).containsIP({end})) \
         && !(cidr('0.0.0.0/1').containsIP({start}) && cidr('128.0.0.0/1').containsIP({end})) \
         && !(cidr('fec0::/10').containsIP({end}) && !cidr('fec0::/10').containsIP({start})))",
        cel_list(&RESERVED)
    )
}

/// CEL: a list of string literals.
fn cel_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("'{item}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// CEL rules on one `addresses` entry.
fn address_entry_rules() -> Vec<serde_json::Value> {
    const ORDER_MESSAGE: &str = "a range must not start after it ends";
    const RESERVED_MESSAGE: &str = "must not overlap the reserved addresses 0.0.0.0/8, 127.0.0.0/8, \
        224.0.0.0/4, 240.0.0.0/4 (with 255.255.255.255), ::/128, ::1/128, fe80::/10 and ff00::/8";
    let mut rules = vec![
        rule(
            "self.contains('-') ? (self.split('-').size() == 2 && isIP(self.split('-')[0].trim()) \
             && isIP(self.split('-')[1].trim())) : isCIDR(self.trim())",
            "must be a CIDR (192.0.2.0/24, 2001:db8::/64) or a range of two IP addresses (192.0.2.10-192.0.2.20); \
             IPv4-mapped IPv6 addresses are not allowed",
        ),
        rule(
            &format!("{NOT_A_RANGE} || ip({RANGE_START}).family() == ip({RANGE_END}).family()"),
            "both ends of a range must be of the same IP family",
        ),
        rule(&ipv4_order_rule(), ORDER_MESSAGE),
        rule(&cidr_reserved_rule(), RESERVED_MESSAGE),
        rule(&range_reserved_rule(), RESERVED_MESSAGE),
    ];
    for first in (1..=128).step_by(IPV6_BITS_PER_RULE as usize) {
        rules.push(rule(
            &ipv6_order_rule(first, first + IPV6_BITS_PER_RULE - 1),
            ORDER_MESSAGE,
        ));
    }
    rules
}

/// Two CIDR entries of one pool overlap when one contains the other. This pairwise rule
/// over the CIDRs fits the API server's cost budget with [`MAX_ADDRESSES`] entries
/// (kube-apiserver v1.34 accepts it); the same over IPv4 ranges alone is refused
/// ("estimated rule cost exceeds budget by factor of 5.2x"). So overlaps that involve a
/// range are left to the controller's check, which marks the pool invalid and freezes
/// the addresses it holds.
fn cidr_overlap_rule() -> serde_json::Value {
    rule(
        "self.all(a, self.all(b, a == b || a.contains('-') || b.contains('-') \
         || !isCIDR(a.trim()) || !isCIDR(b.trim()) \
         || !cidr(a.trim()).containsCIDR(cidr(b.trim()))))",
        "CIDR entries must not overlap each other (overlaps that involve a range are \
         reported in the pool's Ready condition)",
    )
}

pub(super) fn addresses_schema(_: &mut SchemaGenerator) -> Schema {
    let mut schema = string_set(
        MAX_ADDRESSES,
        cel_string(MAX_ADDRESS_ENTRY_LEN, address_entry_rules()),
    );
    schema.insert("minItems".into(), 1.into());
    schema.insert(
        "x-kubernetes-validations".into(),
        serde_json::Value::Array(vec![cidr_overlap_rule()]),
    );
    schema
}

pub(super) fn namespaces_schema(_: &mut SchemaGenerator) -> Schema {
    string_set(
        MAX_NAMESPACES,
        pattern_string(MAX_NAMESPACE_NAME_LEN, DNS1123_LABEL_PATTERN),
    )
}

/// Up to 2^128, which has 39 digits.
pub(super) fn count_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "maxLength": 39, "pattern": "^(0|[1-9][0-9]*)$" })
}

pub(super) fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 16,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": generator.subschema_for::<Condition>(),
    })
}
