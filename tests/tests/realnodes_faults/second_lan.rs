//! A second LAN's interface going down on real kubelet nodes (issue 11 §4):
//! the IPs a node announces only on eth1 (an L2Advertisement naming
//! `interfaces: ["eth1"]`) move to another node while gossip still flows on
//! eth0; its IPs on eth0 stay put. The netns-lab twin is `tests/tests/l2.rs`
//! `a_named_interface_going_down_moves_only_the_ips_announced_there`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferrolb_tests::arp_probe::{ArpProber, Claim, unsettled_moments};
use ferrolb_tests::l2lab::arping;
use ferrolb_tests::metrics_text::sample_value;
use ferrolb_tests::realnodes::apps::{delete_app, echo_app, v4};
use ferrolb_tests::realnodes::failover::{requests, wait_arp_owner_is};
use ferrolb_tests::realnodes::second_lan::SECOND_LAN_CLIENT_IP;
use ferrolb_tests::realnodes::site::{
    L2_POOL, SECOND_LAN_POOL, exclusive, shared_site_with_second_lan,
};
use ferrolb_tests::realnodes::speakers::speaker_metrics;
use ferrolb_tests::realnodes::{CLIENT_IP, Policy, RealCluster};

use crate::wire::{PROBE_EVERY, answer_since, app};
use crate::{OnDrop, until};

/// The speaker's count of interfaces it cannot announce on.
const UNREACHABLE: &str = "ferrolb_speaker_l2_unreachable_interfaces";

fn ipv4(ip: IpAddr) -> Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(ip) => Ok(ip),
        IpAddr::V6(ip) => bail!("{ip} is not IPv4"),
    }
}

/// The one node whose eth1 answers ARP for `ip` on the client's eth1
/// (waiting up to 30 s for exactly one).
fn eth1_owner(site: &RealCluster, ip: Ipv4Addr) -> Result<usize> {
    until(
        &format!("exactly one node answering ARP for {ip} on eth1"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let macs = arping(&site.client_netns(), ip, "eth1", 2)?;
            Ok(match (macs.len(), macs.iter().next()) {
                (1, Some(mac)) => site.node_with_eth1_mac(mac),
                _ => None,
            })
        },
    )
}

/// Waits (up to 10 s) until node `node`'s speaker reports `value` for
/// [`UNREACHABLE`].
fn wait_unreachable(site: &RealCluster, node: usize, value: f64) -> Result<()> {
    until(
        &format!("{UNREACHABLE} of {} at {value}", site.nodes[node].name),
        Duration::from_secs(10),
        Duration::from_millis(200),
        || {
            let page = speaker_metrics(site, node)?;
            Ok((sample_value(&page, UNREACHABLE) == Some(value)).then_some(()))
        },
    )
}

/// Answers (not gratuitous announcements) in `[from, to]`.
fn answers_in(claims: &[Claim], from: Instant, to: Instant) -> Vec<&Claim> {
    claims
        .iter()
        .filter(|c| !c.gratuitous && c.at >= from && c.at <= to)
        .collect()
}

