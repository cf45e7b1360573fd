//! End-to-end benchmark of L2 mode: three node namespaces with release-built
//! speakers, the real controller and apiserver, and an ARP client
//! ([`ferrolb_tests::arp_probe`]) timing what it sees on the LAN. Run by
//! `cargo xtask bench l2`; figures go to BENCHMARKS.md. Never asserted in
//! tests: timings on a shared 2-core machine are not stable enough.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use super::measure::{machine_line, peak_rss_mib, release_runtime, rss_mib, summary, track};
use ferrolb_tests::arp_probe::{ArpProber, Claim, round_trips};
use ferrolb_tests::env::wait_for;
use ferrolb_tests::l2lab::{L2Lab, LabShape};
use ferrolb_tests::metrics_text::sample_value;

/// What to measure, and how often.
#[derive(Clone, Copy, Debug)]
pub struct L2BenchPlan {
    /// Hard kills of an owner's speaker.
    pub kills: usize,
    /// Services created for the assignment-to-answer figure.
    pub assignments: usize,
    /// Sequential ARP requests for the reply-latency figure.
    pub round_trips: usize,
    /// Announced IPs for the memory figure.
    pub bulk_ips: usize,
}

/// How often the prober asks while it waits for a change.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
/// Services made to find an IP owned by each node (the pool holds 16).
const FAILOVER_SERVICES: usize = 12;
/// Label of the node that announces the bulk pool.
pub const BULK_LABEL: &str = "bench.ferrolb.io/bulk";

/// Runs the benchmark, printing one line per figure.
pub fn run(plan: L2BenchPlan) -> Result<()> {
    release_runtime()?.block_on(async {
        println!("{}", machine_line());
        let mut lab = L2Lab::start(
            "bench-l2",
            LabShape {
                nodes: 3,
                second_lan: false,
                own_cluster: false,
            },
        )
        .await?;
        lab.advertise("lan", json!({"ipAddressPools": ["lan"]}))
            .await?;
        bulk_pool(&lab).await?;
        lab.start_speakers()?;

        reply_latency(&lab, plan.round_trips).await?;
        assignment_to_answer(&lab, plan.assignments).await?;
        failover(&mut lab, plan.kills).await?;
        memory(&lab, plan.bulk_ips).await
    })
}

/// The pool `bulk` (IPv6, 2,048 addresses of the LAN) and its L2Advertisement, which
/// selects node 0 only (labelled [`BULK_LABEL`]).
pub async fn bulk_pool(lab: &L2Lab) -> Result<()> {
    let k = lab.index();
    lab.scenario
        .pool(
            "bulk",
            json!({"addresses": [format!("2001:db8:5100:{k:x}::1000-2001:db8:5100:{k:x}::17ff")]}),
        )
        .await?;
    lab.advertise(
        "bulk",
        json!({"ipAddressPools": ["bulk"], "nodeSelectors": [{"matchLabels": {BULK_LABEL: "yes"}}]}),
    )
    .await?;
    lab.create_node(0, &[(BULK_LABEL, "yes")]).await
}

pub fn ipv4(ip: &IpAddr) -> Result<Ipv4Addr> {
    match ip {
        IpAddr::V4(v4) => Ok(*v4),
        IpAddr::V6(v6) => bail!("expected an IPv4 address, got {v6}"),
    }
}

/// ARP request to answer, as the client sees it, for a Service IP (answered
/// by the speaker from user space) and for a node's own address (answered by
/// the kernel, the floor).
async fn reply_latency(lab: &L2Lab, samples: usize) -> Result<()> {
    let ips = lab.service("rtt", json!({}), 1).await?;
    let ip = ipv4(ips.first().context("no IP for rtt")?)?;
    let owner = lab.wait_arp_owner(ip).await?;
    for (what, target) in [
        ("Service IP, speaker answers", ip),
        ("node IP, kernel answers", lab.nodes[owner].ip4),
    ] {
        let us = lab.client_ip4();
        let times = tokio::task::block_in_place(|| {
            round_trips(
                &lab.client,
                "eth0",
                us,
                target,
                samples,
                Duration::from_millis(200),
            )
        })?;
        let lost = times.iter().filter(|t| t.is_none()).count();
        let answered: Vec<Duration> = times.into_iter().flatten().collect();
        println!(
            "{} ({lost} of {samples} unanswered)",
            summary(&format!("ARP reply latency, {what}"), answered)
        );
    }
    lab.scenario.delete_service("rtt").await
}

