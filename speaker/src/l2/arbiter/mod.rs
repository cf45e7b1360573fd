//! Wire arbitration: one MAC per Service IP on a link, even when gossip is
//! broken (a node cut off from the group believes it is alone and wants
//! every IP).
//!
//! The wire decides, as IPv4 Address Conflict Detection (RFC 5227) and IPv6
//! DAD do, with the election's ranking to break ties:
//!
//! - **Probe before claiming** (when the speaker's view of the group is in
//!   doubt, see [`Arbiter::want`]): send [`PROBE_COUNT`] probes
//!   [`PROBE_SPACING`] apart and listen for [`PROBE_WAIT`] from the first.
//!   Any other MAC claiming the IP meanwhile (an answer to the probe, a
//!   gratuitous ARP / unsolicited NA) means someone owns it: hold off
//!   ([`Phase::Yielded`]) and probe again later, backing off from
//!   [`RECHECK_FIRST`] to [`RECHECK_MAX`]. 200 ms is a hundred times the
//!   slowest answer measured from a speaker (1.1 ms, BENCHMARKS.md) and
//!   leaves room for a loaded node's scheduling, while keeping failover
//!   under a second; a probe answer that still arrives late is caught by
//!   the conflict rule below.
//! - **Conflict while owning**: another MAC announcing or answering for an
//!   IP we own is resolved by [`Rank`], the same per-IP weight the election
//!   uses ([`crate::election::rank`]), carried in a tag of every claim a
//!   speaker sends ([`super::claim`]). The lower rank yields at once and
//!   stops answering; the higher one sends a gratuitous burst again so the
//!   caches converge. Both compare the same two numbers, so they agree
//!   without talking. A claim without a tag (not a FerroLB speaker, or an
//!   older one) is yielded to: we never fight a host we cannot place, as
//!   RFC 5227 hosts stop defending after one try. Equal ranks (one node
//!   with two interfaces on one segment) go to the larger MAC.
//! - **Yielded** IPs are probed again later; a probe that nobody answers
//!   means the IP is free, and it is claimed.
//!
//! Pure: the shell feeds packets seen and the time, and carries out the
//! returned [`Action`]s.

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::MacAddr;
use crate::model::Regrow;

/// Probes sent before claiming.
pub const PROBE_COUNT: u32 = 2;
/// Time between probes.
pub const PROBE_SPACING: Duration = Duration::from_millis(100);
/// From the first probe to the claim, if nobody else claimed the IP.
pub const PROBE_WAIT: Duration = Duration::from_millis(200);
/// First wait before probing a held-off IP again.
pub const RECHECK_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between probes of a held-off IP.
pub const RECHECK_MAX: Duration = Duration::from_secs(2);
/// After winning a conflict, further claims of the loser (the rest of its
/// burst, sent before it saw ours) are not counted or answered again for this long.
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes of the election weight carried in a tag.
pub const RANK_LEN: usize = 16;

/// A node's rank for one IP: the leading bytes of its election weight
/// (big-endian; the larger wins, as in [`crate::election::elect`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank(pub [u8; RANK_LEN]);

impl Rank {
    /// The rank of `node` for `ip`.
    pub fn of(node: &str, ip: IpAddr) -> Rank {
        let weight = crate::election::rank(node, ip);
        let mut rank = [0u8; RANK_LEN];
        rank.copy_from_slice(&weight[..RANK_LEN]);
        Rank(rank)
    }
}

/// Where one IP stands on this interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Probing before a claim; not answering yet.
    Probing {
        /// Probes sent so far.
        sent: u32,
        /// When the next probe is due (if any remain).
        next_probe: Instant,
        /// When the IP is claimed if nobody else claimed it.
        claim_at: Instant,
        /// Wait before the next probe if this one is answered.
        backoff: Duration,
    },
    /// Answering for the IP.
    Owning {
        /// When we last won a conflict for it.
        defended_at: Option<Instant>,
    },
    /// Someone else owns the IP: not answering, probing again at `recheck_at`.
    Yielded {
        /// When to probe again.
        recheck_at: Instant,
        /// The wait after that probe, if it is answered too.
        backoff: Duration,
    },
}

