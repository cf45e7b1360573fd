//! The wire side of [`super::arbiter`]: probes, the rank tag that speakers
//! put on their claims, and reading other hosts' claims from received packets.
//!
//! The tag says "this claim comes from a FerroLB speaker whose election rank
//! for this IP is R", so the two sides of a conflict compare the same ranks
//! without a MAC-to-node table (which a node cut off from gossip would not
//! have). It rides where other hosts ignore it:
//!
//! - ARP: in the Ethernet padding. An ARP frame is 42 bytes and Ethernet
//!   pads it to 60 anyway; we fill those 18 bytes with `"FL"` and 16 bytes
//!   of rank instead of zeros. ARP parsers read the fixed fields only.
//! - NDP: in a Neighbor Discovery option of type 253, reserved for
//!   experiments (RFC 4727), which receivers must skip (RFC 4861 §4.6):
//!   type, length 3 (24 bytes), `"FL"`, 16 bytes of rank, 4 zero bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::MacAddr;
use super::arbiter::{Claim, RANK_LEN, Rank};
use super::arp::{ArpFrame, ArpOperation, FRAME_LEN};
use super::ndp::{
    FIXED_LEN, ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION, NdOption,
    OPTION_SOURCE_LINK_LAYER_ADDRESS, OPTION_TARGET_LINK_LAYER_ADDRESS, Options,
    REQUIRED_HOP_LIMIT,
};
use super::ndp_frame::Icmpv6Frame;
use super::plan::IgnoreReason;

const MAGIC: [u8; 2] = *b"FL";
/// ND option type 253: "RFC3692-style Experiment 1" (RFC 4727).
const OPTION_RANK: u8 = 253;
/// An ARP frame with its tag: the 60 bytes of a minimal Ethernet frame.
pub const TAGGED_ARP_LEN: usize = FRAME_LEN + MAGIC.len() + RANK_LEN;
/// The rank option's length in bytes (3 units of 8).
pub const RANK_OPTION_LEN: usize = 24;

/// `frame` as bytes, with `rank` in its padding when there is one.
pub fn tagged_arp(frame: &ArpFrame, rank: Option<Rank>) -> Vec<u8> {
    let mut bytes = frame.to_bytes().to_vec();
    if let Some(Rank(rank)) = rank {
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&rank);
    }
    bytes
}

/// The rank in a received ARP frame's padding, if a speaker put one there.
pub fn arp_rank(frame: &[u8]) -> Option<Rank> {
    let tag = frame.get(FRAME_LEN..TAGGED_ARP_LEN)?;
    let (magic, rank) = tag.split_at(MAGIC.len());
    if magic != MAGIC {
        return None;
    }
    rank.try_into().ok().map(Rank)
}

/// An RFC 5227 ARP Probe for `ip`: a broadcast request from sender IP
/// 0.0.0.0, so no neighbour caches our MAC for it; an owner answers it.
pub fn arp_probe(ip: Ipv4Addr, our_mac: MacAddr) -> ArpFrame {
    ArpFrame {
        ethernet_destination: MacAddr::BROADCAST,
        ethernet_source: our_mac,
        operation: ArpOperation::Request,
        sender_mac: our_mac,
        sender_ip: Ipv4Addr::UNSPECIFIED,
        target_mac: MacAddr::ZERO,
        target_ip: ip,
    }
}

/// Whom an ARP frame says holds which IP: any ARP packet whose sender IP is
/// set claims that IP for its sender MAC (RFC 5227 §2.1.1), be it a reply, an
/// announcement or a request.
pub fn arp_claim(frame: &ArpFrame, bytes: &[u8]) -> Option<(IpAddr, Claim)> {
    if frame.sender_ip.is_unspecified() {
        return None;
    }
    Some((
        IpAddr::V4(frame.sender_ip),
        Claim {
            mac: frame.sender_mac,
            rank: arp_rank(bytes),
        },
    ))
}

/// The claim a received ARP frame makes for the arbiter, unless we sent it
/// ourselves (`our_mac` as its sender or its Ethernet source).
pub fn foreign_arp_claim(
    frame: &ArpFrame,
    bytes: &[u8],
    our_mac: MacAddr,
) -> Option<(IpAddr, Claim)> {
    if frame.sender_mac == our_mac || frame.ethernet_source == our_mac {
        return None;
    }
    arp_claim(frame, bytes)
}

