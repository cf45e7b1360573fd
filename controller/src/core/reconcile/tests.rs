//! The loop's state machine, input by input: what it orders, what it
//! announces, and what it leaves alone.

use ferrolb_crds::pool::{IPAddressPool, condition};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;

use super::{Input, Kind, Reconciler, ReconcilerConfig, WriteSettled};
use crate::core::ClassFilter;
use crate::core::allocator::Assignment;
use crate::core::desired::{Outcome, ServiceWrite};
use crate::core::effect::{Effect, MetricChange, PoolStatusOrder, ServiceWriteOrder};
use crate::core::fixtures::{POOL_NAMESPACE, pool, service, showing};
use crate::core::labels::Labels;
use crate::core::pool_writes::{PoolStatusWritten, PoolWriteOutcome};
use crate::core::service::ServiceKey;
use ferrolb_crds::class::DEFAULT_LOAD_BALANCER_CLASS;

const KINDS: [Kind; 3] = [Kind::Pools, Kind::Namespaces, Kind::Services];

fn key(name: &str) -> ServiceKey {
    ServiceKey::new("ns", name)
}

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

fn reconciler() -> Reconciler {
    Reconciler::new(ReconcilerConfig {
        pool_namespace: POOL_NAMESPACE.into(),
        class: ClassFilter::new(DEFAULT_LOAD_BALANCER_CLASS, false),
        sync_batch: usize::MAX,
    })
}

/// A reconciler past its first listing of `pools`, `services` and no
/// namespace, and what the listing made it do.
fn listed(pools: &[IPAddressPool], services: &[Service]) -> (Reconciler, Vec<Effect>) {
    let mut r = reconciler();
    let effects = feed(&mut r, listing(pools, services));
    (r, effects)
}

/// The first listing of `pools`, `services` and no namespace, as inputs.
fn listing(pools: &[IPAddressPool], services: &[Service]) -> Vec<Input> {
    let mut inputs: Vec<Input> = KINDS.map(Input::RelistStarted).into();
    inputs.extend(pools.iter().cloned().map(Input::PoolApplied));
    inputs.extend(services.iter().cloned().map(Input::ServiceApplied));
    inputs.extend(KINDS.map(Input::RelistDone));
    inputs
}

fn feed(r: &mut Reconciler, inputs: impl IntoIterator<Item = Input>) -> Vec<Effect> {
    inputs.into_iter().flat_map(|i| r.handle(i)).collect()
}

/// A reconciler that just ordered the write giving Service `web` its IP.
fn web_ordered() -> (Reconciler, Service, ServiceWriteOrder) {
    let web = service("web", 1, &[]);
    let p = pool("p", 1, 1, &["198.51.100.0/30"]);
    let (r, effects) = listed(&[p], std::slice::from_ref(&web));
    let order = write_for(&effects, "web").unwrap().clone();
    (r, web, order)
}

fn write_for<'a>(effects: &'a [Effect], name: &str) -> Option<&'a ServiceWriteOrder> {
    effects.iter().rev().find_map(|e| match e {
        Effect::WriteService(order) if order.key == key(name) => Some(order),
        _ => None,
    })
}

fn ips(effects: &[Effect], name: &str) -> Vec<String> {
    let order = write_for(effects, name);
    let ips = order.map(|o| o.write.ips.iter().map(ToString::to_string).collect());
    ips.unwrap_or_else(|| panic!("no write for {name} in {effects:#?}"))
}

/// (reason, note) of every Event about `name`.
fn events_of<'a>(effects: &'a [Effect], name: &str) -> Vec<(&'static str, &'a str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event(ev) if ev.regarding.name == name => Some((ev.reason, ev.note.as_str())),
            _ => None,
        })
        .collect()
}

fn pool_orders(effects: &[Effect]) -> Vec<&PoolStatusOrder> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::WritePoolStatus(order) => Some(order),
            _ => None,
        })
        .collect()
}

/// Nothing for `name`: no write and no Event.
fn untouched(effects: &[Effect], name: &str) -> bool {
    write_for(effects, name).is_none() && events_of(effects, name).is_empty()
}

