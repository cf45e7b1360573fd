//! Measuring what a client sees when FerroLB's pieces or whole nodes fail on
//! the real-node cluster: shared by the tests (which assert bounds) and by
//! `cargo xtask bench realnodes` (which repeats them for distributions).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::RealCluster;
use super::http_probe::{Outage, ProbeLoop, get_from, outage, wait_answering};
use crate::l2lab::arping;

/// GETs `ip` port 80 from `netns` until one answer comes (within 30 s), then
/// `count` more, every one of which must answer; returns their bodies.
pub fn requests(netns: &str, ip: IpAddr, count: usize) -> Result<Vec<String>> {
    wait_answering(netns, ip, 1, Duration::from_secs(30))?;
    let target = SocketAddr::new(ip, 80);
    (0..count)
        .map(|_| get_from(netns, target, Duration::from_secs(2)))
        .collect()
}

/// The one node that answers ARP for `ip` (waiting up to 30 s for exactly one).
pub fn arp_owner(site: &RealCluster, ip: IpAddr) -> Result<usize> {
    let IpAddr::V4(ip4) = ip else {
        bail!("{ip} is not IPv4")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = BTreeSet::new();
    while Instant::now() < deadline {
        last = arping(&site.client_netns(), ip4, "eth0", 2)?;
        if last.len() == 1
            && let Some(node) = last.iter().next().and_then(|m| site.node_with_mac(m))
        {
            return Ok(node);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("not exactly one node answers ARP for {ip} after 30 s: {last:?}")
}

/// Waits until the node answering ARP for `ip` is `node`.
pub fn wait_arp_owner_is(
    site: &RealCluster,
    ip: IpAddr,
    node: usize,
    within: Duration,
) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let owner = arp_owner(site, ip);
        if matches!(owner, Ok(n) if n == node) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("ARP for {ip} answered by {owner:?}, not node {node}, after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The speaker pod on `node`.
pub fn speaker_pod_on(site: &RealCluster, node: &str) -> Result<String> {
    let out = site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=ferrolb-speaker",
        "--field-selector",
        &format!("spec.nodeName={node}"),
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    out.split_whitespace()
        .next()
        .map(str::to_string)
        .with_context(|| format!("no speaker pod on {node}"))
}

/// Runs `disrupt` while the LAN client requests `ip` every 50 ms (1 s
/// timeout each), keeps probing for `settle` after it returns, and reports
/// what the client saw. Fails if requests still fail at the end.
pub fn measure_gap(
    site: &RealCluster,
    ip: IpAddr,
    settle: Duration,
    disrupt: impl FnOnce() -> Result<()>,
) -> Result<Outage> {
    let probe = ProbeLoop::start(
        &site.client,
        SocketAddr::new(ip, 80),
        Duration::from_millis(50),
        Duration::from_secs(1),
        Duration::from_secs(300),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let result = disrupt();
    std::thread::sleep(settle);
    let samples = probe.finish()?;
    result?;
    let tail = &samples[samples.len().saturating_sub(20)..];
    if let Some(failed) = tail.iter().find(|s| !s.ok()) {
        bail!("requests still fail at the end: {:?}", failed.outcome);
    }
    Ok(outage(&samples))
}

/// Force-deletes (grace 0) the speaker pod of the node that answers for
/// `ip`, and waits until the DaemonSet has replaced it.
pub fn force_delete_owner_speaker(site: &RealCluster, ip: IpAddr) -> Result<Outage> {
    let owner = site.nodes[arp_owner(site, ip)?].name.clone();
    let pod = speaker_pod_on(site, &owner)?;
    measure_gap(site, ip, Duration::from_secs(3), || {
        site.api.kubectl_ok(&[
            "-n",
            "ferrolb-system",
            "delete",
            "pod",
            &pod,
            "--grace-period=0",
            "--force",
        ])?;
        site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")
    })
}

/// Deletes the owner's speaker pod gracefully (SIGTERM, the speaker hands
/// over), and waits until the DaemonSet has replaced it.
pub fn gracefully_delete_owner_speaker(site: &RealCluster, ip: IpAddr) -> Result<Outage> {
    let owner = site.nodes[arp_owner(site, ip)?].name.clone();
    let pod = speaker_pod_on(site, &owner)?;
    measure_gap(site, ip, Duration::from_secs(3), || {
        site.api
            .kubectl_ok(&["-n", "ferrolb-system", "delete", "pod", &pod])?;
        site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")
    })
}

/// A rolling update of the speaker DaemonSet (`kubectl rollout restart`).
pub fn rolling_update_speakers(site: &RealCluster, ip: IpAddr) -> Result<Outage> {
    measure_gap(site, ip, Duration::from_secs(3), || roll_speakers(site))
}

/// A rolling update of the speaker DaemonSet, waited for to its end.
pub fn roll_speakers(site: &RealCluster) -> Result<()> {
    site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "rollout",
        "restart",
        "daemonset/ferrolb-speaker",
    ])?;
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")
}
