//! Authentication of gossip datagrams with a shared key (HMAC-SHA256).
//!
//! A datagram on the wire is `version (1 byte) || payload || tag (32 bytes)`,
//! where `tag = HMAC-SHA256(key, DOMAIN || version || payload)`. The domain
//! string keeps a tag made for this protocol from being valid for any other
//! use of the same Secret. The tag is checked in constant time before
//! anything else in the datagram is looked at.
//!
//! This gives integrity and origin (someone holding the key), not secrecy
//! and not freshness: a captured datagram can be replayed. foca's probe
//! numbers and incarnations make most replays harmless (an old `Ack` does
//! not match the current probe), but replay protection would need a
//! timestamp or counter in the authenticated part.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of the authentication tag appended to every datagram.
pub const TAG_LEN: usize = 32;
/// The envelope version this code writes and accepts.
pub const ENVELOPE_VERSION: u8 = 1;
/// Bytes an envelope adds around the payload.
pub const ENVELOPE_OVERHEAD: usize = 1 + TAG_LEN;

/// Mixed into every tag so that it only vouches for FerroLB gossip.
const DOMAIN: &[u8] = b"ferrolb-speaker-gossip\0";

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An empty key would let anyone forge datagrams.
    #[error("the gossip key is empty")]
    Empty,
}

/// Why a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short to hold a version byte and a tag.
    #[error("datagram of {len} bytes is too short for the {ENVELOPE_OVERHEAD}-byte envelope")]
    Truncated {
        /// The datagram's length.
        len: usize,
    },
    /// The tag does not match: a different key, or the bytes were altered.
    #[error("bad authentication tag (wrong key or altered datagram)")]
    BadTag,
    /// Authentic, but written by a newer (or older) envelope format.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
}

/// Seals and opens datagrams with one shared key.
#[derive(Clone)]
pub struct Authenticator {
    /// The keyed HMAC state, cloned for each datagram (cheaper than keying again).
    keyed: HmacSha256,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print anything derived from the key.
        f.write_str("Authenticator { .. }")
    }
}

impl Authenticator {
    /// An authenticator for `key`, which must not be empty.
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        // HMAC takes keys of any length, so this cannot fail for a non-empty key;
        // map it anyway rather than unwrap.
        let keyed = HmacSha256::new_from_slice(key).map_err(|_| KeyError::Empty)?;
        Ok(Self { keyed })
    }

    fn mac_over(&self, version: u8, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(DOMAIN);
        mac.update(&[version]);
        mac.update(payload);
        mac
    }

    /// The datagram carrying `payload`.
    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let tag = self
            .mac_over(ENVELOPE_VERSION, payload)
            .finalize()
            .into_bytes();
        let mut datagram = Vec::with_capacity(payload.len() + ENVELOPE_OVERHEAD);
        datagram.push(ENVELOPE_VERSION);
        datagram.extend_from_slice(payload);
        datagram.extend_from_slice(&tag);
        datagram
    }

    /// The payload of an authentic datagram.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<&'a [u8], OpenError> {
        let len = datagram.len();
        let (version, rest) = datagram
            .split_first()
            .filter(|_| len >= ENVELOPE_OVERHEAD)
            .ok_or(OpenError::Truncated { len })?;
        let (payload, tag) = rest.split_at(rest.len() - TAG_LEN);
        // `verify_slice` compares in constant time.
        self.mac_over(*version, payload)
            .verify_slice(tag)
            .map_err(|_| OpenError::BadTag)?;
        if *version != ENVELOPE_VERSION {
            return Err(OpenError::UnsupportedVersion(*version));
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn authenticator(key: &[u8]) -> Authenticator {
        Authenticator::new(key).expect("the test key is accepted")
    }

    #[test]
    fn an_empty_key_is_refused() {
        assert_eq!(Authenticator::new(b"").err(), Some(KeyError::Empty));
    }

    #[test]
    fn a_sealed_payload_opens_to_itself() {
        let auth = authenticator(b"secret");
        let datagram = auth.seal(b"hello");
        assert_eq!(datagram.len(), 5 + ENVELOPE_OVERHEAD);
        assert_eq!(datagram.first(), Some(&ENVELOPE_VERSION));
        assert_eq!(auth.open(&datagram), Ok(&b"hello"[..]));
    }

    #[test]
    fn an_empty_payload_round_trips() {
        let auth = authenticator(b"secret");
        assert_eq!(auth.open(&auth.seal(b"")), Ok(&b""[..]));
    }

    #[test]
    fn another_key_gives_a_bad_tag() {
        let datagram = authenticator(b"secret").seal(b"hello");
        assert_eq!(
            authenticator(b"other").open(&datagram),
            Err(OpenError::BadTag)
        );
    }

    #[test]
    fn short_datagrams_are_truncated() {
        let auth = authenticator(b"secret");
        for len in 0..ENVELOPE_OVERHEAD {
            let datagram = vec![ENVELOPE_VERSION; len];
            assert_eq!(auth.open(&datagram), Err(OpenError::Truncated { len }));
        }
    }

    #[test]
    fn an_authentic_datagram_of_another_version_is_named_as_such() {
        let auth = authenticator(b"secret");
        let mut datagram = vec![7u8];
        datagram.extend_from_slice(b"payload");
        let tag = auth.mac_over(7, b"payload").finalize().into_bytes();
        datagram.extend_from_slice(&tag);
        assert_eq!(auth.open(&datagram), Err(OpenError::UnsupportedVersion(7)));
    }

    #[test]
    fn debug_output_hides_the_key() {
        let shown = format!("{:?}", authenticator(b"super-secret-key"));
        assert!(!shown.contains("super"));
    }

    proptest! {
        #[test]
        fn opening_arbitrary_bytes_never_panics_and_never_authenticates(
            bytes in proptest::collection::vec(any::<u8>(), 0..2048)
        ) {
            let result = authenticator(b"secret").open(&bytes);
            prop_assert!(result.is_err());
        }

        #[test]
        fn any_single_bit_flip_is_rejected(
            payload in proptest::collection::vec(any::<u8>(), 0..1400),
            bit in any::<proptest::sample::Index>(),
        ) {
            let auth = authenticator(b"secret");
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
            let auth = authenticator(b"secret");
            let datagram = auth.seal(&payload);
            let shortened = datagram.split_last().map(|(_, rest)| rest).unwrap_or_default();
            prop_assert!(auth.open(shortened).is_err());
        }
    }
}
