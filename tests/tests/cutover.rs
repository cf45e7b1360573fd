//! The cut-over from the real MetalLB (issue 12 §2). MetalLB's controller, built from the
//! Go module proxy, assigns 200 Services their IPs (requested ones, a named pool, shared
//! ones, dual-stack ones); it is stopped, `ferrolb migrate --from-cluster` converts its
//! configuration, and FerroLB's controller takes over. Every Service keeps exactly the IPs
//! MetalLB gave it, a Service watch started before the cut-over never sees anything else,
//! FerroLB marks each Service as its own, and new Services get IPs from the migrated pools.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use ferrolb_tests::Cluster;
use ferrolb_tests::env::{Controller, binary, own_cluster, wait_for};
use ferrolb_tests::metallb;
use ferrolb_tests::metallb_source::controller_binary;
use ferrolb_tests::process::terminate;
use ferrolb_tests::scenario::ingress;
use ferrolb_tests::service_watch::{
    OUR_POOL_ANNOTATION, Watched, annotation, check_no_violations, key, watch_services,
};

type R = anyhow::Result<()>;

const METALLB_NS: &str = metallb::NAMESPACE;
const APP_NAMESPACES: [&str; 2] = ["shop", "blog"];
const SERVICES: usize = 200;
/// Created and deleted before the cut-over, so MetalLB's table has holes that a fresh
/// allocation would fill differently from what the Services show.
const FILLERS: usize = 20;
const WAIT: Duration = Duration::from_secs(90);
const METALLB_POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";

/// MetalLB's configuration: `default` hands out automatically; `gold` and `dual` only on
/// request (the dual one starts its IPv6 range at the subnet-router anycast address, which
/// MetalLB hands out and FerroLB withholds from new allocations only). An L2Advertisement,
/// as a real L2 install has.
fn metallb_config() -> String {
    format!(
        r#"apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: default, namespace: {METALLB_NS}}}
spec: {{addresses: ["198.51.100.0/24"]}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: gold, namespace: {METALLB_NS}}}
spec: {{addresses: ["192.0.2.0/26"], autoAssign: false}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: dual, namespace: {METALLB_NS}}}
spec: {{addresses: ["192.0.2.128/26", "2001:db8:1::/120"], autoAssign: false}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: l2, namespace: {METALLB_NS}}}
spec: {{ipAddressPools: [default, gold, dual]}}
"#
    )
}

/// Service `index` of the 200: 40 request an IP, 20 name the `gold` pool, 40 share an IP
/// by fours (same key, different ports; half of the groups also request the IP), 20 are
/// dual-stack from `dual`, and 80 take whatever `default` gives.
fn service(index: usize) -> Value {
    let namespace = APP_NAMESPACES[index % 2];
    let name = format!("svc-{index:03}");
    let mut annotations = serde_json::Map::new();
    let mut port = 80;
    let mut spec = json!({});
    match index % 10 {
        0 | 1 => {
            let k = index / 10 * 2 + index % 10; // 0..40
            annotations.insert(
                "metallb.io/loadBalancerIPs".into(),
                format!("198.51.100.{}", 200 + k).into(),
            );
        }
        2 => {
            annotations.insert("metallb.io/address-pool".into(), "gold".into());
        }
        3 | 4 => {
            let k = index / 10 * 2 + index % 10 - 3; // 0..40
            let group = k / 4;
            port = 80 + (k % 4) as i32;
            annotations.insert(
                "metallb.io/allow-shared-ip".into(),
                format!("group-{group}").into(),
            );
            if group.is_multiple_of(2) {
                annotations.insert(
                    "metallb.io/loadBalancerIPs".into(),
                    format!("198.51.100.{}", 240 + group).into(),
                );
            }
        }
        5 => {
            annotations.insert("metallb.io/address-pool".into(), "dual".into());
            spec = json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]});
        }
        _ => {}
    }
    load_balancer(namespace, &name, annotations, port, spec)
}

