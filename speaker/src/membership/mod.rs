//! Speaker liveness by gossip: a SWIM failure detector (the `foca` crate)
//! over UDP datagrams authenticated with a shared key.
//!
//! [`Membership::start`] runs one tokio task that owns the socket and the
//! protocol state, and publishes the names of the nodes whose speaker is
//! alive (ours always included) on a `watch` channel. The election reads
//! that set; the Node Ready condition is its fallback.
//!
//! Pure parts: [`auth`] (the datagram envelope and its keys), [`keys`]
//! (which keys the flags and a key file ask for), [`inbound`] (a datagram's
//! receive path: envelope, then foca), [`identity`] (who a member
//! is, and how a restarted speaker outranks its previous run), [`alive`]
//! (foca notifications to the alive set), [`reach`] (the reach reports sent
//! next to foca's messages), [`timers`] (foca's timer queue)
//! and [`GossipTimings::foca_config`]. The shells are [`shell`] and
//! [`key_file`] (follows `--gossip-key-file`).

#[deny(missing_docs)]
pub mod alive;
#[deny(missing_docs)]
pub mod auth;
#[deny(missing_docs)]
pub mod identity;
#[deny(missing_docs)]
pub mod inbound;
#[deny(missing_docs)]
pub mod key_file;
#[deny(missing_docs)]
pub mod keys;
pub mod metrics;
#[deny(missing_docs)]
pub mod reach;
mod shell;
#[deny(missing_docs)]
pub mod timers;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

pub use metrics::{Direction, MembershipMetrics, RejectReason};
pub use shell::{KeySetter, Membership};

/// How often and how patiently the speakers check on each other.
///
/// The defaults aim at a new owner within about 1 s (p50) of a speaker
/// dying on a LAN. A dead member is noticed when someone probes it: each
/// member probes one other member per `probe_period`, in a shuffled
/// round-robin, so in a small group the dead one is probed within about a
/// period. The probe waits `probe_rtt` for an Ack, then asks
/// `num_indirect_probes` others to try, and at the next period the member
/// is Suspect. It is Down `suspect_to_down_after` later unless it refutes.
/// Expected: ~150 ms (phase) + 300 ms + 400 ms ~ 0.85 s; the tail grows by
/// a period each time no member happened to probe the dead one. `gossip_interval`
/// spreads Suspect/Down to everyone quickly so that all speakers switch
/// owner at nearly the same time.
///
/// Why not shorter: `probe_rtt` of 150 ms is two orders of magnitude above
/// a LAN round trip, which absorbs a busy node's scheduling delays; 400 ms
/// of suspicion is one probe period plus slack, enough for a falsely
/// suspected member to hear of it (by gossip) and refute. Halving
/// everything would halve detection time but make false alarms, and with
/// them owner flaps, much likelier on loaded nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipTimings {
    /// How often each member probes another one.
    pub probe_period: Duration,
    /// How long a direct probe waits before indirect probes are sent.
    /// Must be shorter than `probe_period`.
    pub probe_rtt: Duration,
    /// How long a Suspect member has to refute before it is Down.
    pub suspect_to_down_after: Duration,
    /// How many members are asked to probe a member that did not answer.
    pub num_indirect_probes: usize,
    /// How many times each update is piggybacked on outgoing messages.
    pub max_transmissions: u8,
    /// How often updates are pushed to `gossip_fanout` random members,
    /// besides riding on probes.
    pub gossip_interval: Duration,
    /// How many members each periodic gossip goes to.
    pub gossip_fanout: usize,
    /// How often we announce ourselves to seeds that are not members, and
    /// to members we consider Down, so that a partition heals by itself.
    pub rejoin_interval: Duration,
    /// The longest [`Membership::leave`] waits for the goodbye to be sent.
    pub leave_timeout: Duration,
}

impl Default for GossipTimings {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(300),
            probe_rtt: Duration::from_millis(150),
            suspect_to_down_after: Duration::from_millis(400),
            num_indirect_probes: 3,
            max_transmissions: 8,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            rejoin_interval: Duration::from_secs(2),
            leave_timeout: Duration::from_millis(500),
        }
    }
}

/// Largest datagram we send: below a 1500-byte MTU with room for IP/UDP
/// headers (and IPv6), as foca's docs advise for UDP.
pub const MAX_DATAGRAM: usize = 1400;

/// How long foca remembers a Down member's address. Restarted speakers do
/// not have to wait for it (their identity renews); it only bounds memory.
const REMEMBER_DOWN_FOR: Duration = Duration::from_secs(3600);

