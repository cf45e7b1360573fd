//! A real Kubernetes cluster on one machine: a control plane (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler) in a namespace of
//! its own, and nodes that each run their own containerd, kubelet and
//! kube-proxy inside a network namespace, all on one LAN bridge with a client
//! and, optionally, a BIRD router with a second client behind it.
//!
//! ```text
//!                       lan namespace: bridge br0 (198.51.100.0/24, 2001:db8:100::/64)
//!     /          |            |            |           |            \
//!   cp .2     client .3   router .1    node-0 .10  node-1 .11  node-2 .12 ...
//!   apiserver               |  eth1 203.0.113.1/25
//!                         outside client 203.0.113.2
//! ```
//!
//! With [`RealClusterShape::second_lan`], every node and the client also have
//! an `eth1` on a second bridge ([`second_lan`]).
//!
//! Address plan (documentation and benchmarking ranges only, see DESIGN.md):
//! pods of node `i` get 198.18.(i+1).0/24 and 2001:db8:18:(i+1)::/64, Service
//! ClusterIPs come from 198.19.0.0/16 and 2001:db8:19::/108. The harness
//! reaches the apiserver through a loopback forwarder on its own side.
//!
//! `../shared/REAL-NODES.md` lists the settings each piece needs here; the
//! comments below say which gotcha each one answers.

pub mod apps;
mod control_plane;
pub mod failover;
pub mod host;
pub mod http_probe;
pub mod metallb;
mod node;
pub mod node_loss;
mod pki;
pub mod second_lan;
pub mod site;
pub mod speakers;
mod workload;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::cluster::Cluster;
use crate::forward::Forwarder;
use crate::netns::{Netns, veth};
use crate::process::{spawn_detached, spawn_tied, terminate};
use crate::router::{Bird, Neighbor};
use crate::tools::Tools;

pub use host::HostState;
pub use node::RealNode;
pub use workload::{ECHO_IMAGE, Policy, echo_field};

/// Pod networks of all nodes (kube-proxy's cluster CIDR).
pub const CLUSTER_CIDR: &str = "198.18.0.0/16,2001:db8:18::/56";
/// ClusterIP ranges.
pub const SERVICE_CIDR: &str = "198.19.0.0/16,2001:db8:19::/108";
/// The `kubernetes` Service's ClusterIP (first of the range).
pub const KUBERNETES_SERVICE_IP: &str = "198.19.0.1";
pub const LAN_PREFIX4: &str = "198.51.100";
pub const LAN_PREFIX6: &str = "2001:db8:100:";
pub const CONTROL_PLANE_IP: &str = "198.51.100.2";
pub const CLIENT_IP: &str = "198.51.100.3";
pub const ROUTER_IP: &str = "198.51.100.1";
/// The network behind the router, with the outside client.
pub const OUTSIDE_ROUTER_IP: &str = "203.0.113.1";
pub const OUTSIDE_CLIENT_IP: &str = "203.0.113.2";
pub const APISERVER_PORT: u16 = 6443;

/// What to build.
#[derive(Clone, Debug)]
pub struct RealClusterShape {
    pub nodes: usize,
    /// OCI archives imported into every node's containerd (the pause image
    /// among them: nodes never pull from a registry).
    pub images: Vec<PathBuf>,
    /// Processes outlive this one (`cargo xtask cluster up`).
    pub detached: bool,
    /// A BIRD router on the LAN (AS [`ROUTER_ASN`], peering with every node
    /// as AS [`NODE_ASN`]) with a client behind it.
    pub router: bool,
    /// A second LAN: an `eth1` on every node and on the client, on a bridge
    /// of its own (see [`second_lan`]).
    pub second_lan: bool,
}

/// The router's AS and the nodes' AS, as in `deploy/examples/bgp.yaml`.
pub const ROUTER_ASN: u32 = 64500;
pub const NODE_ASN: u32 = 64512;

