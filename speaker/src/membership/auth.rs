//! Authentication of gossip datagrams with a shared key (HMAC-SHA256).
//!
//! A datagram on the wire is `version (1 byte) || payload || tag (32 bytes)`,
//! where `tag = HMAC-SHA256(key, DOMAIN || version || payload)`. The version
//! byte also says what the payload is ([`Envelope`]): 1 for foca's messages,
//! 2 for a reach report (`super::reach`). Speakers that predate reach reports
//! refuse version 2 as an unsupported version, after checking its tag. The domain
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
/// The envelope version of foca's messages, the only one [`Authenticator::seal`]
/// writes and [`Authenticator::open`] accepts.
pub const ENVELOPE_VERSION: u8 = Envelope::Gossip as u8;

/// What an envelope carries, by its version byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Envelope {
    /// A foca (SWIM) message.
    Gossip = 1,
    /// A reach report: which interfaces the sender cannot announce on.
    Reach = 2,
}

impl Envelope {
    fn of(version: u8) -> Option<Envelope> {
        match version {
            1 => Some(Envelope::Gossip),
            2 => Some(Envelope::Reach),
            _ => None,
        }
    }
}
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

    /// The datagram carrying foca's `payload`, signed with the first key.
    pub fn seal(&self, payload: &[u8]) -> Vec<u8> {
        self.seal_as(Envelope::Gossip, payload)
    }

    /// The datagram carrying `payload` of kind `envelope`, signed with the first key.
    pub fn seal_as(&self, envelope: Envelope, payload: &[u8]) -> Vec<u8> {
        let version = envelope as u8;
        let mut datagram = Vec::with_capacity(payload.len() + ENVELOPE_OVERHEAD);
        datagram.push(version);
        datagram.extend_from_slice(payload);
        let tag = Self::mac_over(&self.signing, version, payload)
            .finalize()
            .into_bytes();
        datagram.extend_from_slice(&tag);
        datagram
    }

    /// The foca payload of an authentic datagram: signed with any of the keys.
    pub fn open<'a>(&self, datagram: &'a [u8]) -> Result<&'a [u8], OpenError> {
        match self.open_any(datagram)? {
            (Envelope::Gossip, payload) => Ok(payload),
            (other, _) => Err(OpenError::UnsupportedVersion(other as u8)),
        }
    }

    /// The kind and payload of an authentic datagram of any kind we read.
    pub fn open_any<'a>(&self, datagram: &'a [u8]) -> Result<(Envelope, &'a [u8]), OpenError> {
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
        let envelope = Envelope::of(*version).ok_or(OpenError::UnsupportedVersion(*version))?;
        Ok((envelope, payload))
    }
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
