//! Who a speaker is in the gossip group.
//!
//! foca keeps one member per [`Identity::Addr`]. We key members by the
//! socket address they gossip on, not by node name, because a joining
//! speaker only knows its seeds by address (foca accepts an `Announce`
//! whose destination has the right `addr`, whatever the rest says).
//!
//! A restarted speaker on the same address must win over the identity the
//! group still remembers (maybe as Down): its `generation` starts at the
//! wall clock in milliseconds, so it is larger than that of any earlier run,
//! and [`Identity::renew`] bumps it when the group declared us Down by
//! mistake (a partition, a long pause), which lets us rejoin at once.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use foca::Identity;
use serde::{Deserialize, Serialize};

/// One run of one speaker, as the gossip group knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpeakerId {
    /// The Kubernetes Node name the speaker runs on.
    pub node_name: String,
    /// Where the speaker receives gossip (its advertised address).
    pub addr: SocketAddr,
    /// Larger wins among identities that share `addr`.
    pub generation: u64,
}

impl SpeakerId {
    /// An identity for a speaker starting now: its generation is the wall
    /// clock in milliseconds, so a restart outranks the previous run
    /// (as long as the node's clock did not step back across the restart).
    pub fn starting_now(node_name: String, addr: SocketAddr) -> Self {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|since_epoch| u64::try_from(since_epoch.as_millis()).ok())
            .unwrap_or(0);
        Self {
            node_name,
            addr,
            generation,
        }
    }

    /// A stand-in for a seed whose name and generation we do not know yet.
    /// foca only uses it as the destination of an `Announce`, which the seed
    /// accepts because the address matches; it never becomes a member.
    pub fn seed_placeholder(addr: SocketAddr) -> Self {
        Self {
            node_name: String::new(),
            addr,
            generation: 0,
        }
    }
}

impl Identity for SpeakerId {
    type Addr = SocketAddr;

    /// Opt in to foca's automatic rejoin: the same node and address, one
    /// generation later (so it wins [`Identity::win_addr_conflict`]).
    fn renew(&self) -> Option<Self> {
        Some(Self {
            node_name: self.node_name.clone(),
            addr: self.addr,
            generation: self.generation.checked_add(1)?,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The later generation wins. Equal generations on one address only
    /// happen if two speakers are misconfigured to share it; the node name
    /// then breaks the tie so every member picks the same winner.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.node_name) > (adversary.generation, &adversary.node_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, port: u16, generation: u64) -> SpeakerId {
        SpeakerId {
            node_name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            generation,
        }
    }

    #[test]
    fn renew_keeps_name_and_address_and_wins_over_the_old_identity() {
        let old = id("node-a", 7946, 41);
        let renewed = old.renew();
        assert_eq!(renewed, Some(id("node-a", 7946, 42)));
        let renewed = renewed.unwrap_or_else(|| old.clone());
        assert_eq!(renewed.addr(), old.addr());
        assert!(renewed.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&renewed));
    }

    #[test]
    fn renew_gives_up_instead_of_wrapping_the_generation() {
        assert_eq!(id("node-a", 1, u64::MAX).renew(), None);
    }

    #[test]
    fn exactly_one_side_wins_an_equal_generation_conflict() {
        let a = id("node-a", 7946, 5);
        let b = id("node-b", 7946, 5);
        assert!(a.win_addr_conflict(&b) != b.win_addr_conflict(&a));
    }

    #[test]
    fn a_later_start_outranks_an_earlier_one() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7946));
        let first = SpeakerId::starting_now("node-a".into(), addr);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = SpeakerId::starting_now("node-a".into(), addr);
        assert!(second.win_addr_conflict(&first));
    }

    #[test]
    fn the_seed_placeholder_shares_only_the_address() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7946));
        let placeholder = SpeakerId::seed_placeholder(addr);
        assert_eq!(placeholder.addr(), addr);
        assert!(SpeakerId::starting_now("node-a".into(), addr).win_addr_conflict(&placeholder));
    }
}
