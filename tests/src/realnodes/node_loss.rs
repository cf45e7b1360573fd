//! A whole node dies under a Service's traffic: what the client saw, split
//! into FerroLB's part (the IP moving to a live node), kube-proxy's part
//! (requests sent to the dead node's pods until their endpoints are gone)
//! and conntrack's part.
//!
//! Conntrack's part: a connection attempt to a dead pod leaves a SYN_SENT
//! entry on the node that answers for the IP (two minutes, the kernel's
//! `nf_conntrack_tcp_timeout_syn_sent`), and kube-proxy removes no TCP
//! entries when endpoints go. A client that reuses that source port within
//! the two minutes meets the entry and its old NAT: its SYN goes to the dead
//! pod again, however long ago the endpoints went. Linux clients reuse source
//! ports to the same address within seconds (captured on the real-node site:
//! four failures 30 s after the kill, each on the port of a failure in the
//! first 20 s). So a failure after the endpoints are gone is counted as
//! conntrack's when its source port failed before, and as unexplained
//! otherwise.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::RealCluster;
use super::apps::NS;
use super::failover::arp_owner;
use super::http_probe::{ProbeLoop, Sample};

/// How long kube-proxy may take to stop sending new connections to the dead
/// node's pods once their EndpointSlice says so (one iptables sync, on a
/// loaded 2-core machine).
pub const KUBE_PROXY_SYNC: Duration = Duration::from_secs(10);

/// What the client saw when the node answering for an IP died.
#[derive(Clone, Debug)]
pub struct NodeLoss {
    pub node: String,
    /// FerroLB's part: from the kill until a live node answers ARP.
    pub arp_moved_after: Duration,
    /// From the kill until the first request answered again.
    pub first_answer_after: Option<Duration>,
    /// From the kill until the Service's EndpointSlices showed no ready
    /// endpoint on the dead node (None: not within the observation).
    pub endpoints_gone_after: Option<Duration>,
    /// Requests after the kill.
    pub total: usize,
    /// Failures once kube-proxy had the endpoints' removal, by cause.
    pub late: LateFailures,
    /// Each failed request after the kill: when it started (from the kill),
    /// its source port and its error.
    pub failures: Vec<(Duration, Option<u16>, String)>,
}

impl NodeLoss {
    /// Requests after the kill that failed.
    pub fn failed(&self) -> usize {
        self.failures.len()
    }

    /// When the last failed request started, from the kill.
    pub fn last_failure_after(&self) -> Option<Duration> {
        self.failures.last().map(|(at, _, _)| *at)
    }
}

/// Failed requests that started more than [`KUBE_PROXY_SYNC`] after the
/// dead node's endpoints were gone.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LateFailures {
    /// On a source port that had failed before: a stale conntrack entry.
    pub stale_conntrack: usize,
    /// Anything else: when (from the kill), the port and the error.
    pub unexplained: Vec<(Duration, Option<u16>, String)>,
}

/// Sorts the failures among `after_kill` (samples in order, `at` counted from
/// the kill) that started after `settled` (from the kill).
pub fn late_failures(after_kill: &[Sample], settled: Duration) -> LateFailures {
    let mut late = LateFailures::default();
    let mut failed_ports = BTreeSet::new();
    for sample in after_kill {
        let Err(error) = &sample.outcome else {
            continue;
        };
        if sample.at > settled {
            match sample.local_port {
                Some(port) if failed_ports.contains(&port) => late.stale_conntrack += 1,
                port => late.unexplained.push((sample.at, port, error.clone())),
            }
        }
        failed_ports.extend(sample.local_port);
    }
    late
}

