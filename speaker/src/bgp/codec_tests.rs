//! Codec tests: byte vectors written by hand from the RFCs, round trips, every decode
//! error's NOTIFICATION, and property tests.

use super::*;
use ipnet::{Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use std::net::{Ipv4Addr, Ipv6Addr};

const TWO_OCTET: CodecOptions = CodecOptions {
    four_octet_as: false,
};
const FOUR_OCTET: CodecOptions = CodecOptions {
    four_octet_as: true,
};

pub(crate) fn header(length: u16, message_type: u8) -> Vec<u8> {
    let mut bytes = vec![0xff; 16];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.push(message_type);
    bytes
}

fn decode_whole(bytes: &[u8], options: CodecOptions) -> Result<Message, DecodeError> {
    let (message, used) = decode_message(bytes, options)?.expect("the decoder has a whole message");
    assert_eq!(used, bytes.len(), "decoder used a different length");
    Ok(message)
}

fn round_trip(message: &Message, options: CodecOptions) -> Message {
    let bytes = encode_message(message, options).unwrap();
    decode_whole(&bytes, options).unwrap()
}

fn v4(text: &str) -> Ipv4Net {
    text.parse().unwrap()
}

fn v6(text: &str) -> Ipv6Net {
    text.parse().unwrap()
}

#[test]
fn keepalive_is_marker_length_19_type_4() {
    let mut expected = vec![0xff; 16];
    expected.extend_from_slice(&[0x00, 0x13, 0x04]);
    assert_eq!(
        encode_message(&Message::Keepalive, TWO_OCTET).unwrap(),
        expected
    );
    assert_eq!(
        decode_whole(&expected, TWO_OCTET).unwrap(),
        Message::Keepalive
    );
}

#[test]
fn open_matches_hand_built_bytes() {
    // AS 4200000001 needs AS_TRANS in the header and the 4-octet AS capability.
    let open = Open::new(
        4_200_000_001,
        90,
        Ipv4Addr::new(198, 51, 100, 1),
        &[AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST],
    );
    let capabilities: Vec<u8> = [
        vec![1, 4, 0, 1, 0, 1],              // multiprotocol IPv4 unicast
        vec![1, 4, 0, 2, 0, 1],              // multiprotocol IPv6 unicast
        vec![2, 0],                          // route refresh
        vec![65, 4, 0xfa, 0x56, 0xea, 0x01], // 4-octet AS 4200000001
    ]
    .concat();
    let mut expected = header(19 + 10 + 2 + capabilities.len() as u16, 1);
    expected.extend_from_slice(&[4, 0x5b, 0xa0, 0, 90, 198, 51, 100, 1]);
    expected.push(2 + capabilities.len() as u8);
    expected.extend_from_slice(&[2, capabilities.len() as u8]);
    expected.extend_from_slice(&capabilities);
    let encoded = encode_message(&Message::Open(open.clone()), TWO_OCTET).unwrap();
    assert_eq!(encoded, expected);
    let Message::Open(decoded) = decode_whole(&expected, TWO_OCTET).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(decoded, open);
    assert_eq!(decoded.my_as, AS_TRANS);
    assert_eq!(decoded.asn(), 4_200_000_001);
    assert!(decoded.supports_route_refresh());
    assert_eq!(
        decoded.families(),
        vec![AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST]
    );
}

#[test]
fn open_reads_graceful_restart_and_keeps_a_malformed_one_as_unknown() {
    // Graceful restart (64): R set, 120 s, IPv4 unicast with F; then one of odd length.
    let bytes = open_bytes(
        4,
        &[2, 8, 64, 6, 0x80, 0x78, 0, 1, 1, 0x80, 2, 3, 64, 1, 0x80],
    );
    let Message::Open(open) = decode_whole(&bytes, TWO_OCTET).unwrap() else {
        panic!("not an OPEN");
    };
    let restart = open.graceful_restart().expect("the capability is read");
    assert!(restart.restart_state);
    assert_eq!(restart.restart_time, 120);
    assert_eq!(restart.families.len(), 1);
    assert!(restart.families[0].forwarding_preserved);
    assert_eq!(
        open.capabilities[1],
        Capability::Unknown {
            code: 64,
            value: vec![0x80]
        }
    );
    let encoded = encode_message(&Message::Open(open.clone()), TWO_OCTET).unwrap();
    assert_eq!(
        decode_whole(&encoded, TWO_OCTET).unwrap(),
        Message::Open(open)
    );
}

#[test]
fn open_keeps_unknown_capabilities_and_reads_several_parameters() {
    // Two capability parameters: FQDN (73) with 2 bytes, then 4-octet AS.
    let bytes = open_bytes(4, &[2, 4, 73, 2, 0x80, 0x78, 2, 6, 65, 4, 0, 0, 0xfd, 0xe9]);
    let Message::Open(open) = decode_whole(&bytes, TWO_OCTET).unwrap() else {
        panic!("not an OPEN");
    };
    assert_eq!(open.asn(), 65001);
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Unknown {
                code: 73,
                value: vec![0x80, 0x78]
            },
            Capability::FourOctetAs(65001)
        ]
    );
    assert!(!open.supports_route_refresh());
}

