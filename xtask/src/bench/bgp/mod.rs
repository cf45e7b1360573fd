//! End-to-end benchmarks of BGP mode: real speakers in three node namespaces,
//! BIRD (and GoBGP) in router namespaces, the real controller and apiserver.
//! Run by `cargo xtask bench bgp`; figures go to BENCHMARKS.md. Never
//! asserted in tests: timings on a shared 2-core machine are not stable.
//!
//! Timestamps of kernel route changes come from `ip -ts -o monitor route`
//! in the router namespace (the time `ip` read the netlink notification),
//! so polling intervals never enter the figures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::watcher;
use serde_json::json;

mod bgp_capture;
pub mod route_monitor;
pub mod scale;

use bgp_capture::{PcapCapture, bgp_message_stats};
use route_monitor::RouteMonitor;

use super::{measure, raw};
use ferrolb_tests::bgplab::{BgpLab, ROUTER_ASN};
use ferrolb_tests::metrics_text::sample_value;
use ferrolb_tests::router::GoBgp;
use ferrolb_tests::scenario::ingress;

/// How long any single wait of the benchmark may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// Services (and EndpointSlices) created at once for the bulk figures.
const CREATES_IN_FLIGHT: usize = 16;

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BgpBench {
    /// Services created one at a time for the route-latency figure.
    pub route_samples: usize,
    /// Endpoint moves for the convergence figure.
    pub moves: usize,
    /// IPv6 Service IPs for the UPDATE and memory figures (at most 1,024).
    pub bulk_ips: usize,
}

impl Default for BgpBench {
    fn default() -> Self {
        BgpBench {
            route_samples: 20,
            moves: 20,
            bulk_ips: 1000,
        }
    }
}

/// Runs the BGP benchmarks with release builds, printing one line per figure.
pub fn run(bench: BgpBench) -> Result<()> {
    if bench.route_samples == 0 || bench.moves == 0 || bench.bulk_ips == 0 {
        bail!("nothing to measure");
    }
    if bench.bulk_ips > 1024 {
        bail!("the bulk pool holds 1,024 addresses");
    }
    measure::release_runtime()?.block_on(run_async(bench))
}

async fn run_async(bench: BgpBench) -> Result<()> {
    println!("{}", measure::machine_line());
    // Build the binaries before any clock starts.
    ferrolb_tests::env::binary("ferrolb-speaker")?;
    let mut lab = BgpLab::start("bench-bgp").await?;
    lab.start_bird(ROUTER_ASN, None)?;
    let second = lab.second_router()?;
    let gobgp = lab.start_gobgp(&second, None)?;
    lab.peer("bird", BgpLab::peer_spec(&lab.router, ROUTER_ASN))
        .await?;
    lab.peer("gobgp", BgpLab::peer_spec(&second, ROUTER_ASN))
        .await?;
    lab.advertise("all", json!({})).await?;
    lab.lab.start_speakers()?;
    wait_established(&lab, &gobgp).await?;
    let assigned = track_ips(lab.lab.scenario.services());

    let mut monitor = RouteMonitor::start(&lab.router.netns, &lab.lab.scenario.cluster.dir)?;
    route_latency(&lab, &assigned, &mut monitor, bench.route_samples).await?;
    endpoint_moves(&lab, &assigned, &mut monitor, bench.moves).await?;
    drop(monitor);
    bulk(&lab, &gobgp, &assigned, bench.bulk_ips).await?;
    println!("load average at the end: {}", measure::load_average());
    Ok(())
}

/// Waits until BIRD and GoBGP have a session with every node.
async fn wait_established(lab: &BgpLab, gobgp: &GoBgp) -> Result<()> {
    let bird = lab.bird()?;
    ferrolb_tests::env::wait_for(
        "every node established with BIRD and GoBGP",
        STEP_TIMEOUT,
        || async {
            let bird_up = (0..lab.lab.nodes.len()).all(|i| {
                bird.session_state(&format!("n{i}"))
                    .is_ok_and(|s| s == "Established")
            });
            let neighbors = gobgp.cli(&["neighbor"]).ok()?;
            let gobgp_up = neighbors.matches("Establ").count() == lab.lab.nodes.len();
            (bird_up && gobgp_up).then_some(())
        },
    )
    .await
}

/// When each Service (by name) first showed an ingress IP, and its IPs.
pub type Assigned = Arc<Mutex<HashMap<String, (SystemTime, Vec<IpAddr>)>>>;

