//! RFC 7606, one case at a time, from UPDATE byte vectors: what the decoder lets the
//! session survive (and how it changes the UPDATE), and what still resets it.

use super::*;
use crate::bgp::attributes::encode_attributes;
use crate::bgp::codec::tests::{EMPTY_AS_PATH, HOST_ROUTE, NEXT_HOP, ORIGIN_IGP, update_bytes};
use crate::bgp::codec::{CodecOptions, decode_message};
use crate::bgp::message::*;
use ipnet::Ipv4Net;

const TWO_OCTET: CodecOptions = CodecOptions {
    four_octet_as: false,
};
const FOUR_OCTET: CodecOptions = CodecOptions {
    four_octet_as: true,
};

fn host_route() -> Ipv4Net {
    "198.51.100.10/32".parse().expect("prefix")
}

/// Decodes a whole UPDATE that the session survives.
fn survived(bytes: &[u8], options: CodecOptions) -> Update {
    match decode_message(bytes, options) {
        Ok(Some((Message::Update(update), used))) if used == bytes.len() => update,
        other => panic!("expected an UPDATE the session survives, got {other:?}"),
    }
}

/// The NOTIFICATION (code, subcode, data) of an UPDATE that resets the session.
fn reset(bytes: &[u8], options: CodecOptions) -> (u8, u8, Vec<u8>) {
    let notification = decode_message(bytes, options)
        .expect_err("expected a session reset")
        .notification();
    (notification.code, notification.subcode, notification.data)
}

fn actions(update: &Update) -> Vec<UpdateAction> {
    update.errors.iter().map(|error| error.action).collect()
}

/// An announcement of HOST_ROUTE with ORIGIN, AS_PATH, NEXT_HOP and then `extra`.
fn announcement_with(extra: &[u8]) -> Vec<u8> {
    let attributes = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH, &NEXT_HOP, extra].concat();
    update_bytes(&[], &attributes, &HOST_ROUTE)
}

/// The route is still announced, with ORIGIN, AS_PATH and NEXT_HOP intact.
fn assert_still_announced(update: &Update) {
    assert_eq!(update.nlri, vec![host_route()]);
    assert!(update.withdrawn.is_empty());
    assert_eq!(
        update.attributes.get(..3),
        Some(
            &[
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath::default()),
                PathAttribute::NextHop(std::net::Ipv4Addr::new(198, 51, 100, 2)),
            ][..]
        )
    );
}

/// The announced route became a withdrawal and nothing else is left.
fn assert_withdrawn(update: &Update) {
    assert_eq!(update.withdrawn, vec![host_route()], "{update:?}");
    assert!(update.nlri.is_empty());
    assert!(update.attributes.is_empty());
    assert_eq!(actions(update), vec![UpdateAction::TreatAsWithdraw]);
}

#[test]
fn a_repeated_attribute_is_discarded_and_the_first_kept() {
    // ORIGIN again (INCOMPLETE), and an unknown optional attribute twice.
    let extra = [
        [0x40, 1, 1, 2].as_slice(),
        &[0xc0, 99, 1, 1],
        &[0xc0, 99, 1, 2],
    ]
    .concat();
    let update = survived(&announcement_with(&extra), TWO_OCTET);
    assert_still_announced(&update);
    assert_eq!(
        update.errors,
        vec![
            UpdateError {
                action: UpdateAction::AttributeDiscard,
                error: DecodeError::DuplicateAttribute { type_code: 1 },
            },
            UpdateError {
                action: UpdateAction::AttributeDiscard,
                error: DecodeError::DuplicateAttribute { type_code: 99 },
            },
        ]
    );
    assert_eq!(
        update.attributes.get(3),
        Some(&PathAttribute::Unknown(RawAttribute {
            flags: 0xc0,
            type_code: 99,
            value: vec![1],
        }))
    );
    assert_eq!(update.attributes.len(), 4);
}

