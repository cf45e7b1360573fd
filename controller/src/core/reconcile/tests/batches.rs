//! The first listing decided in batches: the same decisions as in one pass,
//! adoption of shown IPs before anything new, and what happens to Services
//! that change or appear before their turn.

use proptest::prelude::*;

use super::*;

fn batched(batch: usize) -> Reconciler {
    Reconciler::new(ReconcilerConfig {
        sync_batch: batch,
        ..reconciler().config
    })
}

/// Everything `r` does for the listing, asking for batches while it decides.
fn decide_all(r: &mut Reconciler, inputs: Vec<Input>) -> Vec<Effect> {
    let mut effects = feed(r, inputs);
    while r.deciding() {
        effects.extend(r.handle(Input::DecideBacklog));
    }
    effects
}

/// The effects but the count of pending Services, which is published once
/// per input (so once per batch).
fn decisions(effects: Vec<Effect>) -> Vec<Effect> {
    effects
        .into_iter()
        .filter(|e| !matches!(e, Effect::Metric(MetricChange::Pending(_))))
        .collect()
}

fn allocated(ips: &[&str]) -> ServiceWrite {
    Outcome::Allocated(Assignment {
        pool: "p".into(),
        ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
    })
    .desired()
}

/// One Service of a generated listing: created at `created`, maybe asking
/// for an IP, maybe sharing, maybe showing an IP already.
fn arbitrary_service(
    i: usize,
    created: i64,
    requested: Option<u8>,
    shared: bool,
    shown: Option<u8>,
) -> Service {
    let requested = requested.map(|last| format!("198.51.100.{last}"));
    let mut annotations = Vec::new();
    if let Some(ip) = &requested {
        annotations.push(("ferrolb.io/loadBalancerIPs", ip.as_str()));
    }
    if shared {
        annotations.push(("ferrolb.io/allow-shared-ip", "k"));
    }
    let s = service(&format!("s{i}"), created, &annotations);
    match shown {
        Some(last) => showing(&s, &allocated(&[&format!("198.51.100.{last}")]), 2),
        None => s,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Fed nothing in between, batches of any size decide what one pass
    /// decides, in the same order: writes, tickets, Events and metrics.
    #[test]
    fn batches_decide_what_one_pass_decides(
        specs in proptest::collection::vec(
            (0i64..6, proptest::option::of(0u8..12), any::<bool>(), proptest::option::of(0u8..12)),
            0..24,
        ),
        batch in 1usize..6,
    ) {
        // Eight addresses (.0 to .7) for up to 24 Services: some shown IPs
        // lie outside the pool, some are claimed twice, some wait.
        let pools = [pool("p", 1, 1, &["198.51.100.0/29"])];
        let services: Vec<Service> = specs
            .iter()
            .enumerate()
            .map(|(i, &(created, requested, shared, shown))| {
                arbitrary_service(i, created, requested, shared, shown)
            })
            .collect();
        let whole = decide_all(&mut reconciler(), listing(&pools, &services));
        let mut r = batched(batch);
        let in_batches = decide_all(&mut r, listing(&pools, &services));
        prop_assert!(!r.deciding());
        prop_assert_eq!(decisions(in_batches), decisions(whole));
    }
}

#[test]
fn shown_ips_are_adopted_before_the_first_batch_and_the_rest_waits_its_turn() {
    let p = pool("p", 1, 1, &["198.51.100.1-198.51.100.3"]);
    // The youngest Service shows .1: it keeps it although three older
    // Services without an IP come first in the listing's batches.
    let young = showing(&service("young", 9, &[]), &allocated(&["198.51.100.1"]), 5);
    let services = [
        service("a", 1, &[]),
        service("b", 2, &[]),
        service("c", 3, &[]),
        young,
    ];
    let mut r = batched(1);
    let first = feed(&mut r, listing(&[p], &services));
    assert!(untouched(&first, "young"), "{first:#?}");
    assert_eq!(ips(&first, "a"), ["198.51.100.2"]);
    assert!(untouched(&first, "b") && untouched(&first, "c"));
    assert!(r.deciding());
    assert!(!first.iter().any(|e| matches!(e, Effect::Synced { .. })));
    let second = r.handle(Input::DecideBacklog);
    assert_eq!(ips(&second, "b"), ["198.51.100.3"]);
    let last = r.handle(Input::DecideBacklog);
    assert_eq!(ips(&last, "c"), Vec::<String>::new(), "the pool is full");
    assert!(last.contains(&Effect::Synced {
        services: 4,
        pools: 1
    }));
    assert!(!r.deciding());
    assert!(r.handle(Input::DecideBacklog).is_empty());
}

#[test]
fn before_its_turn_a_service_is_only_recorded_and_a_new_one_joins_the_back() {
    let p = pool("p", 1, 1, &["198.51.100.1-198.51.100.4"]);
    let (a, b, c) = (
        service("a", 1, &[]),
        service("b", 2, &[]),
        service("c", 3, &[]),
    );
    let mut r = batched(1);
    let first = feed(&mut r, listing(&[p], &[a.clone(), b.clone(), c.clone()]));
    let a_write = write_for(&first, "a").unwrap().clone();
    assert_eq!(ips(&first, "a"), ["198.51.100.1"]);

    // c asks for .4 before its turn: recorded, not decided yet. A new
    // Service joins the line behind c.
    let c_asks = service("c", 3, &[("ferrolb.io/loadBalancerIPs", "198.51.100.4")]);
    let early = feed(
        &mut r,
        [
            Input::ServiceApplied(c_asks),
            Input::ServiceApplied(service("new", 4, &[])),
        ],
    );
    assert!(
        untouched(&early, "c") && untouched(&early, "new"),
        "{early:#?}"
    );

    // a, decided already, is decided on at once as before: its echo needs
    // nothing, a request for another IP is served now.
    land(&mut r, &a, &a_write, 3);
    let a_moves = service("a", 1, &[("ferrolb.io/loadBalancerIPs", "198.51.100.3")]);
    let moved = r.handle(Input::ServiceApplied(showing(&a_moves, &a_write.write, 4)));
    assert_eq!(ips(&moved, "a"), ["198.51.100.3"]);

    let order: Vec<Vec<Effect>> = (0..3).map(|_| r.handle(Input::DecideBacklog)).collect();
    assert_eq!(ips(&order[0], "b"), ["198.51.100.1"], "a freed .1");
    assert_eq!(ips(&order[1], "c"), ["198.51.100.4"], "its newest view");
    assert_eq!(ips(&order[2], "new"), ["198.51.100.2"]);
    assert!(order[2].iter().any(|e| matches!(e, Effect::Synced { .. })));
    assert!(!r.deciding());
}

#[test]
fn a_service_deleted_before_its_turn_is_skipped() {
    let p = pool("p", 1, 1, &["198.51.100.1-198.51.100.4"]);
    let mut r = batched(1);
    feed(
        &mut r,
        listing(&[p], &[service("a", 1, &[]), service("b", 2, &[])]),
    );
    let gone = r.handle(Input::ServiceDeleted(key("b")));
    assert!(untouched(&gone, "b"));
    let last = r.handle(Input::DecideBacklog);
    assert!(untouched(&last, "b"), "{last:#?}");
    assert!(last.contains(&Effect::Synced {
        services: 1,
        pools: 1
    }));
}