/// How many `rejoin_interval`s pass between announcements to one random
/// live member, which fills in members we have not heard of yet.
const ROSTER_REFRESH_EVERY: u32 = 5;

impl GossipTimings {
    /// The foca configuration for these timings, or why they cannot work.
    pub fn foca_config(&self) -> Result<foca::Config, MembershipError> {
        let invalid = |why: &str| Err(MembershipError::InvalidTimings(why.to_owned()));
        for (name, value) in [
            ("probe_period", self.probe_period),
            ("probe_rtt", self.probe_rtt),
            ("suspect_to_down_after", self.suspect_to_down_after),
            ("gossip_interval", self.gossip_interval),
            ("rejoin_interval", self.rejoin_interval),
        ] {
            if value.is_zero() {
                return invalid(&format!("{name} must not be zero"));
            }
        }
        if self.probe_rtt >= self.probe_period {
            return invalid("probe_rtt must be shorter than probe_period");
        }
        let Some(num_indirect_probes) = NonZeroUsize::new(self.num_indirect_probes) else {
            return invalid("num_indirect_probes must not be zero");
        };
        let Some(max_transmissions) = NonZeroU8::new(self.max_transmissions) else {
            return invalid("max_transmissions must not be zero");
        };
        let Some(gossip_fanout) = NonZeroUsize::new(self.gossip_fanout) else {
            return invalid("gossip_fanout must not be zero");
        };
        let Some(max_packet_size) = NonZeroUsize::new(MAX_DATAGRAM - auth::ENVELOPE_OVERHEAD)
        else {
            return invalid("no room for a payload in a datagram");
        };
        let one = NonZeroUsize::MIN;
        let two = one.saturating_add(1);
        Ok(foca::Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            num_indirect_probes,
            max_transmissions,
            suspect_to_down_after: self.suspect_to_down_after,
            remove_down_after: Some(REMEMBER_DOWN_FOR),
            max_packet_size,
            // A member the group declared Down by mistake learns it, renews
            // its identity and rejoins, instead of talking into the void.
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.rejoin_interval.saturating_mul(ROSTER_REFRESH_EVERY),
                num_members: one,
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.rejoin_interval,
                num_members: two,
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.gossip_interval,
                num_members: gossip_fanout,
            }),
        })
    }
}

/// Everything [`Membership::start`] needs.
#[derive(Clone)]
pub struct MembershipConfig {
    /// This node's name, as in the Node object.
    pub node_name: String,
    /// The local address the UDP socket binds.
    pub bind: SocketAddr,
    /// The address other speakers reach us at. Port 0 means "the port the
    /// socket was given", and an unspecified IP "the bound IP"; both are
    /// for tests binding ephemeral ports.
    pub advertise: SocketAddr,
    /// Gossip addresses of other speakers to announce ourselves to.
    pub seeds: Vec<SocketAddr>,
    /// The shared keys: signs with the first, accepts any.
    pub authenticator: auth::Authenticator,
    /// Protocol timings.
    pub timings: GossipTimings,
}

impl std::fmt::Debug for MembershipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipConfig")
            .field("node_name", &self.node_name)
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("authenticator", &self.authenticator)
            .field("timings", &self.timings)
            .finish()
    }
}

/// Why the membership could not start.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The node name is empty.
    #[error("the node name is empty")]
    EmptyNodeName,
    /// The timings cannot drive the protocol.
    #[error("invalid gossip timings: {0}")]
    InvalidTimings(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind the gossip socket to {addr}: {source}")]
    Bind {
        /// The address we tried.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The operating system's random source failed (seeding the RNG that
    /// picks probe targets).
    #[error("cannot seed the gossip RNG: {0}")]
    Randomness(String),
}

/// `advertise` with its unspecified parts filled from the bound address.
fn resolve_advertise(advertise: SocketAddr, bound: SocketAddr) -> SocketAddr {
    let ip = if advertise.ip().is_unspecified() {
        bound.ip()
    } else {
        advertise.ip()
    };
    let port = if advertise.port() == 0 {
        bound.port()
    } else {
        advertise.port()
    };
    SocketAddr::new(ip, port)
}

/// The seeds worth announcing to: not ourselves, each once, in order.
fn usable_seeds(seeds: Vec<SocketAddr>, ourselves: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut usable: Vec<SocketAddr> = Vec::with_capacity(seeds.len());
    for seed in seeds {
        if !ourselves.contains(&seed) && !usable.contains(&seed) {
            usable.push(seed);
        }
    }
    usable
}