/// One node owns an IP of pool `l2-eth1` (announced on eth1 only) and one of
/// the ordinary pool `l2` (announced on every interface, eth0 among them).
/// `ip link set eth1 down` on it: another node answers ARP for the eth1 IP
/// on the client's eth1 within 2 s, while the eth0 IP is answered by the
/// owner alone throughout (no other MAC ever). eth1 up again: after at most
/// 1 s of settling one MAC answers every request, sampled for 30 s, and the
/// owner has its IP back.
#[test]
fn a_named_second_interface_going_down_moves_only_the_ips_announced_there() -> Result<()> {
    const WINDOW: Duration = Duration::from_secs(30);
    const SETTLE: Duration = Duration::from_secs(1);
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let (far, _far) = app(site, "lan2-far", SECOND_LAN_POOL, &["203.0.113.161"])?;
    let far = v4(&far)?;
    requests(&site.client, far, 1)?;
    let far = ipv4(far)?;
    let owner = eth1_owner(site, far)?;
    let owner_name = site.nodes[owner].name.clone();
    let (owner_mac, owner_mac2) = (site.nodes[owner].mac()?, site.nodes[owner].mac_eth1()?);
    // An IP on eth0 that the same node must own: its only endpoint is
    // there, and the policy is Local.
    let _near = OnDrop(|| delete_app(site, "lan2-near"));
    let near = echo_app(
        site,
        "lan2-near",
        1,
        Some(&owner_name),
        L2_POOL,
        Policy::Local,
        &["198.51.100.207"],
    )?;
    let near = v4(&near)?;
    requests(&site.client, near, 1)?;
    wait_arp_owner_is(site, near, owner, Duration::from_secs(30))?;
    let near = ipv4(near)?;

    let client = site.client_netns();
    let limit = Duration::from_secs(300);
    let far_prober = ArpProber::start(
        &client,
        "eth1",
        SECOND_LAN_CLIENT_IP,
        far,
        PROBE_EVERY,
        limit,
    )?;
    let near_prober = ArpProber::start(
        &client,
        "eth0",
        CLIENT_IP.parse()?,
        near,
        PROBE_EVERY,
        limit,
    )?;
    let probing = Instant::now();
    answer_since(&far_prober, probing, "the owner answering on eth1", |c| {
        c.mac.eq_ignore_ascii_case(&owner_mac2)
    })?;
    answer_since(&near_prober, probing, "the owner answering on eth0", |c| {
        c.mac.eq_ignore_ascii_case(&owner_mac)
    })?;
    wait_unreachable(site, owner, 0.0)?;

    let _link = OnDrop(|| {
        if let Err(e) = site.restore_second_lan(owner) {
            eprintln!("restoring eth1 of {owner_name}: {e:#}");
        }
    });
    let cut = Instant::now();
    site.cut_second_lan(owner)?;
    let answer = answer_since(&far_prober, cut, "another node answering on eth1", |c| {
        !c.mac.eq_ignore_ascii_case(&owner_mac2)
    })?;
    let took = answer.at - cut;
    let stand_in = site
        .node_with_eth1_mac(&answer.mac)
        .with_context(|| format!("{} is no node's eth1 MAC", answer.mac))?;
    println!(
        "eth1 down on {owner_name}: {} answers on eth1 after {took:?}",
        site.nodes[stand_in].name
    );
    wait_unreachable(site, owner, 1.0)?;

    let restored = Instant::now();
    site.restore_second_lan(owner)?;
    // Both probers ask every 100 ms throughout: wait out the window.
    let end = restored + SETTLE + WINDOW;
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    let far_claims = far_prober.stop()?;
    let near_claims = near_prober.stop()?;
    wait_unreachable(site, owner, 0.0)?;

    let far_answers = answers_in(&far_claims, restored, end);
    let final_mac = far_answers
        .last()
        .map(|c| c.mac.to_ascii_lowercase())
        .context("no ARP answer on eth1 after the link came back")?;
    let final_owner = site
        .node_with_eth1_mac(&final_mac)
        .context("final eth1 MAC")?;
    let moments = unsettled_moments(&far_claims, restored, end, PROBE_EVERY);
    let settling = match (moments.first(), moments.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    // On eth0: from the first probe to the end, the owner's MAC only.
    let strangers: Vec<&Claim> = near_claims
        .iter()
        .filter(|c| !c.mac.eq_ignore_ascii_case(&owner_mac))
        .collect();
    let near_answers = answers_in(&near_claims, cut, end);
    let near_moments = unsettled_moments(&near_claims, cut, end, PROBE_EVERY);
    let expected = |span: Duration| span.as_secs_f64() / PROBE_EVERY.as_secs_f64();
    println!(
        "eth1 up on {owner_name}: {} answers on eth1 in {:?}, final owner {}; unsettled at \
         {moments:?} (settled within {settling:?}). eth0 IP: {} answers in {:?} from cut to end, \
         {} from another MAC, unsettled at {near_moments:?}",
        far_answers.len(),
        end - restored,
        site.nodes[final_owner].name,
        near_answers.len(),
        end - cut,
        strangers.len(),
    );
    assert!(
        took <= Duration::from_secs(2),
        "another node answered on eth1 after {took:?}"
    );
    assert!(
        strangers.is_empty(),
        "the eth0 IP {near} was claimed by another MAC than its owner's {owner_mac}: {strangers:?}"
    );
    assert!(
        near_answers.len() as f64 >= 0.9 * expected(end - cut),
        "the owner answered only {} requests for the eth0 IP in {:?}",
        near_answers.len(),
        end - cut
    );
    assert!(
        far_answers.len() as f64 >= 0.9 * expected(SETTLE + WINDOW),
        "the client saw only {} answers on eth1 in {:?}",
        far_answers.len(),
        SETTLE + WINDOW
    );
    assert!(
        settling <= SETTLE,
        "more than {SETTLE:?} of settling on eth1 after the link came back: answers not from one \
         MAC at {moments:?}"
    );
    assert_eq!(
        final_owner, owner,
        "the owner by election did not take its eth1 IP back"
    );
    Ok(())
}
