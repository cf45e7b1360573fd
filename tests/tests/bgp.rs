//! BGP mode end to end: real speakers in three node namespaces peer with a
//! real router (BIRD 2, or GoBGP) on the LAN, and the checks are made in the
//! router: `birdc show route`, `gobgp global rib` and the kernel routing table
//! (`ip route`, where BIRD installs one route with a next hop per node).
//! Needs root and the bird2 and gobgpd packages (`.ci/run` installs them).
//!
//! Timings are asserted only generously (the machine is a shared 2-core box);
//! `cargo xtask bench` measures them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ferrolb_crds::BGPSessionState;
use ferrolb_tests::bgplab::{BgpLab, NODE_ASN, ROUTER_ASN};
use ferrolb_tests::env::wait_for;
use ferrolb_tests::l2lab::Capture;
use ferrolb_tests::router::kernel_next_hops;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;

const ROUTE_WAIT: Duration = Duration::from_secs(30);

fn v4(ips: &[IpAddr]) -> Result<IpAddr> {
    ips.iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .context("no IPv4 address")
}

fn v6(ips: &[IpAddr]) -> Result<IpAddr> {
    ips.iter()
        .copied()
        .find(IpAddr::is_ipv6)
        .context("no IPv6 address")
}

async fn session_states(lab: &BgpLab) -> Result<Vec<BGPSessionState>> {
    let api: Api<BGPSessionState> =
        Api::namespaced(lab.lab.scenario.client.clone(), &lab.lab.scenario.ns.name);
    Ok(api.list(&ListParams::default()).await?.items)
}

/// Waits until every node has a session object for `peer` in `state`.
async fn wait_session_states(lab: &BgpLab, peer: &str, state: &str) -> Result<()> {
    wait_for(
        &format!("3 BGPSessionStates of {peer} in {state}"),
        ROUTE_WAIT,
        || async {
            let states = session_states(lab).await.ok()?;
            let matching = states
                .iter()
                .filter_map(|s| s.status.as_ref())
                .filter(|s| s.peer == peer && s.state == state)
                .count();
            (matching == 3).then_some(())
        },
    )
    .await
}

