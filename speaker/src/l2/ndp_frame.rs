//! Neighbor Discovery messages as a packet socket receives them: whole
//! Ethernet frames carrying IPv6 and ICMPv6, and the classic BPF program
//! that lets only Neighbor Solicitations and Advertisements through.
//!
//! Why frames and not a raw ICMPv6 socket: the kernel hands a raw socket only
//! the packets its IPv6 stack accepts, and a Service IP is not an address of
//! any interface. A solicitation sent to the IP itself (a reachability probe,
//! RFC 4861 §7.3.1: unicast, to the MAC the solicitor has cached) is dropped
//! before any socket sees it. A packet socket sees every frame the NIC
//! accepts, so the checks the IPv6 stack made for us are made here instead:
//! the ICMPv6 checksum, the hop limit (by [`super::plan`] and [`super::claim`]), and that a
//! solicitation was sent where RFC 4861 says it goes.

use std::net::Ipv6Addr;

use super::MacAddr;
use super::ndp::{
    ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION, NdpParseError,
    NeighborSolicitation, solicited_node_multicast,
};

/// The EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// Destination MAC, source MAC, EtherType.
pub const ETHERNET_HEADER_LEN: usize = 14;
/// The fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// The IPv6 next-header value of ICMPv6.
pub const NEXT_HEADER_ICMPV6: u8 = 58;
/// Where the ICMPv6 message starts in a frame without extension headers.
pub const ICMPV6_OFFSET: usize = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;

/// An ICMPv6 message received in an Ethernet frame, with the header fields
/// that Neighbor Discovery's validation needs. The checksum has been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Frame<'a> {
    /// The frame's destination MAC.
    pub ethernet_destination: MacAddr,
    /// The frame's source MAC.
    pub ethernet_source: MacAddr,
    /// The IPv6 source address.
    pub source: Ipv6Addr,
    /// The IPv6 destination address.
    pub destination: Ipv6Addr,
    /// The IPv6 hop limit (255 for any valid Neighbor Discovery message).
    pub hop_limit: u8,
    /// The ICMPv6 message, cut to the IPv6 payload length (Ethernet padding dropped).
    pub message: &'a [u8],
}

/// Why a frame is not an ICMPv6 message we may act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than the Ethernet and IPv6 headers.
    #[error("frame of {len} bytes is shorter than the Ethernet and IPv6 headers (54)")]
    Truncated {
        /// The frame's length in bytes.
        len: usize,
    },
    /// Another EtherType; holds it.
    #[error("EtherType {0:#06x} is not IPv6")]
    NotIpv6(u16),
    /// The IP version field is not 6; holds it.
    #[error("IP version {0} in an IPv6 frame")]
    BadVersion(u8),
    /// The IPv6 next header is not ICMPv6 (extension headers included,
    /// which Neighbor Discovery messages never need); holds it.
    #[error("IPv6 next header {0} is not ICMPv6 (58)")]
    NotIcmpv6(u8),
    /// The IPv6 payload length runs past the end of the frame.
    #[error("IPv6 payload of {payload_len} bytes, but only {available} follow the header")]
    PayloadTruncated {
        /// The payload length the IPv6 header states.
        payload_len: usize,
        /// The bytes that follow the IPv6 header in the frame.
        available: usize,
    },
    /// The ICMPv6 checksum does not match the pseudo-header and message.
    #[error("ICMPv6 checksum {found:#06x} is wrong (expected {expected:#06x})")]
    BadChecksum {
        /// The checksum in the message.
        found: u16,
        /// The checksum the message should carry.
        expected: u16,
    },
    /// The ICMPv6 message is not a valid Neighbor Solicitation.
    #[error(transparent)]
    Solicitation(#[from] NdpParseError),
    /// A solicitation sent neither to its target's solicited-node group nor
    /// to the target itself (RFC 4861 §7.2.2), or a DAD probe (from `::`)
    /// sent to a unicast address (§7.1.1).
    #[error("Neighbor Solicitation for {target} sent to {destination}")]
    UnexpectedDestination {
        /// The solicitation's target.
        target: Ipv6Addr,
        /// The IPv6 destination it was sent to.
        destination: Ipv6Addr,
    },
}

