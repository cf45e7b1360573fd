//! An L2 test site: node namespaces on a LAN bridge, a client namespace, the
//! real controller, and a real `ferrolb-speaker` process in every node
//! namespace, running as the `ferrolb-system/ferrolb-speaker` ServiceAccount.
//!
//! ```text
//!                 lan namespace: bridge br0 (and br1 with a second LAN)
//!          /            |             |              \
//!   node 0 eth0    node 1 eth0    node 2 eth0    client eth0
//! ```
//!
//! Address plan of lab `k` (one per test in a process, k < 8):
//! nodes 198.51.100.(32k+10+i)/27 and 2001:db8:5100:k::(10+i)/64, client
//! .(32k+2) and ::2; the Service pool is 198.51.100.(32k+16)/28 and
//! 2001:db8:5100:k::100-2001:db8:5100:k::1ff, in the LAN as real sites do it.
//! The second LAN uses 203.0.113.(192+8k)/29 (client .1, nodes .2-.4) and
//! 2001:db8:5101:k::/64.
//!
//! There is no kubelet: the lab creates the Node objects (Ready, with their
//! InternalIP) and the EndpointSlices itself.
//!
//! Labs share the test process's cluster unless [`LabShape::own_cluster`]
//! says otherwise. Nodes are cluster-scoped, so on the shared one every
//! speaker also sees the Nodes of the labs running alongside: Ready, with an
//! address, but never heard over gossip (they are on another LAN).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::env::{binary, own_cluster, wait_for};
use crate::forward::Forwarder;
use crate::netns::{Netns, in_netns, veth};
use crate::process::{spawn_tied, terminate};
use crate::scenario::Scenario;

/// Labs running at once in one test process.
pub const CONCURRENT_LABS: usize = 2;

/// Port of the speakers' metrics endpoint inside each node namespace.
pub const SPEAKER_METRICS_PORT: u16 = 7473;

pub struct LabNode {
    /// Kubernetes Node name.
    pub name: String,
    pub netns: Netns,
    pub ip4: Ipv4Addr,
    pub ip6: Ipv6Addr,
    /// MAC of eth0 (and of eth1 with a second LAN).
    pub mac: String,
    pub mac2: Option<String>,
    pub log: PathBuf,
    speaker: Option<Child>,
    forwarder: Forwarder,
}

pub struct L2Lab {
    pub scenario: Scenario,
    /// At most [`CONCURRENT_LABS`] labs run at once on this small machine.
    _slot: tokio::sync::OwnedSemaphorePermit,
    index: LabIndex,
    pub nodes: Vec<LabNode>,
    pub client: Netns,
    pub gossip_key: String,
    /// Extra speaker flags, used by every start.
    pub speaker_flags: Vec<String>,
    /// A command (and its arguments) every speaker is started under, e.g. a
    /// heap profiler; empty: none. The pid of a wrapped speaker is the wrapper's.
    pub speaker_wrapper: Vec<String>,
    lan: Netns,
    /// Stops the lab's own cluster, if it has one, after everything else.
    _own_cluster: Option<StopOnDrop>,
}