#[test]
fn notification_route_refresh_round_trip() {
    let notification = Message::Notification(Notification::new(6, 2, b"maintenance".to_vec()));
    assert_eq!(round_trip(&notification, TWO_OCTET), notification);
    let bytes = encode_message(&notification, TWO_OCTET).unwrap();
    assert_eq!(bytes.get(16..21), Some(&[0, 32, 3, 6, 2][..]));

    let refresh = Message::RouteRefresh(RouteRefresh {
        family: AddressFamily::IPV6_UNICAST,
        subtype: 0,
    });
    let bytes = encode_message(&refresh, TWO_OCTET).unwrap();
    assert_eq!(bytes.get(16..), Some(&[0, 23, 5, 0, 2, 0, 1][..]));
    assert_eq!(round_trip(&refresh, TWO_OCTET), refresh);
}

fn ipv4_announcement(as_path: AsPath) -> Update {
    Update {
        withdrawn: vec![v4("203.0.113.0/24")],
        attributes: vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(as_path),
            PathAttribute::NextHop(Ipv4Addr::new(198, 51, 100, 2)),
            PathAttribute::MultiExitDisc(10),
            PathAttribute::LocalPref(100),
            PathAttribute::Communities(vec![GRACEFUL_SHUTDOWN, 0xfde8_0001]),
            PathAttribute::LargeCommunities(vec![(64512, 1, 2).into()]),
        ],
        nlri: vec![v4("198.51.100.10/32"), v4("198.51.100.128/25")],
        errors: vec![],
    }
}

#[test]
fn update_matches_hand_built_bytes() {
    let update = ipv4_announcement(AsPath::originated_by(65001));
    let attributes: Vec<u8> = [
        vec![0x40, 1, 1, 0],                                       // ORIGIN IGP
        vec![0x40, 2, 4, 2, 1, 0xfd, 0xe9],                        // AS_PATH sequence [65001]
        vec![0x40, 3, 4, 198, 51, 100, 2],                         // NEXT_HOP
        vec![0x80, 4, 4, 0, 0, 0, 10],                             // MED 10
        vec![0x40, 5, 4, 0, 0, 0, 100],                            // LOCAL_PREF 100
        vec![0xc0, 8, 8, 0xff, 0xff, 0, 0, 0xfd, 0xe8, 0, 1],      // COMMUNITIES
        vec![0xc0, 32, 12, 0, 0, 0xfc, 0, 0, 0, 0, 1, 0, 0, 0, 2], // LARGE_COMMUNITIES
    ]
    .concat();
    let withdrawn = [24, 203, 0, 113];
    let nlri = [32, 198, 51, 100, 10, 25, 198, 51, 100, 128];
    let length = 19 + 2 + withdrawn.len() + 2 + attributes.len() + nlri.len();
    let mut expected = header(length as u16, 2);
    expected.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    expected.extend_from_slice(&withdrawn);
    expected.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    expected.extend_from_slice(&attributes);
    expected.extend_from_slice(&nlri);
    assert_eq!(
        encode_message(&Message::Update(update.clone()), TWO_OCTET).unwrap(),
        expected
    );
    assert_eq!(
        decode_whole(&expected, TWO_OCTET).unwrap(),
        Message::Update(update)
    );
}

