//! The membership over real UDP sockets on 127.0.0.1 (OS-assigned ports).
//!
//! Time bounds are generous: these check behaviour on a loaded machine, not
//! speed. `detection_time_distribution` (ignored by default) measures.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};

use super::auth::Authenticator;
use super::{
    Direction, GossipTimings, MAX_DATAGRAM, Membership, MembershipConfig, MembershipError,
    MembershipMetrics, RejectReason, auth, resolve_advertise, usable_seeds,
};

const KEY: &[u8] = b"test gossip key, long enough";
const OTHER_KEY: &[u8] = b"other gossip key, long enough";
const CONVERGE_WITHIN: Duration = Duration::from_secs(10);
const DETECT_WITHIN: Duration = Duration::from_secs(5);
const LEAVE_SEEN_WITHIN: Duration = Duration::from_secs(2);

type Alive = watch::Receiver<BTreeSet<String>>;

struct Member {
    membership: Membership,
    alive: Alive,
    metrics: MembershipMetrics,
}

impl Member {
    fn addr(&self) -> SocketAddr {
        self.membership.advertised_addr()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn keys(keys: &[&[u8]]) -> Authenticator {
    Authenticator::new(keys).expect("the test keys are accepted")
}

fn config(name: &str, bind: SocketAddr, seeds: Vec<SocketAddr>, key: &[u8]) -> MembershipConfig {
    MembershipConfig {
        node_name: name.to_owned(),
        bind,
        advertise: bind,
        seeds,
        authenticator: keys(&[key]),
        timings: GossipTimings::default(),
    }
}

async fn start_at(name: &str, bind: SocketAddr, seeds: Vec<SocketAddr>, key: &[u8]) -> Member {
    let metrics = MembershipMetrics::new();
    let (membership, alive) = Membership::start(config(name, bind, seeds, key), metrics.clone())
        .await
        .unwrap_or_else(|error| panic!("member {name} did not start: {error}"));
    Member {
        membership,
        alive,
        metrics,
    }
}

async fn start(name: &str, seeds: Vec<SocketAddr>) -> Member {
    start_at(name, loopback(0), seeds, KEY).await
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|name| (*name).to_owned()).collect()
}

/// How long until `alive` shows `expected`; panics after `within`.
async fn time_until(alive: &mut Alive, expected: &BTreeSet<String>, within: Duration) -> Duration {
    let started = Instant::now();
    let outcome = timeout(within, alive.wait_for(|current| current == expected))
        .await
        .map(|seen| seen.is_ok());
    match outcome {
        Ok(true) => started.elapsed(),
        Ok(false) => panic!("the membership task ended while waiting for {expected:?}"),
        Err(_) => panic!(
            "no {expected:?} within {within:?}; last seen {:?}",
            *alive.borrow()
        ),
    }
}

async fn all_see(members: &mut [&mut Member], expected: &BTreeSet<String>, within: Duration) {
    for member in members.iter_mut() {
        time_until(&mut member.alive, expected, within).await;
    }
}

/// Three members, b seeded with a and c with b, all agreeing.
async fn converged_trio() -> (Member, Member, Member) {
    let mut a = start("node-a", vec![]).await;
    let mut b = start("node-b", vec![a.addr()]).await;
    let mut c = start("node-c", vec![b.addr()]).await;
    all_see(
        &mut [&mut a, &mut b, &mut c],
        &names(&["node-a", "node-b", "node-c"]),
        CONVERGE_WITHIN,
    )
    .await;
    (a, b, c)
}

/// Polls `condition` every 20 ms for at most `within`.
async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test]
async fn three_members_converge_to_the_same_alive_set() {
    let (a, b, c) = converged_trio().await;
    for member in [&a, &b, &c] {
        assert_eq!(member.metrics.members_alive(), 3);
        assert!(member.metrics.messages(Direction::In) > 0);
        assert!(member.metrics.messages(Direction::Out) > 0);
        assert_eq!(member.metrics.rejected(RejectReason::BadKey), 0);
    }
}

