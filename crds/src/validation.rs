//! Per-object validation in plain Rust: the same rules the CRD schemas enforce at admission.
//!
//! The controller runs these on every object it reads, because an object can reach the API
//! server without our schema (an older or hand-edited CRD). It then reports the errors in an
//! Event or a status condition instead of acting on the object.

use std::net::IpAddr;

use crate::address::{AddressError, Family};
use crate::community::CommunityError;
use crate::duration::DurationError;

/// One problem with one field, located by its JSON path as the API server would name it
/// (`spec.addresses[2]`, `spec.communities[0].value`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.addresses[2]`.
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

impl FieldError {
    /// The error `problem` at the field named by its JSON path `field`.
    pub fn new(field: impl Into<String>, problem: Problem) -> FieldError {
        FieldError {
            field: field.into(),
            problem,
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required field is unset.
    #[error("required value")]
    Required,
    /// A field that is set must not be empty (a string or a list).
    #[error("must not be empty")]
    Empty,
    /// A list is longer than the schema allows.
    #[error("at most {max} items allowed, got {len}")]
    TooMany {
        /// Number of items given.
        len: usize,
        /// Largest number allowed.
        max: usize,
    },
    /// A string has more characters than the schema allows.
    #[error("at most {max} characters allowed, got {len}")]
    TooLong {
        /// Number of characters given.
        len: usize,
        /// Largest number allowed.
        max: usize,
    },
    /// A string is longer in UTF-8 bytes than allowed (TCP MD5 passwords are limited in bytes).
    #[error("at most {max} bytes allowed, got {len}")]
    TooManyBytes {
        /// Number of bytes given.
        len: usize,
        /// Largest number allowed.
        max: usize,
    },
    /// A list that must hold distinct values repeats this one.
    #[error("duplicate value {0:?}")]
    Duplicate(String),
    /// A number outside its bounds.
    #[error("must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The value given.
        value: i128,
        /// Smallest value allowed.
        min: i128,
        /// Largest value allowed.
        max: i128,
    },
    /// The field is set together with the named field, and only one of them may be.
    #[error("must not be set together with {0}")]
    MutuallyExclusive(&'static str),
    /// Neither or both of the two named fields are set.
    #[error("exactly one of {0} and {1} must be set")]
    ExactlyOneOf(&'static str, &'static str),
    /// An `addresses` entry that does not parse.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`); the plain IPv4 address must be written instead.
    #[error("{0:?}: IPv4-mapped IPv6 addresses are not allowed, write the IPv4 address instead")]
    Ipv4MappedIpv6(String),
    /// A CIDR whose prefix length is not plain decimal, e.g. `/024` or `/+8` (leading zeros and signs are refused).
    #[error("{0:?}: the prefix length must be a plain decimal number")]
    PrefixLengthSyntax(String),
    /// Two address entries share addresses.
    #[error("{entry:?} overlaps {other:?} ({other_field})")]
    Overlap {
        /// The entry of this field, as written.
        entry: String,
        /// The entry it overlaps, as written.
        other: String,
        /// The JSON path of the other entry.
        other_field: String,
    },
    /// An address entry overlaps addresses no pool may hand out (see `pool::RESERVED`).
    #[error("{entry:?} overlaps the reserved addresses {block}")]
    Reserved {
        /// The entry, as written.
        entry: String,
        /// The first reserved block it overlaps.
        block: &'static str,
    },
    /// A field that takes an IP address holds something else.
    #[error("{0:?} is not a valid IP address")]
    InvalidIp(String),
    /// A field that takes an IPv4 address (such as a router ID) holds an IPv6 one.
    #[error("{0:?} is not an IPv4 address")]
    NotIpv4(String),
    /// An address of a different family than `peerAddress`, which one TCP session cannot use.
    #[error(
        "{address:?} is {family} but peerAddress is {peer_family}: both must be of one IP family"
    )]
    FamilyMismatch {
        /// The address, as written.
        address: String,
        /// Its family.
        family: Family,
        /// The family of `peerAddress`.
        peer_family: Family,
    },
    /// A duration that does not parse.
    #[error(transparent)]
    Duration(#[from] DurationError),
    /// A duration outside its bounds.
    #[error("{value} must be {bound}")]
    DurationBound {
        /// The duration, as written.
        value: String,
        /// The bound it breaks, in words (e.g. "0 or at least 3s").
        bound: &'static str,
    },
    /// `keepaliveTime` is longer than `holdTime`, so the session would expire between keepalives.
    #[error("{value} must not be longer than holdTime {hold}")]
    KeepaliveAboveHold {
        /// `keepaliveTime`, as written.
        value: String,
        /// `holdTime`, as written.
        hold: String,
    },
    /// A community that does not parse.
    #[error(transparent)]
    Community(#[from] CommunityError),
    /// Not a Linux interface name.
    #[error(
        "invalid interface name {0:?}: use 1 to 15 printable ASCII characters without '/', ':' or spaces, not '.' or '..'"
    )]
    InterfaceName(String),
    /// Not a DNS subdomain name, as Kubernetes requires of object names.
    #[error(
        "invalid name {0:?}: use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
    )]
    ObjectName(String),
    /// Not a DNS label, as Kubernetes requires of namespace names.
    #[error(
        "invalid namespace name {0:?}: use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
    )]
    NamespaceName(String),
    /// Not a Kubernetes label key.
    #[error(
        "invalid label key {0:?}: an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    )]
    LabelKey(String),
    /// Not a Kubernetes label value.
    #[error(
        "invalid label value {0:?}: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
    )]
    LabelValue(String),
    /// A label selector operator other than In, NotIn, Exists and DoesNotExist.
    #[error("invalid operator {0:?}: use In, NotIn, Exists or DoesNotExist")]
    SelectorOperator(String),
    /// A selector expression whose `values` disagree with its operator.
    #[error("values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist")]
    SelectorValues,
    /// An advertisement with `serviceSelectors` sets `aggregationLength` or `aggregationLengthV6` to other than the default (32 and 128): an aggregate route cannot belong to selected Services only.
    #[error(
        "must stay at the default (aggregationLength 32, aggregationLengthV6 128) when serviceSelectors is set"
    )]
    AggregationWithServiceSelectors,
}

