//! The controller against a real kube-apiserver (RBAC on, ServiceAccount
//! token from deploy/): one scenario per allocation rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::time::Duration;

use ferrolb_tests::env::{apply_deploy, shared_cluster, wait_for};
use ferrolb_tests::metrics_text::sample_value;
use ferrolb_tests::scenario::{Scenario, WAIT};
use serde_json::json;

type R = anyhow::Result<()>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_applies_server_side_and_controller_role_suffices() -> R {
    let cluster = shared_cluster();
    // Applying twice is idempotent.
    let out = apply_deploy(cluster)?;
    assert!(
        out.contains("deployment.apps/ferrolb-controller serverside-applied"),
        "{out}"
    );
    let can = cluster.kubectl_ok(&[
        "auth",
        "can-i",
        "patch",
        "services/status",
        "--as=system:serviceaccount:ferrolb-system:ferrolb-controller",
        "-A",
    ])?;
    assert_eq!(can.trim(), "yes");
    let cannot = cluster
        .kubectl()
        .args([
            "auth",
            "can-i",
            "delete",
            "services",
            "--as=system:serviceaccount:ferrolb-system:ferrolb-controller",
            "-A",
        ])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&cannot.stdout).trim(),
        "no",
        "the role must stay minimal"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_rejected_naming_the_field() -> R {
    let s = Scenario::without_controller("invalid").await?;
    let bad = [
        (json!({"addresses": ["198.51.100.0/33"]}), "spec.addresses"),
        (
            json!({"addresses": ["198.51.100.9-198.51.100.1"]}),
            "spec.addresses",
        ),
        (json!({"addresses": ["garbage"]}), "spec.addresses"),
    ];
    for (spec, field) in bad {
        let err = s
            .pool("bad", spec.clone())
            .await
            .expect_err("must be rejected");
        assert!(err.to_string().contains(field), "{spec}: {err}");
    }
    // Reserved addresses, by CIDR, by a range end, and by a range around a whole block.
    for entry in [
        "127.0.0.1/32",
        "fe80::/64",
        "255.255.255.255/32",
        "::1-2001:db8::1",
        "126.255.255.0-128.0.0.5",
        "fe00::-fec0::1",
    ] {
        let spec = json!({"addresses": ["198.51.100.0/28", entry]});
        let err = s
            .pool("reserved", spec)
            .await
            .expect_err("a reserved entry must be rejected");
        let err = err.to_string();
        assert!(
            err.contains("spec.addresses[1]") && err.contains("reserved"),
            "{entry}: {err}"
        );
    }
    // CIDR entries that overlap (one contains the other, however written).
    for pair in [
        ["198.51.100.0/24", "198.51.100.128/25"],
        ["2001:db8:9::/64", "2001:db8:9::8/126"],
        ["198.51.100.4/30", " 198.51.100.4/30"],
    ] {
        let err = s
            .pool("overlapping", json!({"addresses": pair}))
            .await
            .expect_err("overlapping CIDRs must be rejected");
        let err = err.to_string();
        assert!(
            err.contains("spec.addresses") && err.contains("must not overlap"),
            "{pair:?}: {err}"
        );
    }
    // Adjacent CIDRs and the two families side by side are fine.
    s.pool(
        "adjacent",
        json!({"addresses": ["198.51.100.0/25", "198.51.100.128/25", "2001:db8:9::/64"]}),
    )
    .await?;
    // Right next to the reserved blocks, both families, is fine.
    s.pool(
        "beside-reserved",
        json!({"addresses": ["1.0.0.0-126.255.255.255", "128.0.0.0/3", "2001:db8::/64", "fe00::-fe7f::1", "fec0::/10"]}),
    )
    .await?;
    let peer = json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "BGPPeer", "metadata": {"name": "p", "namespace": s.ns.name},
        "spec": {"myASN": 0, "peerASN": 64512, "peerAddress": "198.51.100.1"}});
    let path = s.cluster.dir.join(format!("{}-peer.json", s.ns.name));
    std::fs::write(&path, peer.to_string())?;
    let out = s
        .cluster
        .kubectl()
        .args(["apply", "-f"])
        .arg(&path)
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.myASN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocates_lowest_free_ip_with_status_annotation_condition_and_event() -> R {
    let s = Scenario::start("basic").await?;
    s.pool("main", json!({"addresses": ["198.51.100.16/30"]}))
        .await?;
    s.service("web", json!({})).await?;
    assert_eq!(s.wait_ips("web", 1).await?, vec!["198.51.100.16"]);
    // The status is written first, the annotation right after it.
    let pool = wait_for("the pool annotation", WAIT, || async {
        s.annotations("web")
            .await
            .ok()?
            .get("ferrolb.io/ip-allocated-from-pool")
            .cloned()
    })
    .await?;
    assert_eq!(pool, "main");
    let (status, reason, _) = s.condition("web").await?.expect("condition");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Allocated"));
    assert!(
        s.wait_event("web", "IPAllocated")
            .await?
            .contains("198.51.100.16")
    );
    s.service("api", json!({})).await?;
    assert_eq!(s.wait_ips("api", 1).await?, vec!["198.51.100.17"]);
    // Pool status counts, readable with kubectl get.
    let pools = s.pools();
    wait_for("pool counts", WAIT, || {
        let pools = pools.clone();
        async move {
            let st = pools.get("main").await.ok()?.status?;
            (st.assigned_ipv4.as_deref() == Some("2") && st.available_ipv4.as_deref() == Some("2"))
                .then_some(())
        }
    })
    .await?;
    let table = s
        .cluster
        .kubectl_ok(&["-n", &s.ns.name, "get", "ipaddresspools"])?;
    assert!(table.contains("198.51.100.16/30"), "{table}");
    // Metrics and health.
    let c = s.controller.as_ref().expect("controller");
    let (code, body) = c.http_get("/metrics")?;
    assert_eq!(code, 200);
    assert!(
        body.contains("ferrolb_controller_allocations_total"),
        "{body}"
    );
    assert_eq!(c.http_get("/readyz")?.0, 200);
    assert_eq!(c.http_get("/healthz")?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_ips_pools_and_legacy_annotations() -> R {
    let s = Scenario::start("request").await?;
    s.pool("a", json!({"addresses": ["198.51.100.32/29"]}))
        .await?;
    s.pool(
        "b",
        json!({"addresses": ["198.51.100.40-198.51.100.47"], "autoAssign": false}),
    )
    .await?;
    s.service(
        "by-annotation",
        json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "198.51.100.35"}}}),
    )
    .await?;
    assert_eq!(s.wait_ips("by-annotation", 1).await?, vec!["198.51.100.35"]);
    s.service(
        "by-spec",
        json!({"spec": {"loadBalancerIP": "198.51.100.44"}}),
    )
    .await?;
    assert_eq!(s.wait_ips("by-spec", 1).await?, vec!["198.51.100.44"]);
    s.service(
        "by-pool",
        json!({"metadata": {"annotations": {"metallb.universe.tf/address-pool": "b"}}}),
    )
    .await?;
    assert_eq!(s.wait_ips("by-pool", 1).await?, vec!["198.51.100.40"]);
    assert!(
        s.wait_event("by-pool", "DeprecatedAnnotation")
            .await?
            .contains("ferrolb.io/")
    );
    // autoAssign: false pools are not used without a request.
    s.service("auto", json!({})).await?;
    assert_eq!(s.wait_ips("auto", 1).await?, vec!["198.51.100.32"]);
    // An IP already taken.
    s.service(
        "taken",
        json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": "198.51.100.35"}}}),
    )
    .await?;
    assert!(
        s.wait_event("taken", "AllocationFailed")
            .await?
            .contains("IPTaken")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_annotations_give_events_never_a_crash() -> R {
    let mut s = Scenario::start("badann").await?;
    s.pool("p", json!({"addresses": ["198.51.100.48/29"]}))
        .await?;
    let cases = [
        (
            "garbage",
            json!({"ferrolb.io/loadBalancerIPs": "not-an-ip"}),
            "not an IP address",
        ),
        (
            "wrongfamily",
            json!({"ferrolb.io/loadBalancerIPs": "2001:db8::1"}),
            "is IPv6",
        ),
        (
            "unknownpool",
            json!({"ferrolb.io/address-pool": "nope"}),
            "UnknownPool",
        ),
        (
            "twoips",
            json!({"ferrolb.io/loadBalancerIPs": "198.51.100.49,198.51.100.50"}),
            "at most one IP per family",
        ),
        (
            "nopool",
            json!({"ferrolb.io/loadBalancerIPs": "203.0.113.250"}),
            "in no pool",
        ),
    ];
    for (name, annotations, _) in &cases {
        s.service(name, json!({"metadata": {"annotations": annotations}}))
            .await?;
    }
    for (name, _, expected) in &cases {
        let note = s.wait_event(name, "AllocationFailed").await?;
        assert!(note.contains(expected), "{name}: {note}");
        let (status, _, message) = s.wait_condition(name).await?;
        assert_eq!(status, "False");
        assert!(!message.is_empty());
        assert!(s.ips(name).await?.is_empty());
    }
    // Still alive and still allocating.
    s.service("fine", json!({})).await?;
    assert_eq!(s.wait_ips("fine", 1).await?, vec!["198.51.100.48"]);
    assert!(s.controller()?.is_running());
    // Fixing the annotation fixes the Service.
    s.patch_service(
        "garbage",
        json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "198.51.100.52"}}}),
    )
    .await?;
    assert_eq!(s.wait_ips("garbage", 1).await?, vec!["198.51.100.52"]);
    // A typo on a live Service keeps its IP, with a Warning; a pool's
    // serviceAllocation is not bypassed by naming the pool or one of its IPs.
    let typos = [
        json!({"ferrolb.io/loadBalancerIPs": "198.51.100.300"}),
        json!({"ferrolb.io/loadBalancerIPs": null, "metallb.universe.tf/address-pool": "nope"}),
        json!({"metallb.universe.tf/address-pool": null, "ferrolb.io/address-pool": "scoped"}),
    ];
    s.pool("scoped", json!({"addresses": ["198.51.100.56/30"], "serviceAllocation": {"namespaces": ["elsewhere"]}}))
        .await?;
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(s.client.clone(), &s.ns.name);
    for (i, annotations) in typos.into_iter().enumerate() {
        s.patch_service("fine", json!({"metadata": {"annotations": annotations}}))
            .await?;
        let count = wait_for("a RequestNotApplied Event per typo", WAIT, || {
            let events = events.clone();
            async move {
                let list = events.list(&Default::default()).await.ok()?;
                let n = list
                    .items
                    .iter()
                    .filter(|e| e.reason.as_deref() == Some("RequestNotApplied"))
                    .count();
                (n > i).then_some(n)
            }
        })
        .await?;
        assert_eq!(count, i + 1);
        assert_eq!(s.ips("fine").await?, vec!["198.51.100.48"], "typo {i}");
    }
    for (name, annotations) in [
        ("scope-pool", json!({"ferrolb.io/address-pool": "scoped"})),
        (
            "scope-ip",
            json!({"ferrolb.io/loadBalancerIPs": "198.51.100.57"}),
        ),
    ] {
        s.service(name, json!({"metadata": {"annotations": annotations}}))
            .await?;
        let note = s.wait_event(name, "AllocationFailed").await?;
        assert!(note.starts_with("OutOfScope"), "{name}: {note}");
        assert!(s.ips(name).await?.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_services_are_retried_when_a_pool_appears_or_an_ip_is_freed() -> R {
    let s = Scenario::start("retry").await?;
    s.service("early", json!({})).await?;
    assert!(
        s.wait_event("early", "AllocationFailed")
            .await?
            .contains("NoEligiblePool")
    );
    s.pool("late", json!({"addresses": ["198.51.100.56/32"]}))
        .await?;
    assert_eq!(s.wait_ips("early", 1).await?, vec!["198.51.100.56"]);
    s.service("second", json!({})).await?;
    assert!(
        s.wait_event("second", "AllocationFailed")
            .await?
            .contains("PoolFull")
    );
    s.delete_service("early").await?;
    assert_eq!(s.wait_ips("second", 1).await?, vec!["198.51.100.56"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_filter_and_release_when_no_longer_a_load_balancer() -> R {
    let s = Scenario::start("class").await?;
    s.pool("p", json!({"addresses": ["198.51.100.60/30"]}))
        .await?;
    s.service(
        "other-class",
        json!({"spec": {"loadBalancerClass": "example.com/other"}}),
    )
    .await?;
    s.service("unclassed", json!({"spec": {"loadBalancerClass": null}}))
        .await?;
    s.service("mine", json!({})).await?;
    assert_eq!(s.wait_ips("mine", 1).await?, vec!["198.51.100.60"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(s.ips("other-class").await?.is_empty());
    assert!(
        s.ips("unclassed").await?.is_empty(),
        "this controller runs with --ignore-unclassed"
    );
    // Another writer's condition and annotation on the same Service: our
    // writes (patches merged by condition type, our annotation key alone)
    // must leave them in place, through the release too.
    let api = s.services();
    wait_for("our condition", WAIT, || async {
        s.condition("mine").await.ok().flatten()
    })
    .await?;
    api.patch_status(
        "mine",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(json!({"status": {"conditions": [{
            "type": "example.com/Probed", "status": "True", "reason": "Probed",
            "message": "someone else's", "lastTransitionTime": "2026-01-01T00:00:00Z",
        }]}})),
    )
    .await?;
    s.patch_service(
        "mine",
        json!({"metadata": {"annotations": {"example.com/note": "kept"}}}),
    )
    .await?;
    let managers: Vec<String> = api
        .get("mine")
        .await?
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(
        managers.iter().any(|m| m == "ferrolb-controller"),
        "managedFields name our writes: {managers:?}"
    );
    // Turning it into a ClusterIP Service releases the IP and clears our marks.
    s.patch_service("mine", json!({"spec": {"type": "ClusterIP", "loadBalancerClass": null, "allocateLoadBalancerNodePorts": null}})).await?;
    s.wait_ips("mine", 0).await?;
    wait_for("annotation removed", WAIT, || {
        let api = api.clone();
        async move {
            let a = api
                .get("mine")
                .await
                .ok()?
                .metadata
                .annotations
                .unwrap_or_default();
            (!a.contains_key("ferrolb.io/ip-allocated-from-pool")).then_some(())
        }
    })
    .await?;
    wait_for("condition removed", WAIT, || async {
        s.condition("mine")
            .await
            .ok()
            .and_then(|c| c.is_none().then_some(()))
    })
    .await?;
    let released = api.get("mine").await?;
    let others: Vec<String> = released
        .status
        .and_then(|st| st.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert_eq!(
        others,
        vec!["example.com/Probed"],
        "only our condition went"
    );
    assert_eq!(
        released
            .metadata
            .annotations
            .unwrap_or_default()
            .get("example.com/note")
            .map(String::as_str),
        Some("kept")
    );
    s.service("next", json!({})).await?;
    assert_eq!(
        s.wait_ips("next", 1).await?,
        vec!["198.51.100.60"],
        "the freed IP is reused"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_needs_same_key_disjoint_ports_and_same_selector_for_local() -> R {
    let s = Scenario::start("share").await?;
    s.pool("p", json!({"addresses": ["198.51.100.64/29"]}))
        .await?;
    let shared = |port: i32, key: &str| {
        json!({"metadata": {"annotations": {"ferrolb.io/allow-shared-ip": key, "ferrolb.io/loadBalancerIPs": "198.51.100.66"}},
               "spec": {"ports": [{"port": port, "protocol": "TCP"}], "selector": {"app": "x"}}})
    };
    s.service("http", shared(80, "k")).await?;
    s.service("https", shared(443, "k")).await?;
    assert_eq!(s.wait_ips("http", 1).await?, vec!["198.51.100.66"]);
    assert_eq!(s.wait_ips("https", 1).await?, vec!["198.51.100.66"]);
    s.service("same-port", shared(80, "k")).await?;
    assert!(
        s.wait_event("same-port", "AllocationFailed")
            .await?
            .contains("port 80")
    );
    s.service("other-key", shared(8080, "z")).await?;
    assert!(
        s.wait_event("other-key", "AllocationFailed")
            .await?
            .contains("SharingConflict")
    );
    let mut local = shared(9090, "k");
    local["spec"]["externalTrafficPolicy"] = json!("Local");
    local["spec"]["selector"] = json!({"app": "different"});
    s.service("local-other-selector", local).await?;
    assert!(
        s.wait_event("local-other-selector", "AllocationFailed")
            .await?
            .contains("selectors differ")
    );
    // Without a requested IP, a shared key finds the existing shared IP.
    let auto = json!({"metadata": {"annotations": {"ferrolb.io/allow-shared-ip": "k"}}, "spec": {"ports": [{"port": 53, "protocol": "UDP"}]}});
    s.service("dns", auto).await?;
    assert_eq!(s.wait_ips("dns", 1).await?, vec!["198.51.100.66"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_policies() -> R {
    let s = Scenario::start("dual").await?;
    s.pool(
        "dual",
        json!({"addresses": ["198.51.100.72/30", "2001:db8:72::/64"]}),
    )
    .await?;
    s.service(
        "require",
        json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"]}}),
    )
    .await?;
    // `2001:db8:72::` is the subnet-router anycast address: not handed out.
    assert_eq!(
        s.wait_ips("require", 2).await?,
        vec!["2001:db8:72::1", "198.51.100.72"]
    );
    s.service(
        "prefer",
        json!({"spec": {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}}),
    )
    .await?;
    assert_eq!(
        s.wait_ips("prefer", 2).await?,
        vec!["198.51.100.73", "2001:db8:72::2"]
    );
    s.service("v6", json!({"spec": {"ipFamilies": ["IPv6"]}}))
        .await?;
    assert_eq!(s.wait_ips("v6", 1).await?, vec!["2001:db8:72::3"]);
    // A v4-only pool cannot serve an IPv6 Service.
    s.pool("dual", json!({"addresses": ["198.51.100.72/30"]}))
        .await?;
    s.service("v6b", json!({"spec": {"ipFamilies": ["IPv6"]}}))
        .await?;
    assert!(
        s.wait_event("v6b", "AllocationFailed")
            .await?
            .contains("FamilyUnavailable")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_choice_by_service_allocation_priority_and_avoid_buggy_ips() -> R {
    let s = Scenario::start("choice").await?;
    s.pool("gold", json!({"addresses": ["198.51.100.80/30"], "serviceAllocation": {"priority": 1, "serviceSelectors": [{"matchLabels": {"tier": "gold"}}]}})).await?;
    s.pool("silver", json!({"addresses": ["198.51.100.84/30"], "serviceAllocation": {"priority": 2, "namespaces": [s.ns.name]}})).await?;
    s.pool("buggy", json!({"addresses": ["198.51.100.255/32", "203.0.113.128-203.0.113.129"], "avoidBuggyIPs": true, "autoAssign": false})).await?;
    s.service("vip", json!({"metadata": {"labels": {"tier": "gold"}}}))
        .await?;
    assert_eq!(s.wait_ips("vip", 1).await?, vec!["198.51.100.80"]);
    s.service("normal", json!({})).await?;
    assert_eq!(s.wait_ips("normal", 1).await?, vec!["198.51.100.84"]);
    s.service(
        "avoid",
        json!({"metadata": {"annotations": {"ferrolb.io/address-pool": "buggy"}}}),
    )
    .await?;
    assert_eq!(
        s.wait_ips("avoid", 1).await?,
        vec!["203.0.113.128"],
        "198.51.100.255 is skipped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_shrink_delete_and_conflicts() -> R {
    let s = Scenario::start("pools").await?;
    s.pool("p", json!({"addresses": ["198.51.100.88/29"]}))
        .await?;
    s.service("low", json!({})).await?;
    s.service(
        "high",
        json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "198.51.100.94"}}}),
    )
    .await?;
    assert_eq!(s.wait_ips("low", 1).await?, vec!["198.51.100.88"]);
    assert_eq!(s.wait_ips("high", 1).await?, vec!["198.51.100.94"]);
    // Shrink: low keeps its IP, high is left pending with an Event.
    s.pool("p", json!({"addresses": ["198.51.100.88/30"]}))
        .await?;
    assert!(
        s.wait_event("high", "AllocationFailed")
            .await?
            .contains("in no pool")
    );
    s.wait_ips("high", 0).await?;
    assert_eq!(s.ips("low").await?, vec!["198.51.100.88"]);
    // A conflicting later pool is marked, with an Event, and the overlap is not used.
    // creationTimestamp has one-second resolution and ties go by name, so
    // make sure "overlap" is the later pool.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.pool(
        "overlap",
        json!({"addresses": ["198.51.100.90-198.51.100.93"]}),
    )
    .await?;
    let pools = s.pools();
    let message = wait_for("conflict condition", WAIT, || {
        let pools = pools.clone();
        async move {
            let st = pools.get("overlap").await.ok()?.status?;
            st.conditions
                .iter()
                .find(|c| c.type_ == "Conflicting" && c.status == "True")
                .map(|c| c.message.clone())
        }
    })
    .await?;
    assert!(message.contains("p"), "{message}");
    s.wait_event("overlap", "PoolConflict").await?;
    // New Services get the addresses outside the overlap, from either pool.
    let mut got = Vec::new();
    for name in ["after1", "after2", "after3"] {
        s.service(name, json!({})).await?;
        got.extend(s.wait_ips(name, 1).await?);
    }
    got.sort();
    assert_eq!(got, vec!["198.51.100.89", "198.51.100.92", "198.51.100.93"]);
    s.service("none-left", json!({})).await?;
    assert!(
        s.wait_event("none-left", "AllocationFailed")
            .await?
            .contains("PoolFull")
    );
    // Deleting the pool while in use freezes its Services' IPs: low keeps
    // its own rather than moving to the pool that is left.
    s.delete_pool("p").await?;
    s.wait_event("p", "PoolDeletedInUse").await?;
    assert!(s.wait_event("low", "PoolFrozen").await?.contains("deleted"));
    assert_eq!(s.ips("low").await?, vec!["198.51.100.88"]);
    Ok(())
}

/// Samples `name`'s IPs until told to stop; returns every different list seen.
fn sample_ips(
    api: kube::Api<k8s_openapi::api::core::v1::Service>,
    name: &'static str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Vec<Vec<String>>>,
) {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut seen: Vec<Vec<String>> = Vec::new();
        while stopped.try_recv().is_err() {
            if let Ok(svc) = api.get(name).await {
                let ips = ferrolb_tests::scenario::ingress(&svc);
                if seen.last() != Some(&ips) {
                    seen.push(ips);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen
    });
    (stop, task)
}

/// An admitted edit that makes an in-use pool invalid (a range overlapping a
/// CIDR of the same pool: the schema refuses overlapping CIDRs, but checking
/// ranges pairwise is past the apiserver's CEL cost budget, so the
/// controller's check finds it) and a pool deleted in use both freeze their Services' IPs:
/// sampled throughout, the IP never changes or goes, and the pool hands
/// out nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_use_pool_turning_invalid_or_deleted_freezes_its_services() -> R {
    let s = Scenario::start("frozen").await?;
    s.pool("p", json!({"addresses": ["203.0.113.64/30"]}))
        .await?;
    s.pool("q", json!({"addresses": ["203.0.113.72/30"]}))
        .await?;
    s.service(
        "a",
        json!({"metadata": {"annotations": {"ferrolb.io/address-pool": "p"}}}),
    )
    .await?;
    assert_eq!(s.wait_ips("a", 1).await?, vec!["203.0.113.64"]);
    let (stop, sampler) = sample_ips(s.services(), "a");

    s.pool(
        "p",
        json!({"addresses": ["203.0.113.64/30", "203.0.113.66-203.0.113.67"]}),
    )
    .await
    .expect("admitted: the schema does not see a range overlapping a CIDR");
    assert!(s.wait_event("a", "PoolFrozen").await?.contains("invalid"));
    assert!(s.wait_event("p", "InvalidPool").await?.contains("frozen"));
    let pools = s.pools();
    let message = wait_for("Ready=False on p", WAIT, || {
        let pools = pools.clone();
        async move {
            let st = pools.get("p").await.ok()?.status?;
            let ready = st.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "False").then(|| ready.message.clone())
        }
    })
    .await?;
    assert!(message.contains("frozen"), "{message}");
    s.service("b", json!({})).await?;
    assert_eq!(
        s.wait_ips("b", 1).await?,
        vec!["203.0.113.72"],
        "from q, not p"
    );

    s.delete_pool("p").await?;
    s.wait_event("p", "PoolDeletedInUse").await?;
    // A Service asking for the deleted pool waits; a it still has its IP.
    s.service(
        "c",
        json!({"metadata": {"annotations": {"ferrolb.io/address-pool": "p"}}}),
    )
    .await?;
    assert!(
        s.wait_event("c", "AllocationFailed")
            .await?
            .contains("UnknownPool")
    );
    assert_eq!(s.ips("a").await?, vec!["203.0.113.64"]);

    stop.send(()).ok();
    let seen = sampler.await?;
    assert_eq!(
        seen,
        vec![vec!["203.0.113.64".to_string()]],
        "a's IPs over time"
    );
    Ok(())
}

/// Every failure reason we can provoke shows up as a label value of the
/// failure counter, with a count of at least one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocation_failure_metric_carries_the_reason() -> R {
    let s = Scenario::start("failmetric").await?;
    s.pool("one", json!({"addresses": ["198.51.100.96/32"]}))
        .await?;
    s.service("first", json!({})).await?;
    assert_eq!(s.wait_ips("first", 1).await?, vec!["198.51.100.96"]);
    let failing = [
        ("full", json!({}), "pool_full"),
        (
            "unknown",
            json!({"metadata": {"annotations": {"ferrolb.io/address-pool": "nope"}}}),
            "unknown_pool",
        ),
        (
            "garbage",
            json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "not-an-ip"}}}),
            "invalid_request",
        ),
        (
            "nowhere",
            json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "203.0.113.200"}}}),
            "ip_in_no_pool",
        ),
        (
            "taken",
            json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": "198.51.100.96"}}}),
            "ip_taken",
        ),
        (
            "v6",
            json!({"spec": {"ipFamilies": ["IPv6"]}}),
            "family_unavailable",
        ),
    ];
    for (name, extra, _) in &failing {
        s.service(name, extra.clone()).await?;
    }
    let controller = s.controller.as_ref().expect("controller");
    let body = wait_for("every failure reason in /metrics", WAIT, || async {
        let (code, body) = controller.http_get("/metrics").ok()?;
        let complete = code == 200
            && failing
                .iter()
                .all(|(_, _, reason)| failure_count(&body, reason).is_some_and(|n| n >= 1.0));
        complete.then_some(body)
    })
    .await;
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let (_, body) = controller.http_get("/metrics")?;
            anyhow::bail!("{e}\n/metrics:\n{body}");
        }
    };
    assert!(
        body.contains("# TYPE ferrolb_controller_allocation_failures counter"),
        "{body}"
    );
    // The Service that was never refused has no reason of its own.
    assert_eq!(failure_count(&body, "sharing_conflict"), None, "{body}");
    Ok(())
}

