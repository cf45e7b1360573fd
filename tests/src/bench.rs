//! End-to-end benchmarks of the controller against the real apiserver.
//! Run by `cargo xtask bench`; figures go to BENCHMARKS.md. Never asserted
//! in tests: timings on a shared 2-core machine are not stable enough.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::watcher;
use serde_json::json;

use crate::env::{Controller, TestNamespace, shared_cluster};
use crate::scenario::ingress;

fn service(name: &str, class: &str) -> Result<Service> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": class, "allocateLoadBalancerNodePorts": false,
                 "ipFamilies": ["IPv6"], "ports": [{"port": 80}], "selector": {"app": name}},
    }))?)
}

/// Watches a namespace and records when each Service first shows an IP.
fn track(api: Api<Service>) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let objects = match event {
                Ok(watcher::Event::Apply(s)) | Ok(watcher::Event::InitApply(s)) => vec![s],
                _ => continue,
            };
            for s in objects {
                if !ingress(&s).is_empty()
                    && let (Some(name), Ok(mut map)) = (s.metadata.name.clone(), out.lock())
                {
                    map.entry(name).or_insert_with(Instant::now);
                }
            }
        }
    });
    seen
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

/// A fresh namespace whose one pool holds `cidr`.
async fn namespace_with_pool(
    client: &kube::Client,
    prefix: &str,
    cidr: &str,
) -> Result<TestNamespace> {
    let ns = TestNamespace::create(client, prefix).await?;
    let pools: Api<ferrolb_crds::IPAddressPool> = Api::namespaced(client.clone(), &ns.name);
    let pool: ferrolb_crds::IPAddressPool = serde_json::from_value(json!({
        "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "bench"},
        "spec": {"addresses": [cidr]},
    }))?;
    pools.create(&PostParams::default(), &pool).await?;
    Ok(ns)
}

async fn cold_start(n: usize) -> Result<()> {
    let cluster = shared_cluster();
    let client = cluster.admin_client().await?;
    let ns = namespace_with_pool(&client, &format!("bench{n}"), "2001:db8:b::/64").await?;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let created = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("svc-{i:05}")).collect();
    let mut creations = futures::stream::iter(names.iter().map(|name| {
        let api = api.clone();
        let class = ns.class.clone();
        async move {
            api.create(&PostParams::default(), &service(name, &class)?)
                .await
                .map(|_| ())
                .context("create")
        }
    }))
    .buffer_unordered(32);
    while let Some(r) = creations.next().await {
        r?;
    }
    println!(
        "created {n} Services in {:.1} s (controller stopped)",
        created.elapsed().as_secs_f64()
    );

    // Build the binary before the clock starts.
    crate::env::binary("ferrolb-controller")?;
    let seen = track(api.clone());
    let start = Instant::now();
    let mut controller = Controller::start(cluster, &ns, &["--no-leader-election"])?;
    let pid = controller.pid().context("controller pid")?;
    let deadline = start + Duration::from_secs(300);
    loop {
        let done = seen.lock().map(|m| m.len()).unwrap_or(0);
        if done >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done}/{n} Services got IPs within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = seen
        .lock()
        .ok()
        .and_then(|m| m.values().max().copied())
        .unwrap_or(start)
        - start;
    let rss_after_start = peak_rss_mib(pid).unwrap_or(f64::NAN);
    println!(
        "N={n}: all Services have IPs {:.2} s after the controller started; peak RSS {rss_after_start:.1} MiB",
        all.as_secs_f64()
    );

    controller.stop();
    cluster.kubectl_ok(&["delete", "namespace", &ns.name, "--wait=false"])?;
    Ok(())
}

async fn latency(samples: usize) -> Result<()> {
    let cluster = shared_cluster();
    let client = cluster.admin_client().await?;
    let ns = namespace_with_pool(&client, "latency", "2001:db8:c::/64").await?;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let seen = track(api.clone());
    let mut controller = Controller::start(cluster, &ns, &["--no-leader-election"])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("lat-{i:04}");
        let sent = Instant::now();
        api.create(&PostParams::default(), &service(&name, &ns.class)?)
            .await?;
        let deadline = sent + Duration::from_secs(30);
        loop {
            if let Some(at) = seen.lock().ok().and_then(|m| m.get(&name).copied()) {
                latencies.push(at - sent);
                break;
            }
            if Instant::now() > deadline {
                bail!("{name} got no IP within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "latency create -> IP over {samples} Services: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    controller.stop();
    Ok(())
}

/// Runs the benchmarks, printing one line per figure.
pub fn run(sizes: &[usize], latency_samples: usize) -> Result<()> {
    // SAFETY: set before any thread of ours starts.
    unsafe { std::env::set_var("FERROLB_RELEASE", "1") };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        for &n in sizes {
            cold_start(n).await?;
        }
        latency(latency_samples).await
    })
}