#[test]
fn as_path_width_follows_the_negotiated_capability() {
    let update = ipv4_announcement(AsPath::originated_by(4_200_000_001));
    let four = encode_message(&Message::Update(update.clone()), FOUR_OCTET).unwrap();
    assert!(four.windows(7).any(|w| w == [0x40, 2, 6, 2, 1, 0xfa, 0x56]));
    assert_eq!(
        decode_whole(&four, FOUR_OCTET).unwrap(),
        Message::Update(update.clone())
    );
    // On a 2-octet session the big AS becomes AS_TRANS.
    let two = encode_message(&Message::Update(update), TWO_OCTET).unwrap();
    assert!(two.windows(7).any(|w| w == [0x40, 2, 4, 2, 1, 0x5b, 0xa0]));
}

#[test]
fn ipv6_reach_and_unreach_round_trip_with_link_local_next_hop() {
    let update = Update {
        withdrawn: vec![],
        attributes: vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::default()),
            PathAttribute::MpReach(MpReach {
                next_hop: MpNextHop::V6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: MpNlri::Ipv6(vec![v6("2001:db8:1::/48"), v6("2001:db8:2::5/128")]),
            }),
            PathAttribute::MpUnreach(MpNlri::Ipv6(vec![v6("2001:db8:ff::/64")])),
        ],
        nlri: vec![],
        errors: vec![],
    };
    let bytes = encode_message(&Message::Update(update.clone()), FOUR_OCTET).unwrap();
    // MP_REACH: flags, type, length, AFI 2, SAFI 1, next hop length 32.
    let reach_value_len = 3 + 1 + 32 + 1 + (1 + 6) + (1 + 16);
    assert!(
        bytes
            .windows(7)
            .any(|w| w == [0x80, 14, reach_value_len, 0, 2, 1, 32])
    );
    assert!(bytes.windows(6).any(|w| w == [0x80, 15, 3 + 9, 0, 2, 1]));
    assert_eq!(
        decode_whole(&bytes, FOUR_OCTET).unwrap(),
        Message::Update(update)
    );
}

#[test]
fn long_attributes_use_the_extended_length_flag() {
    let communities: Vec<u32> = (0..100).collect();
    let update = Update {
        attributes: vec![PathAttribute::Communities(communities)],
        ..Update::default()
    };
    let bytes = encode_message(&Message::Update(update.clone()), FOUR_OCTET).unwrap();
    assert_eq!(bytes.get(23..27), Some(&[0xd0, 8, 0x01, 0x90][..]));
    assert_eq!(
        decode_whole(&bytes, FOUR_OCTET).unwrap(),
        Message::Update(update)
    );
}

#[test]
fn unknown_optional_attributes_are_kept_raw() {
    let update = Update {
        attributes: vec![PathAttribute::Unknown(RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: vec![1, 2, 3],
        })],
        ..Update::default()
    };
    assert_eq!(
        round_trip(&Message::Update(update.clone()), TWO_OCTET),
        Message::Update(update)
    );
}

#[test]
fn framing_waits_for_whole_messages_and_reports_the_length_used() {
    let mut stream = encode_message(&Message::Keepalive, TWO_OCTET).unwrap();
    let notification = Message::Notification(Notification::cease(2));
    stream.extend(encode_message(&notification, TWO_OCTET).unwrap());
    for cut in 0..19 {
        assert_eq!(
            decode_message(stream.get(..cut).unwrap(), TWO_OCTET),
            Ok(None)
        );
    }
    assert_eq!(
        decode_message(&stream, TWO_OCTET),
        Ok(Some((Message::Keepalive, 19)))
    );
    let rest = stream.get(19..).unwrap();
    assert_eq!(decode_message(rest.get(..20).unwrap(), TWO_OCTET), Ok(None));
    assert_eq!(
        decode_message(rest, TWO_OCTET),
        Ok(Some((notification, 21)))
    );
}

/// Decodes and returns the NOTIFICATION (code, subcode, data) the first error calls
/// for: the decode error, or the first error RFC 7606 let the UPDATE survive (whose
/// NOTIFICATION is not sent).
fn notification_for(bytes: &[u8]) -> (u8, u8, Vec<u8>) {
    let error = match decode_message(bytes, TWO_OCTET) {
        Err(error) => error,
        Ok(Some((Message::Update(update), _))) => update
            .errors
            .first()
            .expect("expected an error in the UPDATE")
            .error
            .clone(),
        Ok(other) => panic!("expected an error, decoded {other:?}"),
    };
    let notification = error.notification();
    (notification.code, notification.subcode, notification.data)
}

