//! Restarts, kills and leader handover against the real apiserver.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferrolb_tests::env::{Controller, own_cluster, wait_for, wait_for_every};
use ferrolb_tests::forward::Forwarder;
use ferrolb_tests::process::kill_pid;
use ferrolb_tests::scenario::{Scenario, WAIT, ingress};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

type R = anyhow::Result<()>;

async fn ips_by_service(s: &Scenario) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let list = s.services().list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|svc| Some((svc.metadata.name.clone()?, ingress(svc))))
        .filter(|(_, ips)| !ips.is_empty())
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_while_assigning_500_services_loses_and_duplicates_nothing() -> R {
    const N: usize = 500;
    let mut s = Scenario::start("kill500").await?;
    let mut controller = s.controller.take().expect("controller");
    s.pool("big", json!({"addresses": ["2001:db8:500::/112"]}))
        .await?;
    let v6 = json!({"spec": {"ipFamilies": ["IPv6"]}});
    let names: Vec<String> = (0..N).map(|i| format!("s{i:03}")).collect();
    let mut creations =
        futures::stream::iter(names.iter().map(|n| s.service(n, v6.clone()))).buffer_unordered(16);
    let mut killed = 0;
    let mut created = 0;
    let mut before_kills: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while let Some(r) = creations.next().await {
        r?;
        created += 1;
        // Kill the controller twice while Services are still being created and assigned.
        if (created == N / 3 || created == 2 * N / 3) && killed < 2 {
            before_kills.extend(ips_by_service(&s).await?);
            controller.kill();
            killed += 1;
            controller = Controller::start(s.cluster, &s.ns, &["--no-leader-election"])?;
        }
    }
    drop(creations);
    let all = wait_for(
        "all 500 Services to have IPs",
        Duration::from_secs(120),
        || async {
            let got = ips_by_service(&s).await.ok()?;
            (got.len() == N).then_some(got)
        },
    )
    .await?;
    assert!(
        !before_kills.is_empty(),
        "some IPs were assigned before the kills"
    );
    for (name, ips) in &before_kills {
        assert_eq!(
            all.get(name),
            Some(ips),
            "{name} changed IP across a controller restart"
        );
    }
    let distinct: BTreeSet<&String> = all.values().flatten().collect();
    assert_eq!(distinct.len(), N, "no IP is given twice");
    // A clean restart changes nothing either.
    controller.stop();
    let _restarted = Controller::start(s.cluster, &s.ns, &["--no-leader-election"])?;
    s.service("after-restart", v6.clone()).await?;
    s.wait_ips("after-restart", 1).await?;
    assert_eq!(
        ips_by_service(&s)
            .await?
            .into_iter()
            .filter(|(n, _)| n != "after-restart")
            .collect::<BTreeMap<_, _>>(),
        all
    );
    Ok(())
}

/// Controller replicas with a 3 s lease.
fn flags(id: &'static str) -> [&'static str; 4] {
    ["--identity", id, "--lease-duration-seconds", "3"]
}

