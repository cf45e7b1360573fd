//! The speaker at scale (issue 13 §2): one release-built `ferrolb-speaker` in
//! a node namespace of an L2 lab on its own control plane, with N (10,000 by
//! default) LoadBalancer Services of its class already holding IPs, each with
//! an EndpointSlice, and 100 Node objects. Run by `cargo xtask bench
//! speaker-scale`; figures go to BENCHMARKS.md.
//!
//! * **Simulated nodes.** The other 99 nodes are Node objects only (Ready,
//!   no address): not gossip members, so the measured speaker owns every IP
//!   (the RSS figure is the speaker's with all N IPs announced), and no
//!   Ready node with an address goes unheard, so it claims without probing
//!   first. Their being dead to gossip also makes the election cheap (one
//!   candidate per IP); the pure bench (`cargo bench -p ferrolb-speaker
//!   --bench plan`) times the plan with 100 live nodes.
//! * **Services.** IPv6 single stack, `allocateLoadBalancerNodePorts:
//!   false`: their ClusterIPs come from the lab cluster's IPv6 range (a
//!   /108), so the cluster's small IPv4 Service range is enough. Their
//!   status, written directly (the controller is stopped), holds an IPv4
//!   address of the pool `bulk` (198.18.0.0/17, benchmarking space): the
//!   speaker announces it by ARP, one socket per interface. (IPv6 Service IPs
//!   would each need a solicited-node group joined on the NDP socket, and
//!   the kernel refuses joins beyond the socket's option memory, ENOMEM,
//!   somewhere between 1,000 and 10,000 IPs.) Every 10th Service is
//!   `externalTrafficPolicy: Local`; every Service has a ready endpoint on
//!   the measured node and one on a simulated node.
//! * **EndpointSlice change to the wire.** A Local IPv4 Service of the LAN
//!   pool has its only endpoint on a simulated node (no owner). Each change
//!   moves the endpoint onto the measured node: the time from the
//!   apiserver's answer to the write to the first ARP packet claiming the IP
//!   (kernel timestamp, the client's [`ferrolb_tests::arp_probe`]), then
//!   back off it, waiting for the speaker's announced-IPs gauge to drop.
//! * **Profiling.** `FERROLB_BENCH_SPEAKER_WRAPPER` (split on whitespace)
//!   names a command the speaker runs under, e.g.
//!   `FERROLB_BENCH_SPEAKER_WRAPPER="heaptrack -o /var/tmp/spk"`; the
//!   memory figures are then the wrapper's process, not the speaker's. The
//!   speaker inherits the bench's environment (`MALLOC_ARENA_MAX`,
//!   `TOKIO_WORKER_THREADS`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::l2::announced_ips;
use super::measure::{load_average, machine_line, peak_rss_mib, release_runtime, rss_mib, summary};
use ferrolb_tests::env::wait_for;
use ferrolb_tests::l2lab::{L2Lab, LabShape};

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct SpeakerScalePlan {
    /// LoadBalancer Services announced by the measured speaker.
    pub services: usize,
    /// EndpointSlice changes timed to the wire.
    pub changes: usize,
}

/// Node objects in the cluster, the measured one included.
pub const NODES: usize = 100;
/// Writes in flight while the Services are created.
const IN_FLIGHT: usize = 32;
/// The Services' addresses (room for 32,768).
pub(super) const BULK_POOL: &str = "198.18.0.0/17";
/// How often the client asks for the measured IP.
const PROBE_INTERVAL: Duration = Duration::from_millis(5);

/// What one run measured.
#[derive(Debug, Default)]
pub struct Figures {
    /// The speaker's VmRSS before the Services, MiB.
    pub rss_before_mib: f64,
    /// VmRSS and VmHWM with every Service IP announced, MiB.
    pub rss_mib: f64,
    pub hwm_mib: f64,
    /// IPs the speaker announced once the Services were in.
    pub announced: u64,
    /// Creating the Services (with status and slice).
    pub created_in: Duration,
    /// From the first write to every IP announced.
    pub announced_after: Duration,
    /// Per change: the slice write's answer to the first ARP packet claiming the IP.
    pub change_to_wire: Vec<Duration>,
    /// Changes whose first packet was a gratuitous ARP.
    pub gratuitous_first: usize,
    /// Changes whose first packet came before the write's answer (counted as zero).
    pub before_answer: usize,
}

