//! End-to-end benchmarks of the controller against the real apiserver.
//! Run by `cargo xtask bench`; figures go to BENCHMARKS.md. Never asserted
//! in tests: timings on a shared 2-core machine are not stable enough.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use ferrolb_tests::cluster::{Cluster, ClusterOptions};
use ferrolb_tests::env::{Controller, TestNamespace, shared_cluster};

use super::cold_start::cold_start;
use super::measure::{CpuMeter, load_average, release_runtime, summary, track};

/// Extra controller flags for exploring settings, e.g.
/// `FERROLB_BENCH_CONTROLLER_ARGS="--write-workers 32"`.
const CONTROLLER_ARGS_VAR: &str = "FERROLB_BENCH_CONTROLLER_ARGS";

fn controller_args() -> Vec<String> {
    let mut args = vec!["--no-leader-election".to_string()];
    if let Ok(extra) = std::env::var(CONTROLLER_ARGS_VAR) {
        args.extend(extra.split_whitespace().map(str::to_string));
    }
    args
}

pub(super) fn start_controller(cluster: &Cluster, ns: &TestNamespace) -> Result<Controller> {
    let args = controller_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Controller::start(cluster, ns, &args)
}

/// `apiserver_request_total` summed by verb, resource and subresource, for
/// the writes and lists our components make.
/// Read through the admin client (not kubectl: it needs no files).
pub(super) async fn request_counts(client: &kube::Client) -> Result<HashMap<String, f64>> {
    let request = kube::core::Request::new("").get("metrics", &kube::api::GetParams::default())?;
    let metrics = client.request_text(request).await?;
    let mut counts = HashMap::new();
    for line in metrics.lines() {
        let Some(labels) = line
            .strip_prefix("apiserver_request_total{")
            .and_then(|l| l.rsplit_once('}'))
        else {
            continue;
        };
        let (labels, value) = labels;
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or("")
                .to_string()
        };
        let verb = label("verb");
        // Writes, and lists (pages of the initial listing count one each).
        if !matches!(verb.as_str(), "POST" | "PATCH" | "PUT" | "APPLY" | "LIST") {
            continue;
        }
        let mut key = format!("{verb} {}", label("resource"));
        let subresource = label("subresource");
        if !subresource.is_empty() {
            key = format!("{key}/{subresource}");
        }
        *counts.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    Ok(counts)
}

pub(super) fn request_delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> String {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.iter()
        .map(|(k, d)| format!("{k} {d:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An IPv6 LoadBalancer Service without node ports, of `class` (none: unclassed).
pub(super) fn service(name: &str, class: Option<&str>) -> Result<Service> {
    let mut body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false,
                 "ipFamilies": ["IPv6"], "ports": [{"port": 80}], "selector": {"app": name}},
    });
    if let Some(class) = class {
        body["spec"]["loadBalancerClass"] = class.into();
    }
    Ok(serde_json::from_value(body)?)
}

/// Creates Services `svc-00000` .. of `class`, 32 at a time, and returns their names.
pub(super) async fn create_services(
    api: &Api<Service>,
    n: usize,
    class: Option<&str>,
) -> Result<Vec<String>> {
    let names: Vec<String> = (0..n).map(|i| format!("svc-{i:05}")).collect();
    {
        let mut creations = futures::stream::iter(names.iter().map(|name| async move {
            api.create(&PostParams::default(), &service(name, class)?)
                .await
                .map(|_| ())
                .context("create")
        }))
        .buffer_unordered(32);
        while let Some(r) = creations.next().await {
            r?;
        }
    }
    Ok(names)
}

