//! Faults on the wire, on real kubelet nodes: the owner's link going down
//! and up again, the client kernel's own unicast reachability probe (NUD
//! PROBE, MetalLB #2920), and a rolling update of the speakers seen by the
//! BGP router as a Graceful Restart (RFC 4724).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ferrolb_tests::arp_probe::{ArpProber, Claim, unsettled_moments};
use ferrolb_tests::l2lab::{Capture, is_gratuitous_arp, ndisc};
use ferrolb_tests::netns::{Netns, in_netns};
use ferrolb_tests::realnodes::apps::{delete_app, echo_app, v4, v6};
use ferrolb_tests::realnodes::failover::{arp_owner, requests, roll_speakers};
use ferrolb_tests::realnodes::site::{BGP_POOL, L2_POOL, exclusive, shared_site_with_second_lan};
use ferrolb_tests::realnodes::speakers::speaker_log;
use ferrolb_tests::realnodes::{CLIENT_IP, Policy, RealCluster, borrowed, wait_nodes_ready};
use ferrolb_tests::router::{ProtocolDetails, kernel_next_hops};
use serde_json::json;

use crate::{OnDrop, until};

/// How often the client asks who has the IP.
pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The first answer (not a gratuitous ARP) at or after `since` that `accept`s.
pub(crate) fn answer_since(
    prober: &ArpProber,
    since: Instant,
    what: &str,
    accept: impl Fn(&Claim) -> bool,
) -> Result<Claim> {
    until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(10),
        || {
            Ok(prober
                .claims()
                .into_iter()
                .find(|c| c.at >= since && !c.gratuitous && accept(c)))
        },
    )
}

/// Deploys the echo app `name` (3 pods) with a LoadBalancer Service asking
/// for `ips` from `pool`; the guard deletes both.
pub(crate) fn app(
    site: &'static RealCluster,
    name: &'static str,
    pool: &str,
    ips: &[&str],
) -> Result<(Vec<IpAddr>, OnDrop<impl FnMut()>)> {
    let guard = OnDrop(move || delete_app(site, name));
    let ips = echo_app(site, name, 3, None, pool, Policy::Cluster, ips)?;
    Ok((ips, guard))
}

