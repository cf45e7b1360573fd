//! The lab's network: three node namespaces, a client and a router on a LAN
//! bridge, a speaker in every node namespace, the client resolving a Service
//! IP by ARP while tcpdump watches, and BIRD 2 in the router installing the
//! BGP Service's route with one next hop per node.
//!
//! The namespaces have fixed names (`flblab-*`) and outlive this command,
//! like the control plane; `cargo xtask lab down` removes them. Addresses
//! are documentation ranges: the LAN is 198.51.100.0/24 and 2001:db8:1::/64
//! (router .1, client .2, nodes .10-.12); the BGP pool is 203.0.113.240/28 (the
//! apiserver hands out ClusterIPs from 203.0.113.0/25).

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferrolb_tests::Cluster;
use ferrolb_tests::netns::{Netns, run, veth};
use ferrolb_tests::process::spawn_detached;
use ferrolb_tests::router::{Bird, Neighbor, kernel_next_hops};
use ferrolb_tests::tools::target_dir;

pub const NODES: usize = 3;
const NETNS_FILE: &str = "netns";
/// The router on the LAN, and the AS numbers of deploy/examples/bgp.yaml.
pub const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const ROUTER_ASN: u32 = 64500;
const NODE_ASN: u32 = 64512;

pub fn node_name(i: usize) -> String {
    format!("lab-node-{i}")
}

pub struct LabNet {
    pub client: String,
    /// (Kubernetes node name, namespace, MAC of eth0).
    pub nodes: Vec<(String, String, String)>,
    /// The router's namespace, and BIRD in it (which outlives this handle).
    pub router: String,
    pub bird: Bird,
}

/// Builds the network, the Node objects, a forwarder and a speaker per node.
/// Pids go to `pids`, namespace names to the lab directory.
pub fn up(cluster: &Cluster, dir: &Path, pids: &mut Vec<u32>) -> Result<LabNet> {
    let mut names = Vec::new();
    let lan = Netns::create_named("flblab-lan")?;
    lan.ip(&["link", "add", "br0", "type", "bridge"])?;
    lan.ip(&["link", "set", "br0", "up"])?;
    let client = Netns::create_named("flblab-client")?;
    join(&lan, &client, "flblab-pc")?;
    client.ip(&["addr", "add", "198.51.100.2/24", "dev", "eth0"])?;
    client.ip(&["addr", "add", "2001:db8:1::2/64", "dev", "eth0"])?;

    let port = cluster
        .server
        .rsplit(':')
        .next()
        .context("apiserver port")?
        .to_string();
    let kubeconfig = cluster.service_account_kubeconfig("ferrolb-system", "ferrolb-speaker")?;
    let gossip_key = format!("lab-{:016x}", rand::random::<u64>());
    let me = std::env::current_exe()?;
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let netns = Netns::create_named(&format!("flblab-n{i}"))?;
        join(&lan, &netns, &format!("flblab-p{i}"))?;
        let ip4 = Ipv4Addr::new(198, 51, 100, 10 + i as u8);
        netns.ip(&["addr", "add", &format!("{ip4}/24"), "dev", "eth0"])?;
        netns.ip(&[
            "addr",
            "add",
            &format!("2001:db8:1::1{i}/64"),
            "dev",
            "eth0",
        ])?;
        let name = node_name(i);
        create_node(cluster, &name, ip4)?;

        let mut forward = Command::new(&me);
        forward.args(["forward", "--netns", &netns.name, "--port", &port]);
        pids.push(spawn_detached(
            forward,
            &dir.join(format!("forward-{i}.log")),
        )?);

        let mut speaker = netns.command(target_dir().join("debug/ferrolb-speaker"));
        speaker
            .env("KUBECONFIG", &kubeconfig)
            .env("FERROLB_GOSSIP_KEY", &gossip_key)
            .args(["--node-name", &name, "--namespace", "ferrolb-system"])
            .arg("--metrics-addr=127.0.0.1:7473")
            .arg(format!("--gossip-address={ip4}"));
        pids.push(spawn_detached(
            speaker,
            &dir.join(format!("speaker-{i}.log")),
        )?);
        nodes.push((name, netns.name.clone(), netns.mac("eth0")?));
        names.push(netns.persist());
    }
    endpoints_on_every_node(cluster, "hello")?;
    endpoints_on_every_node(cluster, "hello-bgp")?;
    let (router, bird) = start_router(&lan, dir, pids)?;
    names.push(router.clone());
    names.push(client.name.clone());
    names.push(lan.persist());
    let client = client.persist();
    std::fs::write(dir.join(NETNS_FILE), names.join("\n"))?;
    Ok(LabNet {
        client,
        nodes,
        router,
        bird,
    })
}

/// The router namespace on the LAN, with BIRD 2 peering with every node
/// (kernel export with `merge paths`). Returns the namespace name and BIRD.
fn start_router(lan: &Netns, dir: &Path, pids: &mut Vec<u32>) -> Result<(String, Bird)> {
    let router = Netns::create_named("flblab-router")?;
    join(lan, &router, "flblab-pr")?;
    router.ip(&["addr", "add", &format!("{ROUTER_IP}/24"), "dev", "eth0"])?;
    router.ip(&["addr", "add", "2001:db8:1::1/64", "dev", "eth0"])?;
    let neighbors: Vec<Neighbor> = (0..NODES)
        .map(|i| Neighbor {
            name: format!("node{i}"),
            address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 + i as u8)),
            asn: NODE_ASN,
            password: None,
        })
        .collect();
    let (bird, pid) =
        Bird::start_detached(&router, dir, ROUTER_ASN, &ROUTER_IP.to_string(), &neighbors)?;
    pids.push(pid);
    Ok((router.persist(), bird))
}