/// Stops a cluster when dropped.
struct StopOnDrop(&'static Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// A lab's slot in the address plan, free again when the lab is dropped.
struct LabIndex(u8);

static LAB_INDICES: Mutex<[bool; 8]> = Mutex::new([false; 8]);

impl LabIndex {
    fn take() -> Result<LabIndex> {
        let mut used = LAB_INDICES
            .lock()
            .map_err(|_| anyhow::anyhow!("lab index lock poisoned"))?;
        let free = used
            .iter()
            .position(|u| !u)
            .context("at most 8 labs at once (address plan)")?;
        used[free] = true;
        Ok(LabIndex(free as u8))
    }
}

impl Drop for LabIndex {
    fn drop(&mut self) {
        if let Ok(mut used) = LAB_INDICES.lock() {
            used[usize::from(self.0)] = false;
        }
    }
}

/// Options of a lab.
#[derive(Clone, Copy)]
pub struct LabShape {
    pub nodes: usize,
    /// Give every node and the client an eth1 on a second bridge.
    pub second_lan: bool,
    /// Run on a control plane of its own (started for the lab, about 10 s,
    /// and stopped with it), so the lab's Nodes are the only ones its
    /// speakers see: for tests whose point rests on the cluster's whole
    /// Node view, such as the full-disruption guard (no Node Ready) or the
    /// majorities of a gossip split (of the Ready Nodes). On the shared
    /// cluster, the other labs' Nodes count as Ready nodes never heard.
    pub own_cluster: bool,
}

impl L2Lab {
    /// Builds the network, the Node objects and the pool "lan" (no
    /// L2Advertisement: each test chooses its own), and starts the controller.
    /// Speakers are started with [`L2Lab::start_speakers`].
    pub async fn start(prefix: &str, shape: LabShape) -> Result<L2Lab> {
        static SLOTS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> =
            std::sync::OnceLock::new();
        let slot = SLOTS
            .get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(CONCURRENT_LABS)))
            .clone()
            .acquire_owned()
            .await?;
        let index = LabIndex::take()?;
        let (scenario, own) = if shape.own_cluster {
            let cluster = tokio::task::spawn_blocking(own_cluster).await??;
            let stop = StopOnDrop(cluster);
            (Scenario::start_on(cluster, prefix).await?, Some(stop))
        } else {
            (Scenario::start(prefix).await?, None)
        };
        let cluster = scenario.cluster;
        let port: u16 = cluster
            .server
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("apiserver port")?;
        let target = format!("127.0.0.1:{port}").parse()?;

        let lan = Netns::create("lan")?;
        lan.ip(&["link", "add", "br0", "type", "bridge"])?;
        lan.ip(&["link", "set", "br0", "up"])?;
        if shape.second_lan {
            lan.ip(&["link", "add", "br1", "type", "bridge"])?;
            lan.ip(&["link", "set", "br1", "up"])?;
        }
        let k = u32::from(index.0);
        let client = Netns::create("cl")?;
        attach(&lan, "br0", &client, "eth0")?;
        client.ip(&[
            "addr",
            "add",
            &format!("198.51.100.{}/27", 32 * k + 2),
            "dev",
            "eth0",
        ])?;
        client.ip(&[
            "addr",
            "add",
            &format!("2001:db8:5100:{k:x}::2/64"),
            "dev",
            "eth0",
        ])?;
        if shape.second_lan {
            attach(&lan, "br1", &client, "eth1")?;
            let second4 = format!("203.0.113.{}/29", 192 + 8 * k + 1);
            client.ip(&["addr", "add", &second4, "dev", "eth1"])?;
            client.ip(&[
                "addr",
                "add",
                &format!("2001:db8:5101:{k:x}::2/64"),
                "dev",
                "eth1",
            ])?;
        }

        let mut nodes = Vec::new();
        for i in 0..shape.nodes {
            let netns = Netns::create(&format!("n{i}"))?;
            let id = 10 + i as u32;
            attach(&lan, "br0", &netns, "eth0")?;
            let ip4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 0)) + 32 * k + id);
            let ip6: Ipv6Addr = format!("2001:db8:5100:{k:x}::{id:x}").parse()?;
            netns.ip(&["addr", "add", &format!("{ip4}/27"), "dev", "eth0"])?;
            netns.ip(&["addr", "add", &format!("{ip6}/64"), "dev", "eth0"])?;
            let mac2 = if shape.second_lan {
                attach(&lan, "br1", &netns, "eth1")?;
                let second4 = format!("203.0.113.{}/29", 192 + 8 * k + 2 + i as u32);
                netns.ip(&["addr", "add", &second4, "dev", "eth1"])?;
                netns.ip(&[
                    "addr",
                    "add",
                    &format!("2001:db8:5101:{k:x}::{id:x}/64"),
                    "dev",
                    "eth1",
                ])?;
                Some(netns.mac("eth1")?)
            } else {
                None
            };
            let name = format!("{}-n{i}", scenario.ns.name);
            let log = cluster.dir.join(format!("speaker-{name}.log"));
            nodes.push(LabNode {
                mac: netns.mac("eth0")?,
                mac2,
                forwarder: Forwarder::start(&netns, port, target)?,
                name,
                netns,
                ip4,
                ip6,
                log,
                speaker: None,
            });
        }
        let lab = L2Lab {
            _slot: slot,
            scenario,
            index,
            nodes,
            client,
            gossip_key: format!("key-{:016x}", rand::random::<u64>()),
            speaker_flags: Vec::new(),
            speaker_wrapper: Vec::new(),
            lan,
            _own_cluster: own,
        };
        for i in 0..lab.nodes.len() {
            lab.create_node(i, &[]).await?;
        }
        lab.scenario
            .pool("lan", json!({"addresses": [lab.pool_v4(), lab.pool_v6()]}))
            .await?;
        Ok(lab)
    }

    /// This lab's slot in the address plan (0..8).
    pub fn index(&self) -> u8 {
        self.index.0
    }

    pub fn pool_v4(&self) -> String {
        format!("198.51.100.{}/28", 32 * u32::from(self.index.0) + 16)
    }

    /// Two addresses of the second LAN's subnet, free for a pool.
    pub fn pool_second_lan(&self) -> String {
        let base = 192 + 8 * u32::from(self.index.0);
        format!("203.0.113.{}-203.0.113.{}", base + 5, base + 6)
    }

    pub fn pool_v6(&self) -> String {
        let k = self.index.0;
        format!("2001:db8:5100:{k:x}::100-2001:db8:5100:{k:x}::1ff")
    }

    /// Creates or updates Node `i` with `labels`, Ready, with its InternalIP.
    pub async fn create_node(&self, i: usize, labels: &[(&str, &str)]) -> Result<()> {
        let node = &self.nodes[i];
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let api: Api<Node> = Api::all(self.scenario.client.clone());
        let params = PatchParams::apply("ferrolb-tests").force();
        api.patch(
            &node.name,
            &params,
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": labels},
            })),
        )
        .await?;
        self.set_node_ready(i, true).await
    }

    pub async fn set_node_ready(&self, i: usize, ready: bool) -> Result<()> {
        self.set_node_ready_status(i, if ready { "True" } else { "False" })
            .await
    }

    /// Sets node `i`'s Ready condition to `status`: "True", "False", or
    /// "Unknown", as the node lifecycle controller writes when the kubelet
    /// stops reporting.
    pub async fn set_node_ready_status(&self, i: usize, status: &str) -> Result<()> {
        let node = &self.nodes[i];
        let api: Api<Node> = Api::all(self.scenario.client.clone());
        api.patch_status(
            &node.name,
            &PatchParams::apply("ferrolb-tests").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Node",
                "status": {
                    "addresses": [{"type": "InternalIP", "address": node.ip4.to_string()}],
                    "conditions": [{
                        "type": "Ready",
                        "status": status,
                        "reason": if status == "True" { "KubeletReady" } else { "NodeStatusUnknown" },
                        "message": "set by the FerroLB test lab",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }],
                },
            })),
        )
        .await?;
        Ok(())
    }

    /// Creates an L2Advertisement.
    pub async fn advertise(&self, name: &str, spec: Value) -> Result<()> {
        let api: Api<ferrolb_crds::L2Advertisement> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.ns.name);
        api.patch(
            name,
            &PatchParams::apply("ferrolb-tests").force(),
            &Patch::Apply(json!({
                "apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
                "metadata": {"name": name}, "spec": spec,
            })),
        )
        .await?;
        Ok(())
    }

    pub fn start_speakers(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start_speaker(i)?;
        }
        Ok(())
    }

    pub fn start_speaker(&mut self, i: usize) -> Result<()> {
        let key = self.gossip_key.clone();
        self.start_speaker_with_key(i, &key)
    }

    /// Starts node `i`'s speaker with gossip key `key` (a wrong one cuts it
    /// off from the group while the LAN stays up).
    pub fn start_speaker_with_key(&mut self, i: usize, key: &str) -> Result<()> {
        self.spawn_speaker(i, ("FERROLB_GOSSIP_KEY", key.as_ref()))
    }

    /// Starts node `i`'s speaker with its gossip keys read from `file`
    /// (`--gossip-key-file`: re-read every few seconds, so rewriting it
    /// changes the keys without a restart).
    pub fn start_speaker_with_key_file(&mut self, i: usize, file: &std::path::Path) -> Result<()> {
        self.spawn_speaker(i, ("FERROLB_GOSSIP_KEY_FILE", file.as_os_str()))
    }

    /// Starts node `i`'s speaker with `key`, the environment variable that
    /// gives its gossip key.
    fn spawn_speaker(&mut self, i: usize, key: (&str, &std::ffi::OsStr)) -> Result<()> {
        let cluster = self.scenario.cluster;
        let kubeconfig = cluster.service_account_kubeconfig("ferrolb-system", "ferrolb-speaker")?;
        let node = &self.nodes[i];
        let speaker = binary("ferrolb-speaker")?;
        let mut command = match self.speaker_wrapper.split_first() {
            Some((wrapper, args)) => {
                let mut command = node.netns.command(wrapper);
                command.args(args).arg(speaker);
                command
            }
            None => node.netns.command(speaker),
        };
        command
            .env("KUBECONFIG", &kubeconfig)
            .env(key.0, key.1)
            .env("RUST_LOG", "info,kube=warn,ferrolb_speaker=debug")
            .args(["--node-name", &node.name])
            .args(["--namespace", &self.scenario.ns.name])
            .args(["--load-balancer-class", &self.scenario.ns.class])
            .arg("--ignore-unclassed")
            .arg(format!("--metrics-addr=127.0.0.1:{SPEAKER_METRICS_PORT}"))
            .arg(format!("--gossip-address={}", node.ip4))
            .args(&self.speaker_flags);
        let child = spawn_tied(command, &node.log)?;
        self.nodes[i].speaker = Some(child);
        Ok(())
    }

    /// Starts `command` (built with `self.nodes[i].netns.command(..)`, so it runs in node
    /// `i`'s namespace) as node `i`'s speaker, in its log: another project's speaker, for
    /// `cargo xtask bench compare`. [`L2Lab::kill_speaker`], [`L2Lab::stop_speaker`] and
    /// [`L2Lab::speaker_pid`] treat it as any speaker.
    pub fn start_speaker_command(
        &mut self,
        i: usize,
        command: std::process::Command,
    ) -> Result<()> {
        if self.nodes[i].speaker.is_some() {
            bail!("node {i} runs a speaker already");
        }
        let child = spawn_tied(command, &self.nodes[i].log)?;
        self.nodes[i].speaker = Some(child);
        Ok(())
    }

    /// SIGKILL of node `i`'s speaker: no goodbye.
    pub fn kill_speaker(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].speaker.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP of node `i`'s speaker: it freezes with its sockets open, so
    /// peers notice only through their timers. Undo with [`L2Lab::continue_speaker`].
    pub fn freeze_speaker(&self, i: usize) -> Result<()> {
        self.signal_speaker(i, libc::SIGSTOP)
    }

    /// SIGCONT of node `i`'s speaker.
    pub fn continue_speaker(&self, i: usize) -> Result<()> {
        self.signal_speaker(i, libc::SIGCONT)
    }

    fn signal_speaker(&self, i: usize, signal: libc::c_int) -> Result<()> {
        let child = self.nodes[i]
            .speaker
            .as_ref()
            .with_context(|| format!("speaker {i} is not running"))?;
        // `ip netns exec` execs the speaker, so the child's pid is the speaker's.
        if !crate::process::kill_pid(child.id(), signal) {
            bail!(
                "signal {signal} to speaker {i}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// SIGTERM, as the kubelet stops a pod, waiting for the exit.
    pub fn stop_speaker(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].speaker.take() {
            terminate(&mut child, Duration::from_secs(15));
        }
    }

    /// Drops node `i`'s gossip (UDP [`GOSSIP_PORT`], both ways) with nft
    /// inside its namespace: with all peers when `peers` is `None`, else
    /// with those nodes only. The LAN and the API stay up. Undo with
    /// [`L2Lab::unblock_gossip`] (the rules also go with the namespace).
    pub fn block_gossip(&self, i: usize, peers: Option<&[usize]>) -> Result<()> {
        let addresses: Option<Vec<Ipv4Addr>> =
            peers.map(|peers| peers.iter().map(|&p| self.nodes[p].ip4).collect());
        block_gossip(&self.nodes[i].netns, addresses.as_deref())
    }

    /// Lets node `i`'s gossip through again.
    pub fn unblock_gossip(&self, i: usize) -> Result<()> {
        unblock_gossip(&self.nodes[i].netns)
    }

    /// For `window`, asks again and again which MACs answer ARP for each of
    /// `ips` from the client (two requests each, answers collected for up to
    /// 2 s, so a second MAC answering shows). Returns every sample with the
    /// time it was taken, from the start.
    pub fn sample_arp_owners(&self, ips: &[Ipv4Addr], window: Duration) -> Result<Vec<ArpSample>> {
        let start = Instant::now();
        let mut samples = Vec::new();
        while start.elapsed() < window {
            for ip in ips {
                let at = start.elapsed();
                let macs = self.arping(*ip, "eth0", 2)?;
                samples.push(ArpSample { at, ip: *ip, macs });
            }
        }
        Ok(samples)
    }

    /// Node `i`'s value of metric `sample` (the whole sample name with its
    /// labels, e.g. `ferrolb_speaker_l2_conflicts_total{...}`), summed over
    /// the lines that start with it; 0 when absent.
    pub fn speaker_metric(&self, i: usize, sample: &str) -> Result<f64> {
        Ok(crate::metrics_text::sum_of(
            &self.speaker_http(i, "/metrics")?,
            sample,
        ))
    }

    /// Node `i` loses the API server: connections cut, new ones refused.
    pub fn pause_api(&self, i: usize) {
        self.nodes[i].forwarder.pause();
    }

    pub fn resume_api(&self, i: usize) {
        self.nodes[i].forwarder.resume();
    }

    /// Cuts node `i`'s `interface` (eth0: off the LAN, gossip included;
    /// eth1: off the second LAN): its link goes down, as a pulled cable.
    pub fn cut_link(&self, i: usize, interface: &str) -> Result<()> {
        self.nodes[i]
            .netns
            .ip(&["link", "set", interface, "down"])?;
        Ok(())
    }

    /// Undoes [`L2Lab::cut_link`]: the cable is plugged back in.
    pub fn restore_link(&self, i: usize, interface: &str) -> Result<()> {
        self.nodes[i].netns.ip(&["link", "set", interface, "up"])?;
        Ok(())
    }

    /// Writes the EndpointSlice of `service`: one ready endpoint on each of `nodes`.
    pub async fn endpoints(&self, service: &str, nodes: &[usize]) -> Result<()> {
        let at: Vec<(String, IpAddr)> = nodes
            .iter()
            .map(|&i| (self.nodes[i].name.clone(), IpAddr::V4(self.nodes[i].ip4)))
            .collect();
        self.endpoints_at(service, &at).await
    }

    /// Writes the EndpointSlice of `service`: one ready endpoint at each
    /// (Node name, address), on Nodes of the lab or not.
    pub async fn endpoints_at(&self, service: &str, at: &[(String, IpAddr)]) -> Result<()> {
        let endpoints: Vec<Value> = at
            .iter()
            .map(|(node, address)| {
                json!({
                    "addresses": [address.to_string()],
                    "nodeName": node,
                    "conditions": {"ready": true, "serving": true, "terminating": false},
                })
            })
            .collect();
        let api: Api<EndpointSlice> =
            Api::namespaced(self.scenario.client.clone(), &self.scenario.ns.name);
        let name = format!("{service}-lab");
        api.patch(
            &name,
            &PatchParams::apply("ferrolb-tests").force(),
            &Patch::Apply(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service}},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"port": 80, "protocol": "TCP"}],
            })),
        )
        .await?;
        Ok(())
    }

    /// A LoadBalancer Service of this lab's class, with `extra` merged in and
    /// a ready endpoint on every node, and waits for its `count` IPs.
    pub async fn service(&self, name: &str, extra: Value, count: usize) -> Result<Vec<IpAddr>> {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        self.endpoints(name, &all).await?;
        self.service_without_endpoints(name, extra, count).await
    }

    /// Like [`L2Lab::service`], with no endpoints at all.
    pub async fn service_without_endpoints(
        &self,
        name: &str,
        extra: Value,
        count: usize,
    ) -> Result<Vec<IpAddr>> {
        self.scenario.service(name, extra).await?;
        let ips = self.scenario.wait_ips(name, count).await?;
        ips.iter()
            .map(|ip| ip.parse().with_context(|| format!("bad ingress IP {ip}")))
            .collect()
    }

    /// MACs that answer `arping` for `ip` from the client on `interface`.
    pub fn arping(&self, ip: Ipv4Addr, interface: &str, count: u32) -> Result<BTreeSet<String>> {
        arping(&self.client, ip, interface, count)
    }

    /// MAC that answers a Neighbor Solicitation for `ip` (ndisc6 stops at the
    /// first answer; use a capture to see all of them).
    pub fn ndisc(&self, ip: Ipv6Addr, interface: &str) -> Result<BTreeSet<String>> {
        ndisc(&self.client, ip, interface)
    }

    /// Starts the client asking who has `ip` on its eth0 every `interval`, for
    /// at most `limit`, recording every ARP packet that claims the IP.
    pub fn arp_prober(
        &self,
        ip: Ipv4Addr,
        interval: Duration,
        limit: Duration,
    ) -> Result<crate::arp_probe::ArpProber> {
        self.arp_prober_on("eth0", ip, interval, limit)
    }

    /// [`L2Lab::arp_prober`] on the client's `interface`: eth0, or eth1 on
    /// the second LAN.
    pub fn arp_prober_on(
        &self,
        interface: &str,
        ip: Ipv4Addr,
        interval: Duration,
        limit: Duration,
    ) -> Result<crate::arp_probe::ArpProber> {
        let ours = if interface == "eth1" {
            self.client_ip4_second_lan()
        } else {
            self.client_ip4()
        };
        crate::arp_probe::ArpProber::start(&self.client, interface, ours, ip, interval, limit)
    }

    /// Index of the node whose MAC is `mac`.
    pub fn node_with_mac(&self, mac: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            n.mac.eq_ignore_ascii_case(mac)
                || n.mac2
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(mac))
        })
    }

    /// Waits until exactly one node answers ARP for `ip`, and returns it.
    pub async fn wait_arp_owner(&self, ip: Ipv4Addr) -> Result<usize> {
        wait_for(
            &format!("one node answering ARP for {ip}"),
            Duration::from_secs(30),
            || async {
                let macs = self.arping(ip, "eth0", 2).ok()?;
                (macs.len() == 1)
                    .then(|| macs.iter().next().and_then(|m| self.node_with_mac(m)))
                    .flatten()
            },
        )
        .await
    }

    /// Waits until exactly one node answers NDP for `ip`, and that node is not
    /// `dead`; returns it.
    pub async fn wait_ndp_owner(&self, ip: Ipv6Addr, dead: Option<usize>) -> Result<usize> {
        wait_for(
            &format!("one live node answering NDP for {ip}"),
            Duration::from_secs(15),
            || async {
                let macs = self.ndisc(ip, "eth0")?;
                match macs.iter().next().and_then(|mac| self.node_with_mac(mac)) {
                    Some(node) if macs.len() == 1 && Some(node) != dead => Ok(node),
                    _ => Err(anyhow::anyhow!("NDP answers from {macs:?}")),
                }
            },
        )
        .await
    }

    /// The pid of node `i`'s speaker, while it runs.
    pub fn speaker_pid(&self, i: usize) -> Option<u32> {
        self.nodes.get(i)?.speaker.as_ref().map(Child::id)
    }

    /// The client's IPv4 address on the LAN.
    pub fn client_ip4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 2)) + 32 * u32::from(self.index.0))
    }

    /// The client's IPv4 address on the second LAN.
    pub fn client_ip4_second_lan(&self) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 193 + 8 * self.index.0)
    }

    /// The client's IPv6 address on the LAN.
    pub fn client_ip6(&self) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, 0x5100, self.index.0.into(), 0, 0, 0, 2)
    }

    /// GETs a path of node `i`'s speaker metrics endpoint, from inside its namespace.
    pub fn speaker_http(&self, i: usize, path: &str) -> Result<String> {
        let path = path.to_string();
        in_netns(&self.nodes[i].netns, move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", SPEAKER_METRICS_PORT))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })
    }

    pub fn speaker_logs(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// The lan namespace (for captures on the bridge).
    pub fn lan(&self) -> &Netns {
        &self.lan
    }
}

impl Drop for L2Lab {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_speaker(i);
        }
        let mut delete = vec!["delete", "node", "--wait=false", "--ignore-not-found"];
        delete.extend(self.nodes.iter().map(|n| n.name.as_str()));
        let _ = self.scenario.cluster.kubectl_ok(&delete);
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("--- speaker log {} ---\n{}", node.name, tail(&node.log, 60));
            }
        }
    }
}

fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One look at who answers ARP for an IP: see [`L2Lab::sample_arp_owners`].
#[derive(Clone, Debug)]
pub struct ArpSample {
    /// When it was taken, from the start of the sampling.
    pub at: Duration,
    pub ip: Ipv4Addr,
    pub macs: BTreeSet<String>,
}

/// Every look at one IP in `samples` found exactly one MAC, except within
/// `settle` (plus the length of one look) of the first look that did not.
pub fn assert_one_mac_per_ip(samples: &[ArpSample], settle: Duration, what: &str) {
    let bad: Vec<&ArpSample> = samples.iter().filter(|s| s.macs.len() != 1).collect();
    let counts: BTreeSet<usize> = bad.iter().map(|s| s.macs.len()).collect();
    eprintln!(
        "{what}: {} looks, {} without exactly one MAC{}",
        samples.len(),
        bad.len(),
        bad.first()
            .map(|first| format!(
                " ({counts:?} MACs), from {:?} to {:?}",
                first.at,
                bad[bad.len() - 1].at
            ))
            .unwrap_or_default()
    );
    let Some(first) = bad.first() else { return };
    let look = Duration::from_millis(500);
    let late: Vec<&&ArpSample> = bad
        .iter()
        .filter(|s| s.at > first.at + settle + look)
        .collect();
    assert!(
        late.is_empty(),
        "{what}: more than {settle:?} of settling: {late:?}\nall looks: {samples:?}"
    );
}

