//! ARP for IPv4 over Ethernet (RFC 826), as whole Ethernet II frames: that is
//! what an `AF_PACKET`/`SOCK_RAW` socket reads and writes.
//!
//! Frame layout (42 bytes; frames on the wire are padded to 60, and the
//! padding is ignored):
//!
//! ```text
//! 0  destination MAC (6)   6  source MAC (6)     12 ethertype 0x0806 (2)
//! 14 hardware type 1 (2)   16 protocol 0x0800 (2) 18 hlen 6 (1) 19 plen 4 (1)
//! 20 operation (2)         22 sender MAC (6)     28 sender IPv4 (4)
//! 32 target MAC (6)        38 target IPv4 (4)
//! ```

use std::net::Ipv4Addr;

use super::MacAddr;

/// Ethertype of ARP, also the protocol an `AF_PACKET` socket binds to.
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV4: u16 = 0x0800;
const HARDWARE_TYPE_ETHERNET: u16 = 1;
const ETHERNET_HEADER_LEN: usize = 14;
const ARP_IPV4_ETHERNET_LEN: usize = 28;
/// Length of an ARP-over-Ethernet frame without padding.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + ARP_IPV4_ETHERNET_LEN;

/// The ARP operation field (RFC 826).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArpOperation {
    /// Operation 1: who has `target_ip`? (also used for gratuitous ARP).
    Request,
    /// Operation 2: `sender_ip` is at `sender_mac`.
    Reply,
}

impl ArpOperation {
    fn code(self) -> u16 {
        match self {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
        }
    }
}

/// An ARP packet for IPv4 over Ethernet, with the Ethernet addresses it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpFrame {
    /// Destination of the Ethernet frame (broadcast for requests and gratuitous ARP).
    pub ethernet_destination: MacAddr,
    /// Source of the Ethernet frame.
    pub ethernet_source: MacAddr,
    /// Request or reply.
    pub operation: ArpOperation,
    /// Hardware address of the sender (in a reply: the answer).
    pub sender_mac: MacAddr,
    /// IPv4 address of the sender.
    pub sender_ip: Ipv4Addr,
    /// Hardware address of the target; zero in a request.
    pub target_mac: MacAddr,
    /// IPv4 address asked for (request) or answered to (reply).
    pub target_ip: Ipv4Addr,
}

/// Why a frame is not an ARP packet we can handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArpParseError {
    /// Shorter than Ethernet header plus ARP body.
    #[error("frame too short for ARP over Ethernet: {len} bytes, need {FRAME_LEN}")]
    Truncated {
        /// The frame's length in bytes.
        len: usize,
    },
    /// The ethertype is not ARP (0x0806); holds the ethertype.
    #[error("ethertype {0:#06x} is not ARP")]
    NotArp(u16),
    /// The hardware type is not Ethernet (1); holds the type.
    #[error("ARP hardware type {0} is not Ethernet")]
    UnsupportedHardwareType(u16),
    /// The protocol type is not IPv4 (0x0800); holds the type.
    #[error("ARP protocol type {0:#06x} is not IPv4")]
    UnsupportedProtocolType(u16),
    /// Address lengths other than 6 (MAC) and 4 (IPv4).
    #[error("ARP address lengths {hardware}/{protocol}, expected 6/4")]
    UnsupportedAddressLengths {
        /// Hardware address length as received.
        hardware: u8,
        /// Protocol address length as received.
        protocol: u8,
    },
    /// An operation other than request (1) and reply (2); holds the code.
    #[error("ARP operation {0} is neither request (1) nor reply (2)")]
    UnsupportedOperation(u16),
}

impl ArpFrame {
    /// Parses an Ethernet II frame carrying ARP. Trailing bytes (Ethernet
    /// padding) are ignored.
    pub fn parse(frame: &[u8]) -> Result<ArpFrame, ArpParseError> {
        let fixed: &[u8; FRAME_LEN] = frame
            .get(..FRAME_LEN)
            .and_then(|head| head.try_into().ok())
            .ok_or(ArpParseError::Truncated { len: frame.len() })?;
        let field16 = |at: usize| u16::from_be_bytes([fixed[at], fixed[at + 1]]);
        let mac_at = |at: usize| {
            MacAddr([
                fixed[at],
                fixed[at + 1],
                fixed[at + 2],
                fixed[at + 3],
                fixed[at + 4],
                fixed[at + 5],
            ])
        };
        let ip_at =
            |at: usize| Ipv4Addr::new(fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]);

