//! The lab: everything FerroLB needs, on this machine, with nothing
//! installed by hand. A real cluster (control plane, three kubelet nodes, a
//! client, a BIRD router with a client behind it) keeps running after this
//! command returns, with FerroLB installed as pods; `cargo xtask lab down`
//! stops it and puts the host back as it was.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_tests::Cluster;
use ferrolb_tests::l2lab::{arping, ndisc};
use ferrolb_tests::realnodes::http_probe::wait_answering;
use ferrolb_tests::realnodes::{RealCluster, RealClusterShape, borrowed};
use ferrolb_tests::router::kernel_next_hops;
use ferrolb_tests::tools::{repo_root, target_dir};

fn lab_dir() -> PathBuf {
    target_dir().join("ferrolb-lab")
}

pub fn cluster_up() -> Result<Cluster> {
    let cluster = Cluster::start_detached(&lab_dir())?;
    println!("kube-apiserver: {}", cluster.server);
    println!("kubeconfig:     {}", cluster.admin_kubeconfig().display());
    println!("stop with:      cargo xtask cluster down");
    Ok(cluster)
}

/// `cargo xtask cluster up --nodes N`: a real-node cluster that outlives
/// this command.
pub fn real_cluster_up(nodes: usize) -> Result<RealCluster> {
    crate::image::run(None, None)?;
    let images = ferrolb_tests::realnodes::built_images()?;
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::NETWORK_PACKAGES)?;
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::REAL_NODE_PACKAGES)?;
    let cluster = RealCluster::start(&RealClusterShape {
        nodes,
        images,
        detached: true,
        router: true,
        second_lan: false,
    })?;
    println!("kube-apiserver: {}", cluster.api.server);
    println!(
        "kubeconfig:     export KUBECONFIG={}",
        cluster.api.admin_kubeconfig().display()
    );
    println!("kubectl:        {}", cluster.api.tools.kubectl().display());
    for node in &cluster.nodes {
        println!(
            "{}: {} {} (ip netns exec {} ...; logs in {})",
            node.name,
            node.ip4,
            node.ip6,
            node.netns,
            node.dir.display()
        );
    }
    println!("client:         ip netns exec {} curl ...", cluster.client);
    if let (Some(router), Some(outside)) = (&cluster.router, &cluster.outside_client) {
        println!(
            "router (BIRD):  ip netns exec {router} birdc -s {}",
            cluster.dir.join(format!("bird-{router}.ctl")).display()
        );
        println!("outside client: ip netns exec {outside} curl ...");
    }
    println!("stop with:      cargo xtask cluster down");
    Ok(cluster)
}

pub fn cluster_down() -> Result<()> {
    let real = ferrolb_tests::tools::target_dir().join("ferrolb-cluster");
    if RealCluster::teardown_dir(&real)? {
        println!(
            "real-node cluster stopped; the host is as it was; state in {} removed",
            real.display()
        );
    }
    if Cluster::stop_detached(&lab_dir())? {
        println!("stopped; state in {} removed", lab_dir().display());
    } else {
        println!("nothing runs from {}", lab_dir().display());
    }
    Ok(())
}

pub fn down() -> Result<()> {
    cluster_down()
}