/// The rank option for a Neighbor Advertisement.
pub fn rank_option(Rank(rank): Rank) -> [u8; RANK_OPTION_LEN] {
    let mut option = [0u8; RANK_OPTION_LEN];
    option[0] = OPTION_RANK;
    option[1] = (RANK_OPTION_LEN / 8) as u8;
    option[2..4].copy_from_slice(&MAGIC);
    option[4..4 + RANK_LEN].copy_from_slice(&rank);
    option
}

/// `advertisement` (an ICMPv6 message) with the rank option appended.
pub fn tagged_advertisement(advertisement: &[u8], rank: Option<Rank>) -> Vec<u8> {
    let mut bytes = advertisement.to_vec();
    if let Some(rank) = rank {
        bytes.extend_from_slice(&rank_option(rank));
    }
    bytes
}

/// A Neighbor Solicitation for `target` from us, with our link-layer
/// address, to send to its solicited-node group: the owner, if any, answers
/// it with an advertisement to our link-local address.
pub fn neighbor_probe(target: Ipv6Addr, our_mac: MacAddr) -> [u8; FIXED_LEN + 8] {
    let mut out = [0u8; FIXED_LEN + 8];
    out[0] = ICMPV6_NEIGHBOR_SOLICITATION;
    out[8..24].copy_from_slice(&target.octets());
    out[24] = OPTION_SOURCE_LINK_LAYER_ADDRESS;
    out[25] = 1;
    out[26..32].copy_from_slice(&our_mac.octets());
    out
}

/// Whom a received Neighbor Advertisement says holds which IP. Needs the
/// target link-layer address option (without it the sender's MAC is
/// unknown, and the advertisement is not one a neighbour cache acts on
/// when it comes unsolicited).
pub fn advertisement_claim(message: &[u8]) -> Option<(IpAddr, Claim)> {
    let fixed = message.get(..FIXED_LEN)?;
    if fixed.first() != Some(&ICMPV6_NEIGHBOR_ADVERTISEMENT) || fixed.get(1) != Some(&0) {
        return None;
    }
    let target: [u8; 16] = fixed.get(8..24)?.try_into().ok()?;
    let mut mac = None;
    let mut rank = None;
    for option in Options::new(message, FIXED_LEN) {
        let NdOption { kind, body } = option.ok()?;
        match kind {
            OPTION_TARGET_LINK_LAYER_ADDRESS if body.len() == 6 => {
                mac = MacAddr::from_slice(body);
            }
            OPTION_RANK => {
                rank = body
                    .strip_prefix(&MAGIC)
                    .and_then(|rest| rest.get(..RANK_LEN))
                    .and_then(|bytes| bytes.try_into().ok())
                    .map(Rank);
            }
            _ => {}
        }
    }
    Some((
        IpAddr::V6(Ipv6Addr::from(target)),
        Claim { mac: mac?, rank },
    ))
}