#[test]
fn header_errors_map_to_message_header_notifications() {
    let mut bad_marker = header(19, 4);
    bad_marker[3] = 0;
    assert_eq!(notification_for(&bad_marker), (1, 1, vec![]));
    assert_eq!(notification_for(&header(18, 4)), (1, 2, vec![0, 18]));
    assert_eq!(notification_for(&header(4097, 2)), (1, 2, vec![0x10, 0x01]));
    assert_eq!(notification_for(&header(20, 4)), (1, 2, vec![0, 20]));
    assert_eq!(notification_for(&header(28, 1)), (1, 2, vec![0, 28]));
    assert_eq!(notification_for(&header(22, 2)), (1, 2, vec![0, 22]));
    assert_eq!(notification_for(&header(20, 3)), (1, 2, vec![0, 20]));
    assert_eq!(notification_for(&header(24, 5)), (1, 2, vec![0, 24]));
    assert_eq!(notification_for(&header(19, 9)), (1, 3, vec![9]));
}

fn open_bytes(version: u8, parameters: &[u8]) -> Vec<u8> {
    let mut bytes = header(19 + 10 + parameters.len() as u16, 1);
    bytes.extend_from_slice(&[
        version,
        0xfd,
        0xe9,
        0,
        90,
        198,
        51,
        100,
        9,
        parameters.len() as u8,
    ]);
    bytes.extend_from_slice(parameters);
    bytes
}

#[test]
fn open_errors_map_to_open_message_notifications() {
    assert_eq!(notification_for(&open_bytes(3, &[])), (2, 1, vec![0, 4]));
    // Optional parameter type 1 (authentication, deprecated) is not supported.
    assert_eq!(notification_for(&open_bytes(4, &[1, 1, 0])), (2, 4, vec![]));
    // A parameter overrunning the parameter block.
    assert_eq!(
        notification_for(&open_bytes(4, &[2, 9, 2, 0])),
        (2, 0, vec![])
    );
    // A 4-octet AS capability with 2 bytes.
    assert_eq!(
        notification_for(&open_bytes(4, &[2, 4, 65, 2, 0, 1])),
        (2, 0, vec![])
    );
    // Parameters length says 0 but bytes follow.
    let mut trailing = open_bytes(4, &[]);
    trailing.push(0);
    trailing[17] += 1;
    assert_eq!(notification_for(&trailing), (2, 0, vec![]));
}

/// An UPDATE with the given withdrawn routes, attribute bytes and NLRI.
pub(crate) fn update_bytes(withdrawn: &[u8], attributes: &[u8], nlri: &[u8]) -> Vec<u8> {
    let length = 19 + 4 + withdrawn.len() + attributes.len() + nlri.len();
    let mut bytes = header(length as u16, 2);
    bytes.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
    bytes.extend_from_slice(withdrawn);
    bytes.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    bytes.extend_from_slice(attributes);
    bytes.extend_from_slice(nlri);
    bytes
}

pub(crate) const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
pub(crate) const EMPTY_AS_PATH: [u8; 3] = [0x40, 2, 0];
pub(crate) const NEXT_HOP: [u8; 7] = [0x40, 3, 4, 198, 51, 100, 2];
pub(crate) const HOST_ROUTE: [u8; 5] = [32, 198, 51, 100, 10];

