//! IPv6 Neighbor Discovery (RFC 4861): Neighbor Solicitations in, Neighbor
//! Advertisements out, as ICMPv6 messages without the IPv6 header: that is
//! what a raw `IPPROTO_ICMPV6` socket writes. Solicitations arrive in whole
//! frames, which [`super::ndp_frame`] unwraps (checking the checksum and
//! the IPv6 header) before the message is parsed here.
//!
//! The checksum field is left zero when building: on a raw ICMPv6 socket the
//! Linux kernel always computes the ICMPv6 checksum over the pseudo-header
//! (it must, since only the kernel knows the source address it picks; RFC
//! 3542 section 3.1).

use std::net::Ipv6Addr;

use super::MacAddr;

/// ICMPv6 type of a Neighbor Solicitation (RFC 4861 §4.3).
pub const ICMPV6_NEIGHBOR_SOLICITATION: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 §4.4).
pub const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// Neighbor Discovery messages must arrive with this hop limit, which proves
/// they were not forwarded by a router (RFC 4861 section 7.1.1).
pub const REQUIRED_HOP_LIMIT: u8 = 255;
/// ff02::1, all nodes on the link: where unsolicited advertisements go.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

pub(super) const OPTION_SOURCE_LINK_LAYER_ADDRESS: u8 = 1;
pub(super) const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;
/// type, code, checksum, reserved/flags, target address.
pub(super) const FIXED_LEN: usize = 24;
/// The fixed part plus one 8-byte target link-layer address option.
pub const ADVERTISEMENT_LEN: usize = FIXED_LEN + 8;

const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;

/// A validated Neighbor Solicitation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSolicitation {
    /// The IPv6 source address.
    pub source: Ipv6Addr,
    /// The address whose link-layer address is asked for.
    pub target: Ipv6Addr,
    /// The solicitor's link-layer address, if it sent one (absent in DAD probes).
    pub source_link_layer: Option<MacAddr>,
}

/// Why a message is not a Neighbor Solicitation we may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NdpParseError {
    /// Shorter than the fixed 24-byte Neighbor Solicitation.
    #[error("ICMPv6 message of {len} bytes is shorter than a Neighbor Solicitation (24)")]
    Truncated {
        /// The message's length in bytes.
        len: usize,
    },
    /// Another ICMPv6 type; holds the type.
    #[error("ICMPv6 type {0} is not a Neighbor Solicitation")]
    NotNeighborSolicitation(u8),
    /// A code other than 0, which RFC 4861 says to drop; holds the code.
    #[error("Neighbor Solicitation has code {0}, must be 0")]
    NonZeroCode(u8),
    /// The target is a multicast address, which RFC 4861 says to drop.
    #[error("Neighbor Solicitation targets the multicast address {0}")]
    MulticastTarget(Ipv6Addr),
    /// An option of length 0, which RFC 4861 says to drop the message for.
    #[error("Neighbor Discovery option at offset {offset} has length zero")]
    ZeroLengthOption {
        /// Byte offset of the option within the ICMPv6 message.
        offset: usize,
    },
    /// An option whose length runs past the end of the message.
    #[error("Neighbor Discovery option at offset {offset} runs past the end of the message")]
    TruncatedOption {
        /// Byte offset of the option within the ICMPv6 message.
        offset: usize,
    },
    /// A source link-layer address option that does not hold a 6-byte MAC.
    #[error("source link-layer address option of {len} bytes is not an Ethernet address")]
    MalformedLinkLayerOption {
        /// The option's length in bytes, type and length fields included.
        len: usize,
    },
    /// A solicitation from `::` (duplicate address detection) with a source link-layer option, which RFC 4861 forbids.
    #[error(
        "Neighbor Solicitation from the unspecified address carries a source link-layer address"
    )]
    LinkLayerOptionFromUnspecifiedSource,
}