fn settled(order: &ServiceWriteOrder, version: u64) -> Input {
    Input::ServiceWriteSettled(WriteSettled {
        key: order.key.clone(),
        ticket: order.ticket,
        applied_version: Some(version),
        written: true,
    })
}

/// Our write for `service` lands at `version`: the report, then its echo.
fn land(r: &mut Reconciler, service: &Service, order: &ServiceWriteOrder, version: u64) {
    let echo = showing(service, &order.write, version);
    let effects = feed(r, [settled(order, version), Input::ServiceApplied(echo)]);
    assert!(effects.is_empty(), "{effects:#?}");
}

fn namespace_labels(pairs: &[(&str, &str)]) -> Input {
    let labels: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Input::NamespaceApplied {
        name: "ns".into(),
        labels,
    }
}

#[test]
fn nothing_is_decided_before_every_kind_is_listed_and_shown_ips_are_kept() {
    let shows_second = Outcome::Allocated(Assignment {
        pool: "p".into(),
        ips: vec!["198.51.100.2".parse().unwrap()],
    })
    .desired();
    let old = showing(&service("old", 10, &[]), &shows_second, 5);
    let mut r = reconciler();
    let mut inputs: Vec<Input> = KINDS.map(Input::RelistStarted).into();
    inputs.push(Input::PoolApplied(pool(
        "p",
        1,
        1,
        &["198.51.100.1-198.51.100.2"],
    )));
    inputs.push(Input::ServiceApplied(service("new", 20, &[])));
    inputs.push(Input::ServiceApplied(old));
    inputs.extend([
        Input::RelistDone(Kind::Pools),
        Input::RelistDone(Kind::Services),
    ]);
    inputs.push(Input::Tick(at(1)));
    assert!(feed(&mut r, inputs).is_empty(), "namespaces not listed yet");
    let done = r.handle(Input::RelistDone(Kind::Namespaces));
    assert!(done.contains(&Effect::Synced {
        services: 2,
        pools: 1
    }));
    assert!(untouched(&done, "old"), "it already shows its IP");
    assert_eq!(ips(&done, "new"), ["198.51.100.1"], "the shown IP is kept");
}

#[test]
fn a_pending_service_is_retried_when_a_pool_gains_room_and_not_before() {
    let p = pool("p", 1, 1, &["198.51.100.1/32"]);
    let (holder, waiter) = (service("holder", 1, &[]), service("waiter", 2, &[]));
    let (mut r, effects) = listed(std::slice::from_ref(&p), &[holder.clone(), waiter]);
    assert_eq!(ips(&effects, "holder"), ["198.51.100.1"]);
    assert_eq!(ips(&effects, "waiter"), Vec::<String>::new());
    assert!(effects.contains(&Effect::Metric(MetricChange::Pending(1))));
    let holder_write = write_for(&effects, "holder").unwrap().clone();

    // Inputs that free no room leave the waiter alone.
    let mut echoed = p.clone();
    echoed.status = Some(Default::default());
    let quiet = feed(
        &mut r,
        [
            Input::PoolApplied(echoed),
            namespace_labels(&[("team", "a")]),
            Input::ServiceApplied(showing(&holder, &holder_write.write, 2)),
            Input::Tick(at(10)),
        ],
    );
    assert!(untouched(&quiet, "waiter"), "{quiet:#?}");

    // The pool grows: the waiter gets the new address.
    let grown = r.handle(Input::PoolApplied(pool(
        "p",
        1,
        2,
        &["198.51.100.1-198.51.100.2"],
    )));
    assert_eq!(ips(&grown, "waiter"), ["198.51.100.2"]);
    assert_eq!(events_of(&grown, "waiter")[0].0, "IPAllocated");
    assert!(untouched(&grown, "holder"));
    assert!(grown.contains(&Effect::Metric(MetricChange::Pending(0))));
}

#[test]
fn a_pending_service_gets_the_ip_a_deleted_service_frees() {
    let p = pool("p", 1, 1, &["198.51.100.1/32"]);
    let (mut r, _) = listed(
        &[p],
        &[service("holder", 1, &[]), service("waiter", 2, &[])],
    );
    let freed = r.handle(Input::ServiceDeleted(key("holder")));
    assert!(freed.contains(&Effect::ForgetService(key("holder"))));
    assert!(freed.contains(&Effect::Metric(MetricChange::Released { pool: "p".into() })));
    assert_eq!(ips(&freed, "waiter"), ["198.51.100.1"]);
}

