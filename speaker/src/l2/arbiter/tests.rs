use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const THEIRS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

fn ip() -> IpAddr {
    "203.0.113.7".parse().unwrap()
}

const LOW: Rank = Rank([0x10; RANK_LEN]);
const HIGH: Rank = Rank([0xf0; RANK_LEN]);

fn wanting(rank: Rank, probe_first: bool, now: Instant) -> (Arbiter, Vec<Action>) {
    let mut arbiter = Arbiter::new(OURS);
    let actions = arbiter.want(&BTreeMap::from([(ip(), rank)]), probe_first, now);
    (arbiter, actions)
}

fn claim(rank: Option<Rank>) -> Claim {
    Claim { mac: THEIRS, rank }
}

#[test]
fn a_quiet_probe_ends_in_a_claim() {
    let t0 = Instant::now();
    let (mut arbiter, actions) = wanting(LOW, true, t0);
    assert_eq!(actions, vec![Action::Probe(ip())]);
    assert!(!arbiter.owns(&ip()), "no answers while probing");
    assert_eq!(arbiter.next_deadline(), Some(t0 + PROBE_SPACING));
    assert_eq!(arbiter.tick(t0 + PROBE_SPACING), vec![Action::Probe(ip())]);
    assert_eq!(arbiter.next_deadline(), Some(t0 + PROBE_WAIT));
    assert_eq!(
        arbiter.tick(t0 + PROBE_WAIT - Duration::from_millis(1)),
        vec![]
    );
    assert_eq!(arbiter.tick(t0 + PROBE_WAIT), vec![Action::Claim(ip())]);
    assert!(arbiter.owns(&ip()));
    assert_eq!(arbiter.next_deadline(), None);
}

#[test]
fn without_doubt_the_claim_is_immediate() {
    let (arbiter, actions) = wanting(LOW, false, Instant::now());
    assert_eq!(actions, vec![Action::Claim(ip())]);
    assert!(arbiter.owns(&ip()));
}

#[test]
fn when_the_doubt_ends_a_held_off_or_probing_ip_is_claimed_at_once() {
    let t0 = Instant::now();
    let wanted = BTreeMap::from([(ip(), LOW)]);
    let (mut arbiter, _) = wanting(LOW, true, t0);
    arbiter.observe(ip(), claim(Some(HIGH)), t0 + Duration::from_millis(5));
    assert!(matches!(arbiter.phase(&ip()), Some(Phase::Yielded { .. })));
    let still_in_doubt = arbiter.want(&wanted, true, t0 + Duration::from_millis(10));
    assert_eq!(still_in_doubt, vec![], "no change, no claim");
    let heard_the_group = arbiter.want(&wanted, false, t0 + Duration::from_millis(20));
    assert_eq!(heard_the_group, vec![Action::Claim(ip())]);
    assert!(arbiter.owns(&ip()));

    // Probing, not yet answered: claimed at once too.
    let (mut arbiter, _) = wanting(LOW, true, t0);
    assert_eq!(
        arbiter.want(&wanted, false, t0 + Duration::from_millis(50)),
        vec![Action::Claim(ip())]
    );
    // Already without doubt: nothing more to do.
    assert_eq!(
        arbiter.want(&wanted, false, t0 + Duration::from_millis(60)),
        vec![]
    );
}

#[test]
fn an_answered_probe_holds_off_whatever_the_rank_and_probes_again_later() {
    let t0 = Instant::now();
    let (mut arbiter, _) = wanting(HIGH, true, t0);
    let (action, conflict) = arbiter.observe(ip(), claim(Some(LOW)), t0 + Duration::from_millis(5));
    assert_eq!(action, None);
    assert_eq!(conflict.map(|c| c.outcome), Some(Outcome::HeldOff));
    assert_eq!(
        arbiter.tick(t0 + PROBE_WAIT),
        vec![],
        "no claim after an answer"
    );
    assert!(!arbiter.owns(&ip()));
    let recheck = arbiter.next_deadline().unwrap();
    assert!(
        recheck >= t0 + RECHECK_FIRST && recheck < t0 + RECHECK_FIRST + Duration::from_millis(300)
    );
    assert_eq!(arbiter.tick(recheck), vec![Action::Probe(ip())]);
    // Answered again: the wait doubles.
    arbiter.observe(ip(), claim(Some(LOW)), recheck);
    let second = arbiter.next_deadline().unwrap();
    assert!(second >= recheck + 2 * RECHECK_FIRST);
    // Nobody answers this time: the IP is free and claimed.
    assert_eq!(arbiter.tick(second), vec![Action::Probe(ip())]);
    assert_eq!(arbiter.tick(second + PROBE_WAIT), vec![Action::Claim(ip())]);
}

