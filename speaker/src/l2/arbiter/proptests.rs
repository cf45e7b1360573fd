//! Two speakers on one link, fed each other's packets with random delays,
//! start times and doubts: they always end with exactly one owner.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const STEP: Duration = Duration::from_millis(5);
const BURST: u32 = 3;
const BURST_SPACING: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug)]
enum Packet {
    Probe,
    Claim,
}

struct Side {
    arbiter: Arbiter,
    mac: MacAddr,
    rank: Rank,
    start: Instant,
    probe_first: bool,
    started: bool,
    /// Gratuitous claims still to send, and when the next is due.
    burst: Option<(u32, Instant)>,
}

struct Link {
    sides: [Side; 2],
    /// (arrival, receiver, packet)
    in_flight: Vec<(Instant, usize, Packet)>,
    latency: Duration,
}

impl Link {
    fn carry_out(&mut self, who: usize, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Probe(_) => {
                    self.in_flight
                        .push((now + self.latency, 1 - who, Packet::Probe))
                }
                Action::Claim(_) | Action::Defend(_) => self.sides[who].burst = Some((BURST, now)),
                Action::Yield(_) => self.sides[who].burst = None,
            }
        }
    }

    fn step(&mut self, ip: IpAddr, now: Instant) {
        for who in 0..2 {
            let side = &mut self.sides[who];
            if !side.started && now >= side.start {
                side.started = true;
                let wanted = BTreeMap::from([(ip, side.rank)]);
                let actions = side.arbiter.want(&wanted, side.probe_first, now);
                self.carry_out(who, actions, now);
            }
            if !self.sides[who].started {
                continue;
            }
            let actions = self.sides[who].arbiter.tick(now);
            self.carry_out(who, actions, now);
            if let Some((left, at)) = self.sides[who].burst
                && now >= at
            {
                self.in_flight
                    .push((now + self.latency, 1 - who, Packet::Claim));
                self.sides[who].burst = (left > 1).then(|| (left - 1, now + BURST_SPACING));
            }
        }
        let (due, later): (Vec<_>, Vec<_>) =
            self.in_flight.drain(..).partition(|(at, _, _)| *at <= now);
        self.in_flight = later;
        for (_, to, packet) in due {
            let from = 1 - to;
            if !self.sides[to].started {
                continue;
            }
            match packet {
                // An owner answers a probe, unicast, with its tag.
                Packet::Probe => {
                    if self.sides[to].arbiter.owns(&ip) {
                        self.in_flight
                            .push((now + self.latency, from, Packet::Claim));
                    }
                }
                Packet::Claim => {
                    let claim = Claim {
                        mac: self.sides[from].mac,
                        rank: Some(self.sides[from].rank),
                    };
                    let (action, _) = self.sides[to].arbiter.observe(ip, claim, now);
                    self.carry_out(to, action.into_iter().collect(), now);
                }
            }
        }
    }

    fn owners(&self, ip: IpAddr) -> usize {
        self.sides
            .iter()
            .filter(|side| side.arbiter.owns(&ip))
            .count()
    }
}

fn side(mac: u8, rank: [u8; RANK_LEN], start: Instant, probe_first: bool) -> Side {
    let mac = MacAddr([0x02, 0, 0, 0, 0, mac]);
    Side {
        arbiter: Arbiter::new(mac),
        mac,
        rank: Rank(rank),
        start,
        probe_first,
        started: false,
        burst: None,
    }
}

proptest! {
    #[test]
    fn two_speakers_end_with_exactly_one_owner(
        rank_a in any::<[u8; RANK_LEN]>(),
        rank_b in any::<[u8; RANK_LEN]>(),
        equal_ranks in any::<bool>(),
        start_b_ms in 0u64..1500,
        probe_a in any::<bool>(),
        probe_b in any::<bool>(),
        latency_ms in 0u64..40,
    ) {
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        let t0 = Instant::now();
        let rank_b = if equal_ranks { rank_a } else { rank_b };
        let mut link = Link {
            sides: [
                side(1, rank_a, t0, probe_a),
                side(2, rank_b, t0 + Duration::from_millis(start_b_ms), probe_b),
            ],
            in_flight: Vec::new(),
            latency: Duration::from_millis(latency_ms),
        };
        let end = t0 + Duration::from_secs(10);
        let mut now = t0;
        // Settled: one owner for the last few seconds, sampled every step.
        let settled_from = end - Duration::from_secs(4);
        while now < end {
            link.step(ip, now);
            if now >= settled_from {
                prop_assert_eq!(link.owners(ip), 1, "at {:?}", now - t0);
            }
            now += STEP;
        }
        // The winner of a conflict is the higher (rank, MAC), when both claimed.
        let a_owns = link.sides[0].arbiter.owns(&ip);
        let both_claimed = !probe_a && !probe_b && start_b_ms < 150;
        if both_claimed {
            let a_wins = (Rank(rank_a), link.sides[0].mac) > (Rank(rank_b), link.sides[1].mac);
            prop_assert_eq!(a_owns, a_wins);
        }
    }
}

