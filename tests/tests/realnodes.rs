//! Real kubelet nodes (each with containerd, kubelet and kube-proxy), FerroLB
//! installed from `deploy/` as pods, and a client's HTTP requests reaching
//! pods through FerroLB's LoadBalancer IPs: the level a user trusts.
//!
//! Every test takes the site exclusively: several of them kill speakers and
//! nodes on purpose.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine;
use ferrolb_tests::arp_probe::{ArpProber, overlapping_answers};
use ferrolb_tests::l2lab::{Capture, arping, macs_in, ndisc};
use ferrolb_tests::realnodes::apps::{NS, delete_app, echo_app, v4, v6};
use ferrolb_tests::realnodes::failover::{self, arp_owner, requests, wait_arp_owner_is};
use ferrolb_tests::realnodes::http_probe::wait_answering;
use ferrolb_tests::realnodes::node_loss;
use ferrolb_tests::realnodes::site::{BGP_POOL, L2_POOL, exclusive, shared_site};
use ferrolb_tests::realnodes::speakers::{
    gossip_secret_data, most_bad_key_rejections, wait_for_whole_gossip_group,
};
use ferrolb_tests::realnodes::{CLIENT_IP, OUTSIDE_CLIENT_IP, Policy, borrowed, echo_field};
use ferrolb_tests::router::kernel_next_hops;
use serde_json::json;

fn field_set(bodies: &[String], key: &str) -> BTreeSet<String> {
    bodies
        .iter()
        .filter_map(|b| echo_field(b, key))
        .map(str::to_string)
        .collect()
}