impl<'a> Icmpv6Frame<'a> {
    /// Parses an Ethernet frame carrying an ICMPv6 message directly after
    /// the IPv6 header, and verifies the ICMPv6 checksum.
    pub fn parse(frame: &'a [u8]) -> Result<Icmpv6Frame<'a>, FrameError> {
        let headers: &[u8; ICMPV6_OFFSET] = frame
            .get(..ICMPV6_OFFSET)
            .and_then(|head| head.try_into().ok())
            .ok_or(FrameError::Truncated { len: frame.len() })?;
        let ethertype = u16::from_be_bytes([headers[12], headers[13]]);
        if ethertype != ETHERTYPE_IPV6 {
            return Err(FrameError::NotIpv6(ethertype));
        }
        let ip = &headers[ETHERNET_HEADER_LEN..];
        let version = ip[0] >> 4;
        if version != 6 {
            return Err(FrameError::BadVersion(version));
        }
        let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
        let (next_header, hop_limit) = (ip[6], ip[7]);
        if next_header != NEXT_HEADER_ICMPV6 {
            return Err(FrameError::NotIcmpv6(next_header));
        }
        let address = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&ip[at..at + 16]);
            Ipv6Addr::from(octets)
        };
        let (source, destination) = (address(8), address(24));
        let available = frame.len() - ICMPV6_OFFSET;
        let message = frame
            .get(ICMPV6_OFFSET..ICMPV6_OFFSET + payload_len)
            .ok_or(FrameError::PayloadTruncated {
                payload_len,
                available,
            })?;
        let found = match message.get(2..4) {
            Some(&[high, low]) => u16::from_be_bytes([high, low]),
            _ => 0,
        };
        if checksum_sum(source, destination, message) != 0xffff {
            let expected = icmpv6_checksum(source, destination, message);
            return Err(FrameError::BadChecksum { found, expected });
        }
        let mac = |at: usize| {
            let mut octets = [0u8; 6];
            octets.copy_from_slice(&headers[at..at + 6]);
            MacAddr(octets)
        };
        Ok(Icmpv6Frame {
            ethernet_destination: mac(0),
            ethernet_source: mac(6),
            source,
            destination,
            hop_limit,
            message,
        })
    }

    /// Whether the message is a Neighbor Advertisement (which the arbiter reads).
    pub fn is_advertisement(&self) -> bool {
        self.message.first() == Some(&ICMPV6_NEIGHBOR_ADVERTISEMENT)
    }

    /// The message as a Neighbor Solicitation, validated by
    /// [`NeighborSolicitation::parse`] and, with the IPv6 header at hand,
    /// for where it was sent: to the target's solicited-node group, or (a
    /// reachability probe) to the target itself; a DAD probe only to the group.
    pub fn solicitation(&self) -> Result<NeighborSolicitation, FrameError> {
        let solicitation = NeighborSolicitation::parse(self.message, self.source)?;
        let target = solicitation.target;
        let to_group = self.destination == solicited_node_multicast(target);
        let to_target = self.destination == target && !self.source.is_unspecified();
        if !(to_group || to_target) {
            return Err(FrameError::UnexpectedDestination {
                target,
                destination: self.destination,
            });
        }
        Ok(solicitation)
    }
}

/// The ones' complement sum (RFC 1071), not yet complemented, of the IPv6
/// pseudo-header (RFC 8200 §8.1) and `message`. A message whose checksum
/// field is right sums to 0xffff.
fn checksum_sum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let high = pair.first().copied().unwrap_or(0);
            let low = pair.get(1).copied().unwrap_or(0);
            sum += u64::from(u16::from_be_bytes([high, low]));
        }
    };
    add(&source.octets());
    add(&destination.octets());
    // A payload length fits in 16 bits, so the 32-bit length's high half is zero.
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, NEXT_HEADER_ICMPV6]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum `message` (an ICMPv6 message from `source` to
/// `destination`) must carry: computed with its own checksum field taken as zero.
pub fn icmpv6_checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut zeroed = message.to_vec();
    if let Some(field) = zeroed.get_mut(2..4) {
        field.fill(0);
    }
    !checksum_sum(source, destination, &zeroed)
}

/// One classic BPF instruction, as `struct sock_filter` lays it out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInstruction {
    /// Operation.
    pub code: u16,
    /// Jump offset if the condition holds.
    pub jt: u8,
    /// Jump offset if it does not.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

const fn op(code: u16, jt: u8, jf: u8, k: u32) -> BpfInstruction {
    BpfInstruction { code, jt, jf, k }
}

/// The filter for the packet socket: IPv6 frames whose next header is
/// ICMPv6 and whose ICMPv6 type is a Neighbor Solicitation or
/// Advertisement pass whole; everything else is dropped in the kernel (a
/// load past the end of a short frame drops it too). Jump offsets count
/// from the next instruction.
pub const NEIGHBOR_DISCOVERY_FILTER: [BpfInstruction; 9] = [
    op(BPF_LD_H_ABS, 0, 0, 12),                               // 0: EtherType
    op(BPF_JMP_JEQ_K, 0, 6, ETHERTYPE_IPV6 as u32),           // 1: else drop
    op(BPF_LD_B_ABS, 0, 0, (ETHERNET_HEADER_LEN + 6) as u32), // 2: next header
    op(BPF_JMP_JEQ_K, 0, 4, NEXT_HEADER_ICMPV6 as u32),       // 3: else drop
    op(BPF_LD_B_ABS, 0, 0, ICMPV6_OFFSET as u32),             // 4: ICMPv6 type
    op(BPF_JMP_JEQ_K, 1, 0, ICMPV6_NEIGHBOR_SOLICITATION as u32), // 5: accept
    op(BPF_JMP_JEQ_K, 0, 1, ICMPV6_NEIGHBOR_ADVERTISEMENT as u32), // 6: accept, else drop
    op(BPF_RET_K, 0, 0, u32::MAX),                            // 7: accept, whole frame
    op(BPF_RET_K, 0, 0, 0),                                   // 8: drop
];

#[cfg(test)]
#[path = "ndp_frame_tests.rs"]
mod tests;