/// Starts processes tied to this process, or detached from it.
pub(crate) struct Launcher {
    detached: bool,
    children: Vec<Child>,
}

impl Launcher {
    /// Runs `program args` inside network namespace `netns` (with `nsenter`,
    /// so it shares the host's mount namespace as REAL-NODES.md requires),
    /// output to `log`; records the pid in `host`.
    fn spawn_in(
        &mut self,
        host: &mut HostState,
        netns: &str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<u32> {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg(program)
            .args(args);
        let pid = if self.detached {
            spawn_detached(command, log)?
        } else {
            let child = spawn_tied(command, log)?;
            let pid = child.id();
            self.children.push(child);
            pid
        };
        host.pids.push(pid);
        host.save()?;
        Ok(pid)
    }
}

/// A running real-node cluster.
pub struct RealCluster {
    /// The harness's view: admin kubeconfig, kubectl, clients.
    pub api: Cluster,
    pub dir: PathBuf,
    pub nodes: Vec<RealNode>,
    pub lan: String,
    pub control_plane: String,
    pub client: String,
    pub router: Option<String>,
    pub outside_client: Option<String>,
    pub bird: Option<Bird>,
    tools: Tools,
    pki: pki::Pki,
    tokens: control_plane::Tokens,
    /// What was changed and started, for teardown (and node restarts).
    runtime: std::sync::Mutex<(HostState, Launcher)>,
    _forwarder: Option<Forwarder>,
    torn_down: bool,
}

/// Writes `path`: a kubeconfig for token user `user` of the apiserver at
/// `server`, trusting the CA in `ca`.
pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    user: &str,
    token: &str,
) -> Result<()> {
    use base64::Engine as _;
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(ca)?);
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: ferrolb\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: ferrolb\n  context:\n    cluster: ferrolb\n    user: {user}\ncurrent-context: ferrolb\n"
        ),
    )?;
    Ok(())
}

fn new_token(who: &str) -> String {
    format!("{who}-{:032x}", rand::random::<u128>())
}

/// A new namespace on the LAN bridge as `eth0`, with `.last` in both families.
fn join_lan(lan: &Netns, role: &str, last: u8) -> Result<Netns> {
    let netns = Netns::create(role)?;
    let port = format!("{role}{last}");
    veth(lan, &port, &netns, "eth0")?;
    lan.ip(&["link", "set", &port, "master", "br0"])?;
    netns.ip(&[
        "addr",
        "add",
        &format!("{LAN_PREFIX4}.{last}/24"),
        "dev",
        "eth0",
    ])?;
    netns.ip(&[
        "addr",
        "add",
        &format!("{LAN_PREFIX6}:{last:x}/64"),
        "dev",
        "eth0",
    ])?;
    Ok(netns)
}

/// The image archives `cargo xtask image` wrote (listed in
/// `target/images/images.json`): the pause image, the echo backend, and
/// FerroLB's controller and speaker.
pub fn built_images() -> Result<Vec<PathBuf>> {
    images_listed_in(&crate::tools::target_dir().join("images/images.json"))
}

/// The archives an `images.json` written by `cargo xtask image` lists.
pub fn images_listed_in(index: &Path) -> Result<Vec<PathBuf>> {
    let bytes = std::fs::read(index).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; build the images first with `cargo xtask image`",
            index.display()
        )
    })?;
    let records: Vec<serde_json::Value> = serde_json::from_slice(&bytes)?;
    let archives: Vec<PathBuf> = records
        .iter()
        .filter_map(|r| r.get("archive").and_then(|a| a.as_str()))
        .map(PathBuf::from)
        .collect();
    if archives.is_empty() {
        bail!("{} lists no image", index.display());
    }
    Ok(archives)
}

/// A handle on a namespace owned elsewhere: dropping it deletes nothing.
pub fn borrowed(name: &str) -> std::mem::ManuallyDrop<Netns> {
    std::mem::ManuallyDrop::new(Netns {
        name: name.to_string(),
    })
}