#[test]
fn our_status_changed_by_someone_else_is_rewritten() {
    let (mut r, web, order) = web_ordered();
    assert!(!order.status_current);
    land(&mut r, &web, &order, 2);

    // Someone else empties the ingress.
    let emptied = ServiceWrite {
        ips: vec![],
        ..order.write.clone()
    };
    let repair = r.handle(Input::ServiceApplied(showing(&web, &emptied, 3)));
    let rewrite = write_for(&repair, "web").expect("a repair");
    assert_eq!(rewrite.write, order.write);
    assert!(!rewrite.status_current);
    assert!(
        events_of(&repair, "web").is_empty(),
        "a repair is no new decision"
    );
    land(&mut r, &web, rewrite, 4);

    // Someone else removes only our annotation: only that is rewritten.
    let unannotated = ServiceWrite {
        pool: None,
        ..order.write.clone()
    };
    let repair = r.handle(Input::ServiceApplied(showing(&web, &unannotated, 5)));
    assert!(write_for(&repair, "web").expect("a repair").status_current);
}

#[test]
fn views_from_before_our_write_landed_are_not_repaired() {
    let (mut r, web, order) = web_ordered();
    // The status lands as version 2, the annotation as version 3.
    let status_only = ServiceWrite {
        pool: None,
        ..order.write.clone()
    };
    let halfway = showing(&web, &status_only, 2);
    let quiet = feed(
        &mut r,
        [
            // While our write is on its way.
            Input::ServiceApplied(halfway.clone()),
            settled(&order, 3),
            // After it settled: an echo older than our write.
            Input::ServiceApplied(halfway),
            Input::ServiceApplied(showing(&web, &order.write, 3)),
        ],
    );
    assert!(quiet.is_empty(), "{quiet:#?}");
}

#[test]
fn a_change_seen_while_our_write_was_on_its_way_is_repaired_once_it_settles() {
    let (mut r, web, order) = web_ordered();
    let theirs = showing(&web, &ServiceWrite::default(), 3);
    assert!(r.handle(Input::ServiceApplied(theirs)).is_empty(), "busy");
    let repair = r.handle(settled(&order, 2));
    assert_eq!(
        write_for(&repair, "web").expect("a repair").write,
        order.write
    );
    // A report for an older order says nothing about the newest one.
    let rewrite = write_for(&repair, "web").unwrap().clone();
    assert!(r.handle(settled(&order, 4)).is_empty());
    assert!(
        r.handle(Input::ServiceApplied(showing(
            &web,
            &ServiceWrite::default(),
            5
        )))
        .is_empty(),
        "the rewrite is still on its way"
    );
    assert!(write_for(&r.handle(settled(&rewrite, 4)), "web").is_some());
}

#[test]
fn a_relist_releases_what_it_no_longer_shows() {
    let p = pool("p", 1, 1, &["198.51.100.1-198.51.100.2"]);
    let (a, b, c) = (
        service("a", 1, &[]),
        service("b", 2, &[]),
        service("c", 3, &[]),
    );
    let (mut r, effects) = listed(&[p], &[a.clone(), b, c.clone()]);
    assert_eq!(ips(&effects, "b"), ["198.51.100.2"]);
    let a_write = write_for(&effects, "a").unwrap().clone();

    // The watch lost its place; b was deleted meanwhile.
    let relist = feed(
        &mut r,
        [
            Input::RelistStarted(Kind::Services),
            Input::ServiceApplied(showing(&a, &a_write.write, 7)),
            Input::ServiceApplied(c),
        ],
    );
    assert!(relist.is_empty(), "{relist:#?}");
    let done = r.handle(Input::RelistDone(Kind::Services));
    assert!(done.contains(&Effect::ForgetService(key("b"))));
    assert!(done.contains(&Effect::Metric(MetricChange::Released { pool: "p".into() })));
    assert_eq!(ips(&done, "c"), ["198.51.100.2"], "b's IP goes to c");
    assert!(untouched(&done, "a"));

    // Pools too: a relist without p deletes it. Its Services keep their
    // IPs (frozen), and it hands out nothing more.
    let gone = feed(
        &mut r,
        [
            Input::RelistStarted(Kind::Pools),
            Input::RelistDone(Kind::Pools),
        ],
    );
    assert!(gone.contains(&Effect::Metric(MetricChange::PoolRemoved {
        pool: "p".into()
    })));
    assert_eq!(ips(&gone, "a"), ["198.51.100.1"]);
    assert_eq!(events_of(&gone, "a")[0].0, "PoolFrozen");
}