/// Runs the benchmark, printing one line per figure.
pub fn run(plan: SpeakerScalePlan) -> Result<()> {
    release_runtime()?.block_on(async {
        println!("{}", machine_line());
        let figures = measure(plan).await?;
        println!("{}", report(plan, &figures));
        Ok(())
    })
}

/// The printed figures (and their raw samples).
pub fn report(plan: SpeakerScalePlan, figures: &Figures) -> String {
    let n = plan.services;
    super::raw::record("speaker VmRSS with all IPs", "MiB", [figures.rss_mib]);
    super::raw::record("speaker VmHWM with all IPs", "MiB", [figures.hwm_mib]);
    format!(
        "{n} Services (status and EndpointSlice) written in {:.1} s, {} IPs announced {:.1} s after the first write\n\
         speaker VmRSS {:.1} MiB before the Services; with {} IPs VmRSS {:.1} MiB, VmHWM {:.1} MiB\n\
         {} ({} of {} first packets were gratuitous ARPs, {} came before the write's answer)\n\
         load average after: {}",
        figures.created_in.as_secs_f64(),
        figures.announced,
        figures.announced_after.as_secs_f64(),
        figures.rss_before_mib,
        figures.announced,
        figures.rss_mib,
        figures.hwm_mib,
        summary(
            &format!("EndpointSlice write answered -> first ARP packet, {n} Services"),
            figures.change_to_wire.clone()
        ),
        figures.gratuitous_first,
        figures.change_to_wire.len(),
        figures.before_answer,
        load_average(),
    )
}

/// Builds the lab, the Services and the nodes, and measures.
pub async fn measure(plan: SpeakerScalePlan) -> Result<Figures> {
    let mut lab = L2Lab::start(
        "bench-spk",
        LabShape {
            nodes: 1,
            second_lan: false,
            own_cluster: true,
        },
    )
    .await?;
    lab.scenario.controller()?.stop();
    let k = lab.index();
    lab.scenario
        .pool("bulk", json!({"addresses": [BULK_POOL]}))
        .await?;
    lab.advertise("all", json!({})).await?;
    for i in 1..NODES {
        simulated_node(&lab, i).await?;
    }
    let measured_ip =
        Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 17)) + 32 * u32::from(k));
    service(&lab, "measured", "IPv4", IpAddr::V4(measured_ip), true).await?;
    slice(&lab, "measured", &[sim_name(&lab, 1)]).await?;

    if let Ok(wrapper) = std::env::var("FERROLB_BENCH_SPEAKER_WRAPPER") {
        lab.speaker_wrapper = wrapper.split_whitespace().map(str::to_string).collect();
    }
    lab.start_speakers()?;
    wait_for("the speaker's metrics", Duration::from_secs(60), || async {
        announced_ips(&lab, 0)
    })
    .await?;
    let pid = lab.speaker_pid(0).context("the speaker's pid")?;
    let mut figures = Figures {
        rss_before_mib: rss_mib(pid).unwrap_or(f64::NAN),
        ..Figures::default()
    };

    let started = Instant::now();
    create_services(&lab, plan.services).await?;
    figures.created_in = started.elapsed();
    let target = plan.services as u64;
    wait_for(
        &format!("the speaker announcing {target} IPs"),
        Duration::from_secs(900),
        || async { (announced_ips(&lab, 0)? >= target).then_some(()) },
    )
    .await?;
    figures.announced_after = started.elapsed();
    figures.announced = announced_ips(&lab, 0).unwrap_or_default();
    // Let the status objects settle before reading memory.
    tokio::time::sleep(Duration::from_secs(5)).await;
    figures.rss_mib = rss_mib(pid).unwrap_or(f64::NAN);
    figures.hwm_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);

    let limit = Duration::from_secs(120) + Duration::from_secs(5) * plan.changes as u32;
    let prober = lab.arp_prober(measured_ip, PROBE_INTERVAL, limit)?;
    let (here, elsewhere) = (vec![lab.nodes[0].name.clone()], vec![sim_name(&lab, 1)]);
    for change in 0..plan.changes {
        let before = Instant::now();
        slice(&lab, "measured", &here).await?;
        let answered = Instant::now();
        let claim = wait_for(
            &format!("change {change}: an ARP claim of {measured_ip}"),
            Duration::from_secs(20),
            || async { prober.first_claim_since(before, None) },
        )
        .await?;
        figures
            .change_to_wire
            .push(claim.at.saturating_duration_since(answered));
        figures.gratuitous_first += usize::from(claim.gratuitous);
        figures.before_answer += usize::from(claim.at < answered);
        slice(&lab, "measured", &elsewhere).await?;
        wait_for(
            &format!("change {change}: {measured_ip} withdrawn"),
            Duration::from_secs(20),
            || async { (announced_ips(&lab, 0)? == target).then_some(()) },
        )
        .await?;
    }
    prober.stop()?;
    Ok(figures)
}

