//! The data plane survives the control plane (issue 11 §4), on real kubelet
//! nodes: every speaker cut off the API while the kubelets keep theirs, and
//! every kubelet cut off the API (the full-disruption guard) while the
//! speakers keep theirs. The netns-lab twins, with speakers as plain
//! processes, are in `tests/tests/l2.rs`.
//!
//! The two cuts are told apart by the address each side dials: the speakers
//! run on the host network and reach the API through the `kubernetes`
//! Service's ClusterIP, which kube-proxy DNATs to the apiserver in the output
//! hook's NAT chain (priority -100); the kubelet and kube-proxy dial the
//! apiserver's own address. A filter chain on the output hook at priority
//! -150 still sees the ClusterIP, so it can catch either side alone.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ferrolb_tests::arp_probe::{Claim, overlapping_answers};
use ferrolb_tests::realnodes::apps::NS;
use ferrolb_tests::realnodes::failover::{requests as get_n, wait_arp_owner_is};
use ferrolb_tests::realnodes::http_probe::ProbeLoop;
use ferrolb_tests::realnodes::site::{exclusive, shared_site_with_second_lan};
use ferrolb_tests::realnodes::speakers::speaker_http;
use ferrolb_tests::realnodes::wait_nodes_ready;

mod faults;

use faults::*;

#[test]
fn speakers_cut_off_the_api_keep_answering_fail_over_and_a_restarted_one_waits() -> Result<()> {
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let _restore = Restore {
        site,
        apps: vec!["api-cut"],
        services: vec!["api-cut-b"],
    };
    let (kept, owner, owner_mac, kept_probe) = answered_app(site, "api-cut", "198.51.100.218")?;
    let deleted = second_service(site, "api-cut", "api-cut-b", "198.51.100.219")?;
    let deleted_probe = probe(site, deleted)?;
    answer_since(
        &deleted_probe,
        Instant::now(),
        "an answer for the second IP",
        |_| true,
    )?;

    // The cut: every running speaker notices (a new failed watch in its log),
    // and stays ready with its last known state.
    let before: Vec<usize> = (0..site.nodes.len())
        .map(|n| watch_failures(site, n))
        .collect();
    let cut_at = Instant::now();
    cut_speakers_off_the_api(site)?;
    wait(
        "every speaker to log a failed watch",
        Duration::from_secs(30),
        || {
            let now: Vec<usize> = (0..site.nodes.len())
                .map(|n| watch_failures(site, n))
                .collect();
            if now.iter().zip(&before).all(|(now, before)| now > before) {
                Ok(())
            } else {
                Err(anyhow!(
                    "failed watches logged: {before:?} before the cut, {now:?} now"
                ))
            }
        },
    )?;
    let caught_by_cut: Vec<u64> = (0..site.nodes.len())
        .map(|n| caught(site, n, SPEAKERS_CUT))
        .collect::<Result<_>>()?;
    println!(
        "speakers cut off the API: each logged a failed watch within {:?}; packets caught per node {caught_by_cut:?}",
        cut_at.elapsed()
    );

    // SIGKILL of the owner's speaker: gossip alone moves the IP.
    let pid = speaker_pid(site, owner).context("no speaker process on the owner")?;
    let killed = Instant::now();
    ferrolb_tests::netns::run(
        std::process::Command::new("kill").args(["-KILL", &pid.to_string()]),
    )?;
    let answer = answer_since(&kept_probe, killed, "another node answering", |c| {
        !c.mac.eq_ignore_ascii_case(&owner_mac)
    })?;
    let took = answer.at - killed;
    let new_owner = site
        .node_with_mac(&answer.mac)
        .context("an unknown MAC answered")?;
    let new_mac = answer.mac.to_ascii_lowercase();
    println!(
        "API cut: SIGKILL of {}'s speaker -> {} answers after {took:?}",
        site.node(owner).name,
        site.node(new_owner).name
    );
    assert!(
        took <= Duration::from_secs(2),
        "failover without the API took {took:?}"
    );

    // The kubelet (whose own API path is open) restarts the container; the
    // new speaker cannot list and waits, silent and out of the group.
    wait(
        "the restarted speaker to wait for its first list",
        Duration::from_secs(60),
        || {
            let page = speaker_http(site, owner, "/readyz")?;
            if page.contains("waiting for the first list") && speaker_pid(site, owner) != Some(pid)
            {
                Ok(())
            } else {
                Err(anyhow!("/readyz: {page}"))
            }
        },
    )?;
    let restarted_at = Instant::now();
    println!(
        "the kubelet restarted the speaker {:?} after the kill; /readyz: waiting for the first list",
        restarted_at - killed
    );
    while restarted_at.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(200));
        let (macs, gap) = kept_probe.claims_between(restarted_at, Instant::now());
        if macs != BTreeSet::from([new_mac.clone()]) || gap > Duration::from_secs(1) {
            bail!(
                "while the restarted speaker waited: claims of {kept} by {macs:?}, a gap of {gap:?}"
            );
        }
        let (macs, gap) = deleted_probe.claims_between(restarted_at, Instant::now());
        if macs.len() != 1 || macs.contains(&owner_mac) || gap > Duration::from_secs(1) {
            bail!(
                "while the restarted speaker waited: claims of {deleted} by {macs:?}, a gap of {gap:?}"
            );
        }
    }
    let still_waiting = speaker_http(site, owner, "/readyz")?;
    assert!(
        still_waiting.contains("waiting for the first list"),
        "/readyz: {still_waiting}"
    );
    // The kubelets were never cut: every Node is still Ready.
    let names: Vec<&str> = site.nodes.iter().map(|n| n.name.as_str()).collect();
    wait_nodes_ready(&site.api, &names, Duration::from_secs(1))?;

    // The API returns. A Service deleted a second later is withdrawn within
    // 2 s; the restarted speaker lists, joins and takes its IP back.
    for node in 0..site.nodes.len() {
        heal(site, node, SPEAKERS_CUT)?;
    }
    let healed = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let deleted_at = Instant::now();
    site.api
        .kubectl_ok(&["-n", NS, "delete", "service", "api-cut-b", "--wait=false"])?;
    wait(
        "the deleted Service's IP to fall silent",
        Duration::from_secs(30),
        || {
            if deleted_probe.silent_for(Duration::from_millis(700)) {
                Ok(())
            } else {
                Err(anyhow!("still answered"))
            }
        },
    )?;
    let last = deleted_probe.claims().last().map_or(deleted_at, |c| c.at);
    let withdrawn_after = last.saturating_duration_since(deleted_at);
    let listed = wait(
        "the restarted speaker to list",
        Duration::from_secs(30),
        || {
            let page = speaker_http(site, owner, "/readyz")?;
            if page.trim() == "ok" {
                Ok(healed.elapsed())
            } else {
                Err(anyhow!("/readyz: {page}"))
            }
        },
    )?;
    let back = answer_since(&kept_probe, healed, "the restarted owner answering", |c| {
        c.mac.eq_ignore_ascii_case(&owner_mac)
    })?;
    println!(
        "API back: Service deleted 1 s later, last answer {withdrawn_after:?} after the deletion; restarted speaker ready within {listed:?}, answering {:?} after the API returned",
        back.at.saturating_duration_since(healed)
    );
    assert!(
        withdrawn_after <= Duration::from_secs(2),
        "withdrawn {withdrawn_after:?} after the deletion (watches slow to resume)"
    );
    wait_arp_owner_is(site, kept, owner, Duration::from_secs(30))?;
    Ok(())
}