/// `ip link set eth0 down` in the owner's namespace: another node answers
/// ARP for the IP within 2 s. Link up again: after at most 1 s of settling,
/// one MAC answers every request, sampled for 30 s, and the final owner sent
/// a gratuitous ARP. The node is Ready again at the end.
#[test]
fn the_owners_link_going_down_moves_its_ip_and_back_up_one_mac_answers() -> Result<()> {
    const WINDOW: Duration = Duration::from_secs(30);
    const SETTLE: Duration = Duration::from_secs(1);
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let (ips, _app) = app(site, "wire-link", L2_POOL, &["198.51.100.226"])?;
    let IpAddr::V4(ip) = v4(&ips)? else {
        unreachable!("v4 gives IPv4")
    };
    requests(&site.client, IpAddr::V4(ip), 1)?;
    let owner = arp_owner(site, IpAddr::V4(ip))?;
    let owner_name = site.nodes[owner].name.clone();
    let owner_mac = site.nodes[owner].mac()?;
    let client = site.client_netns();
    let prober = ArpProber::start(
        &client,
        "eth0",
        CLIENT_IP.parse()?,
        ip,
        PROBE_EVERY,
        Duration::from_secs(300),
    )?;
    answer_since(&prober, Instant::now(), "the owner answering", |c| {
        c.mac.eq_ignore_ascii_case(&owner_mac)
    })?;

    let _link = OnDrop(|| {
        if let Err(e) = site.restore_link(owner) {
            eprintln!("restoring the link of {owner_name}: {e:#}");
        }
    });
    let cut = Instant::now();
    site.cut_link(owner)?;
    let answer = answer_since(&prober, cut, "another node answering", |c| {
        !c.mac.eq_ignore_ascii_case(&owner_mac)
    })?;
    let took = answer.at - cut;
    let stand_in = site
        .node_with_mac(&answer.mac)
        .with_context(|| format!("{} is no node's MAC", answer.mac))?;
    println!(
        "eth0 down on {owner_name}: {} answers after {took:?}",
        site.nodes[stand_in].name
    );

    let capture = Capture::start(&client, "eth0", "arp")?;
    let restored = Instant::now();
    site.restore_link(owner)?;
    // The prober asks every 100 ms throughout: wait out the window.
    let end = restored + SETTLE + WINDOW;
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let claims = prober.stop()?;
    let text = capture.stop();

    let answers: Vec<&Claim> = claims
        .iter()
        .filter(|c| !c.gratuitous && c.at >= restored && c.at <= end)
        .collect();
    let final_mac = answers
        .last()
        .map(|c| c.mac.to_ascii_lowercase())
        .context("no ARP answer after the link came back")?;
    let final_owner = site.node_with_mac(&final_mac).context("final MAC")?;
    let moments = unsettled_moments(&claims, restored, end, PROBE_EVERY);
    let settling = match (moments.first(), moments.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    let gratuitous = text
        .lines()
        .filter(|l| {
            l.split_whitespace().nth(1) == Some(final_mac.as_str()) && is_gratuitous_arp(l, ip)
        })
        .count();
    println!(
        "eth0 up on {owner_name}: {} answers in {:?}, final owner {}; unsettled at {moments:?} \
         (settled within {settling:?}); {gratuitous} gratuitous ARPs from the final owner",
        answers.len(),
        end - restored,
        site.nodes[final_owner].name,
    );
    assert!(
        took <= Duration::from_secs(2),
        "another node took over after {took:?}"
    );
    assert!(
        answers.len() as f64 >= 0.9 * (SETTLE + WINDOW).as_secs_f64() / PROBE_EVERY.as_secs_f64(),
        "the client saw only {} answers in {:?}",
        answers.len(),
        SETTLE + WINDOW
    );
    assert!(
        settling <= SETTLE,
        "more than {SETTLE:?} of settling after the link came back: answers not from one MAC at {moments:?}"
    );
    assert!(
        gratuitous > 0,
        "the final owner {final_mac} sent no gratuitous ARP for {ip} after the link came back:\n{text}"
    );
    // The kubelet lost the API while the link was down.
    wait_nodes_ready(&site.api, &[&owner_name], Duration::from_secs(120))?;
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    Ok(())
}

/// The index of the node the leading controller's pod runs on (the Lease's
/// holder is its pod's name).
fn leading_controller_node(site: &RealCluster) -> Result<usize> {
    let holder = site.controller_leader()?;
    let node = site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "get",
        "pod",
        &holder,
        "-o",
        "jsonpath={.spec.nodeName}",
    ])?;
    site.nodes
        .iter()
        .position(|n| n.name == node.trim())
        .with_context(|| format!("the leader {holder:?} runs on {node:?}, no node of the site"))
}

/// The link under the leading controller goes down for 2 s and up again.
/// That drops the node's masqueraded connection tracking, and with it the
/// controller's watch connections, silently: only a bounded watch notices.
/// A Service created right after still gets its IP within 60 s (kube's
/// default watch would stay blind for almost five minutes), from the same
/// leader, and a node answers ARP for it.
#[test]
fn a_link_flap_under_the_leading_controller_blinds_its_watches_only_briefly() -> Result<()> {
    const DOWN: Duration = Duration::from_secs(2);
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let node = leading_controller_node(site)?;
    let node_name = site.nodes[node].name.clone();
    let _link = OnDrop(|| {
        if let Err(e) = site.restore_link(node) {
            eprintln!("restoring the link of {node_name}: {e:#}");
        }
    });
    site.cut_link(node)?;
    std::thread::sleep(DOWN);
    site.restore_link(node)?;
    let created = Instant::now();
    let (ips, _app) = app(site, "wire-flap", L2_POOL, &["198.51.100.228"])?;
    println!(
        "link of {node_name} (the leading controller's) down for {DOWN:?}: \
         a Service created after got {ips:?} in {:?}",
        created.elapsed()
    );
    let still = leading_controller_node(site)?;
    assert_eq!(
        still, node,
        "the leadership moved, so this did not test the flapped leader's watches"
    );
    let owner = arp_owner(site, v4(&ips)?)?;
    println!("{} answers ARP for it", site.nodes[owner].name);
    wait_nodes_ready(&site.api, &[&node_name], Duration::from_secs(120))?;
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    Ok(())
}