/// An HTTP GET from the client namespace; the status line's code.
fn http_get_from_client(lab: &BgpLab, url: &str) -> Result<String> {
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).read().decode())"
    );
    lab.client.exec_ok(&["python3", "-c", &script])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_hops_follow_the_traffic_policy_and_endpoints() -> Result<()> {
    let mut lab = BgpLab::start("bgp-hops").await?;
    lab.start_bird(ROUTER_ASN, None)?;
    lab.peer("bird", BgpLab::peer_spec(&lab.router, ROUTER_ASN))
        .await?;
    lab.advertise("all", json!({})).await?;
    lab.lab.start_speakers()?;
    wait_session_states(&lab, "bird", "Established").await?;

    // Cluster: every node is a next hop, for both families.
    let ips = lab
        .service(
            "web",
            json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}}),
            2,
        )
        .await?;
    lab.lab.endpoints("web", &[0]).await?;
    lab.wait_next_hops(v4(&ips)?, &[0, 1, 2], ROUTE_WAIT)
        .await?;
    lab.wait_next_hops(v6(&ips)?, &[0, 1, 2], ROUTE_WAIT)
        .await?;
    let bird_routes = lab
        .bird()?
        .birdc(&["show", "route", "for", &v4(&ips)?.to_string()])?;
    ensure!(
        bird_routes.contains(&format!("{}/32", v4(&ips)?)),
        "birdc: {bird_routes}"
    );
    lab.lab.scenario.wait_event("web", "BGPAdvertising").await?;

    // Local: only nodes with an endpoint, following it when it moves.
    let local = v4(&lab
        .service(
            "local",
            json!({"spec": {"externalTrafficPolicy": "Local"}}),
            1,
        )
        .await?)?;
    lab.lab.endpoints("local", &[1]).await?;
    lab.wait_next_hops(local, &[1], ROUTE_WAIT).await?;
    lab.lab.endpoints("local", &[2]).await?;
    lab.wait_next_hops(local, &[2], ROUTE_WAIT).await?;

    // A client behind the router reaches a listener on the next-hop node.
    let node = &lab.lab.nodes[2];
    node.netns
        .ip(&["addr", "add", &format!("{local}/32"), "dev", "lo"])?;
    let dir = lab.lab.scenario.cluster.dir.join("www-bgp");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("index.html"), "served by node 2\n")?;
    let mut server = node
        .netns
        .command("python3")
        .args(["-m", "http.server", "--bind", &local.to_string(), "8080"])
        .current_dir(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let body = wait_for("an HTTP answer through the router", ROUTE_WAIT, || async {
        http_get_from_client(&lab, &format!("http://{local}:8080/")).ok()
    })
    .await;
    let _ = server.kill();
    let _ = server.wait();
    ensure!(body?.contains("served by node 2"));

    // Withdrawn when the Service goes.
    lab.lab.scenario.delete_service("local").await?;
    lab.wait_next_hops(local, &[], ROUTE_WAIT).await?;

    // Metrics show the sessions.
    let metrics = lab.lab.speaker_http(0, "/metrics")?;
    ensure!(
        metrics.contains("ferrolb_speaker_bgp_sessions{state=\"Established\"} 1"),
        "{metrics}"
    );
    ensure!(metrics.contains("ferrolb_speaker_bgp_updates_sent_total{peer=\"bird\"}"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn communities_and_local_pref_reach_an_ibgp_router_and_survive_a_flap() -> Result<()> {
    let mut lab = BgpLab::start("bgp-attrs").await?;
    lab.start_bird(NODE_ASN, None)?;
    lab.peer("bird", BgpLab::peer_spec(&lab.router, NODE_ASN))
        .await?;
    lab.community(
        "aliases",
        json!({"communities": [{"name": "edge", "value": "64512:300"}]}),
    )
    .await?;
    lab.advertise(
        "tagged",
        json!({"localPref": 250, "communities": ["64512:100", "large:64512:1:2", "edge"]}),
    )
    .await?;
    lab.lab.start_speakers()?;
    let ip = v4(&lab.service("tag", json!({}), 1).await?)?;
    lab.lab.endpoints("tag", &[0]).await?;
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;
    let all = lab
        .bird()?
        .birdc(&["show", "route", "for", &ip.to_string(), "all"])?;
    for expected in [
        "BGP.local_pref: 250",
        "(64512,100)",
        "(64512,300)",
        "(64512, 1, 2)",
    ] {
        ensure!(all.contains(expected), "{expected} missing in:\n{all}");
    }

    // A flap: the router drops the session with node 0, then takes it back.
    lab.bird()?.birdc(&["disable", "n0"])?;
    lab.wait_next_hops(ip, &[1, 2], ROUTE_WAIT).await?;
    lab.bird()?.birdc(&["enable", "n0"])?;
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gobgp_interoperates_and_a_wrong_md5_password_never_establishes() -> Result<()> {
    let mut lab = BgpLab::start("bgp-gobgp").await?;
    // BIRD wants one password, the speakers give another.
    lab.start_bird(ROUTER_ASN, Some("right-one"))?;
    let second = lab.second_router()?;
    let gobgp = lab.start_gobgp(&second, Some("s3cret"))?;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(lab.lab.scenario.client.clone(), &lab.lab.scenario.ns.name);
    secrets
        .patch(
            "gobgp-password",
            &PatchParams::apply("ferrolb-tests").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "gobgp-password"},
                "type": "kubernetes.io/basic-auth",
                "stringData": {"password": "s3cret"},
            })),
        )
        .await?;
    let mut gobgp_peer = BgpLab::peer_spec(&second, ROUTER_ASN);
    gobgp_peer["passwordSecret"] = json!({"name": "gobgp-password"});
    lab.peer("gobgp", gobgp_peer).await?;
    let mut bird_peer = BgpLab::peer_spec(&lab.router, ROUTER_ASN);
    bird_peer["password"] = json!("wrong-one");
    lab.peer("bird", bird_peer).await?;
    lab.advertise("all", json!({})).await?;
    // Every SYN that reaches BIRD's side, to prove the speakers did dial it.
    let syns = Capture::start(
        &lab.router.netns,
        "eth0",
        "tcp dst port 179 and tcp[tcpflags] & tcp-syn != 0",
    )?;
    lab.lab.start_speakers()?;
    let ip = v4(&lab.service("interop", json!({}), 1).await?)?;
    lab.lab.endpoints("interop", &[0]).await?;

    // Until GoBGP has the route from every node and BIRD has seen a signed SYN
    // from every node, sampled all along: no BIRD session ever gets
    // Established, and BIRD installs no route.
    let expected: Vec<String> = lab.lab.nodes.iter().map(|n| n.ip4.to_string()).collect();
    let router = lab.router.ip4.to_string();
    let started = Instant::now();
    let mut samples = 0;
    loop {
        for i in 0..3 {
            let state = lab.bird()?.session_state(&format!("n{i}"))?;
            ensure!(
                state != "Established",
                "n{i} established with a wrong password"
            );
        }
        ensure!(
            kernel_next_hops(&lab.router.netns, &format!("{ip}/32"))?.is_empty(),
            "BIRD installed a route over a session with a wrong password"
        );
        samples += 1;
        let rib = gobgp.cli(&["global", "rib", "-a", "ipv4"])?;
        let in_gobgp = expected.iter().all(|hop| {
            rib.lines()
                .any(|l| l.contains(&format!("{ip}/32")) && l.contains(hop.as_str()))
        });
        let captured = syns.text();
        let dialled: Vec<&String> = expected
            .iter()
            .filter(|node| {
                captured.lines().any(|l| {
                    l.contains(&format!("{node}."))
                        && l.contains(&format!("> {router}.179"))
                        && l.contains("md5")
                })
            })
            .collect();
        if in_gobgp && dialled.len() == expected.len() {
            break;
        }
        ensure!(
            started.elapsed() < ROUTE_WAIT,
            "after {ROUTE_WAIT:?}: route in GoBGP from all nodes: {in_gobgp}; \
             nodes seen dialling BIRD with an MD5 signature: {dialled:?}\nSYNs:\n{captured}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "every speaker dialled BIRD with a (wrong) MD5 signature; {samples} samples, never Established"
    );
    wait_session_states(&lab, "gobgp", "Established").await?;
    let states = session_states(&lab).await?;
    ensure!(
        states
            .iter()
            .filter_map(|s| s.status.as_ref())
            .filter(|s| s.peer == "bird")
            .all(|s| s.state != "Established")
    );
    Ok(())
}

async fn cordon(lab: &BgpLab, i: usize) -> Result<()> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(lab.lab.scenario.client.clone());
    nodes
        .patch(
            &lab.lab.nodes[i].name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"unschedulable": true}})),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_speaker_expires_and_graceful_stop_withdraws_at_once() -> Result<()> {
    let mut lab = BgpLab::start("bgp-stop").await?;
    lab.start_bird(ROUTER_ASN, None)?;
    // Graceful Restart on, with a short restart time: BIRD keeps a killed
    // speaker's routes only that long.
    lab.lab.speaker_flags = vec!["--bgp-graceful-restart-seconds=3".into()];
    let mut peer = BgpLab::peer_spec(&lab.router, ROUTER_ASN);
    peer["enableGracefulRestart"] = json!(true);
    lab.peer("bird", peer).await?;
    lab.advertise("all", json!({})).await?;
    lab.lab.start_speakers()?;
    let ip = v4(&lab.service("stop", json!({}), 1).await?)?;
    lab.lab.endpoints("stop", &[0, 1, 2]).await?;
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;

    // SIGKILL: no goodbye; gone when BIRD's 3 s restart time (or hold time) runs out.
    lab.lab.kill_speaker(0);
    let expired = lab
        .wait_next_hops(ip, &[1, 2], Duration::from_secs(15))
        .await?;
    eprintln!("killed speaker's route gone after {expired:?}");

    // A cordoned node's speaker leaves rather than restarts (no Graceful
    // Restart): SIGTERM withdraws before the process exits.
    cordon(&lab, 1).await?;
    wait_for(
        "speaker 1 to plan a withdrawal on stop (node cordoned)",
        ROUTE_WAIT,
        || async {
            let log = lab.lab.speaker_logs(1);
            log.lines()
                .any(|l| l.contains("BGP routes will be withdrawn") && l.contains("Cordoned"))
                .then_some(())
        },
    )
    .await?;
    let stopping = Instant::now();
    lab.lab.stop_speaker(1);
    let stopped = stopping.elapsed();
    let withdrawn = lab.wait_next_hops(ip, &[2], Duration::from_secs(5)).await?;
    eprintln!("graceful stop took {stopped:?}, route gone {withdrawn:?} after the exit");
    if withdrawn > Duration::from_secs(3) {
        bail!("the route outlived the graceful stop by {withdrawn:?}");
    }
    // A closed TCP connection withdraws too: the goodbye must be a Cease
    // NOTIFICATION (Administrative Shutdown), which BIRD keeps as n1's last error.
    let n1 = lab.bird()?.birdc(&["show", "protocols", "all", "n1"])?;
    ensure!(
        n1.contains("Received: Administrative shutdown"),
        "no Cease/Administrative Shutdown from the stopped speaker:\n{n1}"
    );
    Ok(())
}