#[tokio::test]
async fn an_aborted_member_is_dropped_from_the_alive_set() {
    let (mut a, mut b, c) = converged_trio().await;
    drop(c); // Like a SIGKILL: no goodbye.
    let survivors = names(&["node-a", "node-b"]);
    let seen_by_a = time_until(&mut a.alive, &survivors, DETECT_WITHIN).await;
    let seen_by_b = time_until(&mut b.alive, &survivors, DETECT_WITHIN).await;
    println!("abort detected by a after {seen_by_a:?}, by b within {seen_by_b:?} more");
    assert_eq!(a.metrics.members_alive(), 2);
}

#[tokio::test]
async fn a_member_that_leaves_is_dropped_at_once() {
    let (mut a, mut b, c) = converged_trio().await;
    let started = Instant::now();
    c.membership.leave().await;
    let survivors = names(&["node-a", "node-b"]);
    time_until(&mut a.alive, &survivors, LEAVE_SEEN_WITHIN).await;
    time_until(&mut b.alive, &survivors, LEAVE_SEEN_WITHIN).await;
    println!("leave seen by both after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_member_restarted_on_a_new_port_is_back() {
    let (mut a, mut b, c) = converged_trio().await;
    drop(c);
    let survivors = names(&["node-a", "node-b"]);
    all_see(&mut [&mut a, &mut b], &survivors, DETECT_WITHIN).await;

    let mut restarted = start("node-c", vec![a.addr()]).await;
    all_see(
        &mut [&mut a, &mut b, &mut restarted],
        &names(&["node-a", "node-b", "node-c"]),
        CONVERGE_WITHIN,
    )
    .await;
}

#[tokio::test]
async fn a_member_restarted_on_the_same_address_takes_over_its_old_identity() {
    let (mut a, mut b, c) = converged_trio().await;
    let address = c.addr();
    drop(c);
    // The aborted task closes its socket when the runtime next polls it.
    let mut restarted = None;
    for _ in 0..50 {
        tokio::task::yield_now().await;
        let metrics = MembershipMetrics::new();
        match Membership::start(
            config("node-c", address, vec![a.addr()], KEY),
            metrics.clone(),
        )
        .await
        {
            Ok((membership, alive)) => {
                restarted = Some(Member {
                    membership,
                    alive,
                    metrics,
                });
                break;
            }
            Err(MembershipError::Bind { .. }) => sleep(Duration::from_millis(20)).await,
            Err(error) => panic!("restart failed: {error}"),
        }
    }
    let mut restarted =
        restarted.unwrap_or_else(|| panic!("could not bind {address} again within a second"));
    let everyone = names(&["node-a", "node-b", "node-c"]);
    all_see(
        &mut [&mut a, &mut b, &mut restarted],
        &everyone,
        CONVERGE_WITHIN,
    )
    .await;
    // The old run must not be declared Down on top of the new one: the new
    // identity replaced it (same address, later generation).
    let flapped = timeout(
        Duration::from_secs(2),
        a.alive.wait_for(|current| *current != everyone),
    )
    .await
    .is_ok();
    assert!(
        !flapped,
        "node-c dropped out after its restart: {:?}",
        *a.alive.borrow()
    );
}

#[tokio::test]
async fn a_member_with_another_key_never_appears_and_is_counted() {
    let mut a = start("node-a", vec![]).await;
    let mut b = start("node-b", vec![a.addr()]).await;
    let pair = names(&["node-a", "node-b"]);
    all_see(&mut [&mut a, &mut b], &pair, CONVERGE_WITHIN).await;

    let intruder = start_at("node-x", loopback(0), vec![a.addr(), b.addr()], OTHER_KEY).await;
    let rejected = eventually(Duration::from_secs(5), || {
        a.metrics.rejected(RejectReason::BadKey) > 0 && b.metrics.rejected(RejectReason::BadKey) > 0
    })
    .await;
    assert!(rejected, "the intruder's announcements were not counted");
    // Give it a few more rounds to sneak in.
    sleep(Duration::from_secs(1)).await;
    assert_eq!(*a.alive.borrow(), pair);
    assert_eq!(*b.alive.borrow(), pair);
    assert_eq!(*intruder.alive.borrow(), names(&["node-x"]));
    assert_eq!(a.metrics.rejected(RejectReason::Malformed), 0);
}

#[tokio::test]
async fn malformed_datagrams_are_counted_and_ignored() {
    let mut a = start("node-a", vec![]).await;
    let prober = tokio::net::UdpSocket::bind(loopback(0))
        .await
        .expect("bind the probe socket");
    let authentic = keys(&[KEY]);
    let junk: [Vec<u8>; 4] = [
        vec![],                      // empty: truncated
        vec![1, 2, 3],               // truncated
        authentic.seal(&[0xff; 40]), // authentic, but not foca
        authentic.seal(&[]),         // authentic and empty
    ];
    for datagram in &junk {
        prober
            .send_to(datagram, a.addr())
            .await
            .expect("send the junk");
    }
    let counted = eventually(Duration::from_secs(5), || {
        a.metrics.rejected(RejectReason::Malformed) == junk.len() as u64
    })
    .await;
    assert!(
        counted,
        "malformed count {} of {}",
        a.metrics.rejected(RejectReason::Malformed),
        junk.len()
    );
    assert_eq!(a.metrics.rejected(RejectReason::BadKey), 0);

    // A full-size datagram with a wrong tag is a key problem.
    let mut forged = authentic.seal(b"anything at all");
    if let Some(last) = forged.last_mut() {
        *last ^= 1;
    }
    prober
        .send_to(&forged, a.addr())
        .await
        .expect("send the forged datagram");
    assert!(
        eventually(Duration::from_secs(5), || a
            .metrics
            .rejected(RejectReason::BadKey)
            == 1)
        .await
    );

    // And the member still works.
    let mut b = start("node-b", vec![a.addr()]).await;
    all_see(
        &mut [&mut a, &mut b],
        &names(&["node-a", "node-b"]),
        CONVERGE_WITHIN,
    )
    .await;
}

/// Keys swapped while running, without a restart: a rotation done in the
/// wrong order (one member signing with a key the other does not accept
/// yet) splits the pair, and accepting the new key everywhere heals it.
#[tokio::test]
async fn keys_swapped_while_running_take_effect_at_once() {
    let mut a = start("node-a", vec![]).await;
    let mut b = start("node-b", vec![a.addr()]).await;
    let pair = names(&["node-a", "node-b"]);
    all_see(&mut [&mut a, &mut b], &pair, CONVERGE_WITHIN).await;

    // b signs with the new key before a accepts it.
    b.membership.set_keys(keys(&[OTHER_KEY, KEY]));
    time_until(&mut a.alive, &names(&["node-a"]), DETECT_WITHIN).await;
    assert!(a.metrics.rejected(RejectReason::BadKey) > 0);

    // a accepts (and signs with) the new key too: together again.
    let setter = a.membership.key_setter();
    assert!(setter.set(keys(&[OTHER_KEY, KEY])));
    all_see(&mut [&mut a, &mut b], &pair, CONVERGE_WITHIN).await;

    // The old key retired everywhere: still together.
    a.membership.set_keys(keys(&[OTHER_KEY]));
    b.membership.set_keys(keys(&[OTHER_KEY]));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(*a.alive.borrow(), pair);
    assert_eq!(*b.alive.borrow(), pair);

    // Once the membership is gone, the setter says so.
    drop(a);
    assert!(eventually(Duration::from_secs(5), || !setter.set(keys(&[KEY]))).await);
}

#[tokio::test]
async fn seeds_pointing_at_ourselves_are_ignored() {
    // Learn a free port, then start on it with ourselves as the only seed.
    let port = std::net::UdpSocket::bind(loopback(0))
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let own = loopback(port);
    let lonely = start_at("node-a", own, vec![own], KEY).await;
    lonely.membership.set_seeds(vec![own, own]);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(lonely.metrics.messages(Direction::Out), 0);
    assert_eq!(lonely.metrics.messages(Direction::In), 0);
    assert_eq!(lonely.metrics.rejected(RejectReason::Malformed), 0);
    assert_eq!(*lonely.alive.borrow(), names(&["node-a"]));
}

#[tokio::test]
async fn seeds_set_later_are_announced_to() {
    let mut a = start("node-a", vec![]).await;
    let mut b = start("node-b", vec![]).await;
    sleep(Duration::from_millis(200)).await;
    assert_eq!(*a.alive.borrow(), names(&["node-a"]));
    b.membership.set_seeds(vec![a.addr(), b.addr()]);
    all_see(
        &mut [&mut a, &mut b],
        &names(&["node-a", "node-b"]),
        CONVERGE_WITHIN,
    )
    .await;
}

#[tokio::test]
async fn a_stalled_member_declared_down_rejoins_by_itself() {
    // node-c runs on its own runtime in its own thread, so that blocking
    // that thread freezes node-c alone, as a partition or a long pause would.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stall_tx, stall_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut a = start("node-a", vec![]).await;
    let seed = a.addr();
    let node_c = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for node-c");
        runtime.block_on(async move {
            let c = start("node-c", vec![seed]).await;
            let _ = ready_tx.send(c.alive.clone());
            if stall_rx.await.is_ok() {
                std::thread::sleep(Duration::from_secs(3));
            }
            let _ = stop_rx.await;
            drop(c);
        });
    });
    let mut c_alive = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("node-c starts");
    let mut b = start("node-b", vec![seed]).await;
    let everyone = names(&["node-a", "node-b", "node-c"]);
    all_see(&mut [&mut a, &mut b], &everyone, CONVERGE_WITHIN).await;
    time_until(&mut c_alive, &everyone, CONVERGE_WITHIN).await;

    let _ = stall_tx.send(());
    let survivors = names(&["node-a", "node-b"]);
    all_see(&mut [&mut a, &mut b], &survivors, DETECT_WITHIN).await;
    // After the stall node-c hears it was declared Down, renews its
    // identity and is back, without anyone restarting anything.
    all_see(&mut [&mut a, &mut b], &everyone, CONVERGE_WITHIN).await;
    time_until(&mut c_alive, &everyone, CONVERGE_WITHIN).await;

    let _ = stop_tx.send(());
    assert!(node_c.join().is_ok(), "node-c's thread panicked");
}

