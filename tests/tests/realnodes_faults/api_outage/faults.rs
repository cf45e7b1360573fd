//! The cuts and probes of the API-outage tests: nft tables in the node
//! namespaces, the speakers' processes and logs as the host sees them, and
//! the client's view of one IP.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ferrolb_tests::arp_probe::{ArpProber, Claim};
use ferrolb_tests::realnodes::apps::{NS, delete_app, echo_app, v4};
use ferrolb_tests::realnodes::failover::arp_owner;
use ferrolb_tests::realnodes::site::L2_POOL;
use ferrolb_tests::realnodes::{
    APISERVER_PORT, CLIENT_IP, CONTROL_PLANE_IP, KUBERNETES_SERVICE_IP, Policy, RealCluster,
};
use serde_json::json;

/// The nft table each cut adds to every node namespace.
pub(super) const SPEAKERS_CUT: &str = "ferrolb_test_speakers_api_cut";
pub(super) const KUBELETS_CUT: &str = "ferrolb_test_kubelets_api_cut";

/// Leaves the site as it was, even when a test fails part way: the cuts'
/// tables removed from every node, the test's Services and Deployments gone.
pub(super) struct Restore<'s> {
    pub(super) site: &'s RealCluster,
    pub(super) apps: Vec<&'static str>,
    pub(super) services: Vec<&'static str>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        for node in 0..self.site.nodes.len() {
            for table in [SPEAKERS_CUT, KUBELETS_CUT] {
                let _ = heal(self.site, node, table);
            }
        }
        for service in &self.services {
            let _ = self.site.api.kubectl_ok(&[
                "-n",
                NS,
                "delete",
                "service",
                service,
                "--ignore-not-found",
            ]);
        }
        for app in &self.apps {
            delete_app(self.site, app);
        }
    }
}

/// Adds table `table` to node `node` with `chains` (nft chain blocks).
fn add_table(site: &RealCluster, node: usize, table: &str, chains: &str) -> Result<()> {
    let script = std::env::temp_dir().join(format!("{table}-{node}.nft"));
    std::fs::write(&script, format!("table ip {table} {{\n{chains}}}\n"))?;
    let done = ferrolb_tests::netns::run(site.node(node).command("nft").arg("-f").arg(&script));
    let _ = std::fs::remove_file(&script);
    done.map(drop)
}

/// The speakers' API path on node `node`, cut (table [`SPEAKERS_CUT`]): in
/// the output chain, before NAT, TCP to the `kubernetes` ClusterIP is reset.
pub(super) fn cut_speakers(site: &RealCluster, node: usize) -> Result<()> {
    add_table(
        site,
        node,
        SPEAKERS_CUT,
        &format!(
            " chain out {{\n  type filter hook output priority -150; policy accept;\n  ip daddr {KUBERNETES_SERVICE_IP} tcp dport 443 counter reject with tcp reset\n }}\n"
        ),
    )
}

/// The kubelet's and kube-proxy's API path on node `node`, cut both ways
/// (table [`KUBELETS_CUT`]), as a real partition: out, before NAT (the
/// speakers' packets still show the ClusterIP there), and in, after NAT's
/// input hook (the speakers' replies show the ClusterIP again). A one-way
/// cut lets the apiserver's watch events in over the open connections.
pub(super) fn cut_kubelets(site: &RealCluster, node: usize) -> Result<()> {
    add_table(
        site,
        node,
        KUBELETS_CUT,
        &format!(
            " chain out {{\n  type filter hook output priority -150; policy accept;\n  ip daddr {CONTROL_PLANE_IP} tcp dport {APISERVER_PORT} counter drop\n }}\n chain in {{\n  type filter hook input priority 200; policy accept;\n  ip saddr {CONTROL_PLANE_IP} tcp sport {APISERVER_PORT} counter drop\n }}\n"
        ),
    )
}

/// Removes table `table` from node `node`, if there.
pub(super) fn heal(site: &RealCluster, node: usize, table: &str) -> Result<()> {
    let listed =
        ferrolb_tests::netns::run(site.node(node).command("nft").args(["list", "tables"]))?;
    if listed
        .lines()
        .any(|l| l.trim() == format!("table ip {table}"))
    {
        ferrolb_tests::netns::run(
            site.node(node)
                .command("nft")
                .args(["delete", "table", "ip", table]),
        )?;
    }
    Ok(())
}

/// Packets table `table` of node `node` has caught.
pub(super) fn caught(site: &RealCluster, node: usize, table: &str) -> Result<u64> {
    let listed = ferrolb_tests::netns::run(
        site.node(node)
            .command("nft")
            .args(["list", "table", "ip", table]),
    )?;
    listed
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .context("no packet counter in the cut's table")
}

/// Every speaker loses the API: new connections to the ClusterIP are reset,
/// and the open ones (the watches) are destroyed, as when the apiserver dies.
pub(super) fn cut_speakers_off_the_api(site: &RealCluster) -> Result<()> {
    for node in 0..site.nodes.len() {
        cut_speakers(site, node)?;
        // The sockets see the ClusterIP: only host-network pods (the
        // speakers) dial it from the node's namespace.
        ferrolb_tests::netns::run(site.node(node).command("ss").args([
            "-K",
            "-t",
            "dst",
            KUBERNETES_SERVICE_IP,
            "dport",
            "=",
            "443",
        ]))?;
    }
    Ok(())
}

