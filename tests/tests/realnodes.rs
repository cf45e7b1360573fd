//! Real kubelet nodes (each with containerd, kubelet and kube-proxy), FerroLB
//! installed from `deploy/` as pods, and a client's HTTP requests reaching
//! pods through FerroLB's LoadBalancer IPs: the level a user trusts.
//!
//! Every test takes the site exclusively: several of them kill speakers and
//! nodes on purpose.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_tests::l2lab::{Capture, arping, macs_in, ndisc};
use ferrolb_tests::realnodes::http_probe::{ProbeLoop, get_from, outage};
use ferrolb_tests::realnodes::site::{BGP_POOL, L2_POOL, exclusive, shared_site};
use ferrolb_tests::realnodes::{
    CLIENT_IP, OUTSIDE_CLIENT_IP, Policy, RealCluster, borrowed, echo_field,
};
use ferrolb_tests::router::kernel_next_hops;
use serde_json::json;

const NS: &str = "default";

/// Deploys the echo backend `name` and its LoadBalancer Service, waits until
/// the pods are Ready and the Service has `ips` IPs, and returns them.
fn echo_app(
    site: &RealCluster,
    name: &str,
    replicas: u32,
    node: Option<&str>,
    pool: &str,
    policy: Policy,
    single_stack: bool,
) -> Result<Vec<IpAddr>> {
    let mut deployment = RealCluster::echo_deployment(name, NS, replicas, node);
    // One pod per node when there are as many pods as nodes.
    deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] =
        json!("DoNotSchedule");
    let mut service = RealCluster::echo_service(name, NS, pool, policy);
    if single_stack {
        service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        service["spec"]["ipFamilies"] = json!(["IPv4"]);
    }
    site.apply(&[deployment, service])?;
    site.rollout(&format!("deployment/{name}"), NS)?;
    site.wait_ingress(name, NS, if single_stack { 1 } else { 2 })
}