impl Phase {
    /// When [`Arbiter::tick`] has something to do for an IP in this phase.
    fn deadline(&self) -> Option<Instant> {
        match *self {
            Phase::Probing {
                sent,
                next_probe,
                claim_at,
                ..
            } if sent < PROBE_COUNT => Some(next_probe.min(claim_at)),
            Phase::Probing { claim_at, .. } => Some(claim_at),
            Phase::Yielded { recheck_at, .. } => Some(recheck_at),
            Phase::Owning { .. } => None,
        }
    }
}

/// What the shell does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send one probe for the IP.
    Probe(IpAddr),
    /// Start answering for the IP and send a gratuitous burst.
    Claim(IpAddr),
    /// Still owning after a conflict: send a gratuitous burst again.
    Defend(IpAddr),
    /// Stop answering for the IP and cancel its gratuitous burst.
    Yield(IpAddr),
}

/// How a conflict ended for us: the `outcome` label of
/// `ferrolb_speaker_l2_conflicts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// A probe was answered: we did not claim the IP.
    HeldOff,
    /// We owned the IP and gave it up.
    Yielded,
    /// We owned the IP and kept it.
    Won,
}

impl Outcome {
    /// The metrics label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::HeldOff => "held_off",
            Outcome::Yielded => "yielded",
            Outcome::Won => "won",
        }
    }
}

/// A conflict seen, for the metric, the log and the Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The IP both claimed.
    pub ip: IpAddr,
    /// The other side's MAC.
    pub other: MacAddr,
    /// Whether the other side carried a rank (a FerroLB speaker).
    pub other_ranked: bool,
    /// How it ended for us.
    pub outcome: Outcome,
}

/// Another MAC claiming an IP: its answer, gratuitous ARP or unsolicited NA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The claimant's MAC.
    pub mac: MacAddr,
    /// Its rank, from the tag of its packet, if it had one.
    pub rank: Option<Rank>,
}

/// What an IP of [`Arbiter`] holds unless it has an entry in its `phases`.
const OWNING: Phase = Phase::Owning { defended_at: None };

/// The arbitration of every IP one interface wants to announce.
///
/// Memory per IP: an IP wanted and plainly owned (the settled state of nearly
/// every IP) is one entry of `ranks` (33 bytes); only the others have a
/// [`Phase`] (56 bytes) in `phases`. One map of both held 73 bytes an entry
/// for every IP, and the index of the IPs in doubt a third copy of the IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arbiter {
    our_mac: MacAddr,
    /// Every IP wanted, with this node's rank for it.
    ranks: BTreeMap<IpAddr, Rank>,
    /// `ranks` grows an IP at a time: rebuilt now and then ([`Regrow`]).
    ranks_regrow: Regrow,
    /// The phase of each IP of `ranks` not plainly owned (`Owning` without a
    /// defence): the IPs [`Arbiter::tick`] and [`Arbiter::next_deadline`] look at, so a
    /// packet or a timer costs the interface task work in proportion to the IPs in
    /// doubt, not to every IP it announces (a scan of 10,000 IPs per received packet
    /// was the speaker's largest CPU item). An IP of `ranks` without an entry here is
    /// [`OWNING`]; no entry here is `OWNING` (one state, one form: arbiters compare
    /// equal when they arbitrate alike).
    phases: BTreeMap<IpAddr, Phase>,
    /// Whether the last [`Arbiter::want`] was in doubt (probe first).
    in_doubt: bool,
}

impl Arbiter {
    /// An arbiter for the interface with `our_mac`, wanting nothing yet.
    pub fn new(our_mac: MacAddr) -> Self {
        Arbiter {
            our_mac,
            ranks: BTreeMap::new(),
            ranks_regrow: Regrow::default(),
            phases: BTreeMap::new(),
            in_doubt: false,
        }
    }