        let ethertype = field16(12);
        if ethertype != ETHERTYPE_ARP {
            return Err(ArpParseError::NotArp(ethertype));
        }
        let hardware_type = field16(14);
        if hardware_type != HARDWARE_TYPE_ETHERNET {
            return Err(ArpParseError::UnsupportedHardwareType(hardware_type));
        }
        let protocol_type = field16(16);
        if protocol_type != ETHERTYPE_IPV4 {
            return Err(ArpParseError::UnsupportedProtocolType(protocol_type));
        }
        let (hardware, protocol) = (fixed[18], fixed[19]);
        if (hardware, protocol) != (6, 4) {
            return Err(ArpParseError::UnsupportedAddressLengths { hardware, protocol });
        }
        let operation = match field16(20) {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => return Err(ArpParseError::UnsupportedOperation(other)),
        };
        Ok(ArpFrame {
            ethernet_destination: mac_at(0),
            ethernet_source: mac_at(6),
            operation,
            sender_mac: mac_at(22),
            sender_ip: ip_at(28),
            target_mac: mac_at(32),
            target_ip: ip_at(38),
        })
    }

    /// Serialises the frame without padding (the kernel pads short frames).
    pub fn to_bytes(&self) -> [u8; FRAME_LEN] {
        let mut out = [0u8; FRAME_LEN];
        out[0..6].copy_from_slice(&self.ethernet_destination.octets());
        out[6..12].copy_from_slice(&self.ethernet_source.octets());
        out[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        out[14..16].copy_from_slice(&HARDWARE_TYPE_ETHERNET.to_be_bytes());
        out[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        out[18] = 6;
        out[19] = 4;
        out[20..22].copy_from_slice(&self.operation.code().to_be_bytes());
        out[22..28].copy_from_slice(&self.sender_mac.octets());
        out[28..32].copy_from_slice(&self.sender_ip.octets());
        out[32..38].copy_from_slice(&self.target_mac.octets());
        out[38..42].copy_from_slice(&self.target_ip.octets());
        out
    }

    /// The reply to `request` saying that `request.target_ip` is at `our_mac`.
    /// It goes back unicast to the requester's hardware address.
    pub fn reply_to(request: &ArpFrame, our_mac: MacAddr) -> ArpFrame {
        ArpFrame {
            ethernet_destination: request.sender_mac,
            ethernet_source: our_mac,
            operation: ArpOperation::Reply,
            sender_mac: our_mac,
            sender_ip: request.target_ip,
            target_mac: request.sender_mac,
            target_ip: request.sender_ip,
        }
    }

    /// A gratuitous ARP in the style of an RFC 5227 ARP Announcement: a
    /// broadcast request whose sender and target IP are both `ip`, with an
    /// all-zero target MAC. Every host on the link that has `ip` in its cache
    /// updates it to `our_mac`; nobody replies.
    pub fn gratuitous(ip: Ipv4Addr, our_mac: MacAddr) -> ArpFrame {
        ArpFrame {
            ethernet_destination: MacAddr::BROADCAST,
            ethernet_source: our_mac,
            operation: ArpOperation::Request,
            sender_mac: our_mac,
            sender_ip: ip,
            target_mac: MacAddr::ZERO,
            target_ip: ip,
        }
    }

    /// A request whose sender and target IP agree is an announcement by the
    /// sender, not a question.
    pub fn is_announcement(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REQUESTER: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
    const OURS: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);

    /// A "who-has 198.51.100.77 tell 198.51.100.2" request as captured on a
    /// wire, including the 18 bytes of Ethernet padding.
    fn captured_request() -> Vec<u8> {
        let mut bytes = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // requester
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 198, 51, 100, 2, // sender
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 198, 51, 100, 77, // target
        ];
        bytes.extend([0u8; 18]);
        bytes
    }

    #[test]
    fn parses_a_captured_request_ignoring_padding() {
        let frame = ArpFrame::parse(&captured_request()).unwrap();
        assert_eq!(
            frame,
            ArpFrame {
                ethernet_destination: MacAddr::BROADCAST,
                ethernet_source: REQUESTER,
                operation: ArpOperation::Request,
                sender_mac: REQUESTER,
                sender_ip: Ipv4Addr::new(198, 51, 100, 2),
                target_mac: MacAddr::ZERO,
                target_ip: Ipv4Addr::new(198, 51, 100, 77),
            }
        );
        assert!(!frame.is_announcement());
    }

    #[test]
    fn serialising_gives_back_the_captured_bytes() {
        let bytes = captured_request();
        let frame = ArpFrame::parse(&bytes).unwrap();
        assert_eq!(frame.to_bytes().as_slice(), &bytes[..FRAME_LEN]);
    }

    #[test]
    fn reply_is_unicast_from_us_and_swaps_the_addresses() {
        let request = ArpFrame::parse(&captured_request()).unwrap();
        let reply = ArpFrame::reply_to(&request, OURS);
        let expected: [u8; FRAME_LEN] = [
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // to the requester
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, // from us
            0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // reply
            0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 198, 51, 100, 77, // we are .77
            0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 198, 51, 100, 2, // to .2
        ];
        assert_eq!(reply.to_bytes(), expected);
        assert_eq!(ArpFrame::parse(&expected).unwrap(), reply);
    }

    #[test]
    fn gratuitous_is_a_broadcast_announcement() {
        let ip = Ipv4Addr::new(198, 51, 100, 77);
        let bytes = ArpFrame::gratuitous(ip, OURS).to_bytes();
        assert_eq!(&bytes[0..6], &[0xff; 6]);
        assert_eq!(
            &bytes[20..22],
            &[0, 1],
            "RFC 5227 announcements are requests"
        );
        assert_eq!(&bytes[28..32], &ip.octets());
        assert_eq!(&bytes[32..38], &[0; 6]);
        assert_eq!(&bytes[38..42], &ip.octets());
        let parsed = ArpFrame::parse(&bytes).unwrap();
        assert!(parsed.is_announcement());
        assert_eq!(parsed.sender_mac, OURS);
    }

    #[test]
    fn rejects_each_kind_of_unsupported_input_by_name() {
        let good = captured_request();
        let patched = |at: usize, value: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + value.len()].copy_from_slice(value);
            ArpFrame::parse(&bytes)
        };
        assert_eq!(
            ArpFrame::parse(&good[..41]),
            Err(ArpParseError::Truncated { len: 41 })
        );
        assert_eq!(
            ArpFrame::parse(&[]),
            Err(ArpParseError::Truncated { len: 0 })
        );
        assert_eq!(
            patched(12, &[0x86, 0xdd]),
            Err(ArpParseError::NotArp(0x86dd))
        );
        assert_eq!(
            patched(14, &[0x00, 0x06]),
            Err(ArpParseError::UnsupportedHardwareType(6))
        );
        assert_eq!(
            patched(16, &[0x86, 0xdd]),
            Err(ArpParseError::UnsupportedProtocolType(0x86dd))
        );
        assert_eq!(
            patched(18, &[6, 16]),
            Err(ArpParseError::UnsupportedAddressLengths {
                hardware: 6,
                protocol: 16
            })
        );
        assert_eq!(
            patched(20, &[0x00, 0x03]),
            Err(ArpParseError::UnsupportedOperation(3))
        );
    }

    fn any_mac() -> impl Strategy<Value = MacAddr> {
        any::<[u8; 6]>().prop_map(MacAddr)
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = ArpFrame::parse(&bytes);
        }

        #[test]
        fn every_frame_round_trips(
            destination in any_mac(), source in any_mac(), is_request in any::<bool>(),
            sender_mac in any_mac(), sender_ip in any::<[u8; 4]>(),
            target_mac in any_mac(), target_ip in any::<[u8; 4]>(),
        ) {
            let frame = ArpFrame {
                ethernet_destination: destination,
                ethernet_source: source,
                operation: if is_request { ArpOperation::Request } else { ArpOperation::Reply },
                sender_mac,
                sender_ip: sender_ip.into(),
                target_mac,
                target_ip: target_ip.into(),
            };
            prop_assert_eq!(ArpFrame::parse(&frame.to_bytes()), Ok(frame));
        }
    }
}
