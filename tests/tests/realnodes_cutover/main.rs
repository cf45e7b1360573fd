//! The README's cut-over from MetalLB to FerroLB (issue 12 §2) on real
//! kubelet nodes, with real speakers on both sides, sampled on the wire.
//!
//! A site of its own comes up without FerroLB; MetalLB v0.16.2 is installed
//! from its own `metallb-native.yaml` with its own images (webhooks off, see
//! `realnodes::metallb`), serves a handful of Services (plain, a requested
//! IP, a named pool, two sharing an IP, one dual-stack) and answers ARP and
//! NDP for them. Then, while a Service watch, the LAN client's HTTP requests
//! and an ARP prober per IP sample continuously, the README's procedure runs
//! step by step with the real binaries (`kubectl ferrolb migrate`, `kubectl
//! scale`, `kubectl apply`, `kubectl delete`), and MetalLB is removed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

mod before;
mod judge;
mod procedure;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use ferrolb_tests::arp_probe::ArpProber;
use ferrolb_tests::env::binary;
use ferrolb_tests::l2lab::ndisc;
use ferrolb_tests::realnodes::apps::NS;
use ferrolb_tests::realnodes::http_probe::ProbeLoop;
use ferrolb_tests::realnodes::metallb::start_bare_site;
use ferrolb_tests::realnodes::{CLIENT_IP, until};
use ferrolb_tests::service_watch::{Watched, check_no_violations, watch_services};

use before::{Target, in_range, neighbour, service, wait_served};
use judge::Verdict;