    /// The IPs wanted now, with this node's rank for each. New ones are
    /// probed first when `probe_first` (the speaker cannot be sure the
    /// previous owner is gone: it hears from no majority of the nodes, or
    /// runs without gossip), else claimed at once (a failover that the
    /// group agrees on: no probe delay). IPs no longer wanted are dropped
    /// (the shell stops answering them). When the wanted set changed,
    /// held-off IPs are probed again at once: a plan change is what a
    /// healed partition looks like, and the old owner may be gone. When
    /// the doubt ends (the speaker hears a majority again, as after a
    /// rejoin), IPs still probing or held off are claimed at once: the
    /// group agrees they are ours, and the node that held them meanwhile
    /// hears the same group and stops (any overlap is settled by rank).
    /// Waiting for the next re-probe instead left an IP unanswered for up
    /// to [`RECHECK_MAX`] after the old owner let go.
    ///
    /// [`Arbiter::update`] with every IP wanted as gained and the others as lost.
    pub fn want(
        &mut self,
        wanted: &BTreeMap<IpAddr, Rank>,
        probe_first: bool,
        now: Instant,
    ) -> Vec<Action> {
        let lost: BTreeSet<IpAddr> = self
            .ranks
            .keys()
            .filter(|ip| !wanted.contains_key(ip))
            .copied()
            .collect();
        self.update(wanted, &lost, probe_first, now)
    }

    /// [`Arbiter::want`] given only what changed: the IPs `gained` (with this node's
    /// rank for each; IPs already wanted only take the rank) and `lost` since the
    /// last call (an IP in both stays), the rest wanted as before. The same state
    /// and the same actions as `want` with the whole set (the property test
    /// `update_is_want_of_the_whole_set` checks it), with work in proportion to
    /// the change and the IPs in doubt rather than to every IP wanted: an
    /// EndpointSlice change at 10,000 IPs visited all 10,000 several times.
    pub fn update(
        &mut self,
        gained: &BTreeMap<IpAddr, Rank>,
        lost: &BTreeSet<IpAddr>,
        probe_first: bool,
        now: Instant,
    ) -> Vec<Action> {
        let mut changed = false;
        for ip in lost {
            if !gained.contains_key(ip) && self.ranks.remove(ip).is_some() {
                self.phases.remove(ip);
                changed = true;
            }
        }
        changed |= gained.keys().any(|ip| !self.ranks.contains_key(ip));
        let doubt_ended = self.in_doubt && !probe_first;
        self.in_doubt = probe_first;
        // One action at most per IP here, in IP order.
        let mut decided: BTreeMap<IpAddr, Action> = BTreeMap::new();
        if doubt_ended {
            // Every IP probing or held off is claimed (owned plainly: no entry).
            self.phases.retain(|ip, phase| {
                let waiting = !matches!(phase, Phase::Owning { .. });
                if waiting {
                    decided.insert(*ip, Action::Claim(*ip));
                }
                !waiting
            });
        } else if changed {
            for phase in self.phases.values_mut() {
                if let Phase::Yielded { recheck_at, .. } = phase {
                    *recheck_at = now;
                }
            }
        }
        for (ip, rank) in gained {
            if let Some(held) = self.ranks.get_mut(ip) {
                *held = *rank;
                continue;
            }
            if probe_first {
                decided.insert(*ip, Action::Probe(*ip));
                self.phases.insert(*ip, probing(now, RECHECK_FIRST));
            } else {
                decided.insert(*ip, Action::Claim(*ip));
            }
            self.ranks.insert(*ip, *rank);
        }
        self.ranks_regrow.after_inserts(&mut self.ranks);
        let mut actions: Vec<Action> = decided.into_values().collect();
        actions.extend(self.tick(now));
        actions
    }

    /// The IPs wanted, in order.
    pub fn wanted(&self) -> impl Iterator<Item = &IpAddr> {
        self.ranks.keys()
    }