/// Joins errors into one line for an Event or a condition message.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Accumulates errors so that one pass reports all of them, not only the first.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<FieldError>);

impl Errors {
    pub(crate) fn push(&mut self, field: impl Into<String>, problem: Problem) {
        self.0.push(FieldError::new(field, problem));
    }

    /// Records the error of `result`, if any, against `field`.
    pub(crate) fn check<T>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, Problem>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problem) => {
                self.push(field, problem);
                None
            }
        }
    }

    pub(crate) fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// `field[index]`, the way the API server names list items.
pub(crate) fn item(field: &str, index: usize) -> String {
    format!("{field}[{index}]")
}

/// Item bounds shared by the schema (`maxItems`) and the Rust check, so the two agree.
pub(crate) fn check_len<T>(errors: &mut Errors, field: &str, items: &[T], max: usize) {
    if items.len() > max {
        errors.push(
            field,
            Problem::TooMany {
                len: items.len(),
                max,
            },
        );
    }
}

/// Rejects a repeated value in a list the schema declares as a set.
pub(crate) fn check_unique(errors: &mut Errors, field: &str, items: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for (i, value) in items.iter().enumerate() {
        if !seen.insert(value) {
            errors.push(item(field, i), Problem::Duplicate(value.clone()));
        }
    }
}

/// A list of names of other objects: bounded, unique, each a DNS-1123 subdomain.
pub(crate) fn check_object_names(errors: &mut Errors, field: &str, names: &[String], max: usize) {
    check_len(errors, field, names, max);
    check_unique(errors, field, names);
    for (i, name) in names.iter().enumerate() {
        errors.check(item(field, i), check_object_name(name));
    }
}

/// A list of interface names: bounded, unique, each a valid Linux interface name.
pub(crate) fn check_interface_names(
    errors: &mut Errors,
    field: &str,
    names: &[String],
    max: usize,
) {
    check_len(errors, field, names, max);
    check_unique(errors, field, names);
    for (i, name) in names.iter().enumerate() {
        errors.check(item(field, i), check_interface_name(name));
    }
}

/// An IP address as the API server's CEL `isIP()` accepts it: no zone, no IPv4-mapped IPv6.
pub fn parse_ip(text: &str) -> Result<IpAddr, Problem> {
    let ip: IpAddr = text
        .parse()
        .map_err(|_| Problem::InvalidIp(text.to_string()))?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
            Err(Problem::Ipv4MappedIpv6(text.to_string()))
        }
        _ => Ok(ip),
    }
}

/// An IPv4 address, e.g. a BGP router ID.
pub fn parse_ipv4(text: &str) -> Result<std::net::Ipv4Addr, Problem> {
    match parse_ip(text)? {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err(Problem::NotIpv4(text.to_string())),
    }
}

/// Longest Linux interface name (`IFNAMSIZ` 16 including the terminating NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Pattern for interface names in the CRD schemas: printable ASCII except '/' and ':'.
/// The kernel also forbids whitespace, '.' and '..'; the ASCII restriction is ours and keeps
/// "15 characters" equal to the kernel's "15 bytes".
pub(crate) const INTERFACE_NAME_PATTERN: &str = r"^[!-.0-9;-~]+$";