/// The claim a received Neighbor Advertisement frame makes for the arbiter:
/// none when it claims nothing or claims for `our_mac`; ignored with
/// [`IgnoreReason::BadHopLimit`] when it did not come with hop limit 255
/// (RFC 4861 §7.1.2: it was routed, not sent on the link).
pub fn foreign_advertisement_claim(
    frame: &Icmpv6Frame<'_>,
    our_mac: MacAddr,
) -> Result<Option<(IpAddr, Claim)>, IgnoreReason> {
    if frame.hop_limit != REQUIRED_HOP_LIMIT {
        return Err(IgnoreReason::BadHopLimit);
    }
    Ok(advertisement_claim(frame.message).filter(|(_, claim)| claim.mac != our_mac))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::l2::ndp::NeighborAdvertisement;

    const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const THEIRS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    fn rank() -> Rank {
        Rank::of("node-a", "203.0.113.7".parse().unwrap())
    }

    #[test]
    fn tagged_arp_is_a_minimal_ethernet_frame_and_parses_as_before() {
        let frame = ArpFrame::gratuitous("203.0.113.7".parse().unwrap(), THEIRS);
        let bytes = tagged_arp(&frame, Some(rank()));
        assert_eq!(bytes.len(), 60);
        assert_eq!(ArpFrame::parse(&bytes).unwrap(), frame);
        let (ip, claim) = arp_claim(&frame, &bytes).unwrap();
        assert_eq!(ip, "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(
            claim,
            Claim {
                mac: THEIRS,
                rank: Some(rank())
            }
        );
    }

    #[test]
    fn zero_padding_carries_no_rank() {
        let frame = ArpFrame::gratuitous("203.0.113.7".parse().unwrap(), THEIRS);
        let mut bytes = tagged_arp(&frame, None);
        assert_eq!(arp_rank(&bytes), None);
        bytes.resize(60, 0);
        assert_eq!(arp_rank(&bytes), None);
    }

    #[test]
    fn our_own_arp_frames_claim_nothing() {
        let theirs = ArpFrame::gratuitous("203.0.113.7".parse().unwrap(), THEIRS);
        let bytes = theirs.to_bytes();
        assert!(foreign_arp_claim(&theirs, &bytes, OURS).is_some());
        assert_eq!(foreign_arp_claim(&theirs, &bytes, THEIRS), None);
        let mut relayed = theirs;
        relayed.ethernet_source = OURS;
        assert_eq!(foreign_arp_claim(&relayed, &bytes, OURS), None);
    }

    #[test]
    fn an_advertisement_needs_hop_limit_255_and_another_mac() {
        let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let message = NeighborAdvertisement::unsolicited(target, THEIRS).to_bytes();
        let frame = |hop_limit| Icmpv6Frame {
            ethernet_destination: OURS,
            ethernet_source: THEIRS,
            source: "fe80::2".parse().unwrap(),
            destination: "ff02::1".parse().unwrap(),
            hop_limit,
            message: &message,
        };
        let claim = foreign_advertisement_claim(&frame(255), OURS).unwrap();
        assert_eq!(
            claim.map(|(ip, claim)| (ip, claim.mac)),
            Some((IpAddr::V6(target), THEIRS))
        );
        assert_eq!(foreign_advertisement_claim(&frame(255), THEIRS), Ok(None));
        assert_eq!(
            foreign_advertisement_claim(&frame(64), OURS),
            Err(IgnoreReason::BadHopLimit)
        );
    }

    #[test]
    fn a_probe_claims_nothing() {
        let probe = arp_probe("203.0.113.7".parse().unwrap(), OURS);
        assert_eq!(probe.sender_ip, Ipv4Addr::UNSPECIFIED);
        assert!(!probe.is_announcement());
        assert_eq!(arp_claim(&probe, &probe.to_bytes()), None);
    }

    #[test]
    fn tagged_advertisement_round_trips_and_stays_a_valid_advertisement() {
        let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let na = NeighborAdvertisement::unsolicited(target, THEIRS);
        let bytes = tagged_advertisement(&na.to_bytes(), Some(rank()));
        assert_eq!(bytes.len(), 32 + RANK_OPTION_LEN);
        assert_eq!(NeighborAdvertisement::parse(&bytes), Some(na));
        let (ip, claim) = advertisement_claim(&bytes).unwrap();
        assert_eq!(ip, IpAddr::V6(target));
        assert_eq!(
            claim,
            Claim {
                mac: THEIRS,
                rank: Some(rank())
            }
        );
        let untagged = advertisement_claim(&na.to_bytes()).unwrap().1;
        assert_eq!(untagged.rank, None);
    }

    #[test]
    fn the_neighbor_probe_is_a_solicitation_with_our_address() {
        let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let probe = neighbor_probe(target, OURS);
        let parsed =
            crate::l2::ndp::NeighborSolicitation::parse(&probe, "fe80::1".parse().unwrap())
                .unwrap();
        assert_eq!(parsed.target, target);
        assert_eq!(parsed.source_link_layer, Some(OURS));
        assert_eq!(advertisement_claim(&probe), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..128)) {
            let _ = arp_rank(&bytes);
            let _ = advertisement_claim(&bytes);
        }
    }
}
