//! End-to-end benchmarks of BGP mode: real speakers in three node namespaces,
//! BIRD (and GoBGP) in router namespaces, the real controller and apiserver.
//! Run by `cargo xtask bench bgp`; figures go to BENCHMARKS.md. Never
//! asserted in tests: timings on a shared 2-core machine are not stable.
//!
//! Timestamps of kernel route changes come from `ip -ts -o monitor route`
//! in the router namespace (the time `ip` read the netlink notification),
//! so polling intervals never enter the figures.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::watcher;
use serde_json::json;

use crate::bgplab::{BgpLab, ROUTER_ASN};
use crate::netns::Netns;
use crate::process::{spawn_tied, terminate};
use crate::router::GoBgp;
use crate::scenario::ingress;

/// How long any single wait of the benchmark may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
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
    // SAFETY: set before any thread of ours starts.
    unsafe { std::env::set_var("FERROLB_RELEASE", "1") };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run_async(bench))
}

async fn run_async(bench: BgpBench) -> Result<()> {
    println!("{}", crate::bench::machine_line());
    // Build the binaries before any clock starts.
    crate::env::binary("ferrolb-speaker")?;
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
    println!("load average at the end: {}", crate::bench::load_average());
    Ok(())
}

/// Waits until BIRD and GoBGP have a session with every node.
async fn wait_established(lab: &BgpLab, gobgp: &GoBgp) -> Result<()> {
    let bird = lab.bird()?;
    crate::env::wait_for(
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
type Assigned = Arc<Mutex<HashMap<String, (SystemTime, Vec<IpAddr>)>>>;

/// Watches the Services of a namespace and records when each first got IPs.
fn track_ips(api: Api<Service>) -> Assigned {
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

async fn wait_assigned(assigned: &Assigned, name: &str) -> Result<(SystemTime, IpAddr)> {
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
fn millis(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -e.duration().as_secs_f64() * 1000.0,
    }
}

/// `min/p50/p90/max` of `values` in ms, over `n` samples.
fn summary(values: &[f64]) -> String {
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

/// Figure 1: IP assignment (and Service creation) to the route with all
/// three next hops in the router's kernel table.
async fn route_latency(
    lab: &BgpLab,
    assigned: &Assigned,
    monitor: &mut RouteMonitor,
    samples: usize,
) -> Result<()> {
    let all: Vec<usize> = (0..lab.lab.nodes.len()).collect();
    let mut ip_to_route = Vec::new();
    let mut create_to_route = Vec::new();
    let mut create_to_ip = Vec::new();
    let load_before = crate::bench::load_average();
    for i in 0..samples {
        let name = format!("route-{i:03}");
        lab.lab.endpoints(&name, &all).await?;
        let created = SystemTime::now();
        lab.lab
            .scenario
            .service(&name, pool_annotation("bgp"))
            .await?;
        let (ip_at, ip) = wait_assigned(assigned, &name).await?;
        let route_at = monitor
            .wait_next_hops(ip, &lab.hops(&all, ip), created, STEP_TIMEOUT)
            .await?;
        ip_to_route.push(millis(ip_at, route_at));
        create_to_route.push(millis(created, route_at));
        create_to_ip.push(millis(created, ip_at));
        // Withdrawn before the next sample, which may reuse the IP.
        let deleted = SystemTime::now();
        lab.lab.scenario.delete_service(&name).await?;
        monitor
            .wait_next_hops(ip, &[], deleted, STEP_TIMEOUT)
            .await?;
        forget(assigned, &name);
    }
    println!(
        "BGP route latency, IP assigned -> kernel route with 3 next hops (IPv4, Cluster): {}",
        summary(&ip_to_route)
    );
    println!(
        "BGP route latency, Service created -> kernel route with 3 next hops: {}",
        summary(&create_to_route)
    );
    println!(
        "  (Service created -> IP seen by a watcher: {}; load average before {load_before}, after {})",
        summary(&create_to_ip),
        crate::bench::load_average()
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
    let load_before = crate::bench::load_average();
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
        summary(&convergence)
    );
    println!(
        "  (load average before {load_before}, after {})",
        crate::bench::load_average()
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
                    crate::bench::rss_mib(pid).unwrap_or(f64::NAN),
                    crate::bench::peak_rss_mib(pid).unwrap_or(f64::NAN)
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
    let load_before = crate::bench::load_average();
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
            let (networks, routes) = bird_counts(&bird.birdc(&["show", "route", "count"])?);
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
        crate::bench::load_average()
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
    let prefix = format!("ferrolb_speaker_bgp_updates_sent_total{{peer=\"{peer}\"}}");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// (networks, routes) of BIRD's IPv6 table from `show route count`, e.g.
/// "3000 of 3000 routes for 1000 networks in table master6".
pub fn bird_counts(out: &str) -> (usize, usize) {
    out.lines()
        .find(|l| l.contains("in table master6"))
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

/// One route change seen by `ip monitor`.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteEvent {
    pub at: SystemTime,
    pub destination: IpAddr,
    /// Sorted next hops; empty when the route was deleted.
    pub next_hops: Vec<IpAddr>,
}

/// Parses one line of `TZ=UTC ip -ts -o monitor route`, e.g.
/// `[2026-11-26T17:44:34.094099] 203.0.113.5 \tnexthop via 198.51.100.2 dev d0 weight 1 ...`
/// or `[...] Deleted 203.0.113.5 via 198.51.100.4 dev d0`. Lines that are
/// not unicast routes with an address (local, multicast, ...) give `None`.
pub fn parse_monitor_line(line: &str) -> Option<RouteEvent> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(']')?;
    let at = parse_utc_stamp(stamp)?;
    let mut words = rest.split_whitespace().peekable();
    let deleted = words.next_if_eq(&"Deleted").is_some();
    let destination = words.next()?;
    let destination: IpAddr = destination
        .split_once('/')
        .map_or(destination, |(address, _)| address)
        .parse()
        .ok()?;
    let words: Vec<&str> = words.collect();
    if words.contains(&"table") {
        // Local and other non-main tables.
        return None;
    }
    let mut next_hops: Vec<IpAddr> = if deleted {
        Vec::new()
    } else {
        words
            .windows(2)
            .filter(|w| w[0] == "via")
            .filter_map(|w| w[1].parse().ok())
            .collect()
    };
    next_hops.sort();
    next_hops.dedup();
    Some(RouteEvent {
        at,
        destination,
        next_hops,
    })
}

/// `2026-11-26T17:44:34.094099` (UTC) as a time.
fn parse_utc_stamp(stamp: &str) -> Option<SystemTime> {
    let (date, time) = stamp.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    let (hms, fraction) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (hour, minute, second) = (hms.next()??, hms.next()??, hms.next()??);
    let digits = fraction.len().min(9);
    let nanos: u64 = fraction.get(..digits)?.parse().ok()?;
    let nanos = nanos * 10u64.pow(9 - digits as u32);
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_nanos(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's method).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `ip -ts -o monitor route` in a namespace, written to a file that
/// [`RouteMonitor::wait_next_hops`] reads as it goes.
pub struct RouteMonitor {
    child: Option<Child>,
    file: PathBuf,
    read_to: u64,
    partial: String,
    events: Vec<RouteEvent>,
}

impl RouteMonitor {
    pub fn start(netns: &Netns, dir: &std::path::Path) -> Result<RouteMonitor> {
        let file = dir.join(format!("route-monitor-{}.txt", netns.name));
        let mut command = Command::new("ip");
        command
            .args(["-n", &netns.name, "-ts", "-o", "monitor", "route"])
            .env("TZ", "UTC");
        let child = spawn_tied(command, &file)?;
        // `ip` subscribes right after it starts; give it that moment.
        std::thread::sleep(Duration::from_millis(200));
        Ok(RouteMonitor {
            child: Some(child),
            read_to: 0,
            partial: String::new(),
            events: Vec::new(),
            file,
        })
    }

    /// Reads the lines written since the last call.
    fn read_new(&mut self) -> Result<()> {
        let mut file = std::fs::File::open(&self.file)?;
        file.seek(SeekFrom::Start(self.read_to))?;
        let mut new = String::new();
        self.read_to += file.read_to_string(&mut new)? as u64;
        self.partial.push_str(&new);
        while let Some((line, rest)) = self.partial.split_once('\n') {
            if let Some(event) = parse_monitor_line(line) {
                self.events.push(event);
            }
            self.partial = rest.to_string();
        }
        Ok(())
    }

    /// Waits until a route change at or after `since` leaves `ip` with
    /// exactly `next_hops` (none: deleted) and returns when it happened.
    pub async fn wait_next_hops(
        &mut self,
        ip: IpAddr,
        next_hops: &[IpAddr],
        since: SystemTime,
        timeout: Duration,
    ) -> Result<SystemTime> {
        let mut expected = next_hops.to_vec();
        expected.sort();
        let deadline = Instant::now() + timeout;
        loop {
            self.read_new()?;
            let reached = self
                .events
                .iter()
                .filter(|e| e.destination == ip && e.at >= since)
                .find(|e| e.next_hops == expected)
                .map(|e| e.at);
            if let Some(at) = reached {
                return Ok(at);
            }
            if Instant::now() > deadline {
                let seen: Vec<&RouteEvent> =
                    self.events.iter().filter(|e| e.destination == ip).collect();
                bail!("no route change to {expected:?} for {ip} within {timeout:?}; saw {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(2));
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// tcpdump writing a pcap file in a namespace.
struct PcapCapture {
    child: Option<Child>,
    file: PathBuf,
}

impl PcapCapture {
    fn start(netns: &Netns, dir: &std::path::Path, filter: &str) -> Result<PcapCapture> {
        let file = dir.join(format!("bgp-{}.pcap", netns.name));
        let log = dir.join(format!("tcpdump-{}.log", netns.name));
        let mut command = netns.command("tcpdump");
        command
            .args(["-i", "eth0", "-n", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter);
        let child = spawn_tied(command, &log)?;
        // tcpdump needs a moment before it captures.
        std::thread::sleep(Duration::from_millis(700));
        Ok(PcapCapture {
            child: Some(child),
            file,
        })
    }

    /// Stops tcpdump and returns the captured TCP segments.
    fn stop(mut self) -> Result<Vec<TcpSegment>> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
        }
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        tcp_segments(&bytes)
    }
}

impl Drop for PcapCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The payload of one captured TCP segment (IPv4 over Ethernet).
#[derive(Clone, Debug)]
pub struct TcpSegment {
    /// (source port, destination port): the connection, in one direction.
    pub ports: (u16, u16),
    pub sequence: u32,
    pub payload: Vec<u8>,
}

/// The TCP segments with a payload in a pcap file of Ethernet frames.
pub fn tcp_segments(pcap: &[u8]) -> Result<Vec<TcpSegment>> {
    let magic = pcap.get(..4).context("pcap shorter than its header")?;
    let little_endian = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("not a pcap file"),
    };
    let read_u32 = |at: usize| -> Option<u32> {
        let b: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
        Some(if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let link_type = read_u32(20).context("pcap header")?;
    if link_type != 1 {
        bail!("pcap link type {link_type}, expected Ethernet");
    }
    let mut segments = Vec::new();
    let mut at = 24;
    while let Some(captured) = read_u32(at + 8) {
        let start = at + 16;
        let end = start + captured as usize;
        let Some(frame) = pcap.get(start..end) else {
            break;
        };
        if let Some(segment) = tcp_in_frame(frame) {
            segments.push(segment);
        }
        at = end;
    }
    Ok(segments)
}

fn tcp_in_frame(frame: &[u8]) -> Option<TcpSegment> {
    let be16 = |b: &[u8], at: usize| Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?));
    if be16(frame, 12)? != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let header = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if *ip.get(9)? != 6 || total < header {
        return None;
    }
    let tcp = ip.get(header..total)?;
    let tcp_header = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(tcp_header..)?;
    if payload.is_empty() {
        return None;
    }
    Some(TcpSegment {
        ports: (be16(tcp, 0)?, be16(tcp, 2)?),
        sequence: u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?),
        payload: payload.to_vec(),
    })
}

/// BGP messages found in captured streams.
#[derive(Debug, Default, PartialEq)]
pub struct BgpMessageStats {
    pub updates: usize,
    /// Whole UPDATE messages, headers included.
    pub update_bytes: usize,
    /// Prefixes in NLRI and MP_REACH_NLRI.
    pub announced: usize,
    /// Prefixes in withdrawn routes and MP_UNREACH_NLRI.
    pub withdrawn: usize,
    /// TCP segments with a payload.
    pub segments: usize,
}

/// Reassembles each connection's byte stream (retransmissions dropped) and
/// counts the BGP UPDATEs in it, from the first message marker on.
pub fn bgp_message_stats(segments: &[TcpSegment]) -> BgpMessageStats {
    let mut stats = BgpMessageStats {
        segments: segments.len(),
        ..Default::default()
    };
    let mut connections: HashMap<(u16, u16), Vec<&TcpSegment>> = HashMap::new();
    for segment in segments {
        connections.entry(segment.ports).or_default().push(segment);
    }
    for (_, mut parts) in connections {
        let Some(first) = parts.first().map(|s| s.sequence) else {
            continue;
        };
        // Offsets from the first captured byte, safe across sequence wrap.
        parts.sort_by_key(|s| s.sequence.wrapping_sub(first));
        let mut stream = Vec::new();
        for part in parts {
            let offset = part.sequence.wrapping_sub(first) as usize;
            if offset > stream.len() {
                // A gap: the capture missed bytes; stop at what is contiguous.
                break;
            }
            let fresh = part.payload.get(stream.len() - offset..).unwrap_or(&[]);
            stream.extend_from_slice(fresh);
        }
        count_messages(&stream, &mut stats);
    }
    stats
}

const MARKER: [u8; 16] = [0xff; 16];

fn count_messages(stream: &[u8], stats: &mut BgpMessageStats) {
    // The capture may start mid-message: resynchronise on the marker.
    let Some(mut at) = stream.windows(16).position(|w| w == MARKER) else {
        return;
    };
    while let Some(header) = stream.get(at..at + 19) {
        if header[..16] != MARKER {
            break;
        }
        let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let Some(message) = stream.get(at..at + length).filter(|_| length >= 19) else {
            break;
        };
        if header[18] == 2 {
            stats.updates += 1;
            stats.update_bytes += length;
            let (announced, withdrawn) = update_prefixes(&message[19..]).unwrap_or((0, 0));
            stats.announced += announced;
            stats.withdrawn += withdrawn;
        }
        at += length;
    }
}

/// (announced, withdrawn) prefix counts of an UPDATE body.
fn update_prefixes(body: &[u8]) -> Option<(usize, usize)> {
    let withdrawn_length = usize::from(u16::from_be_bytes(body.get(..2)?.try_into().ok()?));
    let mut withdrawn = count_prefixes(body.get(2..2 + withdrawn_length)?)?;
    let at = 2 + withdrawn_length;
    let attributes_length = usize::from(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let attributes = body.get(at + 2..at + 2 + attributes_length)?;
    let mut announced = count_prefixes(body.get(at + 2 + attributes_length..)?)?;
    let mut rest = attributes;
    while !rest.is_empty() {
        let flags = *rest.first()?;
        let kind = *rest.get(1)?;
        let (length, header) = if flags & 0x10 != 0 {
            (
                usize::from(u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?)),
                4,
            )
        } else {
            (usize::from(*rest.get(2)?), 3)
        };
        let value = rest.get(header..header + length)?;
        match kind {
            14 => {
                // AFI, SAFI, next hop length, next hop, reserved, NLRI.
                let next_hop_length = usize::from(*value.get(3)?);
                announced += count_prefixes(value.get(5 + next_hop_length..)?)?;
            }
            15 => withdrawn += count_prefixes(value.get(3..)?)?,
            _ => {}
        }
        rest = rest.get(header + length..)?;
    }
    Some((announced, withdrawn))
}

/// Prefixes in an NLRI field (length in bits, then the address bytes).
fn count_prefixes(mut nlri: &[u8]) -> Option<usize> {
    let mut count = 0;
    while let Some(&bits) = nlri.first() {
        let bytes = usize::from(bits).div_ceil(8);
        nlri = nlri.get(1 + bytes..)?;
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_give_destination_next_hops_and_time() {
        let multipath = "[2026-11-26T17:44:34.094099] 203.0.113.5 \tnexthop via 198.51.100.2 dev d0 weight 1 \tnexthop via 198.51.100.3 dev d0 weight 1 ";
        let event = parse_monitor_line(multipath).expect("a route");
        assert_eq!(event.destination, "203.0.113.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            event.next_hops,
            vec![
                "198.51.100.2".parse::<IpAddr>().unwrap(),
                "198.51.100.3".parse().unwrap()
            ]
        );
        let since_epoch = event.at.duration_since(UNIX_EPOCH).unwrap();
        // 2026-11-26T17:44:34Z
        assert_eq!(since_epoch.as_secs(), 1_795_715_074);
        assert_eq!(since_epoch.subsec_micros(), 94_099);

        let deleted = parse_monitor_line(
            "[2026-11-26T17:44:34.102804] Deleted 203.0.113.5 via 198.51.100.4 dev d0 ",
        )
        .expect("a deletion");
        assert!(deleted.next_hops.is_empty());
        let single = parse_monitor_line(
            "[2026-11-26T17:44:34.130615] 2001:db8:bd::5 via 2001:db8:99::4 dev d0 proto bird metric 32 pref medium",
        )
        .expect("a route");
        assert_eq!(
            single.next_hops,
            vec!["2001:db8:99::4".parse::<IpAddr>().unwrap()]
        );
        assert!(
            parse_monitor_line(
                "[2026-11-26T17:44:34.3] local fe80::1 dev d0 table local proto kernel"
            )
            .is_none()
        );
        assert!(parse_monitor_line("garbage").is_none());
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }

    #[test]
    fn router_counts_parse() {
        let bird = "BIRD 2.0.12 ready.\n12 of 12 routes for 4 networks in table master4\n3000 of 3000 routes for 1000 networks in table master6\nTotal: 3012 of 3012 routes for 1004 networks in 2 tables\n";
        assert_eq!(bird_counts(bird), (1000, 3000));
        assert_eq!(
            gobgp_counts("Table ipv6-unicast\nDestination: 1000, Path: 3000\n"),
            (1000, 3000)
        );
        assert_eq!(gobgp_counts(""), (0, 0));
    }

    fn keepalive() -> Vec<u8> {
        let mut m = MARKER.to_vec();
        m.extend_from_slice(&[0, 19, 4]);
        m
    }

    /// An UPDATE announcing `count` IPv6 /128s in MP_REACH_NLRI.
    fn mp_update(count: u8) -> Vec<u8> {
        let mut reach = vec![0, 2, 1, 16];
        reach.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        reach.extend_from_slice(&[0; 12]);
        reach.push(0);
        for i in 0..count {
            reach.push(128);
            reach.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            reach.extend_from_slice(&[0; 11]);
            reach.push(i);
        }
        let mut attributes = vec![0x40, 1, 1, 0]; // ORIGIN IGP
        attributes.extend_from_slice(&[0x90, 14]);
        attributes.extend_from_slice(&(reach.len() as u16).to_be_bytes());
        attributes.extend_from_slice(&reach);
        let mut body = vec![0, 0];
        body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        body.extend_from_slice(&attributes);
        let mut message = MARKER.to_vec();
        message.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        message.push(2);
        message.extend_from_slice(&body);
        message
    }

    fn segments(stream: &[u8], cut: usize, first_sequence: u32) -> Vec<TcpSegment> {
        stream
            .chunks(cut)
            .enumerate()
            .map(|(i, chunk)| TcpSegment {
                ports: (40000, 179),
                sequence: first_sequence.wrapping_add((i * cut) as u32),
                payload: chunk.to_vec(),
            })
            .collect()
    }

    #[test]
    fn updates_are_counted_across_segments_retransmissions_and_a_mid_message_start() {
        let update = mp_update(3);
        let mut stream = vec![0xaa, 0xbb]; // the tail of a message before the capture
        stream.extend(keepalive());
        stream.extend(&update);
        stream.extend(mp_update(1));
        stream.extend(keepalive());
        let mut parts = segments(&stream, 7, u32::MAX - 10);
        // A retransmission and out-of-order arrival change nothing.
        parts.push(parts[3].clone());
        parts.swap(1, 2);
        let stats = bgp_message_stats(&parts);
        assert_eq!(stats.updates, 2);
        assert_eq!(stats.update_bytes, update.len() + mp_update(1).len());
        assert_eq!(stats.announced, 4);
        assert_eq!(stats.withdrawn, 0);
    }

    #[test]
    fn summary_orders_the_samples() {
        let line = summary(&[5.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(line, "min 1.0 / p50 3.0 / p90 5.0 / max 5.0 ms (n=5)");
    }
}