/// A Linux network interface name, as the kernel's `dev_valid_name()` accepts it, restricted
/// to ASCII.
pub fn check_interface_name(name: &str) -> Result<(), Problem> {
    let valid_char = |b: u8| b.is_ascii_graphic() && b != b'/' && b != b':';
    let valid = !name.is_empty()
        && name.len() <= MAX_INTERFACE_NAME_LEN
        && name.bytes().all(valid_char)
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(Problem::InterfaceName(name.to_string()))
    }
}

/// Longest object name (a DNS-1123 subdomain).
pub const MAX_OBJECT_NAME_LEN: usize = 253;
/// Longest namespace name (a DNS-1123 label).
pub const MAX_NAMESPACE_NAME_LEN: usize = 63;

pub(crate) const DNS1123_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
pub(crate) const DNS1123_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

fn is_dns1123_label(text: &str) -> bool {
    let bytes = text.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => edge_ok(first) && edge_ok(last) && bytes.iter().all(inner_ok),
        _ => false,
    }
}

fn is_dns1123_subdomain(text: &str) -> bool {
    text.len() <= MAX_OBJECT_NAME_LEN && text.split('.').all(is_dns1123_label)
}

/// The name of another object that a list refers to (a pool, a peer).
pub fn check_object_name(name: &str) -> Result<(), Problem> {
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(Problem::ObjectName(name.to_string()))
    }
}

/// A namespace name.
pub fn check_namespace_name(name: &str) -> Result<(), Problem> {
    if name.len() <= MAX_NAMESPACE_NAME_LEN && is_dns1123_label(name) {
        Ok(())
    } else {
        Err(Problem::NamespaceName(name.to_string()))
    }
}

/// Label names, label values and community alias names: up to 63 ASCII letters, digits,
/// '-', '_' and '.', starting and ending with a letter or digit (`allow_empty` for values).
pub(crate) fn is_label_name(text: &str, allow_empty: bool) -> bool {
    let bytes = text.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(inner_ok)
        }
        _ => allow_empty,
    }
}

/// A label key: `[prefix/]name` with a DNS-1123 subdomain prefix.
pub(crate) fn is_label_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns1123_subdomain(prefix) && is_label_name(name, false),
        None => is_label_name(key, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_as_cel_accepts_them() {
        assert!(parse_ip("192.0.2.1").is_ok());
        assert!(parse_ip("2001:db8::1").is_ok());
        assert!(parse_ip("::").is_ok());
        assert_eq!(
            parse_ip("::ffff:192.0.2.1"),
            Err(Problem::Ipv4MappedIpv6("::ffff:192.0.2.1".into()))
        );
        assert_eq!(
            parse_ip("::ffff:c000:201"),
            Err(Problem::Ipv4MappedIpv6("::ffff:c000:201".into()))
        );
        assert!(matches!(
            parse_ip("fe80::1%eth0"),
            Err(Problem::InvalidIp(_))
        ));
        assert!(matches!(parse_ip("192.0.2.01"), Err(Problem::InvalidIp(_))));
        assert!(matches!(parse_ip(""), Err(Problem::InvalidIp(_))));
        assert!(parse_ipv4("192.0.2.1").is_ok());
        assert!(matches!(
            parse_ipv4("2001:db8::1"),
            Err(Problem::NotIpv4(_))
        ));
    }

    #[test]
    fn interface_names() {
        for good in [
            "eth0",
            "enp0s31f6",
            "br-lan",
            "bond0.100",
            "a",
            "veth_1234567890",
        ] {
            assert_eq!(check_interface_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "eth/0",
            "eth:0",
            "eth 0",
            "eth\t0",
            ".",
            "..",
            "sixteen-chars-xx",
            "ethé",
        ] {
            assert!(check_interface_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        assert!(check_object_name("pool-a").is_ok());
        assert!(check_object_name("pool.a-1").is_ok());
        for bad in ["", "Pool", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
            assert!(check_object_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_namespace_name("default").is_ok());
        for bad in ["", "a.b", "A", &"a".repeat(64)] {
            assert!(check_namespace_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for good in ["app", "app.kubernetes.io/name", "A_b-c.d", "x/y"] {
            assert!(is_label_key(good), "{good}");
        }
        for bad in [
            "",
            "/app",
            "app/",
            "-app",
            "a/b/c",
            "UPPER.example/x",
            &"a".repeat(64),
        ] {
            assert!(!is_label_key(bad), "{bad:?}");
        }
        assert!(is_label_name("", true));
        assert!(!is_label_name("", false));
        assert!(!is_label_name("a b", true));
    }

    #[test]
    fn summary_joins_errors() {
        let errors = vec![
            FieldError::new("spec.a", Problem::Required),
            FieldError::new("spec.b[1]", Problem::Duplicate("x".into())),
        ];
        assert_eq!(
            summarize(&errors),
            "spec.a: required value; spec.b[1]: duplicate value \"x\""
        );
    }
}