/// The speakers' gossip port (the default; the lab does not change it).
pub const GOSSIP_PORT: u16 = 7946;
/// The nft table of [`block_gossip`].
const NFT_TABLE: &str = "ferrolb_test";

/// Drops the speakers' gossip (UDP [`GOSSIP_PORT`], both ways) with an nft
/// table of its own inside `netns`: with every peer when `peers` is `None`,
/// else with those addresses only. Everything else (the LAN, the API) stays
/// up. Undo with [`unblock_gossip`].
pub fn block_gossip(netns: &Netns, peers: Option<&[Ipv4Addr]>) -> Result<()> {
    let port = GOSSIP_PORT.to_string();
    nft(netns, &["add", "table", "inet", NFT_TABLE])?;
    for (chain, hook, direction) in [("in", "input", "saddr"), ("out", "output", "daddr")] {
        nft(
            netns,
            &[
                "add", "chain", "inet", NFT_TABLE, chain, "{", "type", "filter", "hook", hook,
                "priority", "0", ";", "}",
            ],
        )?;
        let addresses: Vec<String> = peers
            .unwrap_or_default()
            .iter()
            .map(Ipv4Addr::to_string)
            .collect();
        let set = format!("{{ {} }}", addresses.join(", "));
        let mut rule = vec!["add", "rule", "inet", NFT_TABLE, chain];
        if peers.is_some() {
            rule.extend(["ip", direction, set.as_str()]);
        }
        rule.extend(["udp", "dport", port.as_str(), "drop"]);
        nft(netns, &rule)?;
    }
    Ok(())
}