/// A per-namespace sysctl set for a test; the guard puts the old value back.
fn set_sysctl(netns: &Netns, key: &str, value: &str) -> Result<OnDrop<impl FnMut()>> {
    let old = netns.exec_ok(&["sysctl", "-n", key])?.trim().to_string();
    let (name, key) = (netns.name.clone(), key.to_string());
    netns.exec_ok(&["sysctl", "-qw", &format!("{key}={value}")])?;
    Ok(OnDrop(move || {
        if let Err(e) = borrowed(&name).exec_ok(&["sysctl", "-qw", &format!("{key}={old}")]) {
            eprintln!("restoring {key}={old}: {e:#}");
        }
    }))
}

/// The state of `netns`'s neighbour entry for `ip` on eth0 ("REACHABLE",
/// "STALE"...), empty when there is none.
fn neighbour_state(netns: &Netns, ip: Ipv6Addr) -> Result<String> {
    let out = netns.ip(&["-6", "neigh", "show", &ip.to_string(), "dev", "eth0"])?;
    Ok(out
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string())
}

/// A Neighbor Solicitation or Advertisement for one IP in a [`Capture`] line.
struct NdpLine {
    /// Seconds since the epoch, as tcpdump's `-tt` gives them.
    at: f64,
    from_mac: String,
    to_mac: String,
    to_ip: String,
    solicitation: bool,
}