/// Detection time after an abort with the default timings, per survivor.
/// Run with `cargo test -p ferrolb-speaker --lib detection_time -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check; takes ~30 s"]
async fn detection_time_distribution() {
    const TRIALS: usize = 10;
    let mut abort_samples = Vec::new();
    let mut leave_samples = Vec::new();
    for trial in 0..TRIALS * 2 {
        let (mut a, mut b, c) = converged_trio().await;
        // Let the group settle into steady probing, then fail at a point
        // of the probe cycle that differs from trial to trial.
        let phase = u64::try_from(trial * 37 % 300).expect("a phase below 300");
        sleep(Duration::from_millis(500 + phase)).await;
        let survivors = names(&["node-a", "node-b"]);
        let started = Instant::now();
        let leaving = trial % 2 == 1;
        if leaving {
            c.membership.leave().await;
        } else {
            drop(c);
        }
        // Both survivors wait side by side, each timed from the failure.
        let (seen_by_a, seen_by_b) = tokio::join!(
            seen_at(&mut a.alive, &survivors),
            seen_at(&mut b.alive, &survivors),
        );
        let samples = [seen_by_a - started, seen_by_b - started];
        if leaving {
            leave_samples.extend(samples);
        } else {
            abort_samples.extend(samples);
        }
    }
    report("abort (SIGKILL-like)", &mut abort_samples);
    report("leave (SIGTERM)", &mut leave_samples);
}