/// The network behind the router: the router's eth1 and a client, in
/// 203.0.113.0/25 and 2001:db8:113::/64, the router forwarding between them.
fn outside_network(router: &str) -> Result<Netns> {
    let router = borrowed(router);
    let outside = Netns::create("out")?;
    veth(&router, "eth1", &outside, "eth0")?;
    router.ip(&[
        "addr",
        "add",
        &format!("{OUTSIDE_ROUTER_IP}/25"),
        "dev",
        "eth1",
    ])?;
    router.ip(&["addr", "add", "2001:db8:113::1/64", "dev", "eth1"])?;
    outside.ip(&[
        "addr",
        "add",
        &format!("{OUTSIDE_CLIENT_IP}/25"),
        "dev",
        "eth0",
    ])?;
    outside.ip(&["addr", "add", "2001:db8:113::2/64", "dev", "eth0"])?;
    outside.ip(&["route", "add", "default", "via", OUTSIDE_ROUTER_IP])?;
    outside.ip(&["-6", "route", "add", "default", "via", "2001:db8:113::1"])?;
    for key in [
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        // Hash on ports too, so one client's connections spread over the
        // ECMP next hops.
        "net.ipv4.fib_multipath_hash_policy=1",
        "net.ipv6.fib_multipath_hash_policy=1",
    ] {
        router.exec_ok(&["sysctl", "-qw", key])?;
    }
    Ok(outside)
}