/// The value of `ferrolb_controller_allocation_failures_total{reason="…"}`.
fn failure_count(metrics: &str, reason: &str) -> Option<f64> {
    sample_value(
        metrics,
        &format!("ferrolb_controller_allocation_failures_total{{reason=\"{reason}\"}}"),
    )
}

/// Cells of a kubectl table row, cut at the columns where the header's
/// names start (names may hold single spaces, cells are left-aligned).
fn table_cells(header: &str, row: &str, names: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut starts = Vec::new();
    let mut from = 0;
    for name in names {
        let at = header[from..]
            .find(name)
            .map(|i| i + from)
            .ok_or_else(|| anyhow::anyhow!("no column {name} in {header:?}"))?;
        starts.push(at);
        from = at + name.len();
    }
    Ok(starts
        .iter()
        .enumerate()
        .map(|(i, start)| {
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(row.len())
                .min(row.len());
            row.get(*start..end).unwrap_or("").trim().to_string()
        })
        .collect())
}

/// `kubectl get ipaddresspools -o wide` shows, in each printer column, the
/// field the column names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_printer_columns_show_spec_and_status() -> R {
    let s = Scenario::start("columns").await?;
    s.pool(
        "mixed",
        json!({"addresses": ["198.51.100.104/30", "2001:db8:5::/126"]}),
    )
    .await?;
    s.pool(
        "manual",
        json!({"addresses": ["198.51.100.110/31"], "autoAssign": false}),
    )
    .await?;
    // Created after "mixed" and overlapping it: not Ready.
    s.pool("overlap", json!({"addresses": ["198.51.100.107/32"]}))
        .await?;
    s.service("web", json!({})).await?;
    assert_eq!(s.wait_ips("web", 1).await?.len(), 1);
    let pools = s.pools();
    wait_for("pool statuses", WAIT, || {
        let pools = pools.clone();
        async move {
            let mixed = pools.get("mixed").await.ok()?.status?;
            let overlap = pools.get("overlap").await.ok()?.status?;
            let manual = pools.get("manual").await.ok()?.status?;
            let ready = |st: &ferrolb_crds::pool::IPAddressPoolStatus| {
                st.conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| c.status.clone())
            };
            (mixed.assigned_ipv4.as_deref() == Some("1")
                && ready(&overlap).as_deref() == Some("False")
                && manual.available_ipv4.is_some())
            .then_some(())
        }
    })
    .await?;

    let names = [
        "NAME",
        "ADDRESSES",
        "AUTO ASSIGN",
        "ASSIGNED V4",
        "AVAILABLE V4",
        "ASSIGNED V6",
        "AVAILABLE V6",
        "IN USE",
        "READY",
        "AGE",
    ];
    let table = s
        .cluster
        .kubectl_ok(&["-n", &s.ns.name, "get", "ipaddresspools", "-o", "wide"])?;
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let mut rows = std::collections::BTreeMap::new();
    for line in lines {
        let cells = table_cells(header, line, &names)?;
        rows.insert(cells[0].clone(), cells);
    }
    assert_eq!(rows.len(), 3, "{table}");

    for (name, row) in &rows {
        let pool = pools.get(name).await?;
        let status = pool.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status.clone())
            .unwrap_or_default();
        let expected = [
            name.clone(),
            serde_json::to_string(&pool.spec.addresses)?,
            pool.spec.auto_assign.to_string(),
            status.assigned_ipv4.clone().unwrap_or_default(),
            status.available_ipv4.clone().unwrap_or_default(),
            status.assigned_ipv6.clone().unwrap_or_default(),
            status.available_ipv6.clone().unwrap_or_default(),
            status.in_use.map(|b| b.to_string()).unwrap_or_default(),
            ready,
        ];
        assert_eq!(&row[..9], &expected[..], "{name}:\n{table}");
        assert!(!row[9].is_empty(), "AGE of {name}:\n{table}");
    }
    // And the values themselves, where they do not depend on overlap rules.
    let cells = |name: &str, column: &str| {
        let index = names.iter().position(|n| *n == column).unwrap_or(0);
        rows.get(name).map(|r| r[index].clone()).unwrap_or_default()
    };
    assert_eq!(
        cells("mixed", "ADDRESSES"),
        r#"["198.51.100.104/30","2001:db8:5::/126"]"#
    );
    assert_eq!(cells("mixed", "AUTO ASSIGN"), "true");
    assert_eq!(cells("mixed", "ASSIGNED V4"), "1");
    assert_eq!(cells("mixed", "ASSIGNED V6"), "0");
    // 2001:db8:5::/126 holds 4, less its subnet-router anycast address.
    assert_eq!(cells("mixed", "AVAILABLE V6"), "3");
    assert_eq!(cells("mixed", "IN USE"), "true");
    assert_eq!(cells("mixed", "READY"), "True");
    assert_eq!(cells("manual", "AUTO ASSIGN"), "false");
    assert_eq!(cells("manual", "ASSIGNED V4"), "0");
    assert_eq!(cells("manual", "AVAILABLE V4"), "2");
    assert_eq!(cells("manual", "IN USE"), "false");
    assert_eq!(cells("manual", "READY"), "True");
    assert_eq!(cells("overlap", "READY"), "False");
    Ok(())
}