/// Waits up to `timeout` until the router's kernel route to `ip` has one
/// next hop per node, then prints BIRD's and the kernel's view of it.
pub fn show_bgp_route(net: &LabNet, ip: Ipv4Addr, timeout: Duration) -> Result<()> {
    let mut expected: Vec<IpAddr> = (0..NODES)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10 + i as u8)))
        .collect();
    expected.sort();
    let prefix = format!("{ip}/32");
    // A handle on the lab's namespace, which must outlive it.
    let router = Netns {
        name: net.router.clone(),
    };
    let deadline = std::time::Instant::now() + timeout;
    let mut hops = Vec::new();
    while std::time::Instant::now() < deadline {
        hops = kernel_next_hops(&router, &prefix).unwrap_or_default();
        if hops == expected {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let route = router.ip(&["route", "show", &ip.to_string()]);
    router.persist();
    if hops != expected {
        let protocols = net.bird.birdc(&["show", "protocols"]).unwrap_or_default();
        bail!(
            "the router's route to {prefix} has next hops {hops:?}, not {expected:?}, after {timeout:?}; BIRD:\n{protocols}"
        );
    }
    println!(
        "\n$ birdc -s {} show route for {ip}",
        net.bird.socket.display()
    );
    print!(
        "{}",
        net.bird.birdc(&["show", "route", "for", &ip.to_string()])?
    );
    println!("\n$ ip -n {} route show {ip}", net.router);
    print!("{}", route?);
    Ok(())
}

/// Removes the lab's namespaces (and with them every interface).
pub fn down(dir: &Path) {
    if let Ok(names) = std::fs::read_to_string(dir.join(NETNS_FILE)) {
        for name in names.lines().filter(|n| !n.is_empty()) {
            let _ = run(Command::new("ip").args(["netns", "del", name]));
        }
    }
}

fn join(lan: &Netns, netns: &Netns, port: &str) -> Result<()> {
    veth(lan, port, netns, "eth0")?;
    lan.ip(&["link", "set", port, "master", "br0"])?;
    Ok(())
}

/// A Ready Node with its InternalIP, as a kubelet would register it.
fn create_node(cluster: &Cluster, name: &str, ip: Ipv4Addr) -> Result<()> {
    let node = serde_json::json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    });
    let file = std::env::temp_dir().join(format!("{name}.json"));
    std::fs::write(&file, node.to_string())?;
    cluster.kubectl_ok(&["apply", "--server-side", "-f", &file.to_string_lossy()])?;
    let _ = std::fs::remove_file(&file);
    let status = serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": ip.to_string()}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "registered by cargo xtask lab",
            "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }});
    cluster.kubectl_ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ])?;
    Ok(())
}

/// There is no kubelet or EndpointSlice controller: the lab says that the
/// example Service `service` has a ready endpoint on every node, so the
/// speakers may announce it (no endpoints, no announcement).
fn endpoints_on_every_node(cluster: &Cluster, service: &str) -> Result<()> {
    let endpoints: Vec<serde_json::Value> = (0..NODES)
        .map(|i| {
            serde_json::json!({
                "addresses": [format!("198.51.100.{}", 10 + i)],
                "nodeName": node_name(i),
                "conditions": {"ready": true},
            })
        })
        .collect();
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-lab"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    });
    let file = std::env::temp_dir().join(format!("ferrolb-lab-{service}-endpoints.json"));
    std::fs::write(&file, slice.to_string())?;
    let applied = cluster.kubectl_ok(&["apply", "--server-side", "-f", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    applied?;
    Ok(())
}

/// From the client: a capture running while `arping` resolves `ip`; prints both.
pub fn show_arp(net: &LabNet, ip: &str) -> Result<()> {
    let capture = std::env::temp_dir().join("ferrolb-lab-arp.txt");
    let out = std::fs::File::create(&capture)?;
    let mut tcpdump = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "tcpdump",
            "-i",
            "eth0",
            "-n",
            "-e",
            "-l",
            "-U",
            "arp",
        ])
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting tcpdump")?;
    std::thread::sleep(Duration::from_millis(500));
    let mut answered = String::new();
    for _ in 0..20 {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &net.client,
                "arping",
                "-c",
                "2",
                "-w",
                "2",
                "-i",
                "eth0",
                ip,
            ])
            .output()?;
        answered = String::from_utf8_lossy(&output.stdout).into_owned();
        if answered.contains("bytes from") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = tcpdump.kill();
    let _ = tcpdump.wait();
    println!("\n$ ip netns exec {} arping -c 2 -i eth0 {ip}", net.client);
    print!("{answered}");
    if !answered.contains("bytes from") {
        anyhow::bail!(
            "no node answered ARP for {ip} within 20 attempts; see the speaker logs in the lab directory"
        );
    }
    println!(
        "\n$ ip netns exec {} tcpdump -i eth0 -n -e arp   (during the arping)",
        net.client
    );
    print!("{}", std::fs::read_to_string(&capture).unwrap_or_default());
    let _ = std::fs::remove_file(&capture);
    for (name, netns, mac) in &net.nodes {
        if answered
            .to_ascii_lowercase()
            .contains(&mac.to_ascii_lowercase())
        {
            println!("\n{ip} is announced by {name} (namespace {netns}, eth0 {mac})");
        }
    }
    Ok(())
}