/// A scenario with pool `p` over `addresses` and two replicas, a and b.
async fn two_replicas(
    prefix: &str,
    addresses: &str,
) -> anyhow::Result<(Scenario, Controller, Controller)> {
    let s = Scenario::without_controller(prefix).await?;
    s.pool("p", json!({ "addresses": [addresses] })).await?;
    let a = Controller::start(s.cluster, &s.ns, &flags("replica-a"))?;
    let b = Controller::start(s.cluster, &s.ns, &flags("replica-b"))?;
    Ok((s, a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leads_the_other_takes_over() -> R {
    let (s, mut a, mut b) = two_replicas("leader", "198.51.100.120/29").await?;
    s.service("one", json!({})).await?;
    assert_eq!(s.wait_ips("one", 1).await?, vec!["198.51.100.120"]);
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns.name);
    let holder = leases
        .get("ferrolb-controller")
        .await?
        .spec
        .and_then(|sp| sp.holder_identity)
        .unwrap_or_default();
    // Both serve /readyz; only one holds the lease.
    let (leader, standby) = if holder == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(
        standby
            .http_get("/metrics")?
            .1
            .contains("ferrolb_controller_is_leader 0")
    );
    leader.kill();
    s.service("two", json!({})).await?;
    assert_eq!(
        s.wait_ips("two", 1).await?,
        vec!["198.51.100.121"],
        "the standby took over"
    );
    assert_eq!(
        s.ips("one").await?,
        vec!["198.51.100.120"],
        "and kept the existing IP"
    );
    let new_holder = leases
        .get("ferrolb-controller")
        .await?
        .spec
        .and_then(|sp| sp.holder_identity)
        .unwrap_or_default();
    assert_ne!(new_holder, holder);
    // A graceful stop hands over at once (the lease is released): well
    // before the 3 s lease would run out.
    let mut c = Controller::start(s.cluster, &s.ns, &flags("replica-c"))?;
    wait_for("replica-c to stand by", WAIT, || async {
        let (_, text) = c.http_get("/metrics")?;
        anyhow::ensure!(
            text.contains("ferrolb_controller_is_leader 0"),
            "not up yet"
        );
        anyhow::Ok(())
    })
    .await?;
    let stopping = Instant::now();
    standby.stop();
    wait_for("replica-c to take the lease", WAIT, || async {
        let holder = lease_holder(&leases).await?;
        anyhow::ensure!(holder == "replica-c", "held by {holder:?}");
        anyhow::Ok(())
    })
    .await?;
    let handover = stopping.elapsed();
    eprintln!("graceful hand-over in {handover:?}");
    assert!(
        handover < Duration::from_millis(1500),
        "hand-over took {handover:?}, not well under the 3 s lease"
    );
    s.service("three", json!({})).await?;
    assert_eq!(s.wait_ips("three", 1).await?, vec!["198.51.100.122"]);
    assert!(c.is_running());
    Ok(())
}

/// A Service and a pool deleted while the controller could not reach the
/// apiserver, whose watches then resume from a resourceVersion the apiserver
/// no longer has (410 Gone: its watch cache restarted), are seen as deleted
/// by the relist: the Service's IP serves again, the pool hands out nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_missed_during_an_outage_are_seen_by_the_relist() -> R {
    let cluster = own_cluster()?;
    let mut s = Scenario::on(cluster, "relist").await?;
    let cable = Forwarder::start_local(cluster.apiserver_addr()?)?;
    let server = format!("https://127.0.0.1:{}", cable.port);
    s.controller = Some(Controller::start_via(
        cluster,
        &s.ns,
        &["--no-leader-election"],
        &server,
    )?);
    let in_pool = |p: &str| json!({"metadata": {"annotations": {"ferrolb.io/address-pool": p}}});
    s.pool(
        "kept",
        json!({"addresses": ["198.51.100.130-198.51.100.130"]}),
    )
    .await?;
    s.pool(
        "gone",
        json!({"addresses": ["198.51.100.140-198.51.100.141"]}),
    )
    .await?;
    s.service("a", in_pool("kept")).await?;
    s.service("b", in_pool("gone")).await?;
    assert_eq!(s.wait_ips("a", 1).await?, vec!["198.51.100.130"]);
    assert_eq!(s.wait_ips("b", 1).await?, vec!["198.51.100.140"]);
    let gauge = r#"ferrolb_controller_pool_assigned_addresses{pool="gone""#;
    let metrics = || {
        s.controller
            .as_ref()
            .expect("controller")
            .http_get("/metrics")
    };
    wait_for("the controller to count pool gone", WAIT, || async {
        let (_, text) = metrics()?;
        anyhow::ensure!(text.contains(gauge), "no {gauge} yet");
        anyhow::Ok(())
    })
    .await?;

    cable.pause();
    s.delete_service("a").await?;
    s.delete_service("b").await?;
    s.delete_pool("gone").await?;
    // A fresh watch cache: the controller's resourceVersions are too old now.
    cluster.restart_apiserver()?;
    cable.resume();

    // The pool's gauges go when the controller drops the pool.
    wait_for("the controller to drop pool gone", WAIT, || async {
        let (_, text) = metrics()?;
        anyhow::ensure!(!text.contains(gauge), "still shows {gauge}");
        anyhow::Ok(())
    })
    .await?;
    s.service("c", in_pool("kept")).await?;
    assert_eq!(
        s.wait_ips("c", 1).await?,
        vec!["198.51.100.130"],
        "a's IP is free again"
    );
    s.service("d", in_pool("gone")).await?;
    let (status, reason, message) = s.wait_condition("d").await?;
    assert_eq!(status, "False", "{reason}: {message}");
    assert!(s.ips("d").await?.is_empty(), "pool gone hands out nothing");
    let logs = s.controller.as_ref().expect("controller").logs();
    assert!(
        logs.contains("410") || logs.contains("too old resource version"),
        "the watches were told 410 Gone:\n{logs}"
    );
    Ok(())
}

/// Every IP shown, and by whom, sampled every 100 ms until `stop`: fails on
/// the first IP shown by two Services, or a Service that shows another IP
/// than the one it first showed. Returns the number of samples taken.
async fn watch_for_duplicates(
    services: Api<k8s_openapi::api::core::v1::Service>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<usize> {
    let mut first: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut samples = 0;
    while !stop.load(Ordering::SeqCst) {
        let list = services.list(&ListParams::default()).await?;
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for svc in &list.items {
            let name = svc.metadata.name.clone().unwrap_or_default();
            let ips = ingress(svc);
            if ips.is_empty() {
                continue;
            }
            for ip in &ips {
                if let Some(other) = owner.insert(ip.clone(), name.clone()) {
                    anyhow::bail!("sample {samples}: {ip} shown by {other} and {name}");
                }
            }
            let was = first.entry(name.clone()).or_insert_with(|| ips.clone());
            anyhow::ensure!(
                *was == ips,
                "sample {samples}: {name} went from {was:?} to {ips:?}"
            );
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(samples)
}

async fn lease_holder(leases: &Api<Lease>) -> anyhow::Result<String> {
    Ok(leases
        .get("ferrolb-controller")
        .await?
        .spec
        .and_then(|sp| sp.holder_identity)
        .unwrap_or_default())
}

/// The leader is frozen (SIGSTOP) past its lease; the standby takes over and
/// serves new Services (and one deletion); then the old leader wakes up with
/// a backlog of watch events and a stale view. It must step down without a
/// single write, and no two Services ever show one IP meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_frozen_past_its_lease_wakes_and_steps_down_without_writing() -> R {
    let (s, mut a, mut b) = two_replicas("overlap", "198.51.100.150-198.51.100.199").await?;
    for i in 0..3 {
        s.service(&format!("old{i}"), json!({})).await?;
    }
    for i in 0..3 {
        s.wait_ips(&format!("old{i}"), 1).await?;
    }
    let leases: Api<Lease> = Api::namespaced(s.client.clone(), &s.ns.name);
    let holder = lease_holder(&leases).await?;
    let (leader, standby) = if holder == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    let pid = leader.pid().expect("the leader runs");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(watch_for_duplicates(s.services(), stop.clone()));
    // A burst keeps the leader busy writing; it is frozen in the middle.
    const BURST: usize = 30;
    let burst: Vec<String> = (0..BURST).map(|i| format!("burst{i:02}")).collect();
    futures::stream::iter(burst.iter().map(|n| s.service(n, json!({}))))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    assert!(kill_pid(pid, libc::SIGSTOP), "SIGSTOP the leader");
    // Nothing is logged while it is stopped: what follows is after SIGCONT.
    let frozen_log = leader.logs().len();
    let served_before = ips_by_service(&s).await?.len();
    // While it sleeps an IP is freed, so the new leader's choices differ
    // from the ones the old one has queued.
    s.delete_service("old1").await?;
    for i in 0..4 {
        s.service(&format!("new{i}"), json!({})).await?;
    }
    let all = 3 - 1 + BURST + 4;
    wait_for("the standby to serve every Service", WAIT, || async {
        let served = ips_by_service(&s).await?.len();
        anyhow::ensure!(served == all, "{served} of {all} have IPs");
        anyhow::Ok(())
    })
    .await?;
    assert_ne!(
        lease_holder(&leases).await?,
        holder,
        "the standby took over"
    );
    assert!(kill_pid(pid, libc::SIGCONT), "SIGCONT the old leader");
    wait_for("the old leader to step down", WAIT, || {
        std::future::ready((!leader.is_running()).then_some(()))
    })
    .await?;
    // One more Service, served by the new leader alone, ends the window.
    s.service("after", json!({})).await?;
    s.wait_ips("after", 1).await?;
    stop.store(true, Ordering::SeqCst);
    let samples = sampler.await??;
    assert!(samples >= 20, "sampled {samples} times");
    eprintln!(
        "frozen with {served_before} of {} Services served",
        3 + BURST
    );
    let woken = leader.logs().split_off(frozen_log);
    assert!(woken.contains("lost leadership"), "{woken}");
    for write in ["writing service", "writing pool status", "publishing event"] {
        assert!(
            !woken.contains(write),
            "the old leader wrote after waking ({write}):\n{woken}"
        );
    }
    assert!(standby.is_running());
    Ok(())
}

/// The pool's `assignedIPv6`, as the status shows it.
async fn assigned_v6(s: &Scenario, pool: &str) -> anyhow::Result<Option<String>> {
    let pool = s.pools().get(pool).await?;
    Ok(pool.status.and_then(|status| status.assigned_ipv6))
}

/// Pool statuses are published every 500 ms while the controller runs. One
/// stopped right after its last assignment must still leave the exact count
/// behind (it writes the status once more before it exits), not the count of
/// up to 500 ms earlier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_controller_leaves_exact_pool_counts() -> R {
    const N: usize = 200;
    let mut s = Scenario::start("poolstop").await?;
    let mut controller = s.controller.take().expect("controller");
    s.pool("counted", json!({"addresses": ["2001:db8:601::/112"]}))
        .await?;
    let v6 = json!({"spec": {"ipFamilies": ["IPv6"]}});
    let names: Vec<String> = (0..N).map(|i| format!("c{i:03}")).collect();
    futures::stream::iter(names.iter().map(|n| s.service(n, v6.clone())))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Stop as soon as the last IP shows: a tight, bounded look.
    wait_for_every(
        &format!("all {N} Services to have IPs"),
        Duration::from_secs(120),
        Duration::from_millis(10),
        || async {
            let got = ips_by_service(&s).await?.len();
            anyhow::ensure!(got == N, "{got} of {N} have IPs");
            anyhow::Ok(())
        },
    )
    .await?;
    let before = assigned_v6(&s, "counted").await?;
    controller.stop();
    let after = assigned_v6(&s, "counted").await?;
    eprintln!(
        "pool status assignedIPv6 right before the stop: {before:?}; after it: {after:?} (of {N})"
    );
    assert_eq!(after, Some(N.to_string()), "the pool status after the stop");
    assert!(
        controller.logs().contains("final pool statuses written"),
        "the controller says it wrote the final statuses"
    );
    Ok(())
}