fn delete_app(site: &RealCluster, name: &str) {
    let _ = site.api.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "service,deployment",
        name,
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// GETs `ip` port 80 from `netns` until one answer comes (bounded), then
/// `count` more; returns the bodies. Every one of the `count` must answer.
fn requests(netns: &str, ip: IpAddr, count: usize) -> Result<Vec<String>> {
    let target = SocketAddr::new(ip, 80);
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = get_from(netns, target, Duration::from_secs(2)) {
        if Instant::now() > deadline {
            bail!("no answer from {target} within 30 s: {e:#}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (0..count)
        .map(|_| get_from(netns, target, Duration::from_secs(2)))
        .collect()
}

fn field_set(bodies: &[String], key: &str) -> BTreeSet<String> {
    bodies
        .iter()
        .filter_map(|b| echo_field(b, key))
        .map(str::to_string)
        .collect()
}

fn v4(ips: &[IpAddr]) -> IpAddr {
    *ips.iter().find(|ip| ip.is_ipv4()).expect("an IPv4 ingress")
}

fn v6(ips: &[IpAddr]) -> IpAddr {
    *ips.iter().find(|ip| ip.is_ipv6()).expect("an IPv6 ingress")
}

/// The one node that answers ARP for `ip` (waiting up to 30 s for exactly one).
fn arp_owner(site: &RealCluster, ip: IpAddr) -> Result<usize> {
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
fn wait_arp_owner_is(site: &RealCluster, ip: IpAddr, node: usize, within: Duration) -> Result<()> {
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

#[test]
fn l2_cluster_policy_reaches_pods_over_ipv4_and_ipv6_with_one_owner() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(site, "l2-cluster", 3, None, L2_POOL, Policy::Cluster, false)?;

    for ip in [v4(&ips), v6(&ips)] {
        let bodies = requests(&site.client, ip, 15)?;
        let pods = field_set(&bodies, "pod");
        println!("{ip}: {} answers from pods {pods:?}", bodies.len());
        assert!(
            pods.len() >= 2,
            "kube-proxy should spread 15 requests to {ip} over the 3 pods: {pods:?}"
        );
        assert!(pods.iter().all(|p| p.starts_with("l2-cluster-")));
    }

    // Exactly one node answers ARP, and one answers NDP: counted in a
    // capture on the client, which sees every answer.
    let client = site.client_netns();
    let capture = Capture::start(&client, "eth0", "arp or icmp6")?;
    std::thread::sleep(Duration::from_millis(300));
    let IpAddr::V4(ip4) = v4(&ips) else {
        unreachable!()
    };
    let IpAddr::V6(ip6) = v6(&ips) else {
        unreachable!()
    };
    let arp_macs = arping(&client, ip4, "eth0", 3)?;
    let ndp_macs = ndisc(&client, ip6, "eth0")?;
    std::thread::sleep(Duration::from_millis(500));
    let text = capture.stop();
    let ip4_s = ip4.to_string();
    let ip6_s = ip6.to_string();
    let arp_answers: BTreeSet<String> = text
        .lines()
        .filter(|l| l.contains(&format!("Reply {ip4_s} is-at")))
        .flat_map(|l| macs_in(l.split(" > ").next().unwrap_or("")))
        .collect();
    let na_answers: BTreeSet<String> = text
        .lines()
        .filter(|l| l.contains("neighbor advertisement") && l.contains(&format!("tgt is {ip6_s}")))
        .flat_map(|l| macs_in(l.split(" > ").next().unwrap_or("")))
        .collect();
    println!(
        "ARP answered by {arp_answers:?} (arping saw {arp_macs:?}); NDP by {na_answers:?} (ndisc6 saw {ndp_macs:?})"
    );
    assert_eq!(
        arp_answers.len(),
        1,
        "one MAC answers ARP for {ip4}:\n{text}"
    );
    assert_eq!(
        na_answers.len(),
        1,
        "one MAC answers NDP for {ip6}:\n{text}"
    );
    for mac in arp_answers.iter().chain(&na_answers) {
        assert!(site.node_with_mac(mac).is_some(), "{mac} is no node's");
    }
    delete_app(site, "l2-cluster");
    Ok(())
}

#[test]
fn bgp_ecmp_route_spreads_requests_over_the_nodes() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    // Policy Local: the node a request entered by is the node of the pod
    // that answers, so the answers show the ECMP spread.
    let ips = echo_app(site, "bgp-local", 3, None, BGP_POOL, Policy::Local, true)?;
    let ip = v4(&ips);
    let router = borrowed(site.router.as_deref().context("the site has a router")?);
    let prefix = format!("{ip}/32");
    let node_ips: BTreeSet<IpAddr> = site.nodes.iter().map(|n| IpAddr::V4(n.ip4)).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hops = Vec::new();
    while Instant::now() < deadline {
        hops = kernel_next_hops(&router, &prefix)?;
        if hops.iter().copied().collect::<BTreeSet<_>>() == node_ips {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("router's route to {prefix}: next hops {hops:?}");
    assert_eq!(hops.len(), 3, "one ECMP next hop per node with a local pod");

    let outside = site.outside_client.as_deref().context("outside client")?;
    let bodies = requests(outside, ip, 30)?;
    let nodes = field_set(&bodies, "node");
    let clients: BTreeSet<String> = field_set(&bodies, "client")
        .iter()
        .filter_map(|c| c.rsplit_once(':').map(|(ip, _)| ip.to_string()))
        .collect();
    println!(
        "30 requests from {OUTSIDE_CLIENT_IP} answered on nodes {nodes:?}, seen from {clients:?}"
    );
    assert!(
        nodes.len() >= 2,
        "ECMP spreads over more than one node: {nodes:?}"
    );
    assert_eq!(
        clients,
        BTreeSet::from([OUTSIDE_CLIENT_IP.to_string()]),
        "policy Local keeps the client's address"
    );
    delete_app(site, "bgp-local");
    Ok(())
}

#[test]
fn local_policy_keeps_the_client_address_and_announcements_follow_the_pods() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let name = "l2-local";
    let node = |i: usize| site.nodes[i].name.clone();
    let ips = echo_app(site, name, 1, Some(&node(1)), L2_POOL, Policy::Local, true)?;
    let ip = v4(&ips);

    let bodies = requests(&site.client, ip, 5)?;
    let clients = field_set(&bodies, "client");
    assert!(
        clients
            .iter()
            .all(|c| c.starts_with(&format!("{CLIENT_IP}:"))),
        "the backend sees the client's own address: {clients:?}"
    );
    assert_eq!(arp_owner(site, ip)?, 1, "only node-1 runs the backend");

    // Move the backend: the test touches only the Deployment; the
    // EndpointSlice changes come from the real controllers.
    for target in [2usize, 0] {
        site.api.kubectl_ok(&[
            "-n",
            NS,
            "patch",
            "deployment",
            name,
            "--type=merge",
            "-p",
            &json!({"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": node(target)}}}}}).to_string(),
        ])?;
        site.rollout(&format!("deployment/{name}"), NS)?;
        let moved = Instant::now();
        wait_arp_owner_is(site, ip, target, Duration::from_secs(30))?;
        println!(
            "backend moved to {}: announced from it after {:?}",
            node(target),
            moved.elapsed()
        );
        let bodies = requests(&site.client, ip, 3)?;
        assert_eq!(field_set(&bodies, "node"), BTreeSet::from([node(target)]));
    }

    // No backend at all: nobody announces.
    site.api
        .kubectl_ok(&["-n", NS, "scale", "deployment", name, "--replicas=0"])?;
    let IpAddr::V4(ip4) = ip else { unreachable!() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let macs = arping(&site.client_netns(), ip4, "eth0", 2)?;
        if macs.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still announced with no backend: {macs:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Scaled up again, on every node: each node runs one, and one announces.
    site.api.kubectl_ok(&[
        "-n",
        NS,
        "patch",
        "deployment",
        name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/template/spec/nodeSelector"}]"#,
    ])?;
    site.api
        .kubectl_ok(&["-n", NS, "scale", "deployment", name, "--replicas=3"])?;
    site.rollout(&format!("deployment/{name}"), NS)?;
    let owner = arp_owner(site, ip)?;
    println!("scaled to 3: announced by {}", node(owner));
    delete_app(site, name);
    Ok(())
}

/// Runs `disrupt` while a client requests `ip` every 50 ms (1 s timeout
/// each), keeps probing for `settle` after it returns, and reports the gap.
fn measure_gap(
    site: &RealCluster,
    ip: IpAddr,
    what: &str,
    settle: Duration,
    disrupt: impl FnOnce() -> Result<()>,
) -> Result<ferrolb_tests::realnodes::http_probe::Outage> {
    let probe = ProbeLoop::start(
        &site.client,
        SocketAddr::new(ip, 80),
        Duration::from_millis(50),
        Duration::from_secs(1),
        Duration::from_secs(240),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let result = disrupt();
    std::thread::sleep(settle);
    let samples = probe.finish()?;
    result?;
    let seen = outage(&samples);
    println!(
        "{what}: longest client-visible gap {:?}, {} of {} requests failed",
        seen.longest_gap, seen.failed, seen.total
    );
    let tail = &samples[samples.len().saturating_sub(20)..];
    assert!(
        tail.iter().all(|s| s.ok()),
        "{what}: requests still fail at the end: {:?}",
        tail.iter()
            .filter(|s| !s.ok())
            .map(|s| &s.outcome)
            .collect::<Vec<_>>()
    );
    Ok(seen)
}

fn speaker_pod_on(site: &RealCluster, node: &str) -> Result<String> {
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

#[test]
fn speaker_pod_deleted_forcibly_gracefully_and_by_rolling_update() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(site, "l2-speakers", 3, None, L2_POOL, Policy::Cluster, true)?;
    let ip = v4(&ips);
    requests(&site.client, ip, 1)?;

    let owner = site.nodes[arp_owner(site, ip)?].name.clone();
    let pod = speaker_pod_on(site, &owner)?;
    let forced = measure_gap(
        site,
        ip,
        "speaker pod force-deleted",
        Duration::from_secs(5),
        || {
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
        },
    )?;

    let owner = site.nodes[arp_owner(site, ip)?].name.clone();
    let pod = speaker_pod_on(site, &owner)?;
    let graceful = measure_gap(
        site,
        ip,
        "speaker pod deleted gracefully",
        Duration::from_secs(5),
        || {
            site.api
                .kubectl_ok(&["-n", "ferrolb-system", "delete", "pod", &pod])?;
            site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")
        },
    )?;

    let rolling = measure_gap(
        site,
        ip,
        "speaker DaemonSet rolling update",
        Duration::from_secs(5),
        || {
            site.api.kubectl_ok(&[
                "-n",
                "ferrolb-system",
                "rollout",
                "restart",
                "daemonset/ferrolb-speaker",
            ])?;
            site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")
        },
    )?;
    // Graceful paths hand over before the old owner stops answering.
    for (what, seen) in [("graceful delete", &graceful), ("rolling update", &rolling)] {
        assert!(
            seen.longest_gap < Duration::from_secs(3),
            "{what}: a graceful hand-over should not stop traffic for long: {seen:?}"
        );
    }
    assert!(forced.longest_gap < Duration::from_secs(10), "{forced:?}");
    delete_app(site, "l2-speakers");
    Ok(())
}

#[test]
fn node_failure_moves_the_ip_and_kube_proxy_drops_the_dead_endpoints() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(site, "l2-nodefail", 3, None, L2_POOL, Policy::Cluster, true)?;
    let ip = v4(&ips);
    requests(&site.client, ip, 1)?;
    let victim = arp_owner(site, ip)?;
    let victim_name = site.nodes[victim].name.clone();

    let probe = ProbeLoop::start(
        &site.client,
        SocketAddr::new(ip, 80),
        Duration::from_millis(50),
        Duration::from_secs(1),
        Duration::from_secs(120),
    )?;
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    site.kill_node(victim)?;
    let killed_at = killed.elapsed();
    // FerroLB's part: a live node answers ARP for the IP.
    let new_owner = arp_owner(site, ip);
    let answered_after = killed.elapsed();
    // kube-proxy's part: until the dead node is NotReady (20 s grace here)
    // and its pod's endpoint is dropped, some requests still go to it.
    std::thread::sleep(Duration::from_secs(45));
    let samples = probe.finish()?;
    let restart = site.restart_node(victim);

    let new_owner = new_owner?;
    assert_ne!(new_owner, victim, "a live node took the IP over");
    let kill_offset =
        samples.first().map(|s| s.at).unwrap_or_default() + Duration::from_secs(1) + killed_at;
    let after: Vec<_> = samples.iter().filter(|s| s.at >= kill_offset).collect();
    let first_ok = after.iter().find(|s| s.ok()).map(|s| s.at - kill_offset);
    let last_fail = after
        .iter()
        .rev()
        .find(|s| !s.ok())
        .map(|s| s.at - kill_offset);
    let failed = after.iter().filter(|s| !s.ok()).count();
    println!(
        "node {victim_name} killed: ARP answered by {} after {answered_after:?}; first request answered after {first_ok:?}; \
         {failed} of {} requests failed, the last at {last_fail:?}",
        site.nodes[new_owner].name,
        after.len()
    );
    assert!(
        first_ok.is_some_and(|t| t < Duration::from_secs(10)),
        "traffic resumed"
    );
    let tail = &samples[samples.len().saturating_sub(20)..];
    assert!(
        tail.iter().all(|s| s.ok()),
        "every request answered once the endpoints are gone"
    );

    restart?;
    ferrolb_tests::realnodes::wait_nodes_ready(
        &site.api,
        &[&victim_name],
        Duration::from_secs(120),
    )?;
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    site.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
    delete_app(site, "l2-nodefail");
    Ok(())
}

#[test]
fn controller_leader_pod_deleted_standby_takes_over() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let holder = || {
        site.api.kubectl_ok(&[
            "-n",
            "ferrolb-system",
            "get",
            "lease",
            "ferrolb-controller",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    let leader = holder()?;
    assert!(
        leader.starts_with("ferrolb-controller-"),
        "the leader is a pod: {leader:?}"
    );
    let deleted = Instant::now();
    site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "delete",
        "pod",
        &leader,
        "--wait=false",
    ])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_leader = loop {
        let now = holder()?;
        if !now.is_empty() && now != leader {
            break now;
        }
        assert!(Instant::now() < deadline, "no new leader after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let handed_over = deleted.elapsed();
    let ips = echo_app(
        site,
        "after-handover",
        1,
        None,
        L2_POOL,
        Policy::Cluster,
        true,
    )?;
    println!(
        "leader {leader} deleted: {new_leader} leads after {handed_over:?}; a new Service got {ips:?} {:?} after the delete",
        deleted.elapsed()
    );
    assert!(
        handed_over < Duration::from_secs(15),
        "a graceful stop releases the Lease"
    );
    site.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
    delete_app(site, "after-handover");
    Ok(())
}

/// `/proc/<pid>` of every process whose command is `comm`.
fn procs(comm: &str) -> Vec<std::path::PathBuf> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|dir| {
            std::fs::read_to_string(dir.join("comm")).is_ok_and(|name| name.trim() == comm)
        })
        .collect()
}

/// `/proc/<pid>/status` field `key` of every process whose command is `comm`.
fn proc_status(comm: &str, key: &str) -> Vec<String> {
    procs(comm)
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("status")).ok())
        .filter_map(|status| {
            status
                .lines()
                .find(|l| l.starts_with(&format!("{key}:")))
                .map(|line| line[key.len() + 1..].trim().to_string())
        })
        .collect()
}

/// Whether the root file system every `comm` process sees is mounted read-only.
fn roots_read_only(comm: &str) -> Vec<bool> {
    procs(comm)
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("mountinfo")).ok())
        .map(|info| {
            info.lines().any(|l| {
                let fields: Vec<&str> = l.split(' ').collect();
                fields.get(4) == Some(&"/")
                    && fields
                        .get(5)
                        .is_some_and(|o| o.split(',').any(|o| o == "ro"))
            })
        })
        .collect()
}