pub(super) fn sim_name(lab: &L2Lab, i: usize) -> String {
    format!("{}-sim{i}", lab.scenario.ns.name)
}

/// A Ready Node object with no address: no speaker, no gossip.
pub(super) async fn simulated_node(lab: &L2Lab, i: usize) -> Result<()> {
    let api: Api<Node> = Api::all(lab.scenario.client.clone());
    let name = sim_name(lab, i);
    let params = PatchParams::apply("ferrolb-bench").force();
    api.patch(
        &name,
        &params,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})),
    )
    .await?;
    api.patch_status(
        &name,
        &params,
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Node",
            "status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "simulated by the speaker-scale bench",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }]},
        })),
    )
    .await?;
    Ok(())
}

/// A LoadBalancer Service of the lab's class (single stack, `family`) holding `ip` in its status.
pub(super) async fn service(
    lab: &L2Lab,
    name: &str,
    family: &str,
    ip: IpAddr,
    local: bool,
) -> Result<()> {
    let api: Api<Service> = lab.scenario.services();
    let params = PatchParams::apply("ferrolb-bench").force();
    api.patch(
        name,
        &params,
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": lab.scenario.ns.class,
                "allocateLoadBalancerNodePorts": false,
                "ipFamilies": [family], "ipFamilyPolicy": "SingleStack",
                "externalTrafficPolicy": if local { "Local" } else { "Cluster" },
                "ports": [{"port": 80, "protocol": "TCP"}],
            },
        })),
    )
    .await?;
    api.patch_status(
        name,
        &params,
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}},
        })),
    )
    .await?;
    Ok(())
}

/// Writes the EndpointSlice of `service`: one ready endpoint on each of `nodes`.
pub(super) async fn slice(lab: &L2Lab, service: &str, nodes: &[String]) -> Result<()> {
    let at: Vec<(String, IpAddr)> = nodes
        .iter()
        .zip(1u8..)
        .map(|(node, i)| (node.clone(), IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))))
        .collect();
    lab.endpoints_at(service, &at).await
}

/// `count` Services `scale-<i>` with IPs of the pool `bulk` and their slices.
pub(super) async fn create_services(lab: &L2Lab, count: usize) -> Result<()> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let name = format!("scale-{i}");
            let offset = u32::try_from(i + 1)?;
            let ip = IpAddr::V4(Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 18, 0, 0)) + offset,
            ));
            let nodes = [
                lab.nodes[0].name.clone(),
                sim_name(lab, 1 + i % (NODES - 1)),
            ];
            slice(lab, &name, &nodes).await?;
            service(lab, &name, "IPv6", ip, i % 10 == 0).await
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench end to end at its smallest (root, network namespaces, the
    /// lab's own control plane): every Service announced, every change seen
    /// on the wire, sane memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smoke_announces_every_ip_and_times_each_change() {
        let plan = SpeakerScalePlan {
            services: 40,
            changes: 5,
        };
        let figures = measure(plan).await.expect("the speaker-scale bench runs");
        assert_eq!(figures.announced, 40, "{figures:?}");
        assert_eq!(figures.change_to_wire.len(), 5, "{figures:?}");
        assert!(
            figures
                .change_to_wire
                .iter()
                .all(|d| *d < Duration::from_secs(5)),
            "{figures:?}"
        );
        assert!(
            figures.rss_mib > 1.0 && figures.rss_mib < 500.0 && figures.hwm_mib >= figures.rss_mib,
            "{figures:?}"
        );
        let text = report(plan, &figures);
        assert!(text.contains("EndpointSlice write answered"), "{text}");
    }
}