#[test]
fn a_repeated_mp_reach_or_mp_unreach_resets_the_session() {
    let unreach = [0x80, 15, 3, 0, 2, 1];
    let twice = [unreach.as_slice(), &unreach].concat();
    assert_eq!(
        reset(&update_bytes(&[], &twice, &[]), TWO_OCTET),
        (3, 1, vec![])
    );
    let reach = [0x80, 14, 9, 0, 1, 1, 4, 198, 51, 100, 2, 0];
    let twice = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH, &reach, &reach].concat();
    assert_eq!(
        reset(&update_bytes(&[], &twice, &[]), TWO_OCTET),
        (3, 1, vec![])
    );
}

#[test]
fn atomic_aggregate_with_a_value_is_discarded() {
    let update = survived(&announcement_with(&[0x40, 6, 1, 0]), TWO_OCTET);
    assert_still_announced(&update);
    assert_eq!(update.attributes.len(), 3, "ATOMIC_AGGREGATE left out");
    assert_eq!(actions(&update), vec![UpdateAction::AttributeDiscard]);
    assert_eq!(
        update.errors[0].error,
        DecodeError::AttributeLength {
            type_code: 6,
            attribute: vec![0x40, 6, 1, 0],
        }
    );
    // Empty, as RFC 4271 defines it, it is kept.
    let update = survived(&announcement_with(&[0x40, 6, 0]), TWO_OCTET);
    assert_eq!(
        update.attributes.get(3),
        Some(&PathAttribute::AtomicAggregate)
    );
    assert!(update.errors.is_empty());
}

#[test]
fn aggregator_of_the_wrong_length_is_discarded() {
    // AS 64512 (2 or 4 octets) and 198.51.100.2.
    let two = [0xc0, 7, 6, 0xfc, 0x00, 198, 51, 100, 2];
    let four = [0xc0, 7, 8, 0, 0, 0xfc, 0x00, 198, 51, 100, 2];
    for (options, good, bad) in [(TWO_OCTET, &two[..], &four[..]), (FOUR_OCTET, &four, &two)] {
        let update = survived(&announcement_with(good), options);
        assert!(update.errors.is_empty(), "{update:?}");
        assert_eq!(update.attributes.len(), 4, "AGGREGATOR kept raw");
        let update = survived(&announcement_with(bad), options);
        assert_still_announced(&update);
        assert_eq!(update.attributes.len(), 3, "AGGREGATOR left out");
        assert_eq!(actions(&update), vec![UpdateAction::AttributeDiscard]);
    }
    // AS4_AGGREGATOR always carries a 4-octet AS.
    let as4_short = [0xc0, 18, 6, 0xfc, 0x00, 198, 51, 100, 2];
    let update = survived(&announcement_with(&as4_short), TWO_OCTET);
    assert_still_announced(&update);
    assert_eq!(actions(&update), vec![UpdateAction::AttributeDiscard]);
}

#[test]
fn a_malformed_as4_path_is_discarded() {
    // One AS_SEQUENCE segment of one AS, but only 2 of its 4 octets.
    let update = survived(&announcement_with(&[0xc0, 17, 4, 2, 1, 0, 1]), TWO_OCTET);
    assert_still_announced(&update);
    assert_eq!(update.attributes.len(), 3);
    assert_eq!(actions(&update), vec![UpdateAction::AttributeDiscard]);
}

#[test]
fn an_unrecognized_well_known_attribute_is_treat_as_withdraw() {
    let update = survived(&announcement_with(&[0x40, 42, 1, 7]), TWO_OCTET);
    assert_withdrawn(&update);
    assert_eq!(
        update.errors[0].error,
        DecodeError::UnrecognizedWellKnownAttribute {
            type_code: 42,
            attribute: vec![0x40, 42, 1, 7],
        }
    );
    // The same type marked optional is simply kept.
    let update = survived(&announcement_with(&[0xc0, 42, 1, 7]), TWO_OCTET);
    assert_still_announced(&update);
    assert!(update.errors.is_empty());
}

