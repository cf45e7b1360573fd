//! Parsing of the `addresses` entries of an IPAddressPool: a CIDR
//! (`192.0.2.0/24`, `2001:db8::/64`) or an inclusive range
//! (`192.0.2.10-192.0.2.20`).
//!
//! This is shared by CRD validation (so the messages match what admission says)
//! and by the controller's allocator, which works on [`IpRange`]s.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// The address family of an IP or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4: 32-bit addresses.
    V4,
    /// IPv6: 128-bit addresses.
    V6,
}

impl Family {
    /// The family `ip` belongs to.
    pub fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// The name Kubernetes uses in `spec.ipFamilies`.
    pub fn k8s_name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.k8s_name())
    }
}

/// An inclusive range of addresses of one family, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    start: IpAddr,
    end: IpAddr,
}

/// Why an `addresses` entry was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The entry has no `/` and no `-`, so it is neither form.
    #[error("{0:?} is neither a CIDR (192.0.2.0/24) nor a range (192.0.2.10-192.0.2.20)")]
    Syntax(String),
    /// The entry has a `/` but does not parse as a CIDR; holds the entry and the parser's reason.
    #[error("{0:?} is not a valid CIDR: {1}")]
    Cidr(String, String),
    /// One end of a range is not an IP address; holds that end as written.
    #[error("{0:?} is not a valid IP address")]
    Ip(String),
    /// A range whose start and end are of different families.
    #[error("range {0:?} mixes IPv4 and IPv6")]
    MixedFamilies(String),
    /// A range whose start is greater than its end.
    #[error("range {0:?} starts after it ends")]
    StartAfterEnd(String),
}

impl IpRange {
    /// A range from `start` to `end` inclusive; `None` when the families differ
    /// or `start > end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Option<IpRange> {
        (Family::of(&start) == Family::of(&end) && start <= end).then_some(IpRange { start, end })
    }

    /// The single-address range `ip-ip`.
    pub fn single(ip: IpAddr) -> IpRange {
        IpRange { start: ip, end: ip }
    }

    /// The first address of the range, included.
    pub fn start(&self) -> IpAddr {
        self.start
    }

    /// The last address of the range, included (equal to `start` for a single address).
    pub fn end(&self) -> IpAddr {
        self.end
    }

    /// The family of both ends.
    pub fn family(&self) -> Family {
        Family::of(&self.start)
    }

    /// Whether `ip` lies between `start` and `end`, both included. An address of the other family is never contained.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.start <= *ip && *ip <= self.end
    }

    /// Number of addresses, saturating at `u128::MAX` (only `::/0` saturates).
    pub fn len(&self) -> u128 {
        (to_u128(&self.end) - to_u128(&self.start)).saturating_add(1)
    }

    /// Always `false`: a range holds at least its start address. Exists to pair with [`IpRange::len`].
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parses one `addresses` entry.
    pub fn parse(entry: &str) -> Result<IpRange, AddressError> {
        let entry_trimmed = entry.trim();
        if let Some((first, last)) = entry_trimmed.split_once('-') {
            let start: IpAddr = first
                .trim()
                .parse()
                .map_err(|_| AddressError::Ip(first.trim().to_string()))?;
            let end: IpAddr = last
                .trim()
                .parse()
                .map_err(|_| AddressError::Ip(last.trim().to_string()))?;
            if Family::of(&start) != Family::of(&end) {
                return Err(AddressError::MixedFamilies(entry.to_string()));
            }
            return IpRange::new(start, end)
                .ok_or_else(|| AddressError::StartAfterEnd(entry.to_string()));
        }
        if entry_trimmed.contains('/') {
            let net: IpNet = entry_trimmed.parse().map_err(|e: ipnet::AddrParseError| {
                AddressError::Cidr(entry.to_string(), e.to_string())
            })?;
            return Ok(IpRange {
                start: net.network(),
                end: net.broadcast(),
            });
        }
        Err(AddressError::Syntax(entry.to_string()))
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// The address as an integer, so that ranges can be measured and compared.
pub fn to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

/// The IPv6 subnet-router anycast address of a CIDR entry (RFC 4291 §2.6.1): its prefix
/// with an all-zeros interface ID, which routers of the subnet answer to. `None` for IPv4,
/// for ranges (`a-b` names its addresses one by one), and for `/127` and `/128` (RFC 6164:
/// a /127 has no subnet-router anycast address; a /128 is one host).
pub fn subnet_router_anycast(entry: &str) -> Option<IpAddr> {
    match entry.trim().parse::<IpNet>().ok()? {
        IpNet::V6(net) if net.prefix_len() <= 126 => Some(IpAddr::V6(net.network())),
        _ => None,
    }
}

/// The inverse of [`to_u128`] for the given family; `None` when out of range.
pub fn from_u128(family: Family, value: u128) -> Option<IpAddr> {
    match family {
        Family::V4 => u32::try_from(value).ok().map(|v| IpAddr::V4(v.into())),
        Family::V6 => Some(IpAddr::V6(value.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cidrs_and_ranges() {
        let r = IpRange::parse("192.0.2.0/30").unwrap();
        assert_eq!(r.to_string(), "192.0.2.0-192.0.2.3");
        assert_eq!(r.len(), 4);
        let r = IpRange::parse("198.51.100.10 - 198.51.100.20").unwrap();
        assert_eq!(r.len(), 11);
        let r = IpRange::parse("2001:db8::/64").unwrap();
        assert_eq!(r.len(), 1u128 << 64);
        assert_eq!(IpRange::parse("::/0").unwrap().len(), u128::MAX);
    }

    #[test]
    fn subnet_router_anycast_of_ipv6_cidrs_only() {
        let anycast = |entry: &str| subnet_router_anycast(entry).map(|ip| ip.to_string());
        assert_eq!(
            anycast("2001:db8:100::/64").as_deref(),
            Some("2001:db8:100::")
        );
        assert_eq!(anycast(" 2001:db8::/126 ").as_deref(), Some("2001:db8::"));
        assert_eq!(anycast("2001:db8::/127"), None);
        assert_eq!(anycast("2001:db8::/128"), None);
        assert_eq!(anycast("2001:db8::-2001:db8::ff"), None);
        assert_eq!(anycast("192.0.2.0/24"), None);
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(matches!(
            IpRange::parse("192.0.2.0"),
            Err(AddressError::Syntax(_))
        ));
        assert!(matches!(
            IpRange::parse("192.0.2.0/33"),
            Err(AddressError::Cidr(..))
        ));
        assert!(matches!(
            IpRange::parse("192.0.2.9-192.0.2.1"),
            Err(AddressError::StartAfterEnd(_))
        ));
        assert!(matches!(
            IpRange::parse("192.0.2.1-2001:db8::1"),
            Err(AddressError::MixedFamilies(_))
        ));
        assert!(matches!(
            IpRange::parse("garbage-192.0.2.1"),
            Err(AddressError::Ip(_))
        ));
    }
}
