//! NDP decoder: a Neighbor Solicitation is only accepted when RFC 4861's
//! checks hold, and a Neighbor Advertisement round-trips. The whole input is
//! also decoded as a received frame (Ethernet + IPv6 + ICMPv6).
#![no_main]

use std::net::Ipv6Addr;

use ferrolb_speaker::l2::MacAddr;
use ferrolb_speaker::l2::ndp::{
    NeighborAdvertisement, NeighborSolicitation, solicited_node_multicast,
};
use ferrolb_speaker::l2::ndp_frame::{ICMPV6_OFFSET, Icmpv6Frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Icmpv6Frame::parse(data) {
        assert!(frame.message.len() <= data.len() - ICMPV6_OFFSET);
        if let Ok(solicitation) = frame.solicitation() {
            assert_eq!(solicitation.source, frame.source);
            assert!(!solicitation.target.is_multicast());
            assert!(
                frame.destination == solicited_node_multicast(solicitation.target)
                    || (frame.destination == solicitation.target && !frame.source.is_unspecified())
            );
        }
    }
    let Some((source, message)) = data.split_first_chunk::<16>() else {
        return;
    };
    let source = Ipv6Addr::from(*source);
    if let Ok(solicitation) = NeighborSolicitation::parse(message, source) {
        assert_eq!(solicitation.source, source);
        assert!(!solicitation.target.is_multicast());
        assert!(!(source.is_unspecified() && solicitation.source_link_layer.is_some()));
        let answer =
            NeighborAdvertisement::solicited(solicitation.target, MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(
            NeighborAdvertisement::parse(&answer.to_bytes()),
            Some(answer)
        );
    }
    if let Some(advertisement) = NeighborAdvertisement::parse(message) {
        let bytes = advertisement.to_bytes();
        assert_eq!(NeighborAdvertisement::parse(&bytes), Some(advertisement));
        // Identical but for the checksum, the reserved bits and unknown flags.
        assert_eq!(bytes[..2], message[..2]);
        assert_eq!(bytes[4], message[4] & 0x60);
        assert_eq!(bytes[8..], message[8..bytes.len()]);
    }
});