/// How many times node `node`'s speaker containers logged a failed watch
/// (their log files, read on the host: the API is not needed for it).
pub(super) fn watch_failures(site: &RealCluster, node: usize) -> usize {
    let pods = site.node(node).dir.join("kubelet/pod-logs");
    let mut count = 0;
    for pod in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        if !pod
            .file_name()
            .to_string_lossy()
            .starts_with("ferrolb-system_ferrolb-speaker-")
        {
            continue;
        }
        for log in std::fs::read_dir(pod.path().join("speaker"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(text) = std::fs::read_to_string(log.path()) {
                count += text.matches("watch failed").count();
            }
        }
    }
    count
}

/// The pid of the speaker process in node `node`'s network namespace.
pub(super) fn speaker_pid(site: &RealCluster, node: usize) -> Option<u32> {
    let netns = std::fs::metadata(format!("/run/netns/{}", site.node(node).netns)).ok()?;
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "ferrolb-speaker")
                && std::fs::metadata(format!("/proc/{pid}/ns/net"))
                    .is_ok_and(|ns| ns.ino() == netns.ino() && ns.dev() == netns.dev())
        })
}

/// Polls `check` every 200 ms until it gives a value, for at most `limit`.
pub(super) fn wait<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<T>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("waiting {limit:?} for {what}")));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The first answer (not a gratuitous ARP) at or after `since` that `accept`s.
pub(super) fn answer_since(
    prober: &ArpProber,
    since: Instant,
    what: &str,
    accept: impl Fn(&Claim) -> bool,
) -> Result<Claim> {
    wait(what, Duration::from_secs(30), || {
        prober
            .claims()
            .into_iter()
            .find(|c| c.at >= since && !c.gratuitous && accept(c))
            .ok_or_else(|| anyhow!("no such answer yet"))
    })
}

pub(super) fn probe(site: &RealCluster, ip: IpAddr) -> Result<ArpProber> {
    let IpAddr::V4(ip) = ip else {
        bail!("{ip} is not IPv4")
    };
    ArpProber::start(
        &site.client_netns(),
        "eth0",
        CLIENT_IP.parse::<Ipv4Addr>()?,
        ip,
        Duration::from_millis(100),
        Duration::from_secs(600),
    )
}

pub(super) fn mac(site: &RealCluster, node: usize) -> Result<String> {
    Ok(site.node(node).mac()?.to_ascii_lowercase())
}

/// A second Service on the pods of app `app`, asking for `ip`.
pub(super) fn second_service(
    site: &RealCluster,
    app: &str,
    name: &str,
    ip: &str,
) -> Result<IpAddr> {
    let mut service = RealCluster::echo_service(name, NS, L2_POOL, Policy::Cluster);
    service["metadata"]["annotations"]["ferrolb.io/loadBalancerIPs"] = json!(ip);
    service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    service["spec"]["ipFamilies"] = json!(["IPv4"]);
    service["spec"]["selector"] = json!({"app": app});
    site.apply(&[service])?;
    v4(&site.wait_ingress(name, NS, 1)?)
}

/// The ready condition of each endpoint of Service `service`, space-separated.
pub(super) fn endpoints_ready(site: &RealCluster, service: &str) -> Result<String> {
    let states = site.api.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "endpointslices",
        "-l",
        &format!("kubernetes.io/service-name={service}"),
        "-o",
        "jsonpath={.items[*].endpoints[*].conditions.ready}",
    ])?;
    Ok(states.trim().to_string())
}

/// Each time the MAC claiming the IP changed, from `since`.
pub(super) fn mac_changes(claims: &[Claim], since: Instant) -> Vec<(Duration, String)> {
    let mut changes: Vec<(Duration, String)> = Vec::new();
    for claim in claims {
        let mac = claim.mac.to_ascii_lowercase();
        if changes.last().is_none_or(|(_, last)| *last != mac) {
            changes.push((claim.at.saturating_duration_since(since), mac));
        }
    }
    changes
}

/// The echo app `name` (3 pods, policy Cluster) with its Service on `ip` of
/// the L2 pool: the IP, its owner and the owner's MAC, and the client
/// probing it, once the owner answers the probes.
pub(super) fn answered_app(
    site: &RealCluster,
    name: &str,
    ip: &str,
) -> Result<(IpAddr, usize, String, ArpProber)> {
    let ip = v4(&echo_app(
        site,
        name,
        3,
        None,
        L2_POOL,
        Policy::Cluster,
        &[ip],
    )?)?;
    let owner = arp_owner(site, ip)?;
    let owner_mac = mac(site, owner)?;
    let prober = probe(site, ip)?;
    answer_since(&prober, Instant::now(), "the owner answering", |c| {
        c.mac.eq_ignore_ascii_case(&owner_mac)
    })?;
    Ok((ip, owner, owner_mac, prober))
}