/// From the Service's IP appearing in its status (and from its creation) to
/// the first ARP packet claiming the IP on the LAN.
async fn assignment_to_answer(lab: &L2Lab, samples: usize) -> Result<()> {
    let seen = track(lab.scenario.services());
    let k = u32::from(lab.index());
    // The last address of the lab's IPv4 pool, asked for explicitly so the
    // client can probe it before it is assigned.
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 31)) + 32 * k);
    let all: Vec<usize> = (0..lab.nodes.len()).collect();
    let (mut from_status, mut from_create) = (Vec::new(), Vec::new());
    let mut gratuitous_first = 0;
    for sample in 0..samples {
        let name = format!("assign-{sample}");
        lab.endpoints(&name, &all).await?;
        let prober = probe(lab, ip)?;
        let created = Instant::now();
        lab.scenario
            .service(
                &name,
                json!({"metadata": {"annotations": {"ferrolb.io/loadBalancerIPs": ip.to_string()}}}),
            )
            .await?;
        let assigned = wait_for(
            &format!("{name} to get {ip}"),
            Duration::from_secs(20),
            || async { seen.lock().ok()?.with_ip.get(&name).copied() },
        )
        .await?;
        let claim = wait_for(
            &format!("an ARP claim of {ip}"),
            Duration::from_secs(20),
            || async { prober.first_claim_since(created, None) },
        )
        .await?;
        from_status.push(claim.at.saturating_duration_since(assigned));
        from_create.push(claim.at.saturating_duration_since(created));
        gratuitous_first += usize::from(claim.gratuitous);
        lab.scenario.delete_service(&name).await?;
        wait_silent(&prober, ip).await?;
        prober.stop()?;
    }
    println!(
        "{}",
        summary(
            "IP in Service status -> first ARP packet for it",
            from_status
        )
    );
    println!(
        "{} ({gratuitous_first} of {samples} first packets were gratuitous ARPs)",
        summary("Service created -> first ARP packet for it", from_create)
    );
    Ok(())
}

/// Starts the client probing `ip` on the LAN every [`PROBE_INTERVAL`], for at most a minute.
fn probe(lab: &L2Lab, ip: Ipv4Addr) -> Result<ArpProber> {
    lab.arp_prober(ip, PROBE_INTERVAL, Duration::from_secs(60))
}

/// Waits until nobody has claimed `ip` for half a second.
async fn wait_silent(prober: &ArpProber, ip: Ipv4Addr) -> Result<()> {
    wait_for(
        &format!("{ip} to fall silent"),
        Duration::from_secs(20),
        || async { prober.silent_for(Duration::from_millis(500)).then_some(()) },
    )
    .await
}

/// Hard kills of an owner's speaker: time from SIGKILL to the first ARP
/// packet from another node, and to the first answer to the client's
/// requests. The killed speaker is restarted and takes its IPs back before
/// the next kill; owners rotate over the nodes.
async fn failover(lab: &mut L2Lab, kills: usize) -> Result<()> {
    let mut names = Vec::new();
    let mut ips = Vec::new();
    for i in 0..FAILOVER_SERVICES {
        let name = format!("fo-{i}");
        let assigned = lab.service(&name, json!({}), 1).await?;
        ips.push(ipv4(assigned.first().context("no IP")?)?);
        names.push(name);
    }
    let targets = owners(lab, &ips).await?;
    let timed = time_kills(lab, &targets, kills, &mut |lab, i| lab.start_speaker(i)).await?;
    println!("{}", timed.summary());
    for name in names {
        lab.scenario.delete_service(&name).await.ok();
    }
    Ok(())
}