#[test]
fn l2_cluster_policy_reaches_pods_over_ipv4_and_ipv6_with_one_owner() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(
        site,
        "l2-cluster",
        3,
        None,
        L2_POOL,
        Policy::Cluster,
        &["198.51.100.201", "2001:db8:100::201"],
    )?;

    for ip in [v4(&ips)?, v6(&ips)?] {
        // kube-proxy learns the endpoints a moment after the pods are Ready:
        // ask in rounds of 15 (bounded) until the answers come from more than
        // one pod.
        let mut bodies = Vec::new();
        for _round in 0..20 {
            bodies.extend(requests(&site.client, ip, 15)?);
            if field_set(&bodies[bodies.len() - 15..], "pod").len() >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let bodies = &bodies[bodies.len() - 15..];
        let pods = field_set(bodies, "pod");
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
    let IpAddr::V4(ip4) = v4(&ips)? else {
        unreachable!()
    };
    let IpAddr::V6(ip6) = v6(&ips)? else {
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
    let ips = echo_app(
        site,
        "bgp-local",
        3,
        None,
        BGP_POOL,
        Policy::Local,
        &["203.0.113.241"],
    )?;
    let ip = v4(&ips)?;
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
    // A speaker announces as soon as its node has a ready endpoint, which can
    // be a moment before that node's kube-proxy has the IP's rules; a flow the
    // router hashes to such a node is refused meanwhile. Wait until a run of
    // requests (new source ports, so spread over the next hops) all succeed.
    wait_answering(outside, ip, 10, Duration::from_secs(30))?;
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
    let ips = echo_app(
        site,
        name,
        1,
        Some(&node(1)),
        L2_POOL,
        Policy::Local,
        &["198.51.100.202"],
    )?;
    let ip = v4(&ips)?;

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

#[test]
fn speaker_pod_deleted_forcibly_gracefully_and_by_rolling_update() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(
        site,
        "l2-speakers",
        3,
        None,
        L2_POOL,
        Policy::Cluster,
        &["198.51.100.203"],
    )?;
    let ip = v4(&ips)?;
    requests(&site.client, ip, 1)?;

    let forced = failover::force_delete_owner_speaker(site, ip)?;
    let graceful = failover::gracefully_delete_owner_speaker(site, ip)?;
    let rolling = failover::rolling_update_speakers(site, ip)?;
    for (what, seen) in [
        ("speaker pod force-deleted", &forced),
        ("speaker pod deleted gracefully", &graceful),
        ("speaker DaemonSet rolling update", &rolling),
    ] {
        println!(
            "{what}: longest client-visible gap {:?}, {} of {} requests failed",
            seen.longest_gap, seen.failed, seen.total
        );
    }
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

/// The gossip key rotation the README gives, each step by a rolling update
/// of the speakers after editing the Secret: K1 → [K1, K2] → [K2, K1] → [K2].
/// Throughout, at most one MAC answers the client's ARP requests, and no
/// speaker drops a datagram for its key (speakers on the old and the new key
/// side by side still hear each other).
#[test]
fn gossip_key_rotation_by_rolling_updates_keeps_one_group_and_one_owner() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(
        site,
        "l2-rotation",
        3,
        None,
        L2_POOL,
        Policy::Cluster,
        &["198.51.100.206"],
    )?;
    let IpAddr::V4(ip) = v4(&ips)? else {
        unreachable!("v4 gives IPv4")
    };
    requests(&site.client, IpAddr::V4(ip), 1)?;
    let old_key = gossip_secret_data(site)?;
    let old_key = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(old_key)?)?;
    let old_key = old_key.trim();
    let new_key = "a second gossip key, for the rotation test";
    let steps = [
        ("accept K2", format!("{old_key}\n{new_key}")),
        ("sign with K2", format!("{new_key}\n{old_key}")),
        ("retire K1", new_key.to_string()),
    ];

    let prober = ArpProber::start(
        &site.client_netns(),
        "eth0",
        CLIENT_IP.parse()?,
        ip,
        Duration::from_millis(100),
        Duration::from_secs(900),
    )?;
    let polling = AtomicBool::new(true);
    let (rolled, rejected) = std::thread::scope(|scope| {
        let rejected = scope.spawn(|| most_bad_key_rejections(site, &polling));
        let rolled = (|| -> Result<()> {
            for (step, keys) in &steps {
                println!("gossip key rotation: {step}");
                site.api.kubectl_ok(&[
                    "-n",
                    "ferrolb-system",
                    "patch",
                    "secret",
                    "ferrolb-memberlist",
                    "--type=merge",
                    "-p",
                    &json!({"stringData": {"secretkey": keys}}).to_string(),
                ])?;
                failover::roll_speakers(site)?;
                wait_for_whole_gossip_group(site)?;
            }
            Ok(())
        })();
        polling.store(false, Ordering::Relaxed);
        (rolled, rejected.join())
    });
    let claims = prober.stop()?;
    rolled?;
    let rejected = rejected.map_err(|_| anyhow::anyhow!("metrics poller panicked"))?;
    println!("bad-key rejections seen per node: {rejected:?}");
    assert!(
        rejected.values().all(|&count| count == 0.0),
        "speakers dropped gossip for its key during the rotation: {rejected:?}"
    );
    let answers = claims.iter().filter(|c| !c.gratuitous).count();
    assert!(answers > 100, "the client saw only {answers} ARP answers");
    let overlaps = overlapping_answers(&claims, Duration::from_millis(50));
    assert!(
        overlaps.is_empty(),
        "two nodes answered ARP for {ip} at once: {:?}",
        overlaps.iter().take(5).collect::<Vec<_>>()
    );
    // The Secret stays on K2: the speakers agree on it, and a jump back to
    // K1 would split them.
    delete_app(site, "l2-rotation");
    Ok(())
}

#[test]
fn node_failure_moves_the_ip_and_kube_proxy_drops_the_dead_endpoints() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let ips = echo_app(
        site,
        "l2-nodefail",
        3,
        None,
        L2_POOL,
        Policy::Cluster,
        &["198.51.100.204"],
    )?;
    let ip = v4(&ips)?;
    requests(&site.client, ip, 1)?;
    // kube-proxy's part lasts until the dead node is NotReady (20 s grace
    // here), its pods are marked not ready and their endpoints dropped:
    // observe well past that.
    let observe = Duration::from_secs(75);
    let loss = node_loss::node_loss(site, "l2-nodefail", ip, observe)?;
    println!(
        "node {} killed: ARP answered by a live node after {:?}; first request answered after {:?}; \
         its endpoints gone after {:?}; {} of {} requests failed, the last at {:?}; \
         afterwards {} on ports a stale conntrack entry held; failures: {:?}",
        loss.node,
        loss.arp_moved_after,
        loss.first_answer_after,
        loss.endpoints_gone_after,
        loss.failed(),
        loss.total,
        loss.last_failure_after(),
        loss.late.stale_conntrack,
        loss.failures
    );
    assert!(
        loss.first_answer_after
            .is_some_and(|t| t < Duration::from_secs(10)),
        "traffic resumed through a live node: {loss:?}"
    );
    assert!(
        loss.endpoints_gone_after
            .is_some_and(|t| t + node_loss::KUBE_PROXY_SYNC + Duration::from_secs(10) < observe),
        "the dead node's endpoints left the EndpointSlices with time to watch after: {loss:?}"
    );
    assert!(
        loss.late.unexplained.is_empty(),
        "every new connection answered once kube-proxy had the endpoints' removal \
         (only reused ports meet stale conntrack entries): {loss:?}"
    );
    delete_app(site, "l2-nodefail");
    Ok(())
}

#[test]
fn controller_leader_pod_deleted_standby_takes_over() -> Result<()> {
    let _one = exclusive();
    let site = shared_site();
    let leader = site.controller_leader()?;
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
        let now = site.controller_leader()?;
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
        &["198.51.100.205"],
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
    // A replaced pod's process may take a moment to exit.
    let deadline = Instant::now() + Duration::from_secs(30);
    while procs("ferrolb-control").len() != 2 || procs("ferrolb-speaker").len() != 3 {
        assert!(
            Instant::now() < deadline,
            "not 2 controller and 3 speaker processes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
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