/// `--help` works without a cluster; a malformed flag is refused before
/// anything starts, naming the flag.
#[test]
fn command_line_help_and_bad_flags() -> R {
    let binary = ferrolb_tests::env::binary("ferrolb-controller")?;
    let help = std::process::Command::new(&binary).arg("--help").output()?;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{text}");
    for flag in [
        "--namespace",
        "--load-balancer-class",
        "--ignore-unclassed",
        "--metrics-addr",
        "--no-leader-election",
        "--lease-duration-seconds",
        "--write-workers",
        "--status-write",
        "--log-format",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    for bad in [
        &["--write-workers", "nope"][..],
        &["--write-workers", "0"],
        &["--metrics-addr", "not-an-address"],
        &["--log-format", "xml"],
        &["--status-write", "update"],
    ] {
        let out = std::process::Command::new(&binary)
            .args(bad)
            .env_remove("KUBECONFIG")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
    }
    let unknown = std::process::Command::new(&binary)
        .arg("--no-such-flag")
        .output()?;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("--no-such-flag"));
    Ok(())
}

/// The speakers' gossip key: a started controller creates Secret
/// `ferrolb-memberlist` in its namespace, as its ServiceAccount, with the
/// base64 text of 128 random bytes under `secretkey`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_creates_the_memberlist_secret_when_missing() -> R {
    use base64::Engine;
    use k8s_openapi::api::core::v1::Secret;

    let s = Scenario::start("memberlist-new").await?;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(s.client.clone(), &s.ns.name);
    let secret = wait_for("Secret ferrolb-memberlist", WAIT, || {
        let secrets = secrets.clone();
        async move { secrets.get_opt("ferrolb-memberlist").await.ok().flatten() }
    })
    .await?;
    let data = secret.data.unwrap_or_default();
    let key = &data.get("secretkey").expect("the Secret holds secretkey").0;
    let raw = base64::engine::general_purpose::STANDARD.decode(key)?;
    assert_eq!(raw.len(), 128, "128 random bytes, base64");
    assert!(raw.iter().any(|b| *b != 0));
    let logs = s.controller.as_ref().map(|c| c.logs()).unwrap_or_default();
    assert!(
        logs.contains("created the speakers' gossip key Secret"),
        "{logs}"
    );
    Ok(())
}