fn load_balancer(
    namespace: &str,
    name: &str,
    annotations: serde_json::Map<String, Value>,
    port: i32,
    extra_spec: Value,
) -> Value {
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
                 "ports": [{"port": port, "protocol": "TCP"}]},
    });
    ferrolb_tests::scenario::merge(&mut service["spec"], extra_spec);
    service
}

async fn create_all(client: &kube::Client, services: Vec<Value>) -> R {
    futures::stream::iter(services)
        .map(|body| async move {
            let namespace = body["metadata"]["namespace"].as_str().unwrap().to_string();
            let service: Service = serde_json::from_value(body)?;
            Api::<Service>::namespaced(client.clone(), &namespace)
                .create(&PostParams::default(), &service)
                .await?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Every LoadBalancer Service of the app namespaces, by `namespace/name`.
async fn services(client: &kube::Client) -> anyhow::Result<BTreeMap<String, Service>> {
    let mut all = BTreeMap::new();
    for namespace in APP_NAMESPACES {
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        for service in api.list(&ListParams::default()).await? {
            all.insert(key(&service), service);
        }
    }
    Ok(all)
}

/// Waits until each of `names` shows `ips_per(name)` IPs; returns every Service.
async fn wait_assigned(
    client: &kube::Client,
    what: &str,
    names: &BTreeSet<String>,
    ips_per: impl Fn(&str) -> usize,
) -> anyhow::Result<BTreeMap<String, Service>> {
    wait_for(what, WAIT, || async {
        let all = services(client).await?;
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| {
                all.get(*n)
                    .is_none_or(|s| ingress(s).len() != ips_per(n.as_str()))
            })
            .collect();
        if missing.is_empty() {
            Ok(all)
        } else {
            Err(anyhow::anyhow!(
                "{} without their IPs, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(3)]
            ))
        }
    })
    .await
}

/// `error` with the last lines of the log `file` of the cluster's directory.
fn with_log(error: anyhow::Error, cluster: &Cluster, file: &str) -> anyhow::Error {
    let log = std::fs::read_to_string(cluster.dir.join(file)).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    anyhow::anyhow!("{error:#}\n{file} (last 30 lines):\n{tail}")
}

/// A Service's IPs as addresses.
fn addresses(service: &Service) -> Vec<IpAddr> {
    ingress(service)
        .iter()
        .map(|ip| ip.parse().expect("an IP"))
        .collect()
}

/// Checks MetalLB's assignment did what each kind of Service asked (so the cut-over is
/// tested on every kind) and returns the IPs by Service.
fn check_metallb_assignment(
    all: &BTreeMap<String, Service>,
    names: &BTreeSet<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut by_ip: BTreeMap<String, usize> = BTreeMap::new();
    let mut assigned = BTreeMap::new();
    for name in names {
        let service = &all[name];
        let ips = ingress(service);
        for ip in &ips {
            *by_ip.entry(ip.clone()).or_default() += 1;
        }
        if let Some(requested) = annotation(service, "metallb.io/loadBalancerIPs") {
            assert_eq!(ips, [requested], "{name}");
        }
        match annotation(service, "metallb.io/address-pool") {
            Some("gold") => assert!(addresses(service)[0].to_string().starts_with("192.0.2.")),
            Some("dual") => assert!(addresses(service)[1].is_ipv6(), "{name}: {ips:?}"),
            _ => {}
        }
        assigned.insert(name.clone(), ips);
    }
    let shared = by_ip.values().filter(|n| **n > 1).count();
    assert_eq!(
        shared, 10,
        "MetalLB put the 10 sharing groups on 10 IPs: {by_ip:?}"
    );
    assert!(
        by_ip.values().all(|n| *n == 1 || *n == 4),
        "only the groups of four share: {by_ip:?}"
    );
    assert!(
        assigned.values().flatten().any(|ip| ip == "2001:db8:1::"),
        "MetalLB handed out the IPv6 subnet-router anycast address"
    );
    assigned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metallb_cut_over_keeps_every_ip_and_ferrolb_takes_ownership() -> R {
    let started = Instant::now();
    // Both projects' binaries first: no build inside the cut-over.
    let metallb_binary = controller_binary()?;
    eprintln!("MetalLB controller at {}", metallb_binary.display());
    let ferrolb = binary("ferrolb")?;
    eprintln!("binaries ready after {:?}", started.elapsed());
    let cluster = own_cluster()?;
    let client = cluster.admin_client().await?;
    eprintln!("cluster ready after {:?}", started.elapsed());
    // The cluster's IPv4 Service range (a /25) holds too few ClusterIPs for 200 Services.
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: cutover}\nspec: {cidrs: [198.18.0.0/24]}\n",
    )?;
    for namespace in [METALLB_NS, APP_NAMESPACES[0], APP_NAMESPACES[1]] {
        cluster.kubectl_ok(&["create", "namespace", namespace])?;
    }
    metallb::install_crds(cluster)?;
    cluster.kubectl_stdin(&["apply", "-f", "-"], &metallb_config())?;

    // 1. MetalLB assigns every IP (after fillers that leave holes when deleted).
    let mut metallb = metallb::start_controller(cluster)?;
    let fillers: Vec<Value> = (0..FILLERS)
        .map(|i| {
            load_balancer(
                APP_NAMESPACES[0],
                &format!("filler-{i:02}"),
                Default::default(),
                80,
                json!({}),
            )
        })
        .collect();
    let filler_names: BTreeSet<String> = (0..FILLERS)
        .map(|i| format!("{}/filler-{i:02}", APP_NAMESPACES[0]))
        .collect();
    create_all(&client, fillers).await?;
    wait_assigned(
        &client,
        "MetalLB to serve the fillers",
        &filler_names,
        |_| 1,
    )
    .await
    .map_err(|e| with_log(e, cluster, metallb::CONTROLLER_LOG))?;
    let bodies: Vec<Value> = (0..SERVICES).map(service).collect();
    let ips_per: BTreeMap<String, usize> = bodies
        .iter()
        .map(|b| {
            let name = format!(
                "{}/{}",
                b["metadata"]["namespace"].as_str().unwrap(),
                b["metadata"]["name"].as_str().unwrap()
            );
            (name, b["spec"]["ipFamilies"].as_array().map_or(1, Vec::len))
        })
        .collect();
    let names: BTreeSet<String> = ips_per.keys().cloned().collect();
    let created = Instant::now();
    create_all(&client, bodies).await?;
    wait_assigned(&client, "MetalLB to assign every IP", &names, |n| {
        ips_per[n]
    })
    .await
    .map_err(|e| with_log(e, cluster, metallb::CONTROLLER_LOG))?;
    let metallb_took = created.elapsed();
    for name in &filler_names {
        let (namespace, name) = name.split_once('/').unwrap();
        Api::<Service>::namespaced(client.clone(), namespace)
            .delete(name, &DeleteParams::default())
            .await?;
    }
    let before = services(&client).await?;
    let expected = Arc::new(check_metallb_assignment(&before, &names));
    let metallb_pools: BTreeMap<String, String> = names
        .iter()
        .map(|n| {
            let pool = annotation(&before[n], METALLB_POOL_ANNOTATION);
            (
                n.clone(),
                pool.expect("MetalLB's pool annotation").to_string(),
            )
        })
        .collect();

    // The watch starts before MetalLB stops, and has listed before anything changes.
    let seen = Arc::new(Mutex::new(Watched::default()));
    let watch = watch_services(client.clone(), expected.clone(), seen.clone());
    wait_for("the Service watch to list", WAIT, || async {
        seen.lock().unwrap().listed.then_some(())
    })
    .await?;

    // 2. MetalLB stops; its configuration is migrated from the cluster and applied;
    // FerroLB's controller starts.
    let cut = Instant::now();
    terminate(&mut metallb, Duration::from_secs(10));
    let migrate = Command::new(&ferrolb)
        .args(["migrate", "--from-cluster", "--kubeconfig"])
        .arg(cluster.admin_kubeconfig())
        .output()?;
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert_eq!(migrate.status.code(), Some(0), "{stderr}");
    let migrated = String::from_utf8(migrate.stdout)?;
    let applied = cluster.kubectl_stdin(&["apply", "-f", "-"], &migrated)?;
    for object in [
        "ipaddresspool.ferrolb.io/default",
        "ipaddresspool.ferrolb.io/gold",
        "ipaddresspool.ferrolb.io/dual",
        "l2advertisement.ferrolb.io/l2",
    ] {
        assert!(applied.contains(object), "{applied}");
    }
    let mut controller = Controller::start_installed(cluster, &["--no-leader-election"])?;
    let ferrolb_started = Instant::now();

    // 3. FerroLB owns every Service, with the IPs and pools MetalLB gave them.
    wait_for("FerroLB to own every Service", WAIT, || async {
        let owned = seen.lock().unwrap().owned.len();
        (owned == SERVICES)
            .then_some(())
            .ok_or_else(|| anyhow::anyhow!("{owned} of {SERVICES} owned"))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}\ncontroller log:\n{}", controller.logs()))?;
    let takeover = (cut.elapsed(), ferrolb_started.elapsed());
    check_no_violations(&seen)?;
    let after = services(&client).await?;
    for name in &names {
        assert_eq!(ingress(&after[name]), expected[name], "{name}");
        assert_eq!(
            annotation(&after[name], OUR_POOL_ANNOTATION),
            Some(metallb_pools[name].as_str()),
            "{name}: FerroLB's pool is MetalLB's"
        );
    }

    // New Services get IPs from the migrated pools, none of them taken.
    let taken: BTreeSet<String> = expected.values().flatten().cloned().collect();
    let mut gold = serde_json::Map::new();
    gold.insert("ferrolb.io/address-pool".into(), "gold".into());
    let new = vec![
        load_balancer(
            APP_NAMESPACES[0],
            "new-auto-a",
            Default::default(),
            80,
            json!({}),
        ),
        load_balancer(
            APP_NAMESPACES[1],
            "new-auto-b",
            Default::default(),
            80,
            json!({}),
        ),
        load_balancer(APP_NAMESPACES[0], "new-gold", gold, 80, json!({})),
    ];
    create_all(&client, new).await?;
    let new_names: BTreeSet<String> = ["shop/new-auto-a", "blog/new-auto-b", "shop/new-gold"]
        .into_iter()
        .map(String::from)
        .collect();
    let now = wait_assigned(&client, "IPs for the new Services", &new_names, |_| 1).await?;
    let mut new_ips = BTreeSet::new();
    for name in &new_names {
        let ip = ingress(&now[name]).remove(0);
        let pool = if name.ends_with("gold") {
            "gold"
        } else {
            "default"
        };
        let prefix = if pool == "gold" {
            "192.0.2."
        } else {
            "198.51.100."
        };
        assert!(ip.starts_with(prefix), "{name}: {ip}");
        assert_eq!(annotation(&now[name], OUR_POOL_ANNOTATION), Some(pool));
        assert!(
            !taken.contains(&ip),
            "{name} got {ip}, MetalLB gave it to another"
        );
        assert!(new_ips.insert(ip.clone()), "{name}: {ip} twice");
    }
    controller.stop();
    watch.abort();

    check_no_violations(&seen)?;
    let seen = seen.lock().unwrap();
    eprintln!(
        "MetalLB assigned {SERVICES} Services in {metallb_took:?}; FerroLB owned them all {:?} after \
         MetalLB's stop, {:?} after its own start; the watch saw {} Service events; test took {:?}",
        takeover.0,
        takeover.1,
        seen.events,
        started.elapsed()
    );
    Ok(())
}
