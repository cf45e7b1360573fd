//! L2 failover, FerroLB and MetalLB, in the same three-node lab as `cargo xtask bench l2`:
//! both projects' Services exist side by side (FerroLB's of the lab's class, MetalLB's
//! unclassed, from a pool of its own on the same LAN); one project's speakers run at a time,
//! in alternating rounds, and each kill is timed with the lab's ARP prober.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::json;

use ferrolb_tests::cluster::Cluster;
use ferrolb_tests::l2lab::{L2Lab, LabShape};
use ferrolb_tests::metallb;
use ferrolb_tests::metallb_source::speaker_binary;

use super::super::l2::{Failovers, ipv4, owners, time_kills};
use super::{Project, order};

/// Services of each project made to find an IP owned by each node.
const FERROLB_SERVICES: usize = 12;
/// MetalLB's pool holds the 7 free addresses below the lab's pool (.3 to .9 of its /27).
const METALLB_SERVICES: usize = 7;

/// Starts MetalLB's speaker on node `i` of the lab.
fn start_metallb_speaker(
    lab: &mut L2Lab,
    i: usize,
    cluster: &Cluster,
    binary: &Path,
    secret_dir: &Path,
) -> Result<()> {
    let node = &lab.nodes[i];
    let command = metallb::speaker_command(
        cluster,
        node.netns.command(binary),
        &node.name,
        node.ip4.into(),
        secret_dir,
    );
    lab.start_speaker_command(i, command)
}

/// MetalLB's side of the lab: its CRDs, a pool and an L2Advertisement in
/// `metallb-system`, its controller, the speaker Pods and the memberlist key. Returns the
/// controller and the key's directory.
fn install_metallb(lab: &L2Lab) -> Result<(std::process::Child, PathBuf)> {
    let cluster = lab.scenario.cluster;
    let k = u32::from(lab.index());
    let base = u32::from(Ipv4Addr::new(198, 51, 100, 0)) + 32 * k;
    let (first, last) = (Ipv4Addr::from(base + 3), Ipv4Addr::from(base + 9));
    cluster.kubectl_ok(&["create", "namespace", metallb::NAMESPACE])?;
    metallb::install_crds(cluster)?;
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n\
             metadata: {{name: lan, namespace: {ns}}}\nspec: {{addresses: [\"{first}-{last}\"]}}\n\
             ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n\
             metadata: {{name: lan, namespace: {ns}}}\nspec: {{ipAddressPools: [lan]}}\n",
            ns = metallb::NAMESPACE
        ),
    )?;
    for node in &lab.nodes {
        metallb::register_speaker_pod(cluster, &node.name, node.ip4.into())?;
    }
    let secret_dir = metallb::write_memberlist_secret(cluster, &lab.gossip_key)?;
    Ok((metallb::start_controller(cluster)?, secret_dir))
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

/// `kills` SIGKILLs of an owner's speaker per project, in two rounds each (FerroLB,
/// MetalLB, then MetalLB, FerroLB); returns FerroLB's and MetalLB's figures.
pub async fn failover(kills: usize) -> Result<(Failovers, Failovers)> {
    let mut lab = L2Lab::start(
        "cmp-l2",
        LabShape {
            nodes: 3,
            second_lan: false,
            own_cluster: true,
        },
    )
    .await?;
    let cluster = lab.scenario.cluster;
    lab.advertise("lan", json!({"ipAddressPools": ["lan"]}))
        .await?;
    let (mut metallb_controller, secret_dir) = install_metallb(&lab)?;
    let binary = speaker_binary()?;
    let ferrolb_ips = services(&lab, "fo-ferrolb", FERROLB_SERVICES, json!({})).await?;
    let metallb_ips = services(
        &lab,
        "fo-metallb",
        METALLB_SERVICES,
        json!({"spec": {"loadBalancerClass": null}}),
    )
    .await?;

    let (mut ferrolb, mut metallb) = (Failovers::default(), Failovers::default());
    for round in 0..2 {
        let this_round = if round == 0 {
            kills.div_ceil(2)
        } else {
            kills / 2
        };
        for project in order(round) {
            for i in 0..lab.nodes.len() {
                lab.stop_speaker(i);
            }
            let mut restart = |lab: &mut L2Lab, i: usize| match project {
                Project::FerroLB => lab.start_speaker(i),
                Project::MetalLB => start_metallb_speaker(lab, i, cluster, &binary, &secret_dir),
            };
            for i in 0..lab.nodes.len() {
                restart(&mut lab, i)?;
            }
            let ips = match project {
                Project::FerroLB => &ferrolb_ips,
                Project::MetalLB => &metallb_ips,
            };
            println!("L2 round {}: {project}", round + 1);
            let targets = owners(&lab, ips).await?;
            let timed = time_kills(&mut lab, &targets, this_round, &mut restart).await?;
            let total = match project {
                Project::FerroLB => &mut ferrolb,
                Project::MetalLB => &mut metallb,
            };
            total.first_packet.extend(timed.first_packet);
            total.first_answer.extend(timed.first_answer);
            total.gratuitous_first += timed.gratuitous_first;
        }
    }
    for i in 0..lab.nodes.len() {
        lab.stop_speaker(i);
    }
    ferrolb_tests::process::terminate(&mut metallb_controller, std::time::Duration::from_secs(10));
    Ok((ferrolb, metallb))
}