/// An existing gossip key is never replaced: changing it would split the
/// speakers' gossip group until every speaker restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_leaves_an_existing_memberlist_secret_alone() -> R {
    use k8s_openapi::api::core::v1::Secret;

    let mut s = Scenario::without_controller("memberlist-kept").await?;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(s.client.clone(), &s.ns.name);
    let before = secrets
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "ferrolb-memberlist"},
                "stringData": {"secretkey": "chosen-by-the-admin"},
            }))?,
        )
        .await?;
    let controller =
        ferrolb_tests::env::Controller::start(s.cluster, &s.ns, &["--no-leader-election"])?;
    wait_for("the controller to find the Secret", WAIT, || {
        let logs = controller.logs();
        async move {
            logs.contains("gossip key Secret exists; left as it is")
                .then_some(())
        }
    })
    .await?;
    s.controller = Some(controller);
    let after = secrets.get("ferrolb-memberlist").await?;
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the Secret was not written"
    );
    let data = after.data.unwrap_or_default();
    assert_eq!(
        data.get("secretkey").map(|k| k.0.as_slice()),
        Some(&b"chosen-by-the-admin"[..])
    );
    Ok(())
}

/// `--memberlist-secret-name=` (empty) turns the Secret off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_creates_no_memberlist_secret_when_disabled() -> R {
    use k8s_openapi::api::core::v1::Secret;

    let mut s = Scenario::without_controller("memberlist-off").await?;
    let controller = ferrolb_tests::env::Controller::start(
        s.cluster,
        &s.ns,
        &["--no-leader-election", "--memberlist-secret-name="],
    )?;
    wait_for("the controller to start", WAIT, || {
        let logs = controller.logs();
        async move {
            logs.contains("not creating the speakers' gossip key Secret")
                .then_some(())
        }
    })
    .await?;
    // Serving works meanwhile; then the Secret is still absent.
    s.controller = Some(controller);
    s.pool("p", json!({"addresses": ["198.51.100.0/30"]}))
        .await?;
    s.service("svc", json!({})).await?;
    s.wait_ips("svc", 1).await?;
    let secrets: kube::Api<Secret> = kube::Api::namespaced(s.client.clone(), &s.ns.name);
    assert!(secrets.get_opt("ferrolb-memberlist").await?.is_none());
    Ok(())
}