/// One look at the router during a graceful restart.
struct RestartSample {
    hops: Vec<IpAddr>,
    bird_route: String,
    n1_state: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_keeps_the_node_in_the_routers_next_hops() -> Result<()> {
    let mut lab = BgpLab::start("bgp-gr").await?;
    lab.start_bird(ROUTER_ASN, None)?;
    let mut peer = BgpLab::peer_spec(&lab.router, ROUTER_ASN);
    peer["enableGracefulRestart"] = json!(true);
    lab.peer("bird", peer).await?;
    lab.advertise("all", json!({})).await?;
    lab.lab.start_speakers()?;
    let ip = v4(&lab.service("gr", json!({}), 1).await?)?;
    lab.lab.endpoints("gr", &[0, 1, 2]).await?;
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;
    wait_for(
        "speaker 1 to plan a Graceful Restart on stop",
        ROUTE_WAIT,
        || async {
            let log = lab.lab.speaker_logs(1);
            log.contains("BGP sessions close for a Graceful Restart")
                .then_some(())
        },
    )
    .await?;
    let since = lab.bird()?.session_since("n1")?;
    let node1 = IpAddr::V4(lab.lab.nodes[1].ip4);
    let prefix = format!("{ip}/32");

    // Sample the router every 100 ms from before the stop until well after
    // the new speaker's End-of-RIB.
    let sampling = std::sync::atomic::AtomicBool::new(true);
    // The first sample is taken before the stop, so that a route missing
    // already then is told apart from one the restart lost.
    let first_taken = std::sync::Barrier::new(2);
    let (bird, netns, bgp) = (
        lab.bird.as_ref().context("BIRD")?,
        &lab.router.netns,
        &mut lab.lab,
    );
    let (samples, outcome) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) && samples.len() < 1200 {
                samples.push(RestartSample {
                    hops: kernel_next_hops(netns, &prefix).unwrap_or_default(),
                    bird_route: bird
                        .birdc(&["show", "route", "for", &prefix])
                        .unwrap_or_default(),
                    n1_state: bird.session_state("n1").unwrap_or_default(),
                });
                if samples.len() == 1 {
                    first_taken.wait();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        let outcome = (|| -> Result<Duration> {
            first_taken.wait();
            let restart = Instant::now();
            bgp.stop_speaker(1);
            bgp.start_speaker(1)?;
            // Back: a new session, then a few more samples past its End-of-RIB.
            let deadline = Instant::now() + ROUTE_WAIT;
            loop {
                let state = bird.session_state("n1")?;
                if state == "Established" && bird.session_since("n1")? != since {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "n1 not Established again: {state}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let back = restart.elapsed();
            std::thread::sleep(Duration::from_secs(2));
            Ok(back)
        })();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        (sampler.join(), outcome)
    });
    let samples = samples.map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    let back = outcome?;
    let n1 = lab.bird()?.birdc(&["show", "protocols", "all", "n1"])?;
    let down = samples
        .iter()
        .filter(|s| s.n1_state != "Established")
        .count();
    ensure!(
        down > 0,
        "BIRD never saw n1's session down: no restart was sampled ({} samples)",
        samples.len()
    );
    for (i, sample) in samples.iter().enumerate() {
        let when = if i == 0 {
            "before the stop"
        } else {
            "after the stop"
        };
        ensure!(
            sample.hops.contains(&node1),
            "sample {i} ({when}, of {}): node 1 missing from the next hops {:?}, n1 {}; BIRD:\n{}\n{n1}",
            samples.len(),
            sample.hops,
            sample.n1_state,
            sample.bird_route
        );
        ensure!(
            sample.bird_route.contains(&node1.to_string()),
            "sample {i} ({when}): BIRD has no route via node 1:\n{}\n{n1}",
            sample.bird_route
        );
    }
    eprintln!(
        "graceful restart: session back after {back:?}; {} samples ({down} with n1 down), node 1 always a next hop",
        samples.len()
    );
    // Still exactly the three nodes, and no stale route left behind.
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_speaker_expires_by_the_hold_timer_and_comes_back() -> Result<()> {
    // 3 s is the shortest hold time the CRD allows; BIRD proposes 9 s, and the
    // session uses the smaller one.
    const HOLD: Duration = Duration::from_secs(3);
    let mut lab = BgpLab::start("bgp-hold").await?;
    lab.start_bird(ROUTER_ASN, None)?;
    let mut peer = BgpLab::peer_spec(&lab.router, ROUTER_ASN);
    peer["holdTime"] = json!("3s");
    peer["keepaliveTime"] = json!("1s");
    lab.peer("bird", peer).await?;
    lab.advertise("all", json!({})).await?;
    lab.lab.start_speakers()?;
    let ip = v4(&lab.service("hold", json!({}), 1).await?)?;
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;

    // SIGSTOP: the TCP connection stays open (the kernel still ACKs), so only
    // BIRD's hold timer can tell that node 0 went silent.
    lab.lab.freeze_speaker(0)?;
    let frozen = lab
        .wait_next_hops(ip, &[1, 2], HOLD + Duration::from_secs(10))
        .await;
    if frozen.is_err() {
        lab.lab.continue_speaker(0)?;
    }
    let expired = frozen?;
    eprintln!("frozen speaker's next hop gone after {expired:?} (hold time {HOLD:?})");
    let state = lab.bird()?.session_state("n0")?;
    ensure!(state != "Established", "n0 still {state} while frozen");

    lab.lab.continue_speaker(0)?;
    let back = lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;
    wait_for(
        "BIRD's session n0 Established again",
        ROUTE_WAIT,
        || async {
            let state = lab.bird().ok()?.session_state("n0").ok()?;
            (state == "Established").then_some(())
        },
    )
    .await?;
    eprintln!("thawed speaker's next hop back after {back:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_outage_changes_no_route_and_flaps_no_session() -> Result<()> {
    const OUTAGE: Duration = Duration::from_secs(8);
    let mut lab = BgpLab::start("bgp-outage").await?;
    lab.start_bird(ROUTER_ASN, None)?;
    lab.peer("bird", BgpLab::peer_spec(&lab.router, ROUTER_ASN))
        .await?;
    lab.advertise("all", json!({})).await?;
    lab.lab.start_speakers()?;
    let ip = v4(&lab.service("steady", json!({}), 1).await?)?;
    lab.wait_next_hops(ip, &[0, 1, 2], ROUTE_WAIT).await?;
    let prefix = format!("{ip}/32");
    let expected = lab.hops(&[0, 1, 2], ip);
    let sessions = ["n0", "n1", "n2"];
    let mut since_before = Vec::new();
    for name in sessions {
        let bird = lab.bird()?;
        ensure!(bird.session_state(name)? == "Established", "{name} not up");
        since_before.push(bird.session_since(name)?);
    }

    for i in 0..lab.lab.nodes.len() {
        lab.lab.pause_api(i);
    }
    let outage = Instant::now();
    let mut samples = 0;
    let mut deviation = None;
    while outage.elapsed() < OUTAGE {
        let hops = kernel_next_hops(&lab.router.netns, &prefix)?;
        samples += 1;
        if hops != expected && deviation.is_none() {
            deviation = Some((outage.elapsed(), hops));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..lab.lab.nodes.len() {
        lab.lab.resume_api(i);
    }
    if let Some((at, hops)) = deviation {
        bail!("next hops changed to {hops:?} {at:?} into the API outage");
    }
    eprintln!("{samples} samples over a {OUTAGE:?} API outage: next hops unchanged");

    // A few seconds after the outage, routes and sessions are still as before.
    let after = Instant::now();
    while after.elapsed() < Duration::from_secs(3) {
        let hops = kernel_next_hops(&lab.router.netns, &prefix)?;
        ensure!(hops == expected, "next hops {hops:?} after the API outage");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (name, before) in sessions.iter().zip(&since_before) {
        let bird = lab.bird()?;
        let state = bird.session_state(name)?;
        let since = bird.session_since(name)?;
        ensure!(
            state == "Established" && &since == before,
            "session {name} flapped: {state} since {since} (before: since {before})"
        );
    }

    // The speakers watch again: deleting the Service withdraws its route.
    lab.lab.scenario.delete_service("steady").await?;
    let withdrawn = lab.wait_next_hops(ip, &[], ROUTE_WAIT).await?;
    eprintln!("route withdrawn {withdrawn:?} after the Service was deleted (post-outage)");
    Ok(())
}