#[test]
fn update_errors_map_to_update_message_notifications() {
    let valid_prefix = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH, &NEXT_HOP].concat();
    assert!(decode_message(&update_bytes(&[], &valid_prefix, &HOST_ROUTE), TWO_OCTET).is_ok());

    // Withdrawn routes length larger than the message.
    let mut overrun = update_bytes(&[], &[], &[]);
    overrun[20] = 9;
    assert_eq!(notification_for(&overrun), (3, 1, vec![]));
    // The same attribute twice.
    let twice = [ORIGIN_IGP.as_slice(), &ORIGIN_IGP].concat();
    assert_eq!(
        notification_for(&update_bytes(&[], &twice, &[])),
        (3, 1, vec![])
    );
    // An attribute longer than the attribute list.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 1, 5, 0], &[])),
        (3, 1, vec![])
    );
    // Unknown attribute 42 without the optional bit.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 42, 1, 7], &[])),
        (3, 2, vec![0x40, 42, 1, 7])
    );
    // NLRI without NEXT_HOP.
    let no_next_hop = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH].concat();
    assert_eq!(
        notification_for(&update_bytes(&[], &no_next_hop, &HOST_ROUTE)),
        (3, 3, vec![3])
    );
    // NLRI without ORIGIN.
    let no_origin = [EMPTY_AS_PATH.as_slice(), &NEXT_HOP].concat();
    assert_eq!(
        notification_for(&update_bytes(&[], &no_origin, &HOST_ROUTE)),
        (3, 3, vec![1])
    );
    // ORIGIN marked optional.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0xc0, 1, 1, 0], &[])),
        (3, 4, vec![0xc0, 1, 1, 0])
    );
    // MED marked transitive.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0xc0, 4, 4, 0, 0, 0, 1], &[])),
        (3, 4, vec![0xc0, 4, 4, 0, 0, 0, 1])
    );
    // NEXT_HOP with 3 bytes, COMMUNITIES with 5.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 3, 3, 1, 2, 3], &[])),
        (3, 5, vec![0x40, 3, 3, 1, 2, 3])
    );
    assert_eq!(
        notification_for(&update_bytes(&[], &[0xc0, 8, 5, 1, 2, 3, 4, 5], &[])),
        (3, 5, vec![0xc0, 8, 5, 1, 2, 3, 4, 5])
    );
    // ORIGIN 3 is undefined.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 1, 1, 3], &[])),
        (3, 6, vec![0x40, 1, 1, 3])
    );
    // NEXT_HOP 224.0.0.1 (multicast) and 0.0.0.0.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 3, 4, 224, 0, 0, 1], &[])),
        (3, 8, vec![0x40, 3, 4, 224, 0, 0, 1])
    );
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 3, 4, 0, 0, 0, 0], &[])),
        (3, 8, vec![0x40, 3, 4, 0, 0, 0, 0])
    );
    // MP_REACH with a next hop of 5 bytes.
    let bad_mp = [0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0];
    assert_eq!(
        notification_for(&update_bytes(&[], &bad_mp, &[])),
        (3, 9, bad_mp.to_vec())
    );
    // Prefix length 33 in the NLRI and in the withdrawn routes.
    assert_eq!(
        notification_for(&update_bytes(&[], &valid_prefix, &[33, 1, 2, 3, 4, 5])),
        (3, 10, vec![])
    );
    assert_eq!(
        notification_for(&update_bytes(&[24, 1, 2], &[], &[])),
        (3, 10, vec![])
    );
    // AS_PATH with segment type 7, and with a segment longer than the attribute.
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 2, 4, 7, 1, 0, 1], &[])),
        (3, 11, vec![])
    );
    assert_eq!(
        notification_for(&update_bytes(&[], &[0x40, 2, 4, 2, 2, 0, 1], &[])),
        (3, 11, vec![])
    );
}

#[test]
fn mp_attributes_of_other_families_are_kept_raw() {
    // MP_UNREACH for AFI 1 SAFI 128 (VPNv4): we do not parse its NLRI.
    let value = vec![0, 1, 128, 1, 2, 3];
    let mut attribute = vec![0x80, 15, value.len() as u8];
    attribute.extend_from_slice(&value);
    let Message::Update(update) =
        decode_whole(&update_bytes(&[], &attribute, &[]), TWO_OCTET).unwrap()
    else {
        panic!("not an UPDATE");
    };
    assert_eq!(
        update.attributes,
        vec![PathAttribute::Unknown(RawAttribute {
            flags: 0x80,
            type_code: 15,
            value
        })]
    );
}

#[test]
fn encoding_refuses_messages_over_4096_bytes() {
    let update = Update {
        nlri: (0..1100u32)
            .map(|i| Ipv4Net::new(Ipv4Addr::from(i << 8), 24).unwrap())
            .collect(),
        ..Update::default()
    };
    assert!(matches!(
        encode_message(&Message::Update(update), TWO_OCTET),
        Err(EncodeError::MessageTooLong { .. })
    ));
}