/// One IP owned by each node that owns any of `ips` (node, IP), as the client's ARP
/// requests show.
pub async fn owners(lab: &L2Lab, ips: &[Ipv4Addr]) -> Result<Vec<(usize, Ipv4Addr)>> {
    let mut owned_by: BTreeMap<usize, Ipv4Addr> = BTreeMap::new();
    for ip in ips {
        let owner = lab.wait_arp_owner(*ip).await?;
        owned_by.entry(owner).or_insert(*ip);
        if owned_by.len() == lab.nodes.len() {
            break;
        }
    }
    let targets: Vec<(usize, Ipv4Addr)> = owned_by.into_iter().collect();
    println!(
        "failover targets (node, IP): {:?}",
        targets
            .iter()
            .map(|(n, ip)| (lab.nodes[*n].name.clone(), *ip))
            .collect::<Vec<_>>()
    );
    Ok(targets)
}

/// What [`time_kills`] measured.
#[derive(Default)]
pub struct Failovers {
    /// SIGKILL to the first ARP packet from another node.
    pub first_packet: Vec<Duration>,
    /// SIGKILL to another node answering the client's request.
    pub first_answer: Vec<Duration>,
    /// Kills whose first packet was a gratuitous ARP.
    pub gratuitous_first: usize,
    /// Kills whose first answer answered a request sent before the new
    /// owner's first packet (it waited on the new owner's socket).
    pub request_before_takeover: usize,
}

impl Failovers {
    pub fn summary(&self) -> String {
        let kills = self.first_packet.len();
        format!(
            "{} ({} of {kills} were gratuitous ARPs)\n{} ({} of {kills} answered a request sent before the first packet)",
            summary(
                "SIGKILL of the owner's speaker -> first ARP packet from the new owner",
                self.first_packet.clone()
            ),
            self.gratuitous_first,
            summary(
                "SIGKILL of the owner's speaker -> new owner answers the client's ARP request",
                self.first_answer.clone()
            ),
            self.request_before_takeover
        )
    }
}

