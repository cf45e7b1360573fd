//! A live Service is never cleared or renumbered by accident: its pool
//! turning invalid or going away freezes its IPs, a typo in its annotations
//! or a request out of its pools' scope leaves it what it had.

use ferrolb_crds::pool::ServiceAllocation;

use super::*;

/// Pool `p` (198.51.100.0/30) with Service `a` holding 198.51.100.0, and
/// pool `q` (198.51.100.8/30) beside it; `a`'s write has landed.
fn a_in_p() -> (Reconciler, Service) {
    let a = service("a", 1, &[]);
    let pools = [
        pool("p", 1, 1, &["198.51.100.0/30"]),
        pool("q", 2, 1, &["198.51.100.8/30"]),
    ];
    let (mut r, effects) = listed(&pools, std::slice::from_ref(&a));
    assert_eq!(ips(&effects, "a"), ["198.51.100.0"]);
    let order = write_for(&effects, "a").unwrap().clone();
    land(&mut r, &a, &order, 2);
    (r, showing(&a, &order.write, 2))
}

fn pool_events<'a>(effects: &'a [Effect], name: &str) -> Vec<(&'static str, &'a str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(ev)
                if ev.regarding.kind == "IPAddressPool" && ev.regarding.name == name =>
            {
                Some((ev.reason, ev.note.as_str()))
            }
            _ => None,
        })
        .collect()
}

fn ready_message(effects: &[Effect], name: &str) -> String {
    let order = pool_orders(effects)
        .into_iter()
        .rev()
        .find(|o| o.pool == name);
    let status = &order
        .unwrap_or_else(|| panic!("no status for {name}"))
        .status;
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == condition::TYPE_READY);
    let ready = ready.unwrap();
    assert_eq!(ready.status, "False");
    ready.message.clone()
}

/// Overlapping entries within one pool: the Rust check refuses them.
fn invalid_p(generation: i64) -> IPAddressPool {
    pool("p", 1, generation, &["198.51.100.0/30", "198.51.100.2/31"])
}

#[test]
fn an_in_use_pool_turning_invalid_freezes_its_services() {
    let (mut r, _) = a_in_p();
    let frozen = r.handle(Input::PoolApplied(invalid_p(2)));
    assert_eq!(ips(&frozen, "a"), ["198.51.100.0"], "a keeps its IP");
    let events = events_of(&frozen, "a");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "PoolFrozen");
    assert!(events[0].1.contains("pool p is invalid"), "{}", events[0].1);

    // The pool says so, once.
    let tick = r.handle(Input::Tick(at(10)));
    assert!(ready_message(&tick, "p").contains("frozen"), "{tick:#?}");
    let events = pool_events(&tick, "p");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "InvalidPool");
    assert!(events[0].1.contains("frozen"), "{}", events[0].1);

    // Nothing new from p: a new Service goes to q, one asking for p waits.
    let b = service("b", 3, &[]);
    let asks_p = service("c", 4, &[("ferrolb.io/address-pool", "p")]);
    let new = feed(
        &mut r,
        [Input::ServiceApplied(b), Input::ServiceApplied(asks_p)],
    );
    assert_eq!(ips(&new, "b"), ["198.51.100.8"]);
    assert_eq!(ips(&new, "c"), Vec::<String>::new());
    assert_eq!(events_of(&new, "c")[0].0, "AllocationFailed");

    // Fixed: a is Allocated again, on the same IP, and c gets its IP from p.
    let fixed = r.handle(Input::PoolApplied(pool("p", 1, 3, &["198.51.100.0/30"])));
    assert_eq!(ips(&fixed, "a"), ["198.51.100.0"]);
    assert_eq!(events_of(&fixed, "a")[0].0, "IPAllocated");
    assert_eq!(ips(&fixed, "c"), ["198.51.100.1"]);
}

#[test]
fn a_pool_deleted_while_in_use_freezes_its_services() {
    let (mut r, a_shown) = a_in_p();
    let deleted = r.handle(Input::PoolDeleted("p".into()));
    let events = pool_events(&deleted, "p");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "PoolDeletedInUse");
    assert_eq!(ips(&deleted, "a"), ["198.51.100.0"], "a keeps its IP");
    let events = events_of(&deleted, "a");
    assert_eq!(events[0].0, "PoolFrozen");
    assert!(
        events[0].1.contains("pool p was deleted"),
        "{}",
        events[0].1
    );

    // A pool created later over the same addresses does not hand it out.
    let again = feed(
        &mut r,
        [
            Input::PoolApplied(pool("r", 5, 1, &["198.51.100.0/31"])),
            Input::PoolDeleted("q".into()),
            Input::ServiceApplied(service("b", 3, &[])),
        ],
    );
    assert_eq!(ips(&again, "b"), ["198.51.100.1"]);

    // After a restart, the IP a shows from the pool recorded on it stays.
    let (_, relisted) = listed(&[], &[a_shown]);
    assert_eq!(ips(&relisted, "a"), ["198.51.100.0"], "{relisted:#?}");
    assert_eq!(events_of(&relisted, "a")[0].0, "PoolFrozen");
}