    /// Another MAC claims `ip`. Returns what to do and the conflict, if it is one.
    pub fn observe(
        &mut self,
        ip: IpAddr,
        claim: Claim,
        now: Instant,
    ) -> (Option<Action>, Option<Conflict>) {
        let our_mac = self.our_mac;
        let (Some(rank), Some(phase)) = (self.rank(&ip), self.phase(&ip)) else {
            return (None, None);
        };
        if claim.mac == our_mac {
            return (None, None);
        }
        let conflict = |outcome| Conflict {
            ip,
            other: claim.mac,
            other_ranked: claim.rank.is_some(),
            outcome,
        };
        match phase {
            Phase::Probing { backoff, .. } => {
                self.phases.insert(ip, yielded(our_mac, ip, now, backoff));
                (None, Some(conflict(Outcome::HeldOff)))
            }
            Phase::Yielded { .. } => (None, None),
            Phase::Owning { defended_at } => {
                let we_win = claim
                    .rank
                    .is_some_and(|theirs| (rank, our_mac) > (theirs, claim.mac));
                if !we_win {
                    self.phases
                        .insert(ip, yielded(our_mac, ip, now, RECHECK_FIRST));
                    return (Some(Action::Yield(ip)), Some(conflict(Outcome::Yielded)));
                }
                if defended_at.is_some_and(|at| now < at + DEFEND_INTERVAL) {
                    return (None, None);
                }
                let defended = Phase::Owning {
                    defended_at: Some(now),
                };
                self.phases.insert(ip, defended);
                (Some(Action::Defend(ip)), Some(conflict(Outcome::Won)))
            }
        }
    }

    /// What is due at `now`: probes, claims after a quiet probe, re-probes.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut claimed = Vec::new();
        for (ip, phase) in &mut self.phases {
            match phase {
                Phase::Probing {
                    sent,
                    next_probe,
                    claim_at,
                    ..
                } => {
                    if now >= *claim_at {
                        claimed.push(*ip);
                        actions.push(Action::Claim(*ip));
                    } else if *sent < PROBE_COUNT && now >= *next_probe {
                        *sent += 1;
                        *next_probe = now + PROBE_SPACING;
                        actions.push(Action::Probe(*ip));
                    }
                }
                Phase::Yielded {
                    recheck_at,
                    backoff,
                } => {
                    if now >= *recheck_at {
                        let next = (*backoff * 2).min(RECHECK_MAX);
                        *phase = probing(now, next);
                        actions.push(Action::Probe(*ip));
                    }
                }
                Phase::Owning { .. } => {}
            }
        }
        // Claimed: owned plainly, so no entry.
        for ip in claimed {
            self.phases.remove(&ip);
        }
        actions
    }

    /// When [`Arbiter::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.phases.values().filter_map(Phase::deadline).min()
    }

    /// Whether we answer for `ip` here.
    pub fn owns(&self, ip: &IpAddr) -> bool {
        self.phase(ip)
            .is_some_and(|phase| matches!(phase, Phase::Owning { .. }))
    }

    /// Where `ip` stands, if it is wanted.
    pub fn phase(&self, ip: &IpAddr) -> Option<Phase> {
        if !self.ranks.contains_key(ip) {
            return None;
        }
        Some(self.phases.get(ip).copied().unwrap_or(OWNING))
    }

    /// This node's rank for `ip`, if it is wanted (the tag of our claims).
    pub fn rank(&self, ip: &IpAddr) -> Option<Rank> {
        self.ranks.get(ip).copied()
    }
}

/// Probing from `now`: the first probe goes out with this call's actions.
fn probing(now: Instant, backoff: Duration) -> Phase {
    Phase::Probing {
        sent: 1,
        next_probe: now + PROBE_SPACING,
        claim_at: now + PROBE_WAIT,
        backoff,
    }
}

/// Held off until `backoff` plus a jitter of up to 250 ms that differs per
/// MAC and IP, so two sides that yielded to each other do not probe in step.
fn yielded(our_mac: MacAddr, ip: IpAddr, now: Instant, backoff: Duration) -> Phase {
    Phase::Yielded {
        recheck_at: now + backoff + jitter(our_mac, ip),
        backoff,
    }
}

fn jitter(mac: MacAddr, ip: IpAddr) -> Duration {
    let ip_bytes = match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    // FNV-1a: any cheap mix will do, it only has to differ between MACs.
    let hash = mac
        .octets()
        .iter()
        .chain(ip_bytes.iter())
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
        });
    Duration::from_millis(hash % 250)
}