#[test]
fn pods_run_as_deploy_says() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    site.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    // Two controllers (one leads), one speaker per node; all Ready, which
    // means their readiness probes pass.
    let ready = site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/name} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ])?;
    let count = |what: &str| {
        ready
            .lines()
            .filter(|l| *l == format!("{what} True"))
            .count()
    };
    assert_eq!(count("ferrolb-controller"), 2, "{ready}");
    assert_eq!(count("ferrolb-speaker"), 3, "{ready}");

    // The processes themselves: the controller runs as 65532 with no
    // capability; the speaker with NET_RAW (bit 13) and nothing else; neither
    // can gain privileges.
    let controller_uids = proc_status("ferrolb-control", "Uid");
    assert_eq!(
        controller_uids.len(),
        2,
        "two controller processes: {controller_uids:?}"
    );
    assert!(
        controller_uids
            .iter()
            .all(|u| u.split_whitespace().all(|id| id == "65532"))
    );
    assert!(
        proc_status("ferrolb-control", "CapEff")
            .iter()
            .all(|c| c == "0000000000000000")
    );
    let speaker_caps = proc_status("ferrolb-speaker", "CapEff");
    assert_eq!(speaker_caps.len(), 3, "{speaker_caps:?}");
    assert!(
        speaker_caps.iter().all(|c| c == "0000000000002000"),
        "{speaker_caps:?}"
    );
    for comm in ["ferrolb-control", "ferrolb-speaker"] {
        assert!(
            proc_status(comm, "NoNewPrivs").iter().all(|v| v == "1"),
            "{comm}"
        );
        let read_only = roots_read_only(comm);
        assert!(
            !read_only.is_empty() && read_only.iter().all(|ro| *ro),
            "{comm}: {read_only:?}"
        );
    }
    // RuntimeDefault seccomp, as the Deployment asks.
    assert!(
        proc_status("ferrolb-control", "Seccomp")
            .iter()
            .all(|v| v == "2")
    );
    Ok(())
}