#[test]
fn the_lower_rank_yields_and_the_higher_defends_once_per_interval() {
    let t0 = Instant::now();
    let (mut low, _) = wanting(LOW, false, t0);
    let (action, conflict) = low.observe(ip(), claim(Some(HIGH)), t0);
    assert_eq!(action, Some(Action::Yield(ip())));
    assert_eq!(conflict.map(|c| c.outcome), Some(Outcome::Yielded));
    assert!(!low.owns(&ip()));
    // Further claims of the winner change nothing.
    assert_eq!(low.observe(ip(), claim(Some(HIGH)), t0), (None, None));

    let (mut high, _) = wanting(HIGH, false, t0);
    let (action, conflict) = high.observe(ip(), claim(Some(LOW)), t0);
    assert_eq!(action, Some(Action::Defend(ip())));
    assert_eq!(conflict.map(|c| c.outcome), Some(Outcome::Won));
    assert!(high.owns(&ip()));
    let soon = t0 + DEFEND_INTERVAL / 2;
    assert_eq!(high.observe(ip(), claim(Some(LOW)), soon), (None, None));
    let later = t0 + DEFEND_INTERVAL;
    assert_eq!(
        high.observe(ip(), claim(Some(LOW)), later).0,
        Some(Action::Defend(ip()))
    );
}

#[test]
fn an_unranked_claimant_is_yielded_to() {
    let t0 = Instant::now();
    let (mut arbiter, _) = wanting(Rank([0xff; RANK_LEN]), false, t0);
    let (action, conflict) = arbiter.observe(ip(), claim(None), t0);
    assert_eq!(action, Some(Action::Yield(ip())));
    assert_eq!(conflict.map(|c| c.other_ranked), Some(false));
}

#[test]
fn equal_ranks_go_to_the_larger_mac() {
    let t0 = Instant::now();
    let (mut ours, _) = wanting(LOW, false, t0);
    // THEIRS is larger than OURS.
    assert_eq!(
        ours.observe(ip(), claim(Some(LOW)), t0).0,
        Some(Action::Yield(ip()))
    );
}

#[test]
fn own_packets_and_unwanted_ips_are_ignored() {
    let t0 = Instant::now();
    let (mut arbiter, _) = wanting(LOW, false, t0);
    let mine = Claim {
        mac: OURS,
        rank: Some(HIGH),
    };
    assert_eq!(arbiter.observe(ip(), mine, t0), (None, None));
    let other: IpAddr = "203.0.113.8".parse().unwrap();
    assert_eq!(arbiter.observe(other, claim(Some(HIGH)), t0), (None, None));
    assert!(arbiter.owns(&ip()));
}

#[test]
fn a_plan_change_probes_held_off_ips_at_once() {
    let t0 = Instant::now();
    let (mut arbiter, _) = wanting(LOW, true, t0);
    arbiter.observe(ip(), claim(Some(HIGH)), t0);
    let other: IpAddr = "203.0.113.8".parse().unwrap();
    let later = t0 + Duration::from_millis(50);
    // The same plan again: nothing new.
    assert_eq!(
        arbiter.want(&BTreeMap::from([(ip(), LOW)]), true, later),
        vec![]
    );
    // A changed plan (the partition healed): probe again now.
    let actions = arbiter.want(&BTreeMap::from([(ip(), LOW), (other, LOW)]), true, later);
    assert_eq!(actions, vec![Action::Probe(other), Action::Probe(ip())]);
}

#[test]
fn dropped_ips_are_forgotten() {
    let t0 = Instant::now();
    let (mut arbiter, _) = wanting(LOW, false, t0);
    assert_eq!(arbiter.want(&BTreeMap::new(), false, t0), vec![]);
    assert!(!arbiter.owns(&ip()));
    assert_eq!(arbiter.phase(&ip()), None);
}

#[test]
fn ranks_follow_the_election() {
    let nodes = ["node-a", "node-b", "node-c"];
    for last in 1..=6u8 {
        let ip = IpAddr::from([203, 0, 113, last]);
        let winner = crate::election::elect(ip, nodes).unwrap();
        let best = nodes.iter().max_by_key(|node| Rank::of(node, ip)).unwrap();
        assert_eq!(winner, *best);
    }
}

#[test]
fn outcome_labels() {
    let labels: Vec<_> = [Outcome::HeldOff, Outcome::Yielded, Outcome::Won]
        .map(Outcome::label)
        .into();
    assert_eq!(labels, ["held_off", "yielded", "won"]);
}
