//! Ethernet MAC addresses.

use std::fmt;

/// A 48-bit Ethernet hardware address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// ff:ff:ff:ff:ff:ff, the destination of ARP requests and announcements.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// 00:00:00:00:00:00, the "unknown" target hardware address in ARP requests.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Reads a MAC from the first six bytes of `bytes`, if there are six.
    pub fn from_slice(bytes: &[u8]) -> Option<MacAddr> {
        let six: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(six))
    }

    /// The six bytes, in wire order.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Multicast (and broadcast) addresses have the group bit set; they can
    /// never be the hardware address of an interface.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this is 00:00:00:00:00:00, which is never a usable interface address.
    pub fn is_zero(self) -> bool {
        self == MacAddr::ZERO
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_lowercase_colon_separated() {
        let mac = MacAddr([0x02, 0xab, 0x00, 0x10, 0xfe, 0x7f]);
        assert_eq!(mac.to_string(), "02:ab:00:10:fe:7f");
    }

    #[test]
    fn from_slice_needs_six_bytes() {
        assert_eq!(MacAddr::from_slice(&[1, 2, 3, 4, 5]), None);
        assert_eq!(
            MacAddr::from_slice(&[1, 2, 3, 4, 5, 6, 7]),
            Some(MacAddr([1, 2, 3, 4, 5, 6]))
        );
    }

    #[test]
    fn broadcast_is_multicast_and_unicast_is_not() {
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr([0x02, 0, 0, 0, 0, 1]).is_multicast());
    }
}