// ---- property tests ----

fn arb_ipv4_net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(bits, len)| Ipv4Net::new(Ipv4Addr::from(bits), len).unwrap().trunc())
}

fn arb_ipv6_net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(bits, len)| Ipv6Net::new(Ipv6Addr::from(bits), len).unwrap().trunc())
}

fn arb_as_path(four_octet: bool) -> impl Strategy<Value = AsPath> {
    let asn = if four_octet {
        any::<u32>().boxed()
    } else {
        any::<u16>().prop_map(u32::from).boxed()
    };
    let kind = prop_oneof![
        Just(SegmentKind::Set),
        Just(SegmentKind::Sequence),
        Just(SegmentKind::ConfedSequence),
        Just(SegmentKind::ConfedSet)
    ];
    prop::collection::vec(
        (kind, prop::collection::vec(asn, 1..8)).prop_map(|(kind, asns)| AsSegment { kind, asns }),
        0..4,
    )
    .prop_map(|segments| AsPath { segments })
}

fn arb_next_hop() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>()
        .prop_map(Ipv4Addr::from)
        .prop_filter("a valid unicast next hop", |a| {
            !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast()
        })
}

fn arb_mp_nlri() -> impl Strategy<Value = MpNlri> {
    prop_oneof![
        prop::collection::vec(arb_ipv4_net(), 0..10).prop_map(MpNlri::Ipv4),
        prop::collection::vec(arb_ipv6_net(), 0..10).prop_map(MpNlri::Ipv6),
    ]
}

fn arb_mp_next_hop() -> impl Strategy<Value = MpNextHop> {
    prop_oneof![
        any::<u32>().prop_map(|bits| MpNextHop::V4(bits.into())),
        (any::<u128>(), prop::option::of(any::<u128>())).prop_map(|(global, link_local)| {
            MpNextHop::V6 {
                global: global.into(),
                link_local: link_local.map(Into::into),
            }
        }),
    ]
}

const KNOWN_TYPES: [u8; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 17, 18, 32];

/// A valid UPDATE: attributes at most once each, and the mandatory ones present
/// whenever routes are announced.
fn arb_update(four_octet: bool) -> impl Strategy<Value = Update> {
    let unknown = (
        0u8..8,
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_filter("not a type we decode", |(_, type_code, _)| {
            !KNOWN_TYPES.contains(type_code) && *type_code != 0
        })
        .prop_map(|(flag_bits, type_code, value)| {
            PathAttribute::Unknown(RawAttribute {
                flags: 0x80 | (flag_bits << 5 & 0x60),
                type_code,
                value,
            })
        });
    (
        prop::collection::vec(arb_ipv4_net(), 0..20),
        prop::collection::vec(arb_ipv4_net(), 0..20),
        prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ],
        arb_as_path(four_octet),
        arb_next_hop(),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..80),
        prop::collection::vec(any::<(u32, u32, u32)>(), 0..30),
        prop::option::of((arb_mp_next_hop(), arb_mp_nlri())),
        prop::option::of(arb_mp_nlri()),
        (
            any::<bool>(),
            prop::option::of(arb_as_path(true)),
            prop::option::of(unknown),
        ),
    )
        .prop_map(
            |(
                withdrawn,
                nlri,
                origin,
                as_path,
                next_hop,
                med,
                local_pref,
                communities,
                large,
                reach,
                unreach,
                (atomic, as4_path, unknown),
            )| {
                let mut attributes = Vec::new();
                let announces = !nlri.is_empty() || reach.is_some();
                if announces || atomic {
                    attributes.push(PathAttribute::Origin(origin));
                    attributes.push(PathAttribute::AsPath(as_path));
                }
                if !nlri.is_empty() {
                    attributes.push(PathAttribute::NextHop(next_hop));
                }
                attributes.extend(med.map(PathAttribute::MultiExitDisc));
                attributes.extend(local_pref.map(PathAttribute::LocalPref));
                if atomic {
                    attributes.push(PathAttribute::AtomicAggregate);
                }
                if !communities.is_empty() {
                    attributes.push(PathAttribute::Communities(communities));
                }
                if !large.is_empty() {
                    attributes.push(PathAttribute::LargeCommunities(
                        large.into_iter().map(Into::into).collect(),
                    ));
                }
                attributes
                    .extend(reach.map(|(next_hop, nlri)| {
                        PathAttribute::MpReach(MpReach { next_hop, nlri })
                    }));
                attributes.extend(unreach.map(PathAttribute::MpUnreach));
                attributes.extend(as4_path.map(PathAttribute::As4Path));
                attributes.extend(unknown);
                Update {
                    withdrawn,
                    attributes,
                    nlri,
                    errors: Vec::new(),
                }
            },
        )
}

