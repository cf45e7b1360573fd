//! Tests of the gossip envelope.

use super::*;
use proptest::prelude::*;

const K1: &[u8] = b"first key, long enough";
const K2: &[u8] = b"second key, long enough";
const SECRET: &[u8] = b"secret-16-bytes!";

fn authenticator(keys: &[&[u8]]) -> Authenticator {
    Authenticator::new(keys).expect("the test keys are accepted")
}

#[test]
fn an_empty_list_is_refused() {
    let none: [&[u8]; 0] = [];
    assert_eq!(Authenticator::new(&none).err(), Some(KeyError::NoKeys));
}

#[test]
fn empty_and_whitespace_keys_are_refused() {
    for blank in [&b""[..], b" ", b"\n", b" \t\r\n                    "] {
        assert_eq!(
            Authenticator::new(&[blank]).err(),
            Some(KeyError::Blank { position: 1 }),
            "{blank:?}"
        );
    }
    assert_eq!(
        Authenticator::new(&[K1, b"   "]).err(),
        Some(KeyError::Blank { position: 2 })
    );
}

#[test]
fn keys_shorter_than_the_minimum_are_refused() {
    assert_eq!(
        Authenticator::new(&[b"fifteen-bytes!!"]).err(),
        Some(KeyError::TooShort {
            position: 1,
            len: 15
        })
    );
    assert!(Authenticator::new(&[SECRET]).is_ok());
    assert_eq!(
        Authenticator::new(&[K1, b"short"]).err(),
        Some(KeyError::TooShort {
            position: 2,
            len: 5
        })
    );
    let message = KeyError::TooShort {
        position: 1,
        len: 5,
    }
    .to_string();
    assert!(message.contains("at least 16"), "{message}");
}

#[test]
fn the_keys_the_controller_and_the_chart_make_are_accepted() {
    // 128 random bytes as base64 (controller), 128 alphanumerics (chart).
    let base64 = "A".repeat(170) + "==";
    let alphanumeric = "x".repeat(128);
    assert!(Authenticator::new(&[base64.as_bytes()]).is_ok());
    assert!(Authenticator::new(&[alphanumeric.as_bytes()]).is_ok());
}

#[test]
fn more_than_the_maximum_number_of_keys_is_refused() {
    let keys = vec![K1; MAX_KEYS + 1];
    assert_eq!(
        Authenticator::new(&keys).err(),
        Some(KeyError::TooMany {
            count: MAX_KEYS + 1
        })
    );
    assert_eq!(
        Authenticator::new(&keys[..MAX_KEYS]).map(|a| a.key_count()),
        Ok(MAX_KEYS)
    );
}

#[test]
fn a_frame_signed_with_an_old_key_is_accepted_during_a_rotation() {
    let datagram = authenticator(&[K1]).seal(b"hello");
    assert_eq!(authenticator(&[K2, K1]).open(&datagram), Ok(&b"hello"[..]));
    assert_eq!(authenticator(&[K2]).open(&datagram), Err(OpenError::BadTag));
}

#[test]
fn the_first_key_signs() {
    let datagram = authenticator(&[K2, K1]).seal(b"hello");
    assert_eq!(authenticator(&[K1]).open(&datagram), Err(OpenError::BadTag));
    assert_eq!(authenticator(&[K2, K1]).open(&datagram), Ok(&b"hello"[..]));
    assert_eq!(authenticator(&[K2]).open(&datagram), Ok(&b"hello"[..]));
    assert_eq!(datagram, authenticator(&[K2]).seal(b"hello"));
}

#[test]
fn a_sealed_payload_opens_to_itself() {
    let auth = authenticator(&[SECRET]);
    let datagram = auth.seal(b"hello");
    assert_eq!(datagram.len(), 5 + ENVELOPE_OVERHEAD);
    assert_eq!(datagram.first(), Some(&ENVELOPE_VERSION));
    assert_eq!(auth.open(&datagram), Ok(&b"hello"[..]));
}

#[test]
fn an_empty_payload_round_trips() {
    let auth = authenticator(&[SECRET]);
    assert_eq!(auth.open(&auth.seal(b"")), Ok(&b""[..]));
}

#[test]
fn another_key_gives_a_bad_tag() {
    let datagram = authenticator(&[SECRET]).seal(b"hello");
    assert_eq!(
        authenticator(&[K1, K2]).open(&datagram),
        Err(OpenError::BadTag)
    );
}

#[test]
fn short_datagrams_are_truncated() {
    let auth = authenticator(&[SECRET]);
    for len in 0..ENVELOPE_OVERHEAD {
        let datagram = vec![ENVELOPE_VERSION; len];
        assert_eq!(auth.open(&datagram), Err(OpenError::Truncated { len }));
    }
}

#[test]
fn an_authentic_datagram_of_another_version_is_named_as_such() {
    let auth = authenticator(&[K1, SECRET]);
    let mut datagram = vec![7u8];
    datagram.extend_from_slice(b"payload");
    let keyed = HmacSha256::new_from_slice(SECRET).expect("any key length");
    let tag = Authenticator::mac_over(&keyed, 7, b"payload")
        .finalize()
        .into_bytes();
    datagram.extend_from_slice(&tag);
    assert_eq!(auth.open(&datagram), Err(OpenError::UnsupportedVersion(7)));
}

#[test]
fn a_reach_report_is_its_own_kind_and_open_refuses_it() {
    let auth = authenticator(&[SECRET]);
    let datagram = auth.seal_as(Envelope::Reach, b"report");
    assert_eq!(datagram.first(), Some(&2));
    assert_eq!(
        auth.open_any(&datagram),
        Ok((Envelope::Reach, &b"report"[..]))
    );
    // What a speaker that predates reach reports sees.
    assert_eq!(auth.open(&datagram), Err(OpenError::UnsupportedVersion(2)));
    assert_eq!(
        auth.open_any(&auth.seal(b"gossip")),
        Ok((Envelope::Gossip, &b"gossip"[..]))
    );
}

#[test]
fn debug_output_hides_the_keys() {
    let shown = format!("{:?}", authenticator(&[b"super-secret-key", K1]));
    assert!(!shown.contains("super") && !shown.contains("first"));
    assert!(shown.contains("keys: 2"), "{shown}");
}

proptest! {
    #[test]
    fn opening_arbitrary_bytes_never_panics_and_never_authenticates(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048)
    ) {
        let result = authenticator(&[SECRET]).open(&bytes);
        prop_assert!(result.is_err());
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        payload in proptest::collection::vec(any::<u8>(), 0..1400),
        bit in any::<proptest::sample::Index>(),
    ) {
        let auth = authenticator(&[SECRET]);
        let mut datagram = auth.seal(&payload);
        let bit = bit.index(datagram.len() * 8);
        if let Some(byte) = datagram.get_mut(bit / 8) {
            *byte ^= 1 << (bit % 8);
        }
        prop_assert_eq!(auth.open(&datagram), Err(OpenError::BadTag));
    }

    #[test]
    fn dropping_the_last_byte_is_rejected(
        payload in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let auth = authenticator(&[SECRET]);
        let datagram = auth.seal(&payload);
        let shortened = datagram.split_last().map(|(_, rest)| rest).unwrap_or_default();
        prop_assert!(auth.open(shortened).is_err());
    }
}