#[test]
fn an_event_marks_a_change_of_decision_never_a_repeat() {
    let (holder, waiter) = (service("holder", 1, &[]), service("waiter", 2, &[]));
    let p = pool("p", 1, 1, &["198.51.100.1/32"]);
    let (mut r, effects) = listed(&[p], &[holder, waiter.clone()]);
    let failed = events_of(&effects, "waiter");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "AllocationFailed");
    assert!(failed[0].1.starts_with("PoolFull: "), "{}", failed[0].1);
    let order = write_for(&effects, "waiter").unwrap().clone();
    land(&mut r, &waiter, &order, 2);

    // Retried, failing the same way, even on an object that lost our
    // condition meanwhile: no second Event.
    let stripped = showing(&waiter, &ServiceWrite::default(), 3);
    let again = feed(
        &mut r,
        [
            Input::ServiceApplied(stripped),
            namespace_labels(&[("team", "a")]),
            namespace_labels(&[("team", "b")]),
            Input::PoolApplied(pool("p", 1, 2, &["198.51.100.5/32"])),
        ],
    );
    assert!(events_of(&again, "waiter").is_empty(), "{again:#?}");
    assert!(write_for(&again, "waiter").is_some(), "repaired, quietly");
    assert_eq!(events_of(&again, "holder")[0].0, "IPAllocated", "moved");

    // A different failure is announced.
    let changed = r.handle(Input::PoolDeleted("p".into()));
    let failed = events_of(&changed, "waiter");
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].1.starts_with("NoEligiblePool: "),
        "{}",
        failed[0].1
    );
    assert!(events_of(&r.handle(namespace_labels(&[])), "waiter").is_empty());
}

#[test]
fn the_legacy_annotation_warning_is_given_once() {
    let legacy = service("legacy", 1, &[("metallb.universe.tf/address-pool", "p")]);
    let p = pool("p", 1, 1, &["198.51.100.0/30"]);
    let (mut r, effects) = listed(&[p], std::slice::from_ref(&legacy));
    let reasons: Vec<_> = events_of(&effects, "legacy").iter().map(|e| e.0).collect();
    assert_eq!(reasons, ["DeprecatedAnnotation", "IPAllocated"]);
    let order = write_for(&effects, "legacy").unwrap().clone();
    land(&mut r, &legacy, &order, 2);
    assert!(events_of(&r.handle(namespace_labels(&[])), "legacy").is_empty());
}

#[test]
fn a_service_that_stops_being_a_load_balancer_is_released_and_cleared() {
    let web = service("web", 1, &[]);
    let p = pool("p", 1, 1, &["198.51.100.1/32"]);
    let (mut r, effects) = listed(&[p], &[web.clone(), service("waiter", 2, &[])]);
    let order = write_for(&effects, "web").unwrap().clone();
    land(&mut r, &web, &order, 2);
    let mut cluster_ip = showing(&web, &order.write, 3);
    if let Some(spec) = cluster_ip.spec.as_mut() {
        spec.type_ = Some("ClusterIP".into());
    }
    let released = r.handle(Input::ServiceApplied(cluster_ip));
    let clear = write_for(&released, "web").expect("our marks are cleared");
    assert_eq!(clear.write, ServiceWrite::default());
    assert_eq!(events_of(&released, "web")[0].0, "IPReleased");
    assert_eq!(ips(&released, "waiter"), ["198.51.100.1"]);
}