/// When `alive` first showed `expected` (within [`DETECT_WITHIN`]).
async fn seen_at(alive: &mut Alive, expected: &BTreeSet<String>) -> Instant {
    time_until(alive, expected, DETECT_WITHIN).await;
    Instant::now()
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples.get(index).copied().unwrap_or_default()
    };
    let millis: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    println!(
        "{what}: n={} min={:?} p50={:?} p90={:?} max={:?}; all ms: {millis:?}",
        samples.len(),
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0)
    );
}

// The configuration alone, without sockets.

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|error| panic!("bad test address {text}: {error}"))
}

#[test]
fn the_default_timings_make_a_valid_config() {
    let timings = GossipTimings::default();
    let config = timings
        .foca_config()
        .expect("the default timings are accepted");
    assert_eq!(config.probe_period, Duration::from_millis(300));
    assert_eq!(config.probe_rtt, Duration::from_millis(150));
    assert_eq!(config.suspect_to_down_after, Duration::from_millis(400));
    assert_eq!(config.num_indirect_probes.get(), 3);
    assert!(config.notify_down_members);
    assert_eq!(
        config.max_packet_size.get() + auth::ENVELOPE_OVERHEAD,
        MAX_DATAGRAM
    );
    assert_eq!(
        config
            .periodic_announce_to_down_members
            .map(|p| p.frequency),
        Some(Duration::from_secs(2))
    );
}