#[test]
fn malformed_attributes_are_treat_as_withdraw() {
    let cases: [(&str, Vec<u8>); 11] = [
        ("ORIGIN 3", vec![0x40, 1, 1, 3]),
        ("ORIGIN of 2 bytes", vec![0x40, 1, 2, 0, 0]),
        ("AS_PATH segment type 7", vec![0x40, 2, 4, 7, 1, 0, 1]),
        ("AS_PATH segment overrun", vec![0x40, 2, 4, 2, 2, 0, 1]),
        ("NEXT_HOP of 3 bytes", vec![0x40, 3, 3, 198, 51, 100]),
        ("NEXT_HOP 0.0.0.0", vec![0x40, 3, 4, 0, 0, 0, 0]),
        ("NEXT_HOP multicast", vec![0x40, 3, 4, 224, 0, 0, 1]),
        ("MED of 2 bytes", vec![0x80, 4, 2, 0, 1]),
        ("LOCAL_PREF of 3 bytes", vec![0x40, 5, 3, 0, 0, 1]),
        ("COMMUNITIES of 5 bytes", vec![0xc0, 8, 5, 1, 2, 3, 4, 5]),
        (
            "LARGE_COMMUNITY of 11 bytes",
            [vec![0xc0, 32, 11], vec![0; 11]].concat(),
        ),
    ];
    for (case, bad) in cases {
        // The bad attribute takes the place of the good one of its type, if any.
        let good: Vec<&[u8]> = vec![&ORIGIN_IGP, &EMPTY_AS_PATH, &NEXT_HOP];
        let mut attributes: Vec<u8> = good
            .into_iter()
            .filter(|attribute| attribute[1] != bad[1])
            .flatten()
            .copied()
            .collect();
        attributes.extend_from_slice(&bad);
        let update = survived(&update_bytes(&[], &attributes, &HOST_ROUTE), TWO_OCTET);
        assert_eq!(update.withdrawn, vec![host_route()], "{case}: {update:?}");
        assert!(
            update.nlri.is_empty() && update.attributes.is_empty(),
            "{case}"
        );
        // One error: the malformed mandatory attribute does not count as missing too.
        assert_eq!(
            actions(&update),
            vec![UpdateAction::TreatAsWithdraw],
            "{case}"
        );
    }
}

#[test]
fn flags_that_contradict_the_type_are_treat_as_withdraw() {
    // ORIGIN marked optional, in place of the good one.
    let optional_origin = [[0xc0, 1, 1, 0].as_slice(), &EMPTY_AS_PATH, &NEXT_HOP].concat();
    let update = survived(&update_bytes(&[], &optional_origin, &HOST_ROUTE), TWO_OCTET);
    assert_withdrawn(&update);
    // MED marked transitive.
    let update = survived(&announcement_with(&[0xc0, 4, 4, 0, 0, 0, 1]), TWO_OCTET);
    assert_withdrawn(&update);
    assert!(matches!(
        update.errors[0].error,
        DecodeError::AttributeFlags { type_code: 4, .. }
    ));
}

#[test]
fn a_missing_well_known_attribute_is_treat_as_withdraw() {
    let no_next_hop = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH].concat();
    let update = survived(&update_bytes(&[], &no_next_hop, &HOST_ROUTE), TWO_OCTET);
    assert_withdrawn(&update);
    assert_eq!(
        update.errors[0].error,
        DecodeError::MissingWellKnownAttribute { type_code: 3 }
    );
}

#[test]
fn attribute_lengths_that_do_not_add_up_are_treat_as_withdraw_when_the_nlri_is_found() {
    // A MED claiming 9 bytes where 2 are left; then a lone byte, too short for a header.
    for tail in [[0x80, 4, 9, 0, 0].as_slice(), &[0x80]] {
        let update = survived(&announcement_with(tail), TWO_OCTET);
        assert_withdrawn(&update);
        assert!(matches!(
            update.errors[0].error,
            DecodeError::MalformedAttributeList { .. }
        ));
    }
}

