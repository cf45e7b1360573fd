//! NDP decoder: a Neighbor Solicitation is only accepted when RFC 4861's
//! checks hold, and a Neighbor Advertisement round-trips.
#![no_main]

use std::net::Ipv6Addr;

use ferrolb_speaker::l2::MacAddr;
use ferrolb_speaker::l2::ndp::{NeighborAdvertisement, NeighborSolicitation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