impl RealCluster {
    /// Builds the network, the control plane and the nodes, and waits until
    /// every node is Ready. Progress goes to stderr.
    pub fn start(shape: &RealClusterShape) -> Result<RealCluster> {
        let started = Instant::now();
        let tools = Tools::ensure()?;
        let dir = if shape.detached {
            let dir = crate::tools::target_dir().join("ferrolb-cluster");
            if dir.join("host-state.json").exists() {
                bail!(
                    "a cluster already runs from {} (stop it with `cargo xtask cluster down`)",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir)?;
            dir
        } else {
            // Under /var/tmp, not /tmp: containerd's snapshots need a real
            // file system for overlayfs, and /tmp may be a tmpfs.
            std::fs::create_dir_all("/var/tmp/ferrolb")?;
            tempfile::Builder::new()
                .prefix("realnodes-")
                .tempdir_in("/var/tmp/ferrolb")?
                .keep()
        };
        let cluster = Self::bring_up(shape, &tools, dir.clone(), started);
        if cluster.is_err() {
            undo_failed_bring_up(&dir);
        }
        cluster
    }

    /// Everything [`RealCluster::start`] builds, in `dir`. Each change is
    /// recorded in `dir`'s [`HostState`] as it is made, so a failure part
    /// way can be undone from that record.
    fn bring_up(
        shape: &RealClusterShape,
        tools: &Tools,
        dir: PathBuf,
        started: Instant,
    ) -> Result<RealCluster> {
        let tools = tools.clone();
        let mut host = HostState::new(&dir);
        host.save()?;
        let mut launcher = Launcher {
            detached: shape.detached,
            children: Vec::new(),
        };
        let say = |what: &str| {
            eprintln!(
                "[realnodes {:>5.1}s] {what}",
                started.elapsed().as_secs_f64()
            )
        };

        // The LAN.
        let lan = Netns::create("rlan")?;
        host.netns.push(lan.name.clone());
        lan.ip(&["link", "add", "br0", "type", "bridge"])?;
        lan.ip(&["link", "set", "br0", "up"])?;
        let mut owned = Vec::new();
        let mut on_lan = |role: &str, last: u8| -> Result<String> {
            let netns = join_lan(&lan, role, last)?;
            host.netns.push(netns.name.clone());
            host.save()?;
            let name = netns.name.clone();
            owned.push(netns);
            Ok(name)
        };
        let control_plane = on_lan("cp", 2)?;
        let client = on_lan("cl", 3)?;
        let mut node_netns = Vec::new();
        for i in 0..shape.nodes {
            node_netns.push(on_lan(&format!("n{i}x"), 10 + i as u8)?);
        }
        let router = if shape.router {
            Some(on_lan("rt", 1)?)
        } else {
            None
        };
        if shape.second_lan {
            second_lan::build(&lan, &client, &node_netns)?;
        }
        owned.push(lan);
        let outside_client = match &router {
            Some(router) => {
                let outside = outside_network(router)?;
                host.netns.push(outside.name.clone());
                host.save()?;
                let name = outside.name.clone();
                owned.push(outside);
                Some(name)
            }
            None => None,
        };
        say("network ready");

        // The control plane, and the harness's way in.
        let tokens = control_plane::Tokens::new(shape.nodes);
        let pki = pki::Pki::create(
            &dir.join("pki"),
            &[
                "127.0.0.1".into(),
                CONTROL_PLANE_IP.into(),
                KUBERNETES_SERVICE_IP.into(),
                format!("{LAN_PREFIX6}:2"),
            ],
        )?;
        control_plane::start(
            &tools,
            &dir,
            &pki,
            &tokens,
            &control_plane,
            &mut host,
            &mut launcher,
        )?;
        let target: std::net::SocketAddr =
            format!("{CONTROL_PLANE_IP}:{APISERVER_PORT}").parse()?;
        let (server, forwarder) = if shape.detached {
            let port = crate::env::free_port()?;
            let xtask = std::env::current_exe()?;
            let log = dir.join("forwarder.log");
            let mut command = Command::new(xtask);
            command.args([
                "forward",
                "--reverse",
                "--netns",
                &control_plane,
                "--port",
                &port.to_string(),
                "--target",
                &target.to_string(),
            ]);
            host.pids.push(spawn_detached(command, &log)?);
            host.save()?;
            (format!("https://127.0.0.1:{port}"), None)
        } else {
            let cp = Netns {
                name: control_plane.clone(),
            };
            let forwarder = Forwarder::start_reverse(0, &cp, target);
            cp.persist();
            let forwarder = forwarder?;
            (
                format!("https://127.0.0.1:{}", forwarder.port),
                Some(forwarder),
            )
        };
        let api = Cluster::attach(tools.clone(), &dir, &server, &tokens.admin)?;
        api.wait_ready(Duration::from_secs(120))?;
        say("apiserver ready");
        control_plane::start_managers(
            &tools,
            &dir,
            &pki,
            &tokens,
            &control_plane,
            &mut host,
            &mut launcher,
        )?;
        say("controller manager and scheduler started");

        // The nodes.
        host.remember_sysctls(host::KUBELET_SYSCTLS)?;
        for path in [
            "/var/log/containers",
            "/var/lib/kubelet",
            "/usr/libexec/kubernetes",
        ] {
            host.remember_new_dir(Path::new(path))?;
        }
        let mut nodes = Vec::new();
        for (i, netns) in node_netns.iter().enumerate() {
            nodes.push(RealNode::plan(i, netns, &dir, shape.nodes));
        }
        for node in &nodes {
            node.prepare_network(&nodes, router.is_some())?;
            node.start_containerd(&mut host, &mut launcher)?;
        }
        for node in &nodes {
            node.wait_containerd()?;
            for image in &shape.images {
                node.import_image(image)?;
            }
        }
        say("containerd up on every node, images imported");
        let mut kubelets = Vec::new();
        for node in &nodes {
            kubelets.push(node.start_kubelet(&tools, &pki, &tokens, &mut host, &mut launcher)?);
            node.start_kube_proxy(&tools, &pki, &tokens, &mut host, &mut launcher)?;
        }
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut restarts = vec![0; nodes.len()];
        while let Err(not_ready) = wait_nodes_ready(&api, &names, Duration::from_secs(5)) {
            if Instant::now() >= deadline {
                return Err(not_ready);
            }
            // kubelet v1.34.4 can die on start of a data race in its DRA
            // plugin manager ("concurrent map iteration and map write",
            // seen once in CI). That is upstream's bug, not the node's:
            // start it again, a bounded number of times.
            for (i, node) in nodes.iter().enumerate() {
                if process_is_running(kubelets[i]) {
                    continue;
                }
                if restarts[i] == KUBELET_RESTARTS {
                    bail!(
                        "the kubelet of {} exited {} times during bring-up; see {}",
                        node.name,
                        restarts[i] + 1,
                        node.dir.join("kubelet.log").display()
                    );
                }
                restarts[i] += 1;
                say(&format!(
                    "the kubelet of {} exited: starting it again",
                    node.name
                ));
                kubelets[i] =
                    node.start_kubelet(&tools, &pki, &tokens, &mut host, &mut launcher)?;
            }
        }
        say("every node Ready");

        let bird = match &router {
            Some(router) => {
                let neighbors: Vec<Neighbor> = nodes
                    .iter()
                    .map(|n| Neighbor {
                        name: n.name.replace('-', "_"),
                        address: IpAddr::V4(n.ip4),
                        asn: NODE_ASN,
                        password: None,
                    })
                    .collect();
                let handle = borrowed(router);
                if shape.detached {
                    let (bird, pid) =
                        Bird::start_detached(&handle, &dir, ROUTER_ASN, ROUTER_IP, &neighbors)?;
                    host.pids.push(pid);
                    host.save()?;
                    Some(bird)
                } else {
                    Some(Bird::start(
                        &handle, &dir, ROUTER_ASN, ROUTER_IP, &neighbors,
                    )?)
                }
            }
            None => None,
        };
        if bird.is_some() {
            say("BIRD started on the router");
        }

        // Namespaces are torn down through `host`, by name.
        for netns in owned {
            netns.persist();
        }
        Ok(RealCluster {
            api,
            dir,
            nodes,
            lan: host.netns[0].clone(),
            tools,
            pki,
            tokens,
            control_plane,
            client,
            router,
            outside_client,
            bird,
            runtime: std::sync::Mutex::new((host, launcher)),
            _forwarder: forwarder,
            torn_down: false,
        })
    }

    /// Stops everything and puts the host back as it was; reports what could
    /// not be undone.
    pub fn teardown(&mut self) -> Result<()> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        self.bird = None;
        let (host, launcher) = match self.runtime.get_mut() {
            Ok(runtime) => runtime,
            Err(poisoned) => poisoned.into_inner(),
        };
        for child in &mut launcher.children {
            terminate(child, Duration::from_millis(200));
        }
        let problems = host.teardown();
        if problems.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
            Ok(())
        } else {
            bail!("teardown left: {}", problems.join("; "))
        }
    }

    /// Tears down a detached cluster from its recorded state.
    pub fn teardown_dir(dir: &Path) -> Result<bool> {
        let Some(host) = HostState::load(dir)? else {
            return Ok(false);
        };
        let problems = host.teardown();
        if !problems.is_empty() {
            bail!("teardown left: {}", problems.join("; "));
        }
        std::fs::remove_dir_all(dir)?;
        Ok(true)
    }

    /// A node by index.
    pub fn node(&self, i: usize) -> &RealNode {
        &self.nodes[i]
    }

    /// Index of the node whose eth0 has `mac`.
    pub fn node_with_mac(&self, mac: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.mac().is_ok_and(|m| m.eq_ignore_ascii_case(mac)))
    }

    /// The LAN client's namespace.
    pub fn client_netns(&self) -> std::mem::ManuallyDrop<Netns> {
        borrowed(&self.client)
    }

    /// Node `i` dies: its link goes down, then its kubelet, kube-proxy,
    /// containerd and every process in it (pods, hostNetwork speakers) are
    /// killed, as when a machine loses power.
    pub fn kill_node(&self, i: usize) -> Result<()> {
        self.cut_link(i)?;
        self.nodes[i].kill_everything()
    }

    /// Node `i`'s LAN link goes down (a pulled cable); its processes keep
    /// running, cut off from the LAN and the API server.
    pub fn cut_link(&self, i: usize) -> Result<()> {
        self.nodes[i].ip(&["link", "set", "eth0", "down"])?;
        Ok(())
    }

    /// Undoes [`RealCluster::cut_link`]: link up, and the static routes the
    /// link took along with it back (idempotent).
    pub fn restore_link(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        node.ip(&["link", "set", "eth0", "up"])?;
        node.prepare_network(&self.nodes, self.router.is_some())
    }

    /// Brings node `i` back after [`RealCluster::kill_node`]: link up, and its
    /// containerd, kubelet and kube-proxy started again (the kubelet then
    /// restarts its pods).
    pub fn restart_node(&self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        self.restore_link(i)?;
        let mut runtime = self
            .runtime
            .lock()
            .map_err(|_| anyhow::anyhow!("runtime lock poisoned"))?;
        let (host, launcher) = &mut *runtime;
        node.start_containerd(host, launcher)?;
        node.wait_containerd()?;
        node.start_kubelet(&self.tools, &self.pki, &self.tokens, host, launcher)?;
        node.start_kube_proxy(&self.tools, &self.pki, &self.tokens, host, launcher)?;
        Ok(())
    }

    pub fn lan_ip4(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, last)
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        let detached = match self.runtime.get_mut() {
            Ok((_, launcher)) => launcher.detached,
            Err(poisoned) => poisoned.into_inner().1.detached,
        };
        if detached {
            return;
        }
        if let Err(e) = self.teardown() {
            eprintln!("real-node cluster teardown: {e:#}");
        }
    }
}