#[test]
fn treat_as_withdraw_withdraws_mp_reach_prefixes_too() {
    let v6 = |text: &str| text.parse().expect("prefix");
    let mp = [
        PathAttribute::MpReach(MpReach {
            next_hop: MpNextHop::V6 {
                global: "2001:db8::2".parse().expect("address"),
                link_local: None,
            },
            nlri: MpNlri::Ipv6(vec![v6("2001:db8:1::/48")]),
        }),
        PathAttribute::MpUnreach(MpNlri::Ipv6(vec![v6("2001:db8:2::/64")])),
    ];
    let mp = encode_attributes(&mp, TWO_OCTET).expect("encodable");
    let attributes = [[0x40, 1, 1, 9].as_slice(), &EMPTY_AS_PATH, &mp].concat();
    let update = survived(&update_bytes(&[], &attributes, &[]), TWO_OCTET);
    assert_eq!(
        update.attributes,
        vec![PathAttribute::MpUnreach(MpNlri::Ipv6(vec![
            v6("2001:db8:1::/48"),
            v6("2001:db8:2::/64")
        ]))]
    );
    assert_eq!(actions(&update), vec![UpdateAction::TreatAsWithdraw]);
}

#[test]
fn the_strongest_action_applies_and_every_error_is_listed() {
    // A bad ATOMIC_AGGREGATE (discard) and an unrecognized well-known one (withdraw).
    let update = survived(&announcement_with(&[0x40, 6, 1, 0, 0x40, 42, 0]), TWO_OCTET);
    assert_eq!(update.withdrawn, vec![host_route()]);
    assert_eq!(
        actions(&update),
        vec![
            UpdateAction::AttributeDiscard,
            UpdateAction::TreatAsWithdraw
        ]
    );
    // With a malformed NLRI on top, the session resets.
    let attributes = [
        ORIGIN_IGP.as_slice(),
        &EMPTY_AS_PATH,
        &NEXT_HOP,
        &[0x40, 42, 0],
    ]
    .concat();
    assert_eq!(
        reset(
            &update_bytes(&[], &attributes, &[33, 1, 2, 3, 4, 5]),
            TWO_OCTET
        ),
        (3, 10, vec![])
    );
    assert!(UpdateAction::AttributeDiscard < UpdateAction::TreatAsWithdraw);
    assert!(UpdateAction::TreatAsWithdraw < UpdateAction::SessionReset);
}

#[test]
fn lengths_that_hide_the_nlri_reset_the_session() {
    // Total attribute length beyond the message.
    let mut bytes = announcement_with(&[]);
    bytes[21] = 1;
    assert_eq!(reset(&bytes, TWO_OCTET), (3, 1, vec![]));
    // Withdrawn routes length beyond the message.
    let mut bytes = update_bytes(&[], &[], &[]);
    bytes[20] = 9;
    assert_eq!(reset(&bytes, TWO_OCTET), (3, 1, vec![]));
}

#[test]
fn malformed_prefixes_reset_the_session() {
    // Prefix length 33 in the NLRI; a prefix cut short in the withdrawn routes.
    let attributes = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH, &NEXT_HOP].concat();
    assert_eq!(
        reset(
            &update_bytes(&[], &attributes, &[33, 1, 2, 3, 4, 5]),
            TWO_OCTET
        ),
        (3, 10, vec![])
    );
    assert_eq!(
        reset(&update_bytes(&[24, 198, 51], &[], &[]), TWO_OCTET),
        (3, 10, vec![])
    );
}

#[test]
fn malformed_mp_attributes_reset_the_session() {
    // MP_REACH with a next hop of 5 bytes; MP_UNREACH marked well-known.
    let bad_next_hop = [0x80, 14, 10, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0];
    assert_eq!(
        reset(&update_bytes(&[], &bad_next_hop, &[]), TWO_OCTET),
        (3, 9, bad_next_hop.to_vec())
    );
    let well_known_unreach = [0x40, 15, 3, 0, 2, 1];
    assert_eq!(
        reset(&update_bytes(&[], &well_known_unreach, &[]), TWO_OCTET),
        (3, 4, well_known_unreach.to_vec())
    );
}