#[test]
fn pool_status_is_published_on_a_tick_and_a_failed_write_is_retried() {
    let p = pool("p", 1, 1, &["198.51.100.0/30"]);
    let (mut r, effects) = listed(&[p], &[service("web", 1, &[])]);
    assert!(pool_orders(&effects).is_empty(), "statuses wait for a tick");
    let first = r.handle(Input::Tick(at(100)));
    let orders = pool_orders(&first);
    assert_eq!(orders.len(), 1);
    let order = orders[0].clone();
    assert_eq!(order.status.assigned_ipv4.as_deref(), Some("1"));
    assert!(pool_orders(&r.handle(Input::Tick(at(100)))).is_empty());

    r.handle(Input::PoolStatusWritten(PoolStatusWritten {
        pool: "p".into(),
        ticket: order.ticket,
        outcome: PoolWriteOutcome::Failed,
        at: at(100),
    }));
    assert!(
        pool_orders(&r.handle(Input::Tick(at(100)))).is_empty(),
        "backoff"
    );
    let retry = r.handle(Input::Tick(at(101)));
    assert_eq!(pool_orders(&retry).len(), 1);
    assert_eq!(pool_orders(&retry)[0].status, order.status);
}

#[test]
fn a_newer_pool_status_supersedes_the_retry_of_a_failed_one() {
    let p = pool("p", 1, 1, &["198.51.100.0/30"]);
    let (mut r, _) = listed(&[p], &[service("a", 1, &[])]);
    let first = pool_orders(&r.handle(Input::Tick(at(100))))[0].clone();
    r.handle(Input::PoolStatusWritten(PoolStatusWritten {
        pool: "p".into(),
        ticket: first.ticket,
        outcome: PoolWriteOutcome::Failed,
        at: at(100),
    }));
    r.handle(Input::ServiceApplied(service("b", 2, &[])));
    let newer = r.handle(Input::Tick(at(100)));
    assert_eq!(
        pool_orders(&newer)[0].status.assigned_ipv4.as_deref(),
        Some("2")
    );
    assert!(pool_orders(&r.handle(Input::Tick(at(200)))).is_empty());
}

#[test]
fn a_stop_orders_the_latest_pool_statuses_and_nothing_else() {
    let p = pool("p", 1, 1, &["198.51.100.0/30"]);
    let (mut r, _) = listed(&[p], &[service("a", 1, &[])]);
    r.handle(Input::Tick(at(100)));
    r.handle(Input::ServiceApplied(service("b", 2, &[])));
    let last = r.final_pool_statuses(at(100));
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].status.assigned_ipv4.as_deref(), Some("2"));
}

#[test]
fn a_count_change_keeps_the_pool_condition_times() {
    let p = pool("p", 1, 1, &["198.51.100.0/30"]);
    let (mut r, _) = listed(&[p], &[service("a", 1, &[])]);
    pool_orders(&r.handle(Input::Tick(at(100))));
    r.handle(Input::ServiceApplied(service("b", 2, &[])));
    let later = r.handle(Input::Tick(at(200)));
    let status = &pool_orders(&later)[0].status;
    assert_eq!(status.assigned_ipv4.as_deref(), Some("2"));
    for c in &status.conditions {
        assert_eq!(c.last_transition_time.0, at(100), "{}", c.type_);
    }
}

#[test]
fn a_conflicting_pool_is_announced_once() {
    let early = pool("early", 1, 1, &["198.51.100.0/29"]);
    let (mut r, _) = listed(&[early], &[]);
    r.handle(Input::Tick(at(100)));
    let late = pool("late", 2, 1, &["198.51.100.4/30"]);
    let conflict = feed(&mut r, [Input::PoolApplied(late), Input::Tick(at(101))]);
    let announced = events_of(&conflict, "late");
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].0, "PoolConflict");
    let status = &pool_orders(&conflict)
        .into_iter()
        .find(|o| o.pool == "late")
        .unwrap()
        .status;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == condition::TYPE_CONFLICTING && c.status == "True")
    );
    // Still conflicting with another status (a spec edit): no second Event.
    let edited = pool("late", 2, 2, &["198.51.100.4/30", "198.51.100.64/30"]);
    let again = feed(&mut r, [Input::PoolApplied(edited), Input::Tick(at(102))]);
    assert_eq!(pool_orders(&again).len(), 1, "{again:#?}");
    assert!(events_of(&again, "late").is_empty(), "{again:#?}");
}

mod batches;
mod held;