/// How many times bring-up starts again a node's kubelet that exited.
const KUBELET_RESTARTS: usize = 2;

/// Whether `pid` is a process that has not exited (a zombie has).
fn process_is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // itself hold spaces or parentheses.
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// Undoes what a failed [`RealCluster::bring_up`] recorded: processes,
/// mounts, cgroups, namespaces and sysctls. The directory stays, with the
/// logs, for the reader of the error; its record goes, so a detached
/// cluster's directory is free again.
fn undo_failed_bring_up(dir: &Path) {
    match HostState::load(dir) {
        Ok(Some(host)) => {
            for problem in host.teardown() {
                eprintln!("undoing a failed bring-up: {problem}");
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("undoing a failed bring-up: reading its record: {e:#}"),
    }
    let _ = std::fs::remove_file(dir.join("host-state.json"));
    eprintln!("the failed cluster's logs are in {}", dir.display());
}

/// Polls `probe` every `every` until it gives a value, for at most `within`;
/// the timeout names `what` and the probe's last error.
pub fn until<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let last = match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => String::from("not yet"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?} (last: {last})");
        }
        std::thread::sleep(every);
    }
}

/// Waits until every node in `names` reports Ready.
pub fn wait_nodes_ready(api: &Cluster, names: &[&str], timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = api.kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        match out {
            Ok(out) => {
                let ready = names
                    .iter()
                    .filter(|n| out.lines().any(|l| l == format!("{n}=True")))
                    .count();
                if ready == names.len() {
                    return Ok(());
                }
                last = out;
            }
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("nodes not Ready after {timeout:?}: {last}")
}

#[cfg(test)]
mod tests {
    use super::process_is_running;

    #[test]
    fn a_running_process_is_running_and_an_exited_one_is_not() {
        assert!(process_is_running(std::process::id()));
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not reaped yet: a zombie, which has exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_is_running(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!process_is_running(pid), "a zombie counts as exited");
        child.wait().expect("reap");
        assert!(!process_is_running(pid), "a reaped process is gone");
    }
}
