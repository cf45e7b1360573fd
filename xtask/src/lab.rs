//! The lab: everything FerroLB needs, on this machine, with nothing
//! installed by hand. The control plane and controller keep running after
//! this command returns; `cargo xtask lab down` stops them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_tests::Cluster;
use ferrolb_tests::env::{apply_deploy, free_port};
use ferrolb_tests::process::spawn_detached;
use ferrolb_tests::realnodes::{RealCluster, RealClusterShape};
use ferrolb_tests::tools::{repo_root, target_dir};

use crate::lab_net;

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
    lab_net::down(&lab_dir());
    cluster_down()
}

pub fn up() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--bins",
            "-p",
            "ferrolb-controller",
            "-p",
            "ferrolb-speaker",
        ])
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        bail!("building the controller and speaker failed");
    }
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::NETWORK_PACKAGES)?;
    // A lab left running is replaced.
    down()?;
    let cluster = cluster_up()?;
    println!(
        "\n== installing deploy/ (namespace, CRDs, RBAC, Deployment, DaemonSet): kubectl apply --server-side -k deploy/"
    );
    print!("{}", apply_deploy(&cluster)?);

    println!(
        "\n== starting ferrolb-controller as ServiceAccount ferrolb-system/ferrolb-controller"
    );
    let kubeconfig = cluster.service_account_kubeconfig("ferrolb-system", "ferrolb-controller")?;
    let metrics_port = free_port()?;
    let mut controller = Command::new(target_dir().join("debug/ferrolb-controller"));
    controller
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "lab-controller")
        .args(["--namespace", "ferrolb-system"])
        .arg(format!("--metrics-addr=127.0.0.1:{metrics_port}"));
    let log = lab_dir().join("controller.log");
    let mut pids = vec![spawn_detached(controller, &log)?];

    println!(
        "\n== {} node namespaces on a LAN bridge, a ferrolb-speaker in each (ServiceAccount ferrolb-system/ferrolb-speaker), and a client",
        lab_net::NODES
    );
    let net = lab_net::up(&cluster, &lab_dir(), &mut pids);
    // Record the pids so `lab down` stops them with the cluster.
    let pid_file = lab_dir().join("pids");
    let mut all = std::fs::read_to_string(&pid_file).unwrap_or_default();
    for pid in &pids {
        all.push_str(&format!("{pid}\n"));
    }
    std::fs::write(&pid_file, all)?;
    let net = net?;

    println!("\n== applying the examples: pools, L2 and BGP advertisements, a BGP peer, Services");
    let examples = repo_root().join("deploy/examples");
    print!(
        "{}",
        cluster.kubectl_ok(&["apply", "-f", &examples.to_string_lossy()])?
    );

    for service in ["hello", "hello-bgp"] {
        wait_for_ip(&cluster, service, &log)?;
    }
    println!("\n$ kubectl get svc hello");
    print!(
        "{}",
        cluster
            .kubectl_ok(&["get", "svc", "hello"])
            .context("kubectl get svc")?
    );
    println!("\n$ kubectl -n ferrolb-system get ipaddresspools");
    print!(
        "{}",
        cluster.kubectl_ok(&["-n", "ferrolb-system", "get", "ipaddresspools"])?
    );

    let ipv4 = cluster.kubectl_ok(&[
        "get",
        "svc",
        "hello",
        "-o",
        "jsonpath={.status.loadBalancer.ingress[0].ip}",
    ])?;
    lab_net::show_arp(&net, ipv4.trim())?;
    println!("\n$ kubectl -n ferrolb-system get servicel2statuses");
    print!(
        "{}",
        cluster.kubectl_ok(&["-n", "ferrolb-system", "get", "servicel2statuses"])?
    );

    println!(
        "\n== BGP: BIRD 2 in {} ({}, AS 64500) peers with every node; Service hello-bgp (pool bgp-example, Cluster policy)",
        net.router,
        lab_net::ROUTER_IP
    );
    println!("\n$ kubectl get svc hello-bgp");
    print!("{}", cluster.kubectl_ok(&["get", "svc", "hello-bgp"])?);
    let bgp_ip: std::net::Ipv4Addr = cluster
        .kubectl_ok(&[
            "get",
            "svc",
            "hello-bgp",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[0].ip}",
        ])?
        .trim()
        .parse()
        .context("hello-bgp's IP")?;
    lab_net::show_bgp_route(&net, bgp_ip, Duration::from_secs(60))?;

    let kubectl = cluster.tools.kubectl();
    let kc = cluster.admin_kubeconfig();
    println!(
        "\nThe lab keeps running. Explore it:\n  export KUBECONFIG={kc}\n  birdc -s {bird} show protocols\n  alias kubectl={kubectl}\n  kubectl describe svc hello\n  kubectl -n ferrolb-system get ipaddresspools -o yaml\n  curl -s http://127.0.0.1:{metrics_port}/metrics | grep ferrolb_\n  less {log}\nStop it with: cargo xtask lab down",
        kc = kc.display(),
        kubectl = kubectl.display(),
        log = log.display(),
        bird = net.bird.socket.display(),
    );
    Ok(())
}

/// Waits up to 60 s for `service` to get an IP.
fn wait_for_ip(cluster: &Cluster, service: &str, log: &std::path::Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ips = cluster.kubectl_ok(&[
            "get",
            "svc",
            service,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ])?;
        if !ips.trim().is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the example Service {service} got no IP within 60 s; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