#[test]
fn an_invalid_pool_still_freezes_after_a_restart() {
    let (_, a_shown) = a_in_p();
    let pools = [invalid_p(2), pool("q", 2, 1, &["198.51.100.8/30"])];
    let (_, relisted) = listed(&pools, &[a_shown]);
    assert_eq!(ips(&relisted, "a"), ["198.51.100.0"], "{relisted:#?}");
    assert_eq!(events_of(&relisted, "a")[0].0, "PoolFrozen");
}

#[test]
fn an_annotation_typo_on_a_live_service_keeps_its_ip() {
    let typos = [
        ("ferrolb.io/loadBalancerIPs", "198.51.100.300"),
        ("metallb.universe.tf/loadBalancerIPs", "garbage"),
        ("ferrolb.io/address-pool", "pp"),
        ("metallb.io/address-pool", "nope"),
    ];
    for (annotation, value) in typos {
        let (mut r, a_shown) = a_in_p();
        let mut typo = a_shown.clone();
        typo.metadata
            .annotations
            .get_or_insert_default()
            .insert(annotation.into(), value.into());
        let kept = r.handle(Input::ServiceApplied(typo.clone()));
        assert_eq!(ips(&kept, "a"), ["198.51.100.0"], "{annotation}");
        let warning = events_of(&kept, "a")
            .into_iter()
            .find(|(reason, _)| *reason == "RequestNotApplied");
        let (_, note) = warning.unwrap_or_else(|| panic!("{annotation}: {kept:#?}"));
        assert!(note.contains(value), "{annotation}: {note}");
        let order = write_for(&kept, "a").unwrap().clone();
        assert!(order.write.condition.clone().unwrap().allocated);
        land(&mut r, &typo, &order, 3);

        // A new Service with the same typo gets nothing and waits.
        let new = r.handle(Input::ServiceApplied(service(
            "b",
            3,
            &[(annotation, value)],
        )));
        assert_eq!(ips(&new, "b"), Vec::<String>::new(), "{annotation}");
        assert!(
            events_of(&new, "b")
                .iter()
                .any(|(r, _)| *r == "AllocationFailed")
        );

        // The typo fixed: nothing moves.
        let fixed = r.handle(Input::ServiceApplied(showing(&a_shown, &order.write, 4)));
        assert_eq!(ips(&fixed, "a"), ["198.51.100.0"], "{annotation}");
        assert_eq!(events_of(&fixed, "a")[0].0, "IPAllocated");
    }
}

/// Pool `team` (203.0.113.0/30) for namespace `team` only, and an open pool `open`.
fn scoped_pools() -> [IPAddressPool; 2] {
    let mut team = pool("team", 1, 1, &["203.0.113.0/30"]);
    team.spec.service_allocation = Some(ServiceAllocation {
        namespaces: vec!["team".into()],
        ..Default::default()
    });
    [team, pool("open", 2, 1, &["198.51.100.0/30"])]
}

#[test]
fn a_requested_pool_or_ip_does_not_bypass_the_pool_scope() {
    let asks_pool = service("by-pool", 1, &[("ferrolb.io/address-pool", "team")]);
    let asks_ip = service("by-ip", 2, &[("ferrolb.io/loadBalancerIPs", "203.0.113.1")]);
    let plain = service("plain", 3, &[]);
    let (mut r, effects) = listed(&scoped_pools(), &[asks_pool, asks_ip, plain]);
    for name in ["by-pool", "by-ip"] {
        assert_eq!(ips(&effects, name), Vec::<String>::new(), "{name}");
        let (reason, note) = events_of(&effects, name)[0];
        assert_eq!(reason, "AllocationFailed");
        assert!(note.starts_with("OutOfScope: "), "{note}");
    }
    assert_eq!(ips(&effects, "plain"), ["198.51.100.0"]);

    // A live Service asking its way into the scoped pool keeps what it has.
    let order = write_for(&effects, "plain").unwrap().clone();
    let shown = showing(&service("plain", 3, &[]), &order.write, 2);
    land(&mut r, &service("plain", 3, &[]), &order, 2);
    let mut asks = shown.clone();
    asks.metadata
        .annotations
        .get_or_insert_default()
        .insert("ferrolb.io/address-pool".into(), "team".into());
    let kept = r.handle(Input::ServiceApplied(asks));
    assert_eq!(ips(&kept, "plain"), ["198.51.100.0"]);
    assert_eq!(events_of(&kept, "plain")[0].0, "RequestNotApplied");

    // In the pool's namespace, both requests are served.
    let mut inside = service("by-pool", 1, &[("ferrolb.io/address-pool", "team")]);
    inside.metadata.namespace = Some("team".into());
    let served = r.handle(Input::ServiceApplied(inside));
    let order = served.iter().find_map(|e| match e {
        Effect::WriteService(o) if o.key == ServiceKey::new("team", "by-pool") => Some(o),
        _ => None,
    });
    let got: Vec<String> = order
        .unwrap()
        .write
        .ips
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(got, ["203.0.113.0"]);
}
