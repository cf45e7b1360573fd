//! Authentication of gossip datagrams with a shared key (HMAC-SHA256).
//!
//! A datagram on the wire is `version (1 byte) || payload || tag (32 bytes)`,
//! where `tag = HMAC-SHA256(key, DOMAIN || version || payload)`. The domain
//! string keeps a tag made for this protocol from being valid for any other
//! use of the same Secret. The tag is checked in constant time before
//! anything else in the datagram is looked at.
//!
//! An [`Authenticator`] holds a short list of keys: it signs with the first
//! and accepts a datagram signed with any of them, so that the key can be
//! rotated without splitting the group (`[K1]`, then `[K2, K1]` everywhere,
//! then `[K2]`).
//!
//! A key is the bytes it is given, as they are (the Secret's text, base64 or
//! not, is not decoded), and must hold at least [`MIN_KEY_LEN`] bytes that
//! are not all whitespace.
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
/// The shortest key accepted: shorter ones are passwords, not secrets. The
/// keys the controller and the chart make are 172 and 128 characters.
pub const MIN_KEY_LEN: usize = 16;
/// The most keys one authenticator holds: a forged datagram costs one HMAC
/// per key, and a rotation needs two.
pub const MAX_KEYS: usize = 8;

/// Mixed into every tag so that it only vouches for FerroLB gossip.
const DOMAIN: &[u8] = b"ferrolb-speaker-gossip\0";

/// Why a list of keys cannot be used. `position` counts from 1 (the
/// signing key); the key itself is never shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No key at all.
    #[error("no gossip key given")]
    NoKeys,
    /// Too many keys (see [`MAX_KEYS`]).
    #[error("{count} gossip keys given; at most {MAX_KEYS} are accepted")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// An empty or whitespace-only key would let anyone forge datagrams.
    #[error("gossip key {position} is empty or only whitespace")]
    Blank {
        /// Which key, from 1.
        position: usize,
    },
    /// A key too short to be a random secret.
    #[error(
        "gossip key {position} is {len} bytes long; at least {MIN_KEY_LEN} are needed (the Secret the controller makes holds 172)"
    )]
    TooShort {
        /// Which key, from 1.
        position: usize,
        /// Its length in bytes.
        len: usize,
    },
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

/// Seals datagrams with the first of its keys and opens those sealed with
/// any of them.
#[derive(Clone)]
pub struct Authenticator {
    /// The keyed HMAC state of the first key, cloned for each datagram
    /// (cheaper than keying again).
    signing: HmacSha256,
    /// The other keys' states, in order: accepted, never used to sign.
    accepted: Vec<HmacSha256>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print anything derived from the keys.
        write!(f, "Authenticator {{ keys: {}, .. }}", self.key_count())
    }
}

/// Checks one key; `position` counts from 1.
fn check_key(position: usize, key: &[u8]) -> Result<(), KeyError> {
    if key.iter().all(u8::is_ascii_whitespace) {
        return Err(KeyError::Blank { position });
    }
    if key.len() < MIN_KEY_LEN {
        return Err(KeyError::TooShort {
            position,
            len: key.len(),
        });
    }
    Ok(())
}

impl Authenticator {
    /// An authenticator that signs with `keys[0]` and accepts any of `keys`.
    /// Refuses an empty list, more than [`MAX_KEYS`], and any key that is
    /// blank or shorter than [`MIN_KEY_LEN`].
    pub fn new<K: AsRef<[u8]>>(keys: &[K]) -> Result<Self, KeyError> {
        if keys.len() > MAX_KEYS {
            return Err(KeyError::TooMany { count: keys.len() });
        }
        let mut keyed = Vec::with_capacity(keys.len());
        for (index, key) in keys.iter().enumerate() {
            let position = index + 1;
            check_key(position, key.as_ref())?;
            // HMAC takes keys of any length, so this cannot fail for a
            // checked key; map it anyway rather than unwrap.
            let mac = HmacSha256::new_from_slice(key.as_ref())
                .map_err(|_| KeyError::Blank { position })?;
            keyed.push(mac);
        }
        let mut keyed = keyed.into_iter();
        let signing = keyed.next().ok_or(KeyError::NoKeys)?;
        Ok(Self {
            signing,
            accepted: keyed.collect(),
        })
    }

    /// How many keys are accepted (the first one signs).
    pub fn key_count(&self) -> usize {
        1 + self.accepted.len()
    }

    fn mac_over(keyed: &HmacSha256, version: u8, payload: &[u8]) -> HmacSha256 {
        let mut mac = keyed.clone();
        mac.update(DOMAIN);
        mac.update(&[version]);
        mac.update(payload);
        mac
    }

    /// The datagram carrying `payload`, signed with the first key.
    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(payload.len() + ENVELOPE_OVERHEAD);
        datagram.push(ENVELOPE_VERSION);
        datagram.extend_from_slice(payload);
        let tag = Self::mac_over(&self.signing, ENVELOPE_VERSION, payload)
            .finalize()
            .into_bytes();
        datagram.extend_from_slice(&tag);
        datagram
    }

    /// The payload of an authentic datagram: signed with any of the keys.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<&'a [u8], OpenError> {
        let len = datagram.len();
        let (version, rest) = datagram
            .split_first()
            .filter(|_| len >= ENVELOPE_OVERHEAD)
            .ok_or(OpenError::Truncated { len })?;
        let (payload, tag) = rest.split_at(rest.len() - TAG_LEN);
        // `verify_slice` compares in constant time. Which key matched is
        // visible in the timing, but nothing about the keys' bytes is.
        let mut keys = std::iter::once(&self.signing).chain(&self.accepted);
        let authentic = keys.any(|keyed| {
            Self::mac_over(keyed, *version, payload)
                .verify_slice(tag)
                .is_ok()
        });
        if !authentic {
            return Err(OpenError::BadTag);
        }
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
}