/// The lab: a real-node cluster with FerroLB installed from `deploy/` as
/// pods, echo backends, the examples applied, and a client's requests
/// answered by pods through the LoadBalancer IPs.
pub fn up() -> Result<()> {
    // A lab left running is replaced.
    down()?;
    let cluster = real_cluster_up(NODES)?;

    println!("\n== installing FerroLB as pods: kubectl apply --server-side -k deploy/");
    cluster.install_ferrolb()?;
    print!(
        "{}",
        cluster
            .api
            .kubectl_ok(&["-n", "ferrolb-system", "get", "pods", "-o", "wide"])?
    );

    println!(
        "\n== the examples' backends: Deployments hello and hello-bgp ({ECHO_REPLICAS} echo pods each)"
    );
    cluster.apply(&[
        RealCluster::echo_deployment("hello", "default", ECHO_REPLICAS, None),
        RealCluster::echo_deployment("hello-bgp", "default", ECHO_REPLICAS, None),
    ])?;
    for app in ["hello", "hello-bgp"] {
        cluster.rollout(&format!("deployment/{app}"), "default")?;
    }

    println!(
        "\n== applying deploy/examples/: pools, L2 and BGP advertisements, a BGP peer, Services"
    );
    let examples = repo_root().join("deploy/examples");
    print!(
        "{}",
        cluster
            .api
            .kubectl_ok(&["apply", "--server-side", "-f", &examples.to_string_lossy()])?
    );
    let l2_ips = cluster.wait_ingress("hello", "default", 2)?;
    let bgp_ips = cluster.wait_ingress("hello-bgp", "default", 1)?;
    println!("\n$ kubectl get svc -o wide");
    print!("{}", cluster.api.kubectl_ok(&["get", "svc", "-o", "wide"])?);
    println!("\n$ kubectl get pods -o wide");
    print!(
        "{}",
        cluster.api.kubectl_ok(&["get", "pods", "-o", "wide"])?
    );
    println!("\n$ kubectl -n ferrolb-system get ipaddresspools");
    print!(
        "{}",
        cluster
            .api
            .kubectl_ok(&["-n", "ferrolb-system", "get", "ipaddresspools"])?
    );

    println!(
        "\n== L2: the client ({}) sends HTTP requests to Service hello's IPs",
        ferrolb_tests::realnodes::CLIENT_IP
    );
    for ip in &l2_ips {
        show_requests(&cluster.client, *ip)?;
        let owner = match ip {
            IpAddr::V4(v4) => arping(&cluster.client_netns(), *v4, "eth0", 2)?,
            IpAddr::V6(v6) => ndisc(&cluster.client_netns(), *v6, "eth0")?,
        };
        let nodes: Vec<String> = owner
            .iter()
            .map(|mac| match cluster.node_with_mac(mac) {
                Some(i) => format!("{mac} ({})", cluster.nodes[i].name),
                None => mac.clone(),
            })
            .collect();
        println!("  {ip} resolves (ARP/NDP) to {}", nodes.join(", "));
    }
    if l2_ips.iter().any(|ip| ip.is_ipv4()) {
        println!("\n$ kubectl -n ferrolb-system get servicel2statuses");
        print!(
            "{}",
            cluster
                .api
                .kubectl_ok(&["-n", "ferrolb-system", "get", "servicel2statuses"])?
        );
    }

    let bgp_ip = bgp_ips.first().copied().context("hello-bgp has no IP")?;
    let router = cluster.router.as_deref().context("the lab has a router")?;
    println!(
        "\n== BGP: BIRD 2 in {router} ({}, AS {}) peers with every node; Service hello-bgp",
        ferrolb_tests::realnodes::ROUTER_IP,
        ferrolb_tests::realnodes::ROUTER_ASN
    );
    let prefix = format!("{bgp_ip}/32");
    let deadline = Instant::now() + Duration::from_secs(60);
    let hops = loop {
        let hops = kernel_next_hops(&borrowed(router), &prefix)?;
        if hops.len() == cluster.nodes.len() || Instant::now() > deadline {
            break hops;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    println!("\n$ ip netns exec {router} ip route show {bgp_ip}");
    print!(
        "{}",
        ferrolb_tests::netns::run(Command::new("ip").args([
            "-n",
            router,
            "route",
            "show",
            &bgp_ip.to_string()
        ]))?
    );
    if hops.len() != cluster.nodes.len() {
        bail!(
            "the router's route to {bgp_ip} has next hops {hops:?}, not one per node; logs in {}",
            cluster.dir.display()
        );
    }
    let outside = cluster
        .outside_client
        .as_deref()
        .context("the lab has an outside client")?;
    println!(
        "\n== the client behind the router ({}) sends HTTP requests to {bgp_ip} over the ECMP route",
        ferrolb_tests::realnodes::OUTSIDE_CLIENT_IP
    );
    show_requests(outside, bgp_ip)?;

    println!(
        "\nThe lab keeps running. Explore it:\n  export KUBECONFIG={kc}\n  alias kubectl={kubectl}\n  kubectl describe svc hello\n  kubectl -n ferrolb-system logs ds/ferrolb-speaker\n  ip netns exec {client} curl -s http://{ip}/\nStop it with: cargo xtask lab down",
        kc = cluster.api.admin_kubeconfig().display(),
        kubectl = cluster.api.tools.kubectl().display(),
        client = cluster.client,
        ip = l2_ips.first().map(|ip| ip.to_string()).unwrap_or_default(),
    );
    Ok(())
}

/// Nodes of the lab.
const NODES: usize = 3;
const ECHO_REPLICAS: u32 = 3;

/// Six `curl`s of `ip` from namespace `netns`, shown as they print; fails if
/// any goes unanswered.
fn show_requests(netns: &str, ip: IpAddr) -> Result<()> {
    let url = match ip {
        IpAddr::V4(v4) => format!("http://{v4}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]/"),
    };
    // The first answer can take a moment after the IP is assigned.
    wait_answering(netns, ip, 1, Duration::from_secs(30))?;
    println!("\n$ ip netns exec {netns} curl -s {url}   (6 times)");
    for _ in 0..6 {
        let body = ferrolb_tests::netns::run(Command::new("ip").args([
            "netns",
            "exec",
            netns,
            "curl",
            "-sS",
            "--max-time",
            "2",
            &url,
        ]))?;
        print!("  {body}");
    }
    Ok(())
}