/// MetalLB's pools: `lan` hands out automatically (both families), `gold`
/// only on request. Away from the IPs the other real-node tests use.
pub const LAN_POOL_V4: &str = "198.51.100.160-198.51.100.169";
pub const LAN_POOL_V6: &str = "2001:db8:100::160-2001:db8:100::16f";
pub const GOLD_POOL_V4: &str = "198.51.100.170-198.51.100.179";
pub const REQUESTED_IP: &str = "198.51.100.165";
/// The echo backend every Service selects.
pub const APP: &str = "cutover-echo";
/// How often the client asks who has each IP, and requests each target.
pub const EVERY: Duration = Duration::from_millis(100);
/// After MetalLB is gone: settling allowed, then the window in which every
/// request must succeed and one MAC answer each IP.
pub const SETTLE: Duration = Duration::from_secs(3);
pub const WINDOW: Duration = Duration::from_secs(15);
/// The longest a client may go without an answer through the cut-over.
pub const MAX_GAP: Duration = Duration::from_millis(500);
/// Upper bound on everything the loops sample.
pub const SAMPLING_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn readme_cut_over_from_metallb_keeps_ips_and_clients_on_real_nodes() -> Result<()> {
    let started = Instant::now();
    let say = |what: &str| eprintln!("[cutover {:>6.1}s] {what}", started.elapsed().as_secs_f64());
    // The plugin first: no build during the cut-over.
    let plugin = binary("kubectl-ferrolb")?;
    let plugin_dir = plugin
        .parent()
        .context("the plugin's directory")?
        .to_path_buf();
    // Dropping the site (also on a failure) tears everything down.
    let site = start_bare_site(3)?;
    say("site up, nothing installed");
    let (expected, targets) = before::metallb_serves(&site, &say)?;
    let v6_ips: Vec<std::net::Ipv6Addr> = targets.iter().filter_map(Target::v6).collect();

    // Continuous sampling from before the switch: ARP per IPv4 address...
    let v4_ips: BTreeSet<std::net::Ipv4Addr> = targets.iter().filter_map(Target::v4).collect();
    let client = site.client_netns();
    let mut probers = BTreeMap::new();
    for ip in &v4_ips {
        let prober = ArpProber::start(
            &client,
            "eth0",
            CLIENT_IP.parse()?,
            *ip,
            EVERY,
            SAMPLING_LIMIT,
        )?;
        probers.insert(*ip, prober);
    }
    let mut metallb_macs = BTreeMap::new();
    for (ip, prober) in &probers {
        let since = Instant::now();
        let answer = until(
            &format!("MetalLB's speaker answering ARP for {ip}"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                Ok(prober
                    .claims()
                    .into_iter()
                    .find(|c| c.at >= since && !c.gratuitous))
            },
        )?;
        let node = site.node_with_mac(&answer.mac).context("a node's MAC")?;
        metallb_macs.insert(*ip, answer.mac.to_ascii_lowercase());
        say(&format!(
            "MetalLB: {ip} answered by {}",
            site.nodes[node].name
        ));
    }
    // ...the Service watch...
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let kube = runtime.block_on(site.api.admin_client())?;
    let seen = Arc::new(Mutex::new(Watched::default()));
    let watch = {
        let _in = runtime.enter();
        watch_services(kube, Arc::new(expected.clone()), seen.clone())
    };
    until(
        "the Service watch to list",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || Ok(seen.lock().unwrap().listed.then_some(())),
    )?;
    // ...and the client's requests.
    let mut loops = Vec::new();
    for target in &targets {
        loops.push(ProbeLoop::start(
            &site.client,
            target.addr,
            EVERY,
            Duration::from_secs(1),
            SAMPLING_LIMIT,
        )?);
    }

    let swap = procedure::run(&site, &plugin_dir, &seen, &expected, &say)?;
    let (owned, speakers_ready) = (swap.owned, swap.speakers_ready);
    let swap = swap.at;
    say(&format!(
        "FerroLB owned every Service {owned:?} after the speakers' swap, its speakers were Ready after {speakers_ready:?}; MetalLB removed"
    ));

    // Settle, then the window: every request succeeds, one MAC per IP.
    let window_from = Instant::now() + SETTLE;
    let window_to = window_from + WINDOW;
    // A new Service meanwhile gets an IP of a migrated pool and is served.
    site.apply(&[service("cut-new", json!({}), 80, false)])?;
    let new_ip: IpAddr = site.wait_ingress("cut-new", NS, 1)?[0];
    let taken: BTreeSet<&String> = expected.values().flatten().collect();
    assert!(in_range(new_ip, LAN_POOL_V4), "cut-new got {new_ip}");
    assert!(
        !taken.contains(&new_ip.to_string()),
        "cut-new got a taken IP, {new_ip}"
    );
    let pool = site.api.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "service",
        "cut-new",
        "-o",
        "jsonpath={.metadata.annotations.ferrolb\\.io/ip-allocated-from-pool}",
    ])?;
    assert_eq!(pool, "lan");
    wait_served(&site, SocketAddr::new(new_ip, 80))?;
    say(&format!(
        "a new Service got {new_ip} from the migrated pool `lan` and is served"
    ));
    std::thread::sleep(window_to.saturating_duration_since(Instant::now()));

    // NDP after the window: one node answers each IPv6 address, and the
    // client's neighbour cache names it (its unsolicited NA moved the client
    // if the owner changed).
    let mut ndp = Vec::new();
    for ip in &v6_ips {
        let macs = ndisc(&site.client_netns(), *ip, "eth0")?;
        let cached = neighbour(&site, *ip)?;
        ndp.push((*ip, macs, cached));
    }
    let restarts = site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}",
    ])?;

    // What the samplers saw: ARP first (when the owner's gratuitous ARP
    // moved the client), then the client's requests.
    let mut samples = Vec::new();
    for (target, probe) in targets.iter().zip(loops) {
        let from = probe.started();
        samples.push((target, from, probe.finish()?));
    }
    watch.abort();
    check_no_violations(&seen)?;
    let window = (window_from, window_to);
    let mut verdict = Verdict::default();
    let mut moved_at = BTreeMap::new();
    for (ip, prober) in probers {
        let claims = prober.stop()?;
        if let Some(at) = verdict.arp(&site, ip, &claims, &metallb_macs[&ip], swap, window) {
            moved_at.insert(IpAddr::V4(ip), at);
        }
    }
    for (target, from, samples) in &samples {
        let moved = moved_at.get(&target.addr.ip()).copied();
        verdict.http(target, *from, samples, moved, swap, window);
    }
    let Verdict {
        mut report,
        mut problems,
    } = verdict;
    for (ip, macs, cached) in &ndp {
        let node = macs.iter().next().and_then(|m| site.node_with_mac(m));
        report.push(format!(
            "{ip}: NDP answered by {macs:?} (node {node:?}); the client caches {:?}",
            cached.trim()
        ));
        let cached_ok = macs.len() == 1
            && macs
                .iter()
                .all(|m| cached.to_ascii_lowercase().contains(m.as_str()));
        if node.is_none() || !cached_ok {
            problems.push(format!(
                "{ip}: NDP answered by {macs:?}, the client caches {:?}",
                cached.trim()
            ));
        }
    }
    report.push(format!("FerroLB's pods and their restarts: {restarts}"));
    let seen = seen.lock().unwrap();
    report.push(format!(
        "the watch saw {} Service events, none with other IPs than MetalLB's; FerroLB owned all {} Services {owned:?} after the swap; test took {:?}",
        seen.events,
        expected.len(),
        started.elapsed()
    ));
    println!("{}", report.join("\n"));
    assert!(
        problems.is_empty(),
        "{}\n\n{}",
        problems.join("\n"),
        report.join("\n")
    );
    Ok(())
}
