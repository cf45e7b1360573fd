//! L2 failover, FerroLB and MetalLB, in the same three-node lab as `cargo xtask bench l2`:
//! both projects' Services exist side by side (FerroLB's of the lab's class, MetalLB's
//! unclassed, from a pool of its own on the same LAN); one project's speakers run at a time,
//! in alternating rounds, and each kill is timed with the lab's ARP prober.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde_json::json;

use ferrolb_tests::l2lab::{L2Lab, LabShape};
use ferrolb_tests::metallb;

use super::super::l2::{
    BULK_LABEL, Failovers, announced_ips, bulk_pool, create_bulk, ipv4, owners, time_kills,
};
use super::super::measure::{peak_rss_mib, rss_mib};
use super::metallb_lab::MetalLbSide;
use super::{Project, order};
use ferrolb_tests::env::wait_for;

/// Services of each project made to find an IP owned by each node.
const FERROLB_SERVICES: usize = 12;
/// MetalLB's pool holds the 7 free addresses below the lab's pool (.3 to .9 of its /27).
const METALLB_SERVICES: usize = 7;

/// MetalLB's side of the lab: a pool of the 7 free addresses below the lab's pool and an
/// L2Advertisement in `metallb-system`, with its controller, speaker Pods and memberlist key.
fn install_metallb(lab: &L2Lab) -> Result<MetalLbSide> {
    let k = u32::from(lab.index());
    let base = u32::from(Ipv4Addr::new(198, 51, 100, 0)) + 32 * k;
    let (first, last) = (Ipv4Addr::from(base + 3), Ipv4Addr::from(base + 9));
    MetalLbSide::install(
        lab,
        &format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {{name: lan, namespace: {ns}}}\nspec: {{addresses: [\"{first}-{last}\"]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
             metadata: {{name: lan, namespace: {ns}}}\nspec: {{ipAddressPools: [lan]}}\n",
            ns = metallb::NAMESPACE
        ),
    )
}

/// Creates `count` Services named `prefix-N` with `extra`, each with endpoints on every
/// node, and returns their IPv4 addresses.
async fn services(
    lab: &L2Lab,
    prefix: &str,
    count: usize,
    extra: serde_json::Value,
) -> Result<Vec<Ipv4Addr>> {
    let mut ips = Vec::new();
    for i in 0..count {
        let assigned = lab
            .service(&format!("{prefix}-{i}"), extra.clone(), 1)
            .await?;
        ips.push(ipv4(assigned.first().context("no IP")?)?);
    }
    Ok(ips)
}

/// What the lab measured of one project.
#[derive(Default)]
pub struct L2Figures {
    pub failovers: Failovers,
    /// Node 0's speaker announcing the bulk IPs: VmRSS and VmHWM, MiB.
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
}

/// How many of MetalLB's bulk Services node 0 announces, by the ServiceL2Status objects
/// its speaker writes for what it announces.
fn metallb_announced(lab: &L2Lab) -> Result<usize> {
    let statuses = lab.scenario.cluster.kubectl_ok(&[
        "-n",
        metallb::NAMESPACE,
        "get",
        "servicel2statuses.metallb.io",
        "-o",
        "jsonpath={range .items[*]}{.status.node} {.status.serviceName}{\"\\n\"}{end}",
    ])?;
    let node = &lab.nodes[0].name;
    Ok(statuses
        .lines()
        .filter(|l| {
            l.split_once(' ')
                .is_some_and(|(n, s)| n == node && s.starts_with("bulk-metallb-"))
        })
        .count())
}

/// Both projects' bulk pools (IPv6, announced by node 0 only) and `count` Services in each,
/// with an endpoint on node 0.
async fn create_bulk_both(lab: &L2Lab, count: usize) -> Result<()> {
    bulk_pool(lab).await?;
    let k = lab.index();
    lab.scenario.cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {{name: bulk, namespace: {ns}}}\n\
             spec: {{addresses: [\"2001:db8:5100:{k:x}::2000-2001:db8:5100:{k:x}::27ff\"]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
             metadata: {{name: bulk, namespace: {ns}}}\n\
             spec: {{ipAddressPools: [bulk], nodeSelectors: [{{matchLabels: {{{BULK_LABEL}: \"yes\"}}}}]}}\n",
            ns = metallb::NAMESPACE
        ),
    )?;
    let v6 = |pool: serde_json::Value| json!({"metadata": {"annotations": pool}, "spec": {"ipFamilies": ["IPv6"]}});
    create_bulk(
        lab,
        "bulk-ferrolb",
        count,
        &v6(json!({"ferrolb.io/address-pool": "bulk"})),
    )
    .await?;
    let mut metallb = v6(json!({"metallb.io/address-pool": "bulk"}));
    metallb["spec"]["loadBalancerClass"] = serde_json::Value::Null;
    create_bulk(lab, "bulk-metallb", count, &metallb).await
}

/// `kills` SIGKILLs of an owner's speaker per project, in two rounds each (FerroLB,
/// MetalLB, then MetalLB, FerroLB); then, with `bulk` IPs of each project, each project's
/// speakers in turn until node 0 announces them all, and node 0's speaker memory.
/// Returns FerroLB's and MetalLB's figures.
pub async fn run(kills: usize, bulk: usize) -> Result<(L2Figures, L2Figures)> {
    let mut lab = L2Lab::start(
        "cmp-l2",
        LabShape {
            nodes: 3,
            second_lan: false,
            own_cluster: true,
        },
    )
    .await?;
    lab.advertise("lan", json!({"ipAddressPools": ["lan"]}))
        .await?;
    let side = install_metallb(&lab)?;
    let ferrolb_ips = services(&lab, "fo-ferrolb", FERROLB_SERVICES, json!({})).await?;
    let metallb_ips = services(
        &lab,
        "fo-metallb",
        METALLB_SERVICES,
        json!({"spec": {"loadBalancerClass": null}}),
    )
    .await?;

    let (mut ferrolb, mut metallb) = (L2Figures::default(), L2Figures::default());
    for round in 0..2 {
        let this_round = if round == 0 {
            kills.div_ceil(2)
        } else {
            kills / 2
        };
        for project in order(round) {
            if this_round == 0 {
                continue;
            }
            side.switch_speakers(&mut lab, project)?;
            let ips = match project {
                Project::FerroLB => &ferrolb_ips,
                Project::MetalLB => &metallb_ips,
            };
            println!("L2 round {}: {project}", round + 1);
            let targets = owners(&lab, ips).await?;
            let mut restart = |lab: &mut L2Lab, i: usize| side.start_speaker(lab, project, i);
            let timed = time_kills(&mut lab, &targets, this_round, &mut restart).await?;
            let total = match project {
                Project::FerroLB => &mut ferrolb.failovers,
                Project::MetalLB => &mut metallb.failovers,
            };
            total.first_packet.extend(timed.first_packet);
            total.first_answer.extend(timed.first_answer);
            total.gratuitous_first += timed.gratuitous_first;
        }
    }

    if bulk > 0 {
        let created = std::time::Instant::now();
        create_bulk_both(&lab, bulk).await?;
        println!(
            "{bulk} IPv6 Services of each project created in {:.1} s",
            created.elapsed().as_secs_f64()
        );
        for project in order(0) {
            side.switch_speakers(&mut lab, project)?;
            let started = std::time::Instant::now();
            wait_for(
                &format!("{project}: node 0 announcing {bulk} IPs"),
                std::time::Duration::from_secs(600),
                || async {
                    let done = match project {
                        Project::FerroLB => announced_ips(&lab, 0).map(|n| n as usize),
                        Project::MetalLB => metallb_announced(&lab).ok(),
                    };
                    (done? >= bulk).then_some(())
                },
            )
            .await?;
            // Let status writes and Events settle, as `bench l2` does, then measure.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            let pid = lab.speaker_pid(0).context("node 0's speaker")?;
            let figures = match project {
                Project::FerroLB => &mut ferrolb,
                Project::MetalLB => &mut metallb,
            };
            figures.rss_mib = rss_mib(pid).unwrap_or(f64::NAN);
            figures.peak_rss_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);
            println!(
                "{project}: node 0 announces {bulk} IPs {:.1} s after its speakers started; \
                 speaker VmRSS {:.1} MiB, VmHWM {:.1} MiB",
                started.elapsed().as_secs_f64(),
                figures.rss_mib,
                figures.peak_rss_mib
            );
        }
    }
    side.stop(&mut lab);
    Ok((ferrolb, metallb))
}
