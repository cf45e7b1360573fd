//! Graceful Restart (RFC 4724): the capability in OPEN and the End-of-RIB marker.
//!
//! We are the restarting side only: the router, as helper, keeps our routes
//! (marked stale) for the restart time when our TCP connection closes without a
//! NOTIFICATION, and drops those we did not send again once our End-of-RIB
//! arrives on the new session.

use super::message::{AddressFamily, MpNlri, PathAttribute, Update};

/// The capability code (RFC 4724 §3).
pub const CAPABILITY_CODE: u8 = 64;
/// The largest restart time the 12-bit field holds, in seconds.
pub const MAX_RESTART_TIME: u16 = 0x0fff;

const RESTART_STATE: u8 = 0x80;
const NOTIFICATION: u8 = 0x40;
const FORWARDING_STATE: u8 = 0x80;

/// The Graceful Restart capability's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R: the sender has restarted (the receiver must not wait for its End-of-RIB
    /// before sending its own routes).
    pub restart_state: bool,
    /// N (RFC 8538): the sender supports graceful restart on NOTIFICATION as well.
    pub notification: bool,
    /// Seconds the helper keeps the sender's routes after the session goes down
    /// (12 bits: at most [`MAX_RESTART_TIME`]).
    pub restart_time: u16,
    /// The families the sender can restart gracefully.
    pub families: Vec<GracefulRestartFamily>,
}

/// One family of the Graceful Restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartFamily {
    /// The address family.
    pub family: AddressFamily,
    /// F: forwarding for this family was preserved across the restart.
    pub forwarding_preserved: bool,
}

impl GracefulRestart {
    /// The capability value on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.restart_state {
            flags |= RESTART_STATE;
        }
        if self.notification {
            flags |= NOTIFICATION;
        }
        let time = self.restart_time.min(MAX_RESTART_TIME).to_be_bytes();
        let mut out = vec![flags | time[0], time[1]];
        for family in &self.families {
            out.extend_from_slice(&family.family.afi.to_be_bytes());
            out.push(family.family.safi);
            out.push(if family.forwarding_preserved {
                FORWARDING_STATE
            } else {
                0
            });
        }
        out
    }

    /// Reads a capability value; `None` when its length is not 2 plus 4 per family
    /// (the caller keeps such a value as an unknown capability and never acts on it).
    pub fn decode(value: &[u8]) -> Option<GracefulRestart> {
        let (header, families) = value.split_first_chunk::<2>()?;
        if families.len() % 4 != 0 {
            return None;
        }
        let families = families
            .chunks_exact(4)
            .map(|chunk| GracefulRestartFamily {
                family: AddressFamily {
                    afi: u16::from_be_bytes([chunk[0], chunk[1]]),
                    safi: chunk[2],
                },
                forwarding_preserved: chunk[3] & FORWARDING_STATE != 0,
            })
            .collect();
        Some(GracefulRestart {
            restart_state: header[0] & RESTART_STATE != 0,
            notification: header[0] & NOTIFICATION != 0,
            restart_time: u16::from_be_bytes([header[0] & 0x0f, header[1]]),
            families,
        })
    }
}

/// The End-of-RIB marker of `family` (RFC 4724 §2): an empty UPDATE for IPv4
/// unicast, an UPDATE with an empty MP_UNREACH_NLRI otherwise. `None` for a
/// family whose prefixes we cannot write.
pub fn end_of_rib(family: AddressFamily) -> Option<Update> {
    let unreach = match family {
        AddressFamily::IPV4_UNICAST => return Some(Update::default()),
        AddressFamily::IPV6_UNICAST => MpNlri::Ipv6(Vec::new()),
        _ => return None,
    };
    Some(Update {
        attributes: vec![PathAttribute::MpUnreach(unreach)],
        ..Update::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> GracefulRestart {
        GracefulRestart {
            restart_state: true,
            notification: false,
            restart_time: 120,
            families: vec![
                GracefulRestartFamily {
                    family: AddressFamily::IPV4_UNICAST,
                    forwarding_preserved: true,
                },
                GracefulRestartFamily {
                    family: AddressFamily::IPV6_UNICAST,
                    forwarding_preserved: false,
                },
            ],
        }
    }

    #[test]
    fn encodes_flags_time_and_families_as_rfc_4724_lays_them_out() {
        assert_eq!(
            ours().encode(),
            vec![0x80, 120, 0, 1, 1, 0x80, 0, 2, 1, 0x00]
        );
    }

    #[test]
    fn round_trips_and_reads_the_notification_bit_and_a_12_bit_time() {
        assert_eq!(GracefulRestart::decode(&ours().encode()), Some(ours()));
        let bird = GracefulRestart::decode(&[0x4f, 0xff]).unwrap();
        assert!(bird.notification && !bird.restart_state);
        assert_eq!(bird.restart_time, MAX_RESTART_TIME);
        assert!(bird.families.is_empty());
    }

    #[test]
    fn a_restart_time_beyond_12_bits_is_capped_not_spilled_into_the_flags() {
        let mut long = ours();
        long.restart_time = u16::MAX;
        long.restart_state = false;
        let decoded = GracefulRestart::decode(&long.encode()).unwrap();
        assert!(!decoded.restart_state && !decoded.notification);
        assert_eq!(decoded.restart_time, MAX_RESTART_TIME);
    }

    #[test]
    fn a_value_of_the_wrong_length_is_not_read() {
        assert_eq!(GracefulRestart::decode(&[]), None);
        assert_eq!(GracefulRestart::decode(&[0x80]), None);
        assert_eq!(GracefulRestart::decode(&[0x80, 120, 0, 1, 1]), None);
    }

    #[test]
    fn end_of_rib_is_an_empty_update_or_an_empty_mp_unreach() {
        assert_eq!(
            end_of_rib(AddressFamily::IPV4_UNICAST),
            Some(Update::default())
        );
        let v6 = end_of_rib(AddressFamily::IPV6_UNICAST).unwrap();
        assert!(v6.nlri.is_empty() && v6.withdrawn.is_empty());
        assert_eq!(
            v6.attributes,
            vec![PathAttribute::MpUnreach(MpNlri::Ipv6(Vec::new()))]
        );
        assert_eq!(end_of_rib(AddressFamily { afi: 1, safi: 128 }), None);
    }
}