/// A validating webhook refuses every Service status write for 25 s (longer
/// than the ~19 s the writer used to retry before giving a write up for
/// good), then allows them: every Service ends with its IP within the
/// writer's 5 s backoff cap (and some slack) of the recovery. A Service
/// deleted meanwhile has its write dropped, not retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_refused_for_a_while_are_retried_until_taken() -> R {
    use ferrolb_tests::webhook::Webhook;
    let mut s = Scenario::start("refused").await?;
    s.pool("p", json!({"addresses": ["198.51.100.230-198.51.100.239"]}))
        .await?;
    let webhook = Webhook::start(&s.cluster.dir).await?;
    webhook.refuse(true);
    let config_name = format!("refuse-{}", s.ns.name);
    let config = webhook.configuration(&config_name, "services/status", &s.ns.name);
    s.cluster
        .kubectl_stdin(&["apply", "-f", "-"], &config.to_string())?;
    // The apiserver calls the webhook once it has read the configuration:
    // wait until a status write of the harness's own is refused.
    s.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "probe", "namespace": s.ns.name},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}})
        .to_string(),
    )?;
    wait_for("the webhook to refuse status writes", WAIT, || async {
        let out = s
            .cluster
            .kubectl()
            .args([
                "-n",
                &s.ns.name,
                "patch",
                "service",
                "probe",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"conditions":[]}}"#,
            ])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        anyhow::ensure!(
            stderr.contains("refused by the test webhook"),
            "not refused: {stderr}"
        );
        anyhow::Ok(())
    })
    .await?;
    let refused_since = std::time::Instant::now();
    let names: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    let all: Vec<String> = names.iter().cloned().chain(["doomed".into()]).collect();
    for name in &all {
        s.service(name, json!({})).await?;
    }
    wait_for("every write to be refused once", WAIT, || {
        let seen = webhook.seen();
        let missing: Vec<&String> = all
            .iter()
            .filter(|n| !seen.iter().any(|(m, refused)| m == *n && *refused))
            .collect();
        std::future::ready(if missing.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!("not yet refused: {missing:?}"))
        })
    })
    .await?;
    s.delete_service("doomed").await?;
    let log = s.controller()?.log.clone();
    wait_for("doomed's write to be dropped as stale", WAIT, || {
        let logs = std::fs::read_to_string(&log).unwrap_or_default();
        std::future::ready(
            logs.lines()
                .any(|l| l.contains("write is stale") && l.contains("/doomed"))
                .then_some(()),
        )
    })
    .await?;
    let remaining = Duration::from_secs(25).saturating_sub(refused_since.elapsed());
    tokio::time::sleep(remaining).await;
    for name in &names {
        assert!(
            s.ips(name).await?.is_empty(),
            "{name} got an IP through the webhook"
        );
    }
    webhook.refuse(false);
    let recovered = std::time::Instant::now();
    for name in &names {
        wait_for(
            &format!("an IP on {name}"),
            Duration::from_secs(15),
            || async {
                let ips = s.ips(name).await?;
                anyhow::ensure!(ips.len() == 1, "{ips:?}");
                anyhow::Ok(())
            },
        )
        .await?;
    }
    eprintln!(
        "every Service shows its IP {:?} after the webhook recovered",
        recovered.elapsed()
    );
    let logs = s.controller()?.logs();
    let after_drop = logs
        .split_once("write is stale")
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    assert!(
        !after_drop
            .lines()
            .any(|l| l.contains("writing service") && l.contains("/doomed")),
        "doomed's write was sent again after it was dropped"
    );
    s.cluster
        .kubectl_ok(&["delete", "validatingwebhookconfiguration", &config_name])?;
    Ok(())
}