/// Removes the table of [`block_gossip`] from `netns`.
pub fn unblock_gossip(netns: &Netns) -> Result<()> {
    nft(netns, &["delete", "table", "inet", NFT_TABLE])
}

fn nft(netns: &Netns, args: &[&str]) -> Result<()> {
    let out = netns
        .command("nft")
        .args(args)
        .output()
        .context("running nft")?;
    if !out.status.success() {
        bail!(
            "nft {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Joins `netns`/`name` to bridge `bridge` of the lan namespace.
pub fn attach(lan: &Netns, bridge: &str, netns: &Netns, name: &str) -> Result<()> {
    let port = crate::netns::unique_name("p");
    // Interface names are at most 15 bytes.
    let port: String = port
        .chars()
        .rev()
        .take(15)
        .collect::<String>()
        .chars()
        .rev()
        .collect();
    veth(lan, &port, netns, name)?;
    lan.ip(&["link", "set", &port, "master", bridge])?;
    Ok(())
}

/// MACs that answer `arping` for `ip` from namespace `client` on `interface`.
pub fn arping(
    client: &Netns,
    ip: Ipv4Addr,
    interface: &str,
    count: u32,
) -> Result<BTreeSet<String>> {
    let out = client
        .command("arping")
        .args([
            "-c",
            &count.to_string(),
            "-w",
            "2",
            "-W",
            "0.2",
            "-i",
            interface,
        ])
        .arg(ip.to_string())
        .output()
        .context("running arping (is the arping package installed?)")?;
    // Exit status 1 means "no answer", but also some setup errors, which
    // are only told on stderr.
    if !matches!(out.status.code(), Some(0 | 1)) || out.stderr.starts_with(b"arping: ") {
        bail!(
            "arping {ip} on {interface} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(macs_in(&String::from_utf8_lossy(&out.stdout)))
}

/// MAC that answers a Neighbor Solicitation for `ip` (ndisc6 stops at the
/// first answer; use a capture to see all of them). No answer is an empty
/// set; ndisc6 failing in any other way is an error, so a broken probe never
/// reads as "nobody answers".
pub fn ndisc(client: &Netns, ip: Ipv6Addr, interface: &str) -> Result<BTreeSet<String>> {
    /// ndisc6's exit status when every solicitation timed out.
    const NO_RESPONSE: i32 = 2;
    let out = client
        .command("ndisc6")
        .args(["-n", "-r", "3", "-w", "500"])
        .arg(ip.to_string())
        .arg(interface)
        .output()
        .context("running ndisc6 (is the ndisc6 package installed?)")?;
    let macs = macs_in(&String::from_utf8_lossy(&out.stdout));
    match out.status.code() {
        Some(0) if !macs.is_empty() => Ok(macs),
        Some(NO_RESPONSE) => Ok(BTreeSet::new()),
        _ => bail!(
            "ndisc6 {ip} on {interface} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Every MAC address (aa:bb:cc:dd:ee:ff, either case) in `text`.
pub fn macs_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| {
            w.len() == 17
                && w.split(':').count() == 6
                && w.split(':')
                    .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A gratuitous ARP for `ip` in a line of a [`Capture`]: a request or a
/// broadcast reply naming `ip` as its own sender.
pub fn is_gratuitous_arp(line: &str, ip: Ipv4Addr) -> bool {
    line.contains(&format!("Request who-has {ip} tell {ip}"))
        || (line.contains("ff:ff:ff:ff:ff:ff") && line.contains(&format!("Reply {ip} is-at")))
}

/// A tcpdump capture running in a namespace, written to a text file.
pub struct Capture {
    child: Option<Child>,
    pub file: PathBuf,
}

impl Capture {
    /// Captures `filter` on `interface` of `netns`, with link-level headers
    /// and epoch timestamps, one line per packet.
    pub fn start(netns: &Netns, interface: &str, filter: &str) -> Result<Capture> {
        let file = std::env::temp_dir().join(format!(
            "{}-{interface}.cap.txt",
            crate::netns::unique_name("cap")
        ));
        let out = std::fs::File::create(&file)?;
        let child = netns
            .command("tcpdump")
            .args(["-i", interface, "-n", "-e", "-l", "-tt", "-U"])
            .arg(filter)
            .stdout(out)
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .context("starting tcpdump (is the tcpdump package installed?)")?;
        // tcpdump needs a moment before it captures.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Capture {
            child: Some(child),
            file,
        })
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }

    /// Stops the capture and returns its lines.
    pub fn stop(mut self) -> String {
        self.finish();
        self.text()
    }

    fn finish(&mut self) {
        if let Some(mut child) = self.child.take() {
            std::thread::sleep(Duration::from_millis(200));
            terminate(&mut child, Duration::from_secs(3));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.finish();
        let _ = std::fs::remove_file(&self.file);
    }
}