/// `kills` SIGKILLs of the owner of one of `targets` (in turn), each timed with the
/// client's prober; `restart` starts the killed node's speaker again, and the owner takes
/// its IP back before the next kill.
pub async fn time_kills(
    lab: &mut L2Lab,
    targets: &[(usize, Ipv4Addr)],
    kills: usize,
    restart: &mut dyn FnMut(&mut L2Lab, usize) -> Result<()>,
) -> Result<Failovers> {
    let mut out = Failovers::default();
    if targets.is_empty() {
        bail!("no failover targets");
    }
    for kill in 0..kills {
        let (owner, ip) = targets[kill % targets.len()];
        let owner_mac = lab.nodes[owner].mac.clone();
        let prober = probe(lab, ip)?;
        // Steady state first: the owner answers.
        wait_for_claim_by(&prober, &owner_mac, Instant::now(), "to answer").await?;
        let killed = Instant::now();
        lab.kill_speaker(owner);
        let other_mac = |c: &Claim| c.at >= killed && !c.mac.eq_ignore_ascii_case(&owner_mac);
        let answer = wait_for(
            &format!("another node answering for {ip}"),
            Duration::from_secs(30),
            || async {
                prober
                    .claims()
                    .into_iter()
                    .find(|c| other_mac(c) && !c.gratuitous)
            },
        )
        .await?;
        let first = prober
            .claims()
            .into_iter()
            .find(|c| other_mac(c))
            .context("no claim")?;
        let elapsed = |c: &Claim| c.at.saturating_duration_since(killed);
        // Which request the first answer answers: the latest one sent before
        // it. Sent before the new owner's first packet means the request
        // waited on the new owner's socket while it took over.
        let answered_request = prober.request_sent_before(answer.at);
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let request_note = match answered_request {
            Some(sent) if sent <= first.at => format!(
                "its request sent {:.0} µs before the first packet",
                micros(first.at - sent)
            ),
            Some(sent) => format!(
                "its request sent {:.0} µs after the first packet",
                micros(sent - first.at)
            ),
            None => "no request before it".to_string(),
        };
        out.request_before_takeover += usize::from(answered_request.is_some_and(|s| s <= first.at));
        println!(
            "kill {kill}: {} -> {}: first packet {:.3} ms{}, first answer {:.3} ms ({:.0} µs after the first packet; {request_note})",
            lab.nodes[owner].name,
            lab.node_with_mac(&answer.mac)
                .map(|n| lab.nodes[n].name.clone())
                .unwrap_or_else(|| answer.mac.clone()),
            elapsed(&first).as_secs_f64() * 1000.0,
            if first.gratuitous {
                " (gratuitous)"
            } else {
                ""
            },
            elapsed(&answer).as_secs_f64() * 1000.0,
            micros(answer.at.saturating_duration_since(first.at)),
        );
        out.gratuitous_first += usize::from(first.gratuitous);
        out.first_packet.push(elapsed(&first));
        out.first_answer.push(elapsed(&answer));

        restart(lab, owner)?;
        wait_for_claim_by(&prober, &owner_mac, Instant::now(), "to take the IP back").await?;
        prober.stop()?;
        // Let the membership settle before the next kill.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(out)
}

/// Waits until `mac` claims the probed IP at or after `since`.
pub async fn wait_for_claim_by(
    prober: &ArpProber,
    mac: &str,
    since: Instant,
    what: &str,
) -> Result<()> {
    wait_for(
        &format!("{mac} {what}"),
        Duration::from_secs(30),
        || async {
            prober
                .claims()
                .iter()
                .any(|c| c.at >= since && c.mac.eq_ignore_ascii_case(mac))
                .then_some(())
        },
    )
    .await
}

/// The announced-IPs gauge of node `i`'s speaker.
pub fn announced_ips(lab: &L2Lab, i: usize) -> Option<u64> {
    let text = lab.speaker_http(i, "/metrics").ok()?;
    sample_value(&text, "ferrolb_speaker_l2_announced_ips").map(|v| v as u64)
}

fn memory_line(lab: &L2Lab, i: usize) -> String {
    let pid = lab.speaker_pid(i);
    format!(
        "{}: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        lab.nodes[i].name,
        pid.and_then(rss_mib).unwrap_or(f64::NAN),
        pid.and_then(peak_rss_mib).unwrap_or(f64::NAN),
    )
}

/// Creates Services `prefix-0` .. with `extra` merged in, 16 at a time, each with a ready
/// endpoint on node 0 only.
pub async fn create_bulk(
    lab: &L2Lab,
    prefix: &str,
    count: usize,
    extra: &serde_json::Value,
) -> Result<()> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let name = format!("{prefix}-{i}");
            lab.endpoints(&name, &[0]).await?;
            lab.scenario.service(&name, extra.clone()).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Speaker memory with `count` IPv6 Service IPs, all announced by node 0
/// (the bulk L2Advertisement selects only it); nodes 1 and 2 watch the same
/// objects and announce none of them.
async fn memory(lab: &L2Lab, count: usize) -> Result<()> {
    for i in 0..lab.nodes.len() {
        println!("before the bulk Services, {}", memory_line(lab, i));
    }
    let started = Instant::now();
    let bulk = json!({
        "metadata": {"annotations": {"ferrolb.io/address-pool": "bulk"}},
        "spec": {"ipFamilies": ["IPv6"]},
    });
    create_bulk(lab, "bulk", count, &bulk).await?;
    let created = started.elapsed();
    wait_for(
        &format!("node 0 announcing {count} IPs"),
        Duration::from_secs(600),
        || async { (announced_ips(lab, 0)? >= count as u64).then_some(()) },
    )
    .await?;
    println!(
        "{count} IPv6 Services with endpoints created in {:.1} s, all announced by {} after {:.1} s",
        created.as_secs_f64(),
        lab.nodes[0].name,
        started.elapsed().as_secs_f64()
    );
    // Spot check on the wire: a few of them answer NDP from node 0.
    let sample: Vec<usize> = (0..count).step_by((count / 5).max(1)).collect();
    for i in sample {
        let ips = lab.scenario.ips(&format!("bulk-{i}")).await?;
        let ip = ips.first().context("bulk Service without IP")?.parse()?;
        let macs = lab.ndisc(ip, "eth0")?;
        let owner: Vec<Option<usize>> = macs.iter().map(|m| lab.node_with_mac(m)).collect();
        println!("ndisc6 {ip}: answered by {owner:?}");
    }
    // Let the status objects and Events settle, then measure.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for i in 0..lab.nodes.len() {
        println!(
            "with {count} IPs ({} announced here), {}",
            announced_ips(lab, i).unwrap_or_default(),
            memory_line(lab, i)
        );
    }
    Ok(())
}