/// Kills the node that answers for `ip` (link down, every process killed)
/// under requests to Service `service` (namespace [`NS`]), probes for
/// `observe` while watching the Service's EndpointSlices, then brings the
/// node back and waits until it and FerroLB are whole again.
pub fn node_loss(
    site: &RealCluster,
    service: &str,
    ip: IpAddr,
    observe: Duration,
) -> Result<NodeLoss> {
    let victim = arp_owner(site, ip)?;
    let node = site.nodes[victim].name.clone();
    let probe = ProbeLoop::start(
        &site.client,
        SocketAddr::new(ip, 80),
        Duration::from_millis(50),
        Duration::from_secs(1),
        observe + Duration::from_secs(30),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    let started = probe.started();
    let kill = site.kill_node(victim);
    let new_owner = arp_owner(site, ip);
    let arp_moved_after = killed.elapsed();
    let endpoints_gone_after = watch_endpoints_leave(site, service, &node, killed, observe);
    std::thread::sleep(observe.saturating_sub(killed.elapsed()));
    let samples = probe.finish()?;
    let restart = site.restart_node(victim);
    kill?;
    let new_owner = new_owner?;
    if new_owner == victim {
        bail!("{node} still answers for {ip} after it died");
    }
    let kill_at = killed.saturating_duration_since(started);
    let after: Vec<Sample> = samples
        .into_iter()
        .filter(|s| s.at >= kill_at)
        .map(|s| Sample {
            at: s.at - kill_at,
            ..s
        })
        .collect();
    let settled = endpoints_gone_after.map_or(observe, |gone| gone + KUBE_PROXY_SYNC);
    let loss = NodeLoss {
        node: node.clone(),
        arp_moved_after,
        first_answer_after: after.iter().find(|s| s.ok()).map(|s| s.at),
        endpoints_gone_after,
        total: after.len(),
        late: late_failures(&after, settled),
        failures: after
            .iter()
            .filter_map(|s| {
                let error = s.outcome.as_ref().err()?;
                Some((s.at, s.local_port, error.clone()))
            })
            .collect(),
    };
    restart?;
    super::wait_nodes_ready(&site.api, &[&node], Duration::from_secs(120))?;
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    site.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
    Ok(loss)
}

/// Polls (every 500 ms, until `observe` after `killed`) the EndpointSlices of
/// `service` until none has a ready endpoint on `node`; returns when, from
/// `killed`. An API error counts as "not yet".
fn watch_endpoints_leave(
    site: &RealCluster,
    service: &str,
    node: &str,
    killed: Instant,
    observe: Duration,
) -> Option<Duration> {
    let selector = format!("kubernetes.io/service-name={service}");
    let template =
        "jsonpath={range .items[*].endpoints[*]}{.nodeName}={.conditions.ready}{\"\\n\"}{end}";
    while killed.elapsed() < observe {
        let listed = site.api.kubectl_ok(&[
            "-n",
            NS,
            "get",
            "endpointslices",
            "-l",
            &selector,
            "-o",
            template,
        ]);
        if let Ok(text) = listed
            && !has_ready_endpoint_on(&text, node)
        {
            return Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    None
}

/// Whether `listing` (lines `node=ready`) has a ready endpoint on `node`.
fn has_ready_endpoint_on(listing: &str, node: &str) -> bool {
    listing
        .lines()
        .filter_map(|line| line.trim().split_once('='))
        .any(|(on, ready)| on == node && ready == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, port: u16, ok: bool) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            took: Duration::from_millis(1),
            local_port: Some(port),
            outcome: if ok {
                Ok("pod".into())
            } else {
                Err("timed out".into())
            },
        }
    }

    #[test]
    fn late_failures_on_a_port_that_failed_before_are_conntracks() {
        let samples = [
            sample(100, 40_000, false),
            sample(200, 40_002, true),
            sample(300, 40_004, false),
            // settled at 1 s
            sample(1_500, 40_000, false),
            sample(1_600, 40_002, false),
            sample(1_700, 40_004, true),
            sample(1_800, 40_004, false),
        ];
        let late = late_failures(&samples, Duration::from_secs(1));
        assert_eq!(late.stale_conntrack, 2, "{late:?}");
        assert_eq!(
            late.unexplained,
            vec![(
                Duration::from_millis(1_600),
                Some(40_002),
                "timed out".into()
            )],
            "a port that only ever answered is no conntrack leftover"
        );
    }

    #[test]
    fn failures_before_settling_are_kube_proxys_and_unknown_ports_unexplained() {
        let mut samples = vec![sample(100, 40_000, false), sample(200, 40_000, false)];
        samples.push(Sample {
            local_port: None,
            ..sample(2_000, 40_000, false)
        });
        let late = late_failures(&samples, Duration::from_secs(1));
        assert_eq!(late.stale_conntrack, 0);
        assert_eq!(late.unexplained.len(), 1, "{late:?}");
    }

    #[test]
    fn a_ready_endpoint_is_found_by_node_name() {
        let listing = "node-0=true\nnode-1=false\nnode-2=true\n";
        assert!(has_ready_endpoint_on(listing, "node-0"));
        assert!(!has_ready_endpoint_on(listing, "node-1"));
        assert!(!has_ready_endpoint_on(listing, "node-9"));
        assert!(!has_ready_endpoint_on("", "node-0"));
        assert!(has_ready_endpoint_on("node-1=false\nnode-1=true", "node-1"));
    }
}