/// A fresh namespace whose one pool holds `cidr`.
pub(super) async fn namespace_with_pool(
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

/// Waits until the apiserver has seen no mutating request for a second;
/// returns when the last one was seen.
pub(super) async fn settle(client: &kube::Client, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    let total = |c: &HashMap<String, f64>| c.values().sum::<f64>();
    let mut last = total(&request_counts(client).await?);
    let mut last_change = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = total(&request_counts(client).await?);
        // Our own two metric scrapes are GETs, so they never count here.
        if now != last {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(1) {
            return Ok(last_change);
        }
    }
    bail!("writes still going after {timeout:?}")
}

/// Lists the Services of `api`, checks that there are `expected` and
/// finds those without exactly one IP and the IPs shown twice.
pub(super) async fn listed_faults(
    api: &Api<Service>,
    expected: usize,
) -> Result<(usize, super::compare::table::Faults)> {
    let ips: std::collections::BTreeMap<String, Vec<String>> = api
        .list(&kube::api::ListParams::default())
        .await?
        .into_iter()
        .map(|s| {
            let ips = ferrolb_tests::scenario::ingress(&s);
            (s.metadata.name.unwrap_or_default(), ips)
        })
        .collect();
    if ips.len() != expected {
        bail!("{} Services listed, {expected} created", ips.len());
    }
    Ok((ips.len(), super::compare::table::faults(&ips)))
}

/// What [`sample_latency`] measured, per Service.
pub(super) struct Samples {
    /// The create request's round trip.
    pub created: Vec<Duration>,
    /// Create to the bench's watch seeing the Service.
    pub listed: Vec<Duration>,
    /// Create to the bench's watch seeing its IP.
    pub latencies: Vec<Duration>,
    /// The bench's watch seeing the Service to seeing its IP.
    pub after_listed: Vec<Duration>,
}

/// Creates `samples` Services `lat-0000` .. of `class` one at a time, each once the one
/// before has its IP (as `seen`, the bench's watch of `api`, shows), and times each.
pub(super) async fn sample_latency(
    api: &Api<Service>,
    seen: &std::sync::Mutex<super::measure::Sightings>,
    samples: usize,
    class: Option<&str>,
) -> Result<Samples> {
    // Per sample: the create request's round trip, when the bench's own
    // watch saw the new Service (how long a watch delivery takes here), and
    // when it saw the IP. The IP less the first sighting is, roughly, the
    // controller's watch delivery, its decision and its status write.
    let mut created = Vec::with_capacity(samples);
    let mut listed = Vec::with_capacity(samples);
    let mut latencies = Vec::with_capacity(samples);
    let mut after_listed = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("lat-{i:04}");
        let sent = Instant::now();
        api.create(&PostParams::default(), &service(&name, class)?)
            .await?;
        created.push(sent.elapsed());
        let deadline = sent + Duration::from_secs(30);
        loop {
            let sighting = seen
                .lock()
                .ok()
                .and_then(|m| Some((*m.listed.get(&name)?, *m.with_ip.get(&name)?)));
            if let Some((first, with_ip)) = sighting {
                latencies.push(with_ip - sent);
                listed.push(first.saturating_duration_since(sent));
                after_listed.push(with_ip.saturating_duration_since(first));
                break;
            }
            if Instant::now() > deadline {
                bail!("{name} got no IP within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(Samples {
        created,
        listed,
        latencies,
        after_listed,
    })
}

/// Polls the controller's `/readyz` until it answers 200; returns how long
/// that took.
async fn wait_ready(controller: &Controller, limit: Duration) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if matches!(controller.http_get("/readyz"), Ok((200, _))) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the controller was not ready within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn latency(samples: usize) -> Result<()> {
    let cluster = shared_cluster();
    let client = cluster.admin_client().await?;
    let ns = namespace_with_pool(&client, "latency", "2001:db8:c::/64").await?;
    let api: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let seen = track(api.clone());
    let mut controller = start_controller(cluster, &ns)?;
    // Ready once the first listing is in and decided: at 50,000 Services that
    // takes seconds, and the first sample would time the start-up.
    let ready_after = wait_ready(&controller, Duration::from_secs(120)).await?;
    println!(
        "latency: controller ready {:.1} s after its start; load average at start {}",
        ready_after.as_secs_f64(),
        load_average()
    );
    let cpu = CpuMeter::start(cluster, controller.pid().context("controller pid")?);
    let requests_before = request_counts(&client).await?;
    let Samples {
        created,
        listed,
        latencies,
        after_listed,
    } = sample_latency(&api, &seen, samples, Some(&ns.class)).await?;
    println!(
        "{}",
        summary(
            &format!("latency create -> IP over {samples} Services"),
            latencies
        )
    );
    println!("  {}", summary("create request round trip", created));
    println!(
        "  {}",
        summary("create -> bench watch sees the Service", listed)
    );
    println!(
        "  {}",
        summary("bench watch sees the Service -> sees its IP", after_listed)
    );
    println!(
        "  CPU during the samples: {}; load average {}; writes: {}",
        cpu.report(),
        load_average(),
        request_delta(&requests_before, &request_counts(&client).await?)
    );
    controller.stop();
    Ok(())
}

/// Runs the benchmarks, printing one line per figure: per size, a cold start
/// with `latency_samples` Services right after it and the floor (see
/// [`super::cold_start`]); then `latency_samples` Services on a controller
/// that has been running for a while.
pub fn run(sizes: &[usize], latency_samples: usize) -> Result<()> {
    release_runtime()?.block_on(async {
        // ClusterIPs for 50,000 Services and more.
        ferrolb_tests::env::shared_cluster_with(ClusterOptions {
            large_service_range: true,
            bitmap_cluster_ip_allocator: true,
        });
        if let Some(n) = std::env::var(super::write_cost::WRITE_COST_VAR)
            .ok()
            .and_then(|v| v.parse().ok())
        {
            super::write_cost::write_cost(n).await?;
        }
        for &n in sizes {
            let figures = cold_start(n, latency_samples).await?;
            println!("{}", figures.line(n));
            super::raw::record(
                &format!("N={n}: cold-start rate over the floor rate"),
                "ratio",
                [figures.ratio(n)],
            );
        }
        latency(latency_samples).await
    })
}