fn arb_capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        (any::<u16>(), any::<u8>())
            .prop_map(|(afi, safi)| Capability::Multiprotocol(AddressFamily { afi, safi })),
        Just(Capability::RouteRefresh),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (
            any::<(bool, bool)>(),
            0..=crate::bgp::graceful_restart::MAX_RESTART_TIME,
            prop::collection::vec((any::<(u16, u8)>(), any::<bool>()), 0..4)
        )
            .prop_map(|((restart_state, notification), restart_time, families)| {
                use crate::bgp::graceful_restart::{GracefulRestart, GracefulRestartFamily};
                Capability::GracefulRestart(GracefulRestart {
                    restart_state,
                    notification,
                    restart_time,
                    families: families
                        .into_iter()
                        .map(
                            |((afi, safi), forwarding_preserved)| GracefulRestartFamily {
                                family: AddressFamily { afi, safi },
                                forwarding_preserved,
                            },
                        )
                        .collect(),
                })
            }),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..20))
            .prop_filter("not a capability we decode", |(code, _)| ![1, 2, 64, 65]
                .contains(code))
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn arb_message(four_octet: bool) -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Keepalive),
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            prop::collection::vec(arb_capability(), 0..10)
        )
            .prop_map(|(my_as, hold_time, id, capabilities)| Message::Open(Open {
                version: BGP_VERSION,
                my_as,
                hold_time,
                bgp_identifier: id.into(),
                capabilities
            })),
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(
                |(code, subcode, data)| Message::Notification(Notification::new(
                    code, subcode, data
                ))
            ),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(afi, safi, subtype)| {
            Message::RouteRefresh(RouteRefresh {
                family: AddressFamily { afi, safi },
                subtype,
            })
        }),
        arb_update(four_octet).prop_map(Message::Update),
    ]
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600), four_octet in any::<bool>()) {
        let _ = decode_message(&bytes, CodecOptions { four_octet_as: four_octet });
    }

    #[test]
    fn decoding_corrupted_valid_messages_never_panics(
        message in arb_message(true),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        four_octet in any::<bool>(),
    ) {
        let options = CodecOptions { four_octet_as: true };
        if let Ok(mut bytes) = encode_message(&message, options) {
            let len = bytes.len();
            // Keep the marker so the body parsers are exercised, not only the header check.
            for (index, value) in flips {
                if let Some(byte) = bytes.get_mut(16 + index.index(len - 16)) {
                    *byte = value;
                }
            }
            let _ = decode_message(&bytes, CodecOptions { four_octet_as: four_octet });
        }
    }

    #[test]
    fn encode_then_decode_is_identity(four_octet in any::<bool>(), message in any::<bool>().prop_flat_map(arb_message)) {
        let options = CodecOptions { four_octet_as: four_octet };
        // A 4-octet path on a 2-octet session is lossy (AS_TRANS), so only check those
        // messages on 4-octet sessions.
        let lossless = four_octet || match &message {
            Message::Update(update) => !update.attributes.iter().any(|a| matches!(a, PathAttribute::AsPath(p) if p.contains_4_octet_as())),
            _ => true,
        };
        match encode_message(&message, options) {
            Ok(bytes) => {
                prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
                if lossless {
                    prop_assert_eq!(decode_message(&bytes, options), Ok(Some((message, bytes.len()))));
                }
            }
            Err(EncodeError::MessageTooLong { length }) => prop_assert!(length > MAX_MESSAGE_LEN),
            Err(other) => prop_assert!(false, "unexpected encode error {other}"),
        }
    }
}