/// The Neighbor Solicitations and Advertisements for `ip` in a capture.
fn ndp_lines(text: &str, ip: Ipv6Addr) -> Vec<NdpLine> {
    text.lines()
        .filter_map(|line| {
            let solicitation = line.contains(&format!("neighbor solicitation, who has {ip}"));
            let advertisement = line.contains(&format!("neighbor advertisement, tgt is {ip}"));
            if !(solicitation || advertisement) {
                return None;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            // "... > DST-MAC, ethertype IPv6 ...: SRC-IP > DST-IP: ICMP6, ..."
            let to_ip = line
                .split(" > ")
                .nth(2)?
                .split(": ICMP6")
                .next()?
                .to_string();
            Some(NdpLine {
                at: words.first()?.parse().ok()?,
                from_mac: words.get(1)?.to_ascii_lowercase(),
                to_mac: words.get(3)?.trim_end_matches(',').to_ascii_lowercase(),
                to_ip,
                solicitation,
            })
        })
        .collect()
}

/// The client resolves the Service's IPv6 address; its neighbour entry goes
/// STALE within about a second (lowered reachable time), and traffic makes
/// its kernel check reachability with a unicast Neighbor Solicitation to the
/// owner's MAC (NUD PROBE). Every such probe gets the owner's answer, and
/// the entry returns to REACHABLE, never FAILED.
#[test]
fn the_client_kernels_unicast_reachability_probes_are_answered_by_the_owner() -> Result<()> {
    const TRAFFIC: Duration = Duration::from_secs(20);
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let (ips, _app) = app(
        site,
        "wire-nud",
        L2_POOL,
        &["198.51.100.227", "2001:db8:100::227"],
    )?;
    let IpAddr::V6(ip) = v6(&ips)? else {
        unreachable!("v6 gives IPv6")
    };
    let client = site.client_netns();
    let client_mac = client.mac("eth0")?.to_ascii_lowercase();
    // ndisc6 takes Neighbor Advertisements from every interface of the
    // client. The owner announces the IP on both LANs (the pool's
    // L2Advertisement names no interface), so right after it gains the IP its
    // unsolicited advertisements on the second LAN reach the client's eth1
    // and may be the first ndisc6 sees: only a node's eth0 MAC is an answer
    // on this LAN. (Seen when this test followed a link flap: the owner's
    // watches were still reconnecting, so it gained the IP while ndisc6 ran.)
    let (owner_mac, owner) = until(
        "exactly one node answering NDP with its eth0 MAC",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let macs = ndisc(&client, ip, "eth0")?;
            Ok((macs.len() == 1)
                .then(|| macs.into_iter().next())
                .flatten()
                .and_then(|mac| site.node_with_mac(&mac).map(|node| (mac, node))))
        },
    )?;

    let _reachable = set_sysctl(
        &client,
        "net.ipv6.neigh.eth0.base_reachable_time_ms",
        "1000",
    )?;
    let _delay = set_sysctl(&client, "net.ipv6.neigh.eth0.delay_first_probe_time", "1")?;
    let _ = client.ip(&["-6", "neigh", "del", &ip.to_string(), "dev", "eth0"]);
    let capture = Capture::start(
        &client,
        "eth0",
        "icmp6 and (ip6[40] == 135 or ip6[40] == 136)",
    )?;

    // UDP datagrams every 100 ms: traffic that, unlike TCP, never confirms
    // the neighbour, so the kernel has to probe it.
    let netns = client.name.clone();
    let sender = std::thread::spawn(move || {
        in_netns(&borrowed(&netns), move || {
            let socket = std::net::UdpSocket::bind("[::]:0")?;
            let started = Instant::now();
            let mut sent = 0usize;
            while started.elapsed() < TRAFFIC {
                sent += usize::from(socket.send_to(b"nud", (ip, 9)).is_ok());
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(sent)
        })
    });
    let started = Instant::now();
    let mut states: Vec<(Duration, String)> = Vec::new();
    while !sender.is_finished() && started.elapsed() < TRAFFIC + Duration::from_secs(10) {
        let state = neighbour_state(&client, ip)?;
        if states.last().is_none_or(|(_, last)| *last != state) {
            states.push((started.elapsed(), state));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = sender
        .join()
        .map_err(|_| anyhow!("the UDP sender panicked"))??;
    // The last probe's answer: wait for the entry to be REACHABLE again.
    let last_state = until(
        "the neighbour entry REACHABLE after the traffic",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let state = neighbour_state(&client, ip)?;
            Ok(matches!(state.as_str(), "REACHABLE" | "STALE").then_some(state))
        },
    );
    let text = capture.stop();

    let lines = ndp_lines(&text, ip);
    let probes: Vec<&NdpLine> = lines
        .iter()
        .filter(|l| l.solicitation && l.from_mac == client_mac && l.to_ip == ip.to_string())
        .collect();
    let answered = |probe: &&NdpLine| {
        lines.iter().any(|l| {
            !l.solicitation
                && l.from_mac == owner_mac
                && l.to_mac == client_mac
                && l.at >= probe.at
                && l.at <= probe.at + 1.0
        })
    };
    let unanswered: Vec<f64> = probes
        .iter()
        .filter(|p| !answered(p))
        .map(|p| p.at)
        .collect();
    let failed = nud_failed(states.iter().map(|(_, state)| state.as_str()));
    println!(
        "{sent} datagrams to {ip} (owner {}): {} unicast solicitations by the client's kernel, \
         {} unanswered; neighbour states {states:?}; after the traffic {last_state:?}",
        site.nodes[owner].name,
        probes.len(),
        unanswered.len()
    );
    assert!(
        probes.len() >= 3,
        "the client's kernel sent only {} unicast solicitations for {ip}:\n{text}",
        probes.len()
    );
    assert!(
        probes.iter().all(|p| p.to_mac == owner_mac),
        "every probe goes to the owner's MAC {owner_mac}:\n{text}"
    );
    assert!(
        unanswered.is_empty(),
        "unicast solicitations for {ip} sent at {unanswered:?} got no answer from {owner_mac}:\n{text}"
    );
    assert!(!failed, "the neighbour entry for {ip} failed: {states:?}");
    last_state?;
    Ok(())
}

/// Whether a neighbour entry's states, as sampled in order from its deletion,
/// show a failed reachability check: FAILED at any time, or INCOMPLETE once the
/// entry has been REACHABLE. INCOMPLETE before that is the first resolution,
/// which a sample taken while the multicast solicitation is answered can catch;
/// an entry that never became REACHABLE failed too.
fn nud_failed<'s>(states: impl IntoIterator<Item = &'s str>) -> bool {
    let mut resolved = false;
    for state in states {
        match state {
            "FAILED" => return true,
            "INCOMPLETE" if resolved => return true,
            "REACHABLE" => resolved = true,
            _ => {}
        }
    }
    !resolved
}

#[test]
fn nud_fails_on_failed_or_incomplete_after_resolution_but_not_on_the_first_resolution() {
    assert!(!nud_failed([
        "",
        "INCOMPLETE",
        "REACHABLE",
        "STALE",
        "DELAY",
        "REACHABLE"
    ]));
    assert!(nud_failed(["REACHABLE", "DELAY", "PROBE", "FAILED"]));
    assert!(nud_failed([
        "REACHABLE",
        "DELAY",
        "INCOMPLETE",
        "REACHABLE"
    ]));
    assert!(nud_failed(["INCOMPLETE", "FAILED"]));
    assert!(nud_failed(["", "INCOMPLETE"]));
}

/// BIRD's protocol for node `node`.
fn bgp_protocol(site: &RealCluster, node: usize) -> String {
    site.nodes[node].name.replace('-', "_")
}

/// Whether the router has a session with every node and each passes `check`.
fn every_session(
    site: &RealCluster,
    check: impl Fn(usize, &ProtocolDetails) -> Result<bool>,
) -> Result<bool> {
    let protocols = site.bird.as_ref().context("no router")?.protocols()?;
    for node in 0..site.nodes.len() {
        match protocols.get(&bgp_protocol(site, node)) {
            Some(session) if check(node, session)? => {}
            _ => return Ok(false),
        }
    }
    Ok(true)
}

/// Sets (or with null, removes) `enableGracefulRestart` of the site's BGPPeer.
fn graceful_restart_on_the_peer(site: &RealCluster, value: serde_json::Value) -> Result<()> {
    site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "patch",
        "bgppeer",
        "router",
        "--type=merge",
        "-p",
        &json!({"spec": {"enableGracefulRestart": value}}).to_string(),
    ])?;
    Ok(())
}