/// Watches the Services of a namespace and records when each first got IPs.
pub fn track_ips(api: Api<Service>) -> Assigned {
    let seen: Assigned = Arc::default();
    let out = seen.clone();
    tokio::spawn(async move {
        let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let (Ok(watcher::Event::Apply(service)) | Ok(watcher::Event::InitApply(service))) =
                event
            else {
                continue;
            };
            let ips: Vec<IpAddr> = ingress(&service)
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            if !ips.is_empty()
                && let (Some(name), Ok(mut map)) = (service.metadata.name.clone(), out.lock())
            {
                map.entry(name).or_insert_with(|| (SystemTime::now(), ips));
            }
        }
    });
    seen
}

pub async fn wait_assigned(assigned: &Assigned, name: &str) -> Result<(SystemTime, IpAddr)> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let found = assigned
            .lock()
            .ok()
            .and_then(|m| m.get(name).and_then(|(at, ips)| Some((*at, *ips.first()?))));
        if let Some(found) = found {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{name} got no IP within {STEP_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn forget(assigned: &Assigned, name: &str) {
    if let Ok(mut map) = assigned.lock() {
        map.remove(name);
    }
}

/// Milliseconds from `from` to `to` (negative when `to` came first).
pub fn millis(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

/// `min/p50/p90/max` of `values` in ms, over `n` samples.
/// One line of min, p50, p90 and max of `values` (ms); the samples go to
/// the run's raw data as `figure`.
fn summary(figure: &str, values: &[f64]) -> String {
    raw::record(figure, "ms", values.iter().copied());
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or(f64::NAN)
    };
    format!(
        "min {:.1} / p50 {:.1} / p90 {:.1} / max {:.1} ms (n={})",
        at(0.0),
        at(0.5),
        at(0.9),
        at(1.0),
        sorted.len()
    )
}

fn pool_annotation(pool: &str) -> serde_json::Value {
    json!({"metadata": {"annotations": {"ferrolb.io/address-pool": pool}}})
}

/// What [`sample_routes`] measured, in ms per Service.
#[derive(Default)]
pub struct RouteSamples {
    pub ip_to_route: Vec<f64>,
    pub create_to_route: Vec<f64>,
    pub create_to_ip: Vec<f64>,
}

/// Creates `samples` Services `prefix-NNN` with `extra` merged in and endpoints on every
/// node, one at a time, and times each from its IP (and its creation) to the route with
/// all three next hops in the router's kernel table; each is deleted, and its route
/// withdrawn, before the next.
pub async fn sample_routes(
    lab: &BgpLab,
    assigned: &Assigned,
    monitor: &mut RouteMonitor,
    samples: usize,
    prefix: &str,
    extra: &serde_json::Value,
) -> Result<RouteSamples> {
    let all: Vec<usize> = (0..lab.lab.nodes.len()).collect();
    let mut out = RouteSamples::default();
    for i in 0..samples {
        let name = format!("{prefix}-{i:03}");
        lab.lab.endpoints(&name, &all).await?;
        let created = SystemTime::now();
        lab.lab.scenario.service(&name, extra.clone()).await?;
        let (ip_at, ip) = wait_assigned(assigned, &name).await?;
        let route_at = monitor
            .wait_next_hops(ip, &lab.hops(&all, ip), created, STEP_TIMEOUT)
            .await?;
        out.ip_to_route.push(millis(ip_at, route_at));
        out.create_to_route.push(millis(created, route_at));
        out.create_to_ip.push(millis(created, ip_at));
        // Withdrawn before the next sample, which may reuse the IP.
        let deleted = SystemTime::now();
        lab.lab.scenario.delete_service(&name).await?;
        monitor
            .wait_next_hops(ip, &[], deleted, STEP_TIMEOUT)
            .await?;
        forget(assigned, &name);
    }
    Ok(out)
}

/// Figure 1: IP assignment (and Service creation) to the route with all
/// three next hops in the router's kernel table.
async fn route_latency(
    lab: &BgpLab,
    assigned: &Assigned,
    monitor: &mut RouteMonitor,
    samples: usize,
) -> Result<()> {
    let load_before = measure::load_average();
    let RouteSamples {
        ip_to_route,
        create_to_route,
        create_to_ip,
    } = sample_routes(
        lab,
        assigned,
        monitor,
        samples,
        "route",
        &pool_annotation("bgp"),
    )
    .await?;
    println!(
        "BGP route latency, IP assigned -> kernel route with 3 next hops (IPv4, Cluster): {}",
        summary(
            "BGP IP assigned -> kernel route with 3 next hops",
            &ip_to_route
        )
    );
    println!(
        "BGP route latency, Service created -> kernel route with 3 next hops: {}",
        summary(
            "BGP Service created -> kernel route with 3 next hops",
            &create_to_route
        )
    );
    println!(
        "  (Service created -> IP seen by a watcher: {}; load average before {load_before}, after {})",
        summary("BGP Service created -> IP seen by a watcher", &create_to_ip),
        measure::load_average()
    );
    Ok(())
}

/// Figure 2: a Local Service's only endpoint moves between nodes 1 and 2;
/// from the EndpointSlice write to the kernel route with exactly the new node.
async fn endpoint_moves(
    lab: &BgpLab,
    assigned: &Assigned,
    monitor: &mut RouteMonitor,
    moves: usize,
) -> Result<()> {
    let name = "moving";
    let mut node = 1;
    lab.lab.endpoints(name, &[node]).await?;
    let mut extra = pool_annotation("bgp");
    extra["spec"] = json!({"externalTrafficPolicy": "Local"});
    let created = SystemTime::now();
    lab.lab.scenario.service(name, extra).await?;
    let (_, ip) = wait_assigned(assigned, name).await?;
    monitor
        .wait_next_hops(ip, &lab.hops(&[node], ip), created, STEP_TIMEOUT)
        .await?;
    let load_before = measure::load_average();
    let mut convergence = Vec::new();
    for _ in 0..moves {
        node = if node == 1 { 2 } else { 1 };
        let written = SystemTime::now();
        lab.lab.endpoints(name, &[node]).await?;
        let route_at = monitor
            .wait_next_hops(ip, &lab.hops(&[node], ip), written, STEP_TIMEOUT)
            .await?;
        convergence.push(millis(written, route_at));
        // Let stragglers (the old node's withdrawal) settle between moves.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    println!(
        "BGP endpoint move (Local), EndpointSlice update -> kernel route with only the new node: {}",
        summary(
            "BGP EndpointSlice update -> kernel route with only the new node",
            &convergence
        )
    );
    println!(
        "  (load average before {load_before}, after {})",
        measure::load_average()
    );
    lab.lab.scenario.delete_service(name).await?;
    Ok(())
}

/// Figures 3 and 4: `count` IPv6 Service IPs advertised to BIRD and GoBGP;
/// UPDATEs node 0 sent BIRD, time until both routers hold every route from
/// every node, and the speakers' memory.
async fn bulk(lab: &BgpLab, gobgp: &GoBgp, assigned: &Assigned, count: usize) -> Result<()> {
    let k = lab.lab.index();
    let pool = format!("2001:db8:bd:{k:x}::/118");
    lab.lab
        .scenario
        .pool("bulk", json!({"addresses": [pool], "autoAssign": false}))
        .await?;
    let nodes = lab.lab.nodes.len();
    let all: Vec<usize> = (0..nodes).collect();
    let pids: Vec<u32> = lab
        .lab
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            lab.lab
                .speaker_pid(i)
                .with_context(|| format!("no speaker pid for {}", n.name))
        })
        .collect::<Result<_>>()?;
    let memory = |pids: &[u32]| {
        pids.iter()
            .enumerate()
            .map(|(i, &pid)| {
                format!(
                    "n{i} VmRSS {:.1} MiB VmHWM {:.1} MiB",
                    measure::rss_mib(pid).unwrap_or(f64::NAN),
                    measure::peak_rss_mib(pid).unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "speaker memory before the bulk Services (a few IPv4 routes so far): {}",
        memory(&pids)
    );

    let node0 = lab.lab.nodes.first().context("no nodes")?.ip4;
    let capture = PcapCapture::start(
        &lab.router.netns,
        &lab.lab.scenario.cluster.dir,
        &format!("tcp port 179 and src host {node0}"),
    )?;
    let updates_before = updates_sent(lab, 0, "bird");
    let load_before = measure::load_average();
    let started = Instant::now();
    let names: Vec<String> = (0..count).map(|i| format!("bulk-{i:04}")).collect();
    let mut extra = pool_annotation("bulk");
    extra["spec"] = json!({"ipFamilies": ["IPv6"], "ipFamilyPolicy": "SingleStack"});
    let mut creations = futures::stream::iter(names.iter().map(|name| {
        let extra = extra.clone();
        let all = &all;
        async move {
            lab.lab.endpoints(name, all).await?;
            lab.lab.scenario.service(name, extra).await?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(CREATES_IN_FLIGHT);
    while let Some(created) = creations.next().await {
        created?;
        if started.elapsed() > Duration::from_secs(600) {
            bail!("creating {count} Services took over 600 s");
        }
    }
    drop(creations);
    let created_in = started.elapsed();

    let bird = lab.bird()?;
    let expected_paths = count * nodes;
    let mut assigned_in = None;
    let mut bird_in = None;
    let mut gobgp_in = None;
    let deadline = started + Duration::from_secs(600);
    let mut last = (0, 0, 0);
    while bird_in.is_none() || gobgp_in.is_none() {
        if assigned_in.is_none() {
            let with_ips = assigned
                .lock()
                .map_or(0, |m| m.keys().filter(|n| n.starts_with("bulk-")).count());
            last.0 = with_ips;
            if with_ips >= count {
                assigned_in = Some(started.elapsed());
            }
        }
        if bird_in.is_none() {
            let (networks, routes) =
                bird_counts(&bird.birdc(&["show", "route", "count"])?, "master6");
            last.1 = routes;
            if networks >= count && routes >= expected_paths {
                bird_in = Some(started.elapsed());
            }
        }
        if gobgp_in.is_none() {
            let (destinations, paths) =
                gobgp_counts(&gobgp.cli(&["global", "rib", "summary", "-a", "ipv6"])?);
            last.2 = paths;
            if destinations >= count && paths >= expected_paths {
                gobgp_in = Some(started.elapsed());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "after 600 s: {} Services with IPs, BIRD {} IPv6 paths, GoBGP {} (want {expected_paths})",
                last.0,
                last.1,
                last.2
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    println!(
        "bulk: {count} IPv6 Services (+ EndpointSlices, {CREATES_IN_FLIGHT} in flight) created in {:.1} s; \
         all IPs assigned after {:.1} s; all {expected_paths} paths in BIRD after {:.1} s, in GoBGP after {:.1} s \
         (load average before {load_before}, after {})",
        created_in.as_secs_f64(),
        secs(assigned_in),
        secs(bird_in),
        secs(gobgp_in),
        measure::load_average()
    );
    println!(
        "speaker memory with {count} IPs advertised to 2 peers (BIRD, GoBGP): {}",
        memory(&pids)
    );

    // Keepalives or late UPDATEs still in flight land in the capture too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stream = capture.stop()?;
    let stats = bgp_message_stats(&stream);
    let counter = updates_sent(lab, 0, "bird")
        .zip(updates_before)
        .map_or("unknown".to_string(), |(after, before)| {
            format!("{:.0}", after - before)
        });
    println!(
        "UPDATEs node 0 -> BIRD for {count} IPv6 IPs: {} messages, {} bytes ({:.1} bytes/IP, {:.1} IPs/UPDATE), \
         {} prefixes announced, {} withdrawn, {} TCP segments; speaker counter says {counter} UPDATEs",
        stats.updates,
        stats.update_bytes,
        stats.update_bytes as f64 / count as f64,
        stats.announced as f64 / stats.updates.max(1) as f64,
        stats.announced,
        stats.withdrawn,
        stats.segments
    );
    Ok(())
}

/// `ferrolb_speaker_bgp_updates_sent_total{peer=...}` of node `i`.
fn updates_sent(lab: &BgpLab, i: usize, peer: &str) -> Option<f64> {
    let metrics = lab.lab.speaker_http(i, "/metrics").ok()?;
    sample_value(
        &metrics,
        &format!("ferrolb_speaker_bgp_updates_sent_total{{peer=\"{peer}\"}}"),
    )
}

/// (networks, routes) of BIRD's `table` (`master4`, `master6`) from `show
/// route count`, e.g. "3000 of 3000 routes for 1000 networks in table master6".
pub fn bird_counts(out: &str, table: &str) -> (usize, usize) {
    let suffix = format!("in table {table}");
    out.lines()
        .find(|l| l.trim_end().ends_with(&suffix))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let number_before = |word: &str| {
                words
                    .iter()
                    .position(|w| *w == word)
                    .and_then(|i| i.checked_sub(1))
                    .and_then(|i| words.get(i))
                    .and_then(|w| w.parse().ok())
                    .unwrap_or(0)
            };
            (number_before("networks"), number_before("of"))
        })
        .unwrap_or((0, 0))
}

/// (destinations, paths) from `gobgp global rib summary`, e.g.
/// "Destination: 1000, Path: 3000".
pub fn gobgp_counts(out: &str) -> (usize, usize) {
    let number_after = |label: &str| {
        out.split(label)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (number_after("Destination:"), number_after("Path:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_counts_parse() {
        let bird = "BIRD 2.0.12 ready.\n12 of 12 routes for 4 networks in table master4\n3000 of 3000 routes for 1000 networks in table master6\nTotal: 3012 of 3012 routes for 1004 networks in 2 tables\n";
        assert_eq!(bird_counts(bird, "master6"), (1000, 3000));
        assert_eq!(bird_counts(bird, "master4"), (4, 12));
        assert_eq!(bird_counts(bird, "master"), (0, 0));
        assert_eq!(
            gobgp_counts("Table ipv6-unicast\nDestination: 1000, Path: 3000\n"),
            (1000, 3000)
        );
        assert_eq!(gobgp_counts(""), (0, 0));
    }

    #[test]
    fn summary_orders_the_samples() {
        let line = summary("test", &[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(line, "min 1.0 / p50 3.0 / p90 5.0 / max 5.0 ms (n=5)");
    }
}