#[test]
fn kubelets_cut_off_the_api_on_every_node_change_no_announcement() -> Result<()> {
    let _one = exclusive();
    let site = shared_site_with_second_lan();
    let _restore = Restore {
        site,
        apps: vec!["api-part"],
        services: vec![],
    };
    let (ip, owner, owner_mac, prober) = answered_app(site, "api-part", "198.51.100.220")?;
    let requests = ProbeLoop::start(
        &site.client,
        SocketAddr::new(ip, 80),
        Duration::from_millis(100),
        Duration::from_secs(1),
        Duration::from_secs(300),
    )?;
    let started = requests.started();

    // The kubelets and kube-proxies dial the apiserver itself; the speakers
    // (ClusterIP, DNATed after the cut's output chain) keep their path.
    let watch_failures_before: Vec<usize> = (0..site.nodes.len())
        .map(|n| watch_failures(site, n))
        .collect();
    let cut_at = Instant::now();
    for node in 0..site.nodes.len() {
        cut_kubelets(site, node)?;
    }
    let all_unknown = wait("every Node Ready=Unknown", Duration::from_secs(90), || {
        let out = site.api.kubectl_ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])?;
        if out.lines().count() == site.nodes.len() && out.lines().all(|s| s == "Unknown") {
            Ok(Instant::now())
        } else {
            Err(anyhow!("Ready: {out:?}"))
        }
    })?;
    // What the node lifecycle controller does next: it marks the pods on
    // unready Nodes NotReady, and the EndpointSlice follows. The speakers see
    // that (their own path is open); sample it while the partition lasts.
    let hold = Instant::now();
    let mut slice_states = BTreeSet::new();
    while hold.elapsed() < Duration::from_secs(20) {
        slice_states.insert(endpoints_ready(site, "api-part")?);
        std::thread::sleep(Duration::from_millis(500));
    }
    let speakers_caught = caught(site, 0, KUBELETS_CUT)?;
    // The speakers kept their API path: no watch of theirs failed.
    let watch_failures_during: Vec<usize> = (0..site.nodes.len())
        .map(|n| watch_failures(site, n))
        .collect();
    assert_eq!(
        watch_failures_during, watch_failures_before,
        "the speakers' watches failed during the kubelets' partition"
    );
    let heal_at = Instant::now();
    for node in 0..site.nodes.len() {
        heal(site, node, KUBELETS_CUT)?;
    }
    let names: Vec<&str> = site.nodes.iter().map(|n| n.name.as_str()).collect();
    wait_nodes_ready(&site.api, &names, Duration::from_secs(90))?;
    let ready_after = heal_at.elapsed();
    let all_ready = ["true"; 3].join(" ");
    wait(
        "the pods to turn ready again",
        Duration::from_secs(60),
        || {
            let states = endpoints_ready(site, "api-part")?;
            (states == all_ready)
                .then_some(())
                .ok_or_else(|| anyhow!("endpoints ready: {states}"))
        },
    )?;
    let pods_ready_after = heal_at.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let end = Instant::now();
    let samples = requests.finish()?;
    // The Nodes turn Unknown one by one (each after the grace period since
    // its own last heartbeat): until the last one does, Ready still counts
    // and an owner turning Unknown first hands over to a Ready node. The
    // guard's promise starts once every Node is Unknown (1 s to settle).
    let guarded = all_unknown + Duration::from_secs(1);
    let (during, during_gap) = prober.claims_between(guarded, heal_at);
    let (_, longest_gap) = prober.claims_between(cut_at, heal_at);
    let (_, heal_gap) = prober.claims_between(heal_at, end);
    let claims = prober.stop()?;
    let window: Vec<Claim> = claims
        .iter()
        .filter(|c| c.at >= cut_at && c.at <= end)
        .cloned()
        .collect();
    let from = cut_at.saturating_duration_since(started);
    let healed = heal_at.saturating_duration_since(started);
    let failed: Vec<_> = samples.iter().filter(|s| s.at >= from && !s.ok()).collect();
    // After the heal, the guard lifts with the first Ready Node, while the
    // pods stay marked not ready until their kubelets post their status
    // again (seconds): kube-proxy, reconnected, drops the Service's traffic
    // meanwhile, and the speakers withdraw with it. An IP can also move to
    // the first Ready Node for a moment. Reported, not asserted.
    let failed_partitioned: Vec<_> = failed.iter().filter(|s| s.at < healed).collect();
    println!(
        "kubelets cut off: every Node Unknown {:?} after the cut, held 20 s (EndpointSlice ready states seen: {slice_states:?}); node-0's cut caught {speakers_caught} packets out, the speakers' watches never failed; ARP for {ip} answered by {during:?} while every Node was Unknown, longest gap {during_gap:?}",
        all_unknown - cut_at
    );
    println!(
        "healed: Nodes Ready after {ready_after:?}, pods ready after {pods_ready_after:?}; longest ARP gap from the cut to the heal {longest_gap:?}, from the heal to 3 s after the pods were ready {heal_gap:?}; answering MAC changes since the cut: {:?}; {} of {} requests failed: {:?}",
        mac_changes(&window, cut_at),
        failed.len(),
        samples.iter().filter(|s| s.at >= from).count(),
        failed
            .iter()
            .map(|s| (s.at.saturating_sub(from), &s.outcome))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        during,
        BTreeSet::from([owner_mac.clone()]),
        "only the owner answered for {ip} while every Node was Unknown"
    );
    assert!(
        longest_gap < Duration::from_secs(1),
        "{ip} went unanswered for {longest_gap:?}"
    );
    // Two answers at once are a split brain only under the guard: the
    // hand-overs before it (an owner's Node turning Unknown before the
    // others) and after the heal are moves decided by each speaker from its
    // own watch, which may overlap for the few milliseconds between the two
    // speakers seeing the same Node change. Reported, not asserted.
    let guarded_claims: Vec<Claim> = window
        .iter()
        .filter(|c| c.at >= guarded && c.at <= heal_at)
        .cloned()
        .collect();
    let overlaps = overlapping_answers(&guarded_claims, Duration::from_millis(50));
    println!(
        "answers overlapping at hand-overs outside the guard: {:?}",
        overlapping_answers(&window, Duration::from_millis(50))
            .iter()
            .map(|(a, b)| (
                a.at.saturating_duration_since(cut_at),
                b.at.saturating_duration_since(a.at)
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        !guarded_claims.is_empty() && overlaps.is_empty(),
        "two nodes answered at once while every Node was Unknown ({} claims): {overlaps:?}",
        guarded_claims.len()
    );
    assert!(
        failed_partitioned.is_empty(),
        "requests failed through the partition: {:?}",
        failed_partitioned
            .iter()
            .take(5)
            .map(|s| (s.at, &s.outcome))
            .collect::<Vec<_>>()
    );
    // Healed, the owner by election answers alone again, and requests pass.
    wait_arp_owner_is(site, ip, owner, Duration::from_secs(30))?;
    get_n(&site.client, ip, 5)?;
    Ok(())
}