#[test]
fn impossible_timings_are_named() {
    type Spoil = fn(&mut GossipTimings);
    let cases: [(&str, Spoil); 5] = [
        ("probe_rtt must be shorter", |t| {
            t.probe_rtt = t.probe_period
        }),
        ("probe_period must not be zero", |t| {
            t.probe_period = Duration::ZERO
        }),
        ("num_indirect_probes", |t| t.num_indirect_probes = 0),
        ("max_transmissions", |t| t.max_transmissions = 0),
        ("gossip_fanout", |t| t.gossip_fanout = 0),
    ];
    for (expected, spoil) in cases {
        let mut timings = GossipTimings::default();
        spoil(&mut timings);
        match timings.foca_config() {
            Err(MembershipError::InvalidTimings(why)) => {
                assert!(why.contains(expected), "{why} should mention {expected}")
            }
            other => panic!("expected InvalidTimings({expected}), got {other:?}"),
        }
    }
}

#[test]
fn advertise_fills_unspecified_parts_from_the_bound_address() {
    let bound = addr("127.0.0.1:40000");
    assert_eq!(resolve_advertise(addr("0.0.0.0:0"), bound), bound);
    assert_eq!(
        resolve_advertise(addr("198.51.100.7:0"), bound),
        addr("198.51.100.7:40000")
    );
    assert_eq!(
        resolve_advertise(addr("198.51.100.7:7946"), bound),
        addr("198.51.100.7:7946")
    );
}

#[test]
fn seeds_skip_ourselves_and_duplicates() {
    let me = addr("198.51.100.1:7946");
    let other = addr("198.51.100.2:7946");
    let third = addr("198.51.100.3:7946");
    assert_eq!(
        usable_seeds(vec![other, me, third, other], &[me]),
        vec![other, third]
    );
}

#[test]
fn the_key_stays_out_of_debug_output() {
    let config = MembershipConfig {
        node_name: "node-a".into(),
        bind: addr("127.0.0.1:0"),
        advertise: addr("127.0.0.1:0"),
        seeds: vec![],
        authenticator: keys(&[b"hunter2-hunter2-hunter2"]),
        timings: GossipTimings::default(),
    };
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("keys: 1"), "{shown}");
}