/// One step of a random arbiter life.
#[derive(Clone, Debug)]
enum Op {
    /// Want the IPs of the mask (of four), probing first or not.
    Want(u8, bool),
    /// Another MAC claims IP `n`, with a rank or without.
    Observe(usize, Option<[u8; RANK_LEN]>),
    /// Time passes (ms), then a tick.
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..16, any::<bool>()).prop_map(|(mask, probe)| Op::Want(mask, probe)),
        (0usize..4, proptest::option::of(any::<[u8; RANK_LEN]>()))
            .prop_map(|(n, rank)| Op::Observe(n, rank)),
        (0u64..700).prop_map(Op::Tick),
    ]
}

/// The IPs `tick` and `next_deadline` look at (those with a phase stored) are wanted
/// and not plainly owned, and every IP not owned is among them, so both give what a
/// scan of every IP gives.
fn assert_waiting_index(arbiter: &Arbiter) -> Result<(), TestCaseError> {
    let not_owning: BTreeSet<IpAddr> = arbiter
        .wanted()
        .filter(|ip| !arbiter.owns(ip))
        .copied()
        .collect();
    let stored: BTreeSet<IpAddr> = arbiter.phases.keys().copied().collect();
    prop_assert!(stored.is_subset(&arbiter.ranks.keys().copied().collect()));
    prop_assert!(not_owning.is_subset(&stored));
    prop_assert!(!arbiter.phases.values().any(|phase| *phase == OWNING));
    let scanned = arbiter
        .wanted()
        .filter_map(|ip| arbiter.phase(ip))
        .filter_map(|phase| phase.deadline())
        .min();
    prop_assert_eq!(arbiter.next_deadline(), scanned);
    Ok(())
}

proptest! {
    #[test]
    fn only_the_ips_not_owned_are_scanned(ops in proptest::collection::vec(op(), 1..60)) {
        let ips: Vec<IpAddr> = (1..=4u8)
            .map(|i| IpAddr::from([203, 0, 113, i]))
            .collect();
        let our_mac = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let mut arbiter = Arbiter::new(our_mac);
        let mut now = Instant::now();
        for op in ops {
            match op {
                Op::Want(mask, probe_first) => {
                    let wanted: BTreeMap<IpAddr, Rank> = ips
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, ip)| (*ip, Rank::of("node-a", *ip)))
                        .collect();
                    arbiter.want(&wanted, probe_first, now);
                }
                Op::Observe(n, rank) => {
                    let claim = Claim { mac: MacAddr([0x02, 0, 0, 0, 0, 2]), rank: rank.map(Rank) };
                    arbiter.observe(ips[n], claim, now);
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    arbiter.tick(now);
                }
            }
            assert_waiting_index(&arbiter)?;
        }
    }
}

proptest! {
    /// `update` with what changed does what `want` does with the whole set: the same
    /// actions in the same order, and the same state after, through any life.
    #[test]
    fn update_is_want_of_the_whole_set(ops in proptest::collection::vec(op(), 1..60)) {
        let ips: Vec<IpAddr> = (1..=4u8)
            .map(|i| IpAddr::from([203, 0, 113, i]))
            .collect();
        let our_mac = MacAddr([0x02, 0, 0, 0, 0, 1]);
        let mut whole = Arbiter::new(our_mac);
        let mut patched = Arbiter::new(our_mac);
        let mut wanted: BTreeMap<IpAddr, Rank> = BTreeMap::new();
        let mut now = Instant::now();
        for op in ops {
            let (expected, got) = match op {
                Op::Want(mask, probe_first) => {
                    let next: BTreeMap<IpAddr, Rank> = ips
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, ip)| (*ip, Rank::of("node-a", *ip)))
                        .collect();
                    let gained: BTreeMap<IpAddr, Rank> = next
                        .iter()
                        .filter(|(ip, _)| !wanted.contains_key(*ip))
                        .map(|(ip, rank)| (*ip, *rank))
                        .collect();
                    let lost: BTreeSet<IpAddr> = wanted
                        .keys()
                        .filter(|ip| !next.contains_key(*ip))
                        .copied()
                        .collect();
                    wanted = next;
                    (
                        whole.want(&wanted, probe_first, now),
                        patched.update(&gained, &lost, probe_first, now),
                    )
                }
                Op::Observe(n, rank) => {
                    let claim = Claim { mac: MacAddr([0x02, 0, 0, 0, 0, 2]), rank: rank.map(Rank) };
                    let (a, _) = whole.observe(ips[n], claim, now);
                    let (b, _) = patched.observe(ips[n], claim, now);
                    (a.into_iter().collect(), b.into_iter().collect())
                }
                Op::Tick(ms) => {
                    now += Duration::from_millis(ms);
                    (whole.tick(now), patched.tick(now))
                }
            };
            prop_assert_eq!(expected, got);
            prop_assert_eq!(&whole, &patched);
            assert_waiting_index(&patched)?;
        }
    }
}