impl NeighborSolicitation {
    /// Parses and validates an ICMPv6 message from `source`, applying every
    /// rule of RFC 4861 section 7.1.1 that does not need the IPv6 header
    /// (the checksum and destination are checked by
    /// [`super::ndp_frame::Icmpv6Frame`], the hop limit by
    /// [`super::plan::answer_neighbor_solicitation`]).
    pub fn parse(message: &[u8], source: Ipv6Addr) -> Result<NeighborSolicitation, NdpParseError> {
        let fixed: &[u8; FIXED_LEN] = message
            .get(..FIXED_LEN)
            .and_then(|head| head.try_into().ok())
            .ok_or(NdpParseError::Truncated { len: message.len() })?;
        let (message_type, code) = (fixed[0], fixed[1]);
        if message_type != ICMPV6_NEIGHBOR_SOLICITATION {
            return Err(NdpParseError::NotNeighborSolicitation(message_type));
        }
        if code != 0 {
            return Err(NdpParseError::NonZeroCode(code));
        }
        let mut target_octets = [0u8; 16];
        target_octets.copy_from_slice(&fixed[8..24]);
        let target = Ipv6Addr::from(target_octets);
        if target.is_multicast() {
            return Err(NdpParseError::MulticastTarget(target));
        }

        let mut source_link_layer = None;
        for option in Options::new(message, FIXED_LEN) {
            let option = option?;
            if option.kind == OPTION_SOURCE_LINK_LAYER_ADDRESS {
                // The option body is the address followed by padding to 8 bytes.
                let address = option.body.get(..6).filter(|_| option.body.len() == 6);
                let mac = address.and_then(MacAddr::from_slice).ok_or(
                    NdpParseError::MalformedLinkLayerOption {
                        len: option.body.len() + 2,
                    },
                )?;
                source_link_layer = Some(mac);
            }
            // Unknown options must be ignored (RFC 4861 section 4.6).
        }
        if source.is_unspecified() && source_link_layer.is_some() {
            return Err(NdpParseError::LinkLayerOptionFromUnspecifiedSource);
        }
        Ok(NeighborSolicitation {
            source,
            target,
            source_link_layer,
        })
    }

    /// Duplicate Address Detection probes come from `::` and must be answered
    /// to all nodes rather than to the (unusable) source.
    pub fn is_duplicate_address_detection(&self) -> bool {
        self.source.is_unspecified()
    }
}

pub(super) struct NdOption<'a> {
    pub(super) kind: u8,
    pub(super) body: &'a [u8],
}

/// Iterates over the type-length-value options after the fixed header. Each
/// option's length counts units of 8 bytes including the type and length.
pub(super) struct Options<'a> {
    message: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Options<'a> {
    pub(super) fn new(message: &'a [u8], offset: usize) -> Self {
        Options {
            message,
            offset,
            failed: false,
        }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<NdOption<'a>, NdpParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.message.len() {
            return None;
        }
        let offset = self.offset;
        let outcome = match self.message.get(offset..offset + 2) {
            None => Err(NdpParseError::TruncatedOption { offset }),
            Some(&[_, 0]) => Err(NdpParseError::ZeroLengthOption { offset }),
            Some(&[kind, units]) => {
                let end = offset + usize::from(units) * 8;
                match self.message.get(offset + 2..end) {
                    Some(body) => {
                        self.offset = end;
                        Ok(NdOption { kind, body })
                    }
                    None => Err(NdpParseError::TruncatedOption { offset }),
                }
            }
            Some(_) => Err(NdpParseError::TruncatedOption { offset }),
        };
        self.failed = outcome.is_err();
        Some(outcome)
    }
}

/// A Neighbor Advertisement for `target` at `our_mac`, with a target
/// link-layer address option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborAdvertisement {
    /// The address advertised.
    pub target: Ipv6Addr,
    /// The MAC the target is at (ours), sent in the target link-layer address option.
    pub our_mac: MacAddr,
    /// S flag: an answer to a solicitation (false for unsolicited announcements).
    pub solicited: bool,
    /// O flag: neighbours replace a cached MAC for `target`, which moving an IP between nodes needs.
    pub override_cache: bool,
}

impl NeighborAdvertisement {
    /// The answer to a solicitation: Solicited and Override set, so the
    /// solicitor's cache entry becomes REACHABLE with our MAC. (Not sent for
    /// DAD probes: see [`NeighborAdvertisement::unsolicited`].)
    pub fn solicited(target: Ipv6Addr, our_mac: MacAddr) -> Self {
        NeighborAdvertisement {
            target,
            our_mac,
            solicited: true,
            override_cache: true,
        }
    }

    /// The advertisement sent to [`ALL_NODES`] when we take over an address
    /// (and in answer to a DAD probe, RFC 4861 section 7.2.4): Override set so
    /// existing cache entries switch to our MAC, Solicited clear.
    pub fn unsolicited(target: Ipv6Addr, our_mac: MacAddr) -> Self {
        NeighborAdvertisement {
            target,
            our_mac,
            solicited: false,
            override_cache: true,
        }
    }