/// Events go out at most `--events-per-second` (a burst of as many, then one
/// per 1/rate), and only after the statuses: eight Services that exist when
/// the controller starts all show their IPs at once, and their eight
/// `IPAllocated` Events, at 2 a second, span at least 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_go_out_at_the_configured_rate_after_the_statuses() -> R {
    use k8s_openapi::api::events::v1::Event;
    let mut s = Scenario::without_controller("evrate").await?;
    s.pool("main", json!({"addresses": ["198.51.100.64/28"]}))
        .await?;
    let names: Vec<String> = (0..8).map(|i| format!("svc-{i}")).collect();
    for name in &names {
        s.service(name, json!({})).await?;
    }
    s.controller = Some(ferrolb_tests::env::Controller::start(
        s.cluster,
        &s.ns,
        &["--no-leader-election", "--events-per-second", "2"],
    )?);
    for name in &names {
        s.wait_ips(name, 1).await?;
    }
    let events: kube::Api<Event> = kube::Api::namespaced(s.client.clone(), &s.ns.name);
    let expected = names.len();
    let times = wait_for("eight IPAllocated Events", WAIT, || {
        let events = events.clone();
        async move {
            let list = events.list(&Default::default()).await.ok()?;
            let times: Vec<i64> = list
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("IPAllocated"))
                .filter_map(|e| Some(e.event_time.as_ref()?.0.as_millisecond()))
                .collect();
            (times.len() == expected).then_some(times)
        }
    })
    .await?;
    let span = times.iter().max().unwrap() - times.iter().min().unwrap();
    // Two at once, then six at 0.5 s each: 3 s (less a little for clocks).
    assert!(span >= 2_800, "eight Events within {span} ms at 2 a second");
    Ok(())
}