/// One look at the router during the rolling update.
struct RouterSample {
    at: Duration,
    hops: BTreeSet<IpAddr>,
    protocols: BTreeMap<String, ProtocolDetails>,
}

/// A Service in the BGP pool, announced by every node, and the speakers
/// rolled (`kubectl rollout restart`): every 100 ms the router's ECMP route
/// has every node, and BIRD saw each node's session go down and helped it
/// through a Graceful Restart.
#[test]
fn a_rolling_update_of_the_speakers_is_a_graceful_restart_for_the_router() -> Result<()> {
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let bird = site.bird.as_ref().context("the site has a router")?;
    let router = borrowed(site.router.as_deref().context("the site has a router")?);
    let protocol = |node: usize| bgp_protocol(site, node);
    let nodes = 0..site.nodes.len();

    // The site's peer runs without Graceful Restart (the default), as the
    // other tests expect of a killed speaker: on for this test only.
    let _peer = OnDrop(|| {
        if let Err(e) = graceful_restart_on_the_peer(site, serde_json::Value::Null) {
            eprintln!("turning Graceful Restart off again: {e:#}");
        }
    });
    graceful_restart_on_the_peer(site, json!(true))?;
    // Each speaker restarts its session with the capability.
    until(
        "every speaker's session restarted with Graceful Restart",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let restarted = every_session(site, |node, session| {
                Ok(session.state == "Established"
                    && speaker_log(site, node)?.contains("session settings changed"))
            })?;
            Ok(restarted.then_some(()))
        },
    )?;
    let (ips, _app) = app(site, "wire-gr", BGP_POOL, &["203.0.113.248"])?;
    let prefix = format!("{}/32", v4(&ips)?);
    let every_node: BTreeSet<IpAddr> = site.nodes.iter().map(|n| IpAddr::V4(n.ip4)).collect();
    until(
        "a next hop per node",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let hops: BTreeSet<IpAddr> = kernel_next_hops(&router, &prefix)?.into_iter().collect();
            Ok((hops == every_node).then_some(()))
        },
    )?;

    let sampling = std::sync::atomic::AtomicBool::new(true);
    let first_taken = std::sync::Barrier::new(2);
    let started = Instant::now();
    let (samples, rolled) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut samples = Vec::new();
            while sampling.load(std::sync::atomic::Ordering::Relaxed) && samples.len() < 3000 {
                samples.push(RouterSample {
                    at: started.elapsed(),
                    hops: kernel_next_hops(&router, &prefix)
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    protocols: bird.protocols().unwrap_or_default(),
                });
                if samples.len() == 1 {
                    first_taken.wait();
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            samples
        });
        let rolled = (|| -> Result<Duration> {
            first_taken.wait();
            roll_speakers(site)?;
            let rolled = started.elapsed();
            // Back: every session Established, and every End-of-RIB in.
            until(
                "every session Established and out of Graceful Restart",
                Duration::from_secs(60),
                Duration::from_millis(100),
                || {
                    let back = every_session(site, |_, session| {
                        Ok(session.state == "Established" && !session.graceful_restart_active())
                    })?;
                    Ok(back.then_some(()))
                },
            )?;
            Ok(rolled)
        })();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        (sampler.join(), rolled)
    });
    let samples = samples.map_err(|_| anyhow!("the sampler panicked"))?;
    let rolled = rolled?;

    let missing: Vec<(Duration, BTreeSet<IpAddr>)> = samples
        .iter()
        .filter(|s| s.hops != every_node)
        .map(|s| (s.at, s.hops.clone()))
        .collect();
    let count = |node: usize, seen: &dyn Fn(&ProtocolDetails) -> bool| {
        samples
            .iter()
            .filter(|s| s.protocols.get(&protocol(node)).is_some_and(seen))
            .count()
    };
    let down: Vec<usize> = nodes
        .clone()
        .map(|n| count(n, &|p| p.state != "Established"))
        .collect();
    let restarting: Vec<usize> = nodes
        .clone()
        .map(|n| count(n, &|p| p.graceful_restart_active()))
        .collect();
    let after = bird.protocols()?;
    let offered: Vec<bool> = nodes
        .clone()
        .map(|n| {
            after
                .get(&protocol(n))
                .is_some_and(|p| p.neighbor_offers_graceful_restart())
        })
        .collect();
    println!(
        "speakers rolled in {rolled:?}: {} router samples, {} without every node; per node, \
         samples with the session down {down:?}, in Graceful Restart {restarting:?}; \
         the new sessions offer Graceful Restart: {offered:?}",
        samples.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "the router's next hops for {prefix} lost a node during the rolling update: {:?}",
        missing.iter().take(10).collect::<Vec<_>>()
    );
    for node in nodes {
        let name = &site.nodes[node].name;
        assert!(
            down[node] > 0,
            "BIRD never saw {name}'s session down: no restart sampled"
        );
        assert!(
            restarting[node] > 0,
            "BIRD never helped {name} through a Graceful Restart: its session went plainly down"
        );
        assert!(
            offered[node],
            "{name}'s new session does not offer Graceful Restart"
        );
    }
    Ok(())
}