    /// The ICMPv6 message with a zero checksum (the kernel fills it in).
    pub fn to_bytes(&self) -> [u8; ADVERTISEMENT_LEN] {
        let mut out = [0u8; ADVERTISEMENT_LEN];
        out[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
        let mut flags = 0;
        if self.solicited {
            flags |= FLAG_SOLICITED;
        }
        if self.override_cache {
            flags |= FLAG_OVERRIDE;
        }
        out[4] = flags;
        out[8..24].copy_from_slice(&self.target.octets());
        out[24] = OPTION_TARGET_LINK_LAYER_ADDRESS;
        out[25] = 1;
        out[26..32].copy_from_slice(&self.our_mac.octets());
        out
    }

    /// Reads back an advertisement built by [`NeighborAdvertisement::to_bytes`]
    /// (used by tests and diagnostics; we never act on received advertisements).
    pub fn parse(message: &[u8]) -> Option<NeighborAdvertisement> {
        let bytes: &[u8; ADVERTISEMENT_LEN] = message.get(..ADVERTISEMENT_LEN)?.try_into().ok()?;
        if bytes[0] != ICMPV6_NEIGHBOR_ADVERTISEMENT || bytes[1] != 0 {
            return None;
        }
        if bytes[24] != OPTION_TARGET_LINK_LAYER_ADDRESS || bytes[25] != 1 {
            return None;
        }
        let mut target = [0u8; 16];
        target.copy_from_slice(&bytes[8..24]);
        Some(NeighborAdvertisement {
            target: target.into(),
            our_mac: MacAddr::from_slice(&bytes[26..32])?,
            solicited: bytes[4] & FLAG_SOLICITED != 0,
            override_cache: bytes[4] & FLAG_OVERRIDE != 0,
        })
    }
}

/// The solicited-node multicast group of `address` (RFC 4291 section 2.7.1):
/// ff02::1:ffXX:XXXX with the low 24 bits of the address. Neighbor
/// Solicitations for `address` are sent there, so we join it to hear them.
pub fn solicited_node_multicast(address: Ipv6Addr) -> Ipv6Addr {
    let [.., a, b, c] = address.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, a, b, c])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SOLICITOR: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
    const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);

    fn vip() -> Ipv6Addr {
        "2001:db8::77".parse().unwrap()
    }

    fn link_local() -> Ipv6Addr {
        "fe80::2".parse().unwrap()
    }

    /// An NS for 2001:db8::77 with a source link-layer address option, as
    /// its frame carries it (checksum as sent).
    fn captured_solicitation() -> Vec<u8> {
        vec![
            135, 0, 0x4a, 0x1c, 0, 0, 0, 0, // type, code, checksum, reserved
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, // target
            1, 1, 0x02, 0, 0, 0, 0, 0x02, // source link-layer address
        ]
    }

    #[test]
    fn parses_a_solicitation_with_its_link_layer_address() {
        let ns = NeighborSolicitation::parse(&captured_solicitation(), link_local()).unwrap();
        assert_eq!(
            ns,
            NeighborSolicitation {
                source: link_local(),
                target: vip(),
                source_link_layer: Some(SOLICITOR),
            }
        );
        assert!(!ns.is_duplicate_address_detection());
    }

    #[test]
    fn unknown_options_are_skipped() {
        let mut bytes = captured_solicitation();
        bytes.extend([14, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]); // nonce option
        let ns = NeighborSolicitation::parse(&bytes, link_local()).unwrap();
        assert_eq!(ns.source_link_layer, Some(SOLICITOR));
    }

    #[test]
    fn duplicate_address_detection_probe_has_no_link_layer_option() {
        let bytes = &captured_solicitation()[..24];
        let ns = NeighborSolicitation::parse(bytes, Ipv6Addr::UNSPECIFIED).unwrap();
        assert!(ns.is_duplicate_address_detection());
        assert_eq!(ns.source_link_layer, None);
        assert_eq!(
            NeighborSolicitation::parse(&captured_solicitation(), Ipv6Addr::UNSPECIFIED),
            Err(NdpParseError::LinkLayerOptionFromUnspecifiedSource)
        );
    }

    #[test]
    fn rejects_invalid_solicitations_by_name() {
        let good = captured_solicitation();
        let parse = |bytes: &[u8]| NeighborSolicitation::parse(bytes, link_local());
        let patched = |at: usize, value: &[u8]| {
            let mut bytes = good.clone();
            bytes[at..at + value.len()].copy_from_slice(value);
            parse(&bytes)
        };
        assert_eq!(
            parse(&good[..23]),
            Err(NdpParseError::Truncated { len: 23 })
        );
        assert_eq!(
            patched(0, &[136]),
            Err(NdpParseError::NotNeighborSolicitation(136))
        );
        assert_eq!(patched(1, &[1]), Err(NdpParseError::NonZeroCode(1)));
        assert_eq!(
            patched(8, &[0xff, 0x02]),
            Err(NdpParseError::MulticastTarget(
                "ff02:db8::77".parse().unwrap()
            ))
        );
        assert_eq!(
            patched(25, &[0]),
            Err(NdpParseError::ZeroLengthOption { offset: 24 })
        );
        assert_eq!(
            patched(25, &[2]),
            Err(NdpParseError::TruncatedOption { offset: 24 })
        );
        assert_eq!(
            parse(&good[..25]),
            Err(NdpParseError::TruncatedOption { offset: 24 })
        );
        assert_eq!(
            parse(&good[..30]),
            Err(NdpParseError::TruncatedOption { offset: 24 })
        );
        let mut long_option = good.clone();
        long_option[25] = 2;
        long_option.extend([0u8; 8]);
        assert_eq!(
            parse(&long_option),
            Err(NdpParseError::MalformedLinkLayerOption { len: 16 })
        );
    }

    #[test]
    fn solicited_advertisement_bytes() {
        let bytes = NeighborAdvertisement::solicited(vip(), OURS).to_bytes();
        let expected: [u8; ADVERTISEMENT_LEN] = [
            136, 0, 0, 0, // type, code, checksum left to the kernel
            0x60, 0, 0, 0, // Solicited + Override
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, // target
            2, 1, 0x02, 0, 0, 0, 0, 0x01, // target link-layer address
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn unsolicited_advertisement_overrides_without_the_solicited_flag() {
        let na = NeighborAdvertisement::unsolicited(vip(), OURS);
        let bytes = na.to_bytes();
        assert_eq!(bytes[4], 0x20);
        assert_eq!(NeighborAdvertisement::parse(&bytes), Some(na));
    }

    #[test]
    fn solicited_node_group_keeps_the_low_24_bits() {
        assert_eq!(
            solicited_node_multicast("2001:db8::1234:5677".parse().unwrap()),
            "ff02::1:ff34:5677".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            solicited_node_multicast(vip()),
            "ff02::1:ff00:77".parse::<Ipv6Addr>().unwrap()
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..96),
            source in any::<[u8; 16]>(),
        ) {
            let _ = NeighborSolicitation::parse(&bytes, source.into());
        }

        #[test]
        fn arbitrary_options_after_a_valid_header_never_panic(
            options in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut bytes = captured_solicitation()[..24].to_vec();
            bytes.extend(options);
            let _ = NeighborSolicitation::parse(&bytes, link_local());
        }

        #[test]
        fn advertisements_round_trip(
            target in any::<[u8; 16]>(), mac in any::<[u8; 6]>(),
            solicited in any::<bool>(), override_cache in any::<bool>(),
        ) {
            let na = NeighborAdvertisement {
                target: target.into(), our_mac: MacAddr(mac), solicited, override_cache,
            };
            prop_assert_eq!(NeighborAdvertisement::parse(&na.to_bytes()), Some(na));
        }

        #[test]
        fn solicitations_round_trip_through_the_parser(
            target in any::<[u8; 16]>().prop_filter("unicast", |t| t[0] != 0xff),
            mac in any::<[u8; 6]>(),
        ) {
            let mut bytes = vec![135, 0, 0, 0, 0, 0, 0, 0];
            bytes.extend(target);
            bytes.extend([1, 1]);
            bytes.extend(mac);
            let ns = NeighborSolicitation::parse(&bytes, link_local()).unwrap();
            prop_assert_eq!(ns.target, Ipv6Addr::from(target));
            prop_assert_eq!(ns.source_link_layer, Some(MacAddr(mac)));
        }
    }
}
