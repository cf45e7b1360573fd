//! BGP at scale (issue 13 §2, "the same for BGP"): one release-built
//! `ferrolb-speaker` advertising N (10,000 by default) Service IPs to BIRD.
//! Run by `cargo xtask bench bgp-scale`; figures go to BENCHMARKS.md.
//!
//! * **Site.** The speaker-scale site (`super::super::speaker_scale`): one
//!   node namespace of an L2 lab on its own control plane, 99 simulated Node
//!   objects, the controller stopped, N Services of the lab's class with an
//!   IPv4 address of the pool `bulk` (198.18.0.0/17) written in their status
//!   and an EndpointSlice each with a ready endpoint on the measured node, so
//!   the measured speaker advertises every IP exactly once (every 10th Service
//!   is `externalTrafficPolicy: Local`, the rest Cluster). No
//!   L2Advertisement: BGP only. BIRD runs in a router namespace on the LAN
//!   ([`ferrolb_tests::bgplab::lan_router`], host .3), peered with the node by
//!   eBGP (the labs' usual peer: 3 s hold time, 1 s connect time), importing
//!   every route and exporting it to its kernel.
//! * **Full table.** Every Service is in the apiserver before the speaker
//!   starts: from the speaker's start until BIRD's `master4` holds N routes
//!   (`birdc show route count`, polled every 50 ms), and until the session was
//!   Established on BIRD's side.
//! * **UPDATEs.** tcpdump on the router's LAN interface, from before the
//!   speaker starts until 1 s after the full table, of the speaker's side of
//!   port 179; the pcap is parsed by the bench (`bgp_capture`): UPDATE
//!   messages, their bytes (headers included), prefixes announced and
//!   withdrawn, End-of-RIB markers. The speaker's own
//!   `ferrolb_speaker_bgp_updates_sent_total` (which leaves End-of-RIB out)
//!   is read next to it.
//! * **Memory.** The speaker's VmRSS and VmHWM with all N routes advertised.
//! * **EndpointSlice change to BIRD.** A Local Service of the pool whose only
//!   endpoint moves onto the measured node (route appears) and off it (route
//!   withdrawn): from the apiserver's answer to the slice write to the route
//!   change in the router's kernel (`ip -ts monitor route`: BIRD imported it
//!   and exported it to the kernel).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::bgp_capture::{BgpMessageStats, PcapCapture, bgp_message_stats};
use super::route_monitor::RouteMonitor;
use super::{bird_counts, millis};
use crate::bench::measure::{
    load_average, machine_line, peak_rss_mib, release_runtime, rss_mib, summary,
};
use crate::bench::speaker_scale::{
    BULK_POOL, NODES, create_services, service, sim_name, simulated_node, slice,
};
use ferrolb_crds::{BGPAdvertisement, BGPPeer};
use ferrolb_tests::bgplab::{BgpLab, NODE_ASN, ROUTER_ASN, apply_object, lan_router};
use ferrolb_tests::env::wait_for;
use ferrolb_tests::l2lab::{L2Lab, LabShape};
use ferrolb_tests::metrics_text::sample_value;
use ferrolb_tests::router::{Bird, Neighbor};

/// What to measure.
#[derive(Clone, Copy, Debug)]
pub struct BgpScalePlan {
    /// Service IPs the measured speaker advertises to BIRD.
    pub services: usize,
    /// EndpointSlice changes timed to BIRD (each: advertised, then withdrawn).
    pub changes: usize,
}

/// The Local Service whose endpoint moves (the top of the bulk pool).
const MEASURED_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 127, 254);
/// The longest wait for the full table: a minute, and 80 ms a route.
fn full_table_timeout(routes: usize) -> Duration {
    Duration::from_secs(60) + Duration::from_millis(80) * u32::try_from(routes).unwrap_or(u32::MAX)
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct Figures {
    /// Creating the Services (status and slice), before the speaker starts.
    pub created_in: Duration,
    /// From the speaker's start to BIRD seeing the session Established.
    pub established_after: Duration,
    /// From the speaker's start to BIRD's table holding every route.
    pub full_table_after: Duration,
    /// Routes (and networks) in BIRD's `master4` then.
    pub bird_routes: usize,
    /// The speaker's UPDATEs to BIRD until the full table (from the capture).
    pub updates: BgpMessageStats,
    /// The speaker's own count of UPDATEs sent to BIRD, then.
    pub counter_updates: Option<f64>,
    /// VmRSS and VmHWM with every route advertised, MiB.
    pub rss_mib: f64,
    pub hwm_mib: f64,
    /// Per change: slice write answered -> the route in the router's kernel.
    pub advertised: Vec<Duration>,
    /// Per change: slice write answered -> the route gone from the router's kernel.
    pub withdrawn: Vec<Duration>,
    /// BIRD's "since" of the session at the full table and at the end: equal
    /// when the session never went down in between.
    pub session_since: (String, String),
}

/// Runs the benchmark, printing one line per figure.
pub fn run(plan: BgpScalePlan) -> Result<()> {
    if plan.services == 0 {
        bail!("nothing to measure");
    }
    release_runtime()?.block_on(async {
        println!("{}", machine_line());
        // Build the speaker before any clock starts.
        ferrolb_tests::env::binary("ferrolb-speaker")?;
        println!("load average at the start: {}", load_average());
        let figures = measure(plan).await?;
        println!("{}", report(plan, &figures));
        Ok(())
    })
}

/// The printed figures (their raw samples go to the run's CSV).
pub fn report(plan: BgpScalePlan, figures: &Figures) -> String {
    let n = plan.services;
    let u = &figures.updates;
    crate::bench::raw::record(
        "speaker start -> BGP full table",
        "s",
        [figures.full_table_after.as_secs_f64()],
    );
    crate::bench::raw::record(
        "speaker start -> BGP session Established",
        "s",
        [figures.established_after.as_secs_f64()],
    );
    crate::bench::raw::record(
        "UPDATE messages to the full table",
        "messages",
        [u.updates as f64],
    );
    crate::bench::raw::record(
        "UPDATE bytes to the full table",
        "bytes",
        [u.update_bytes as f64],
    );
    crate::bench::raw::record("speaker VmRSS with all routes", "MiB", [figures.rss_mib]);
    crate::bench::raw::record("speaker VmHWM with all routes", "MiB", [figures.hwm_mib]);
    let counter = figures
        .counter_updates
        .map_or("unknown".to_string(), |c| format!("{c:.0}"));
    format!(
        "{n} Services (status and EndpointSlice) written in {:.1} s before the speaker started\n\
         speaker start -> BIRD Established {:.2} s, -> BIRD holds all {} routes {:.2} s\n\
         UPDATEs to the full table: {} messages, {} bytes ({:.2} bytes/route, {:.0} routes/UPDATE), \
         of which {} End-of-RIB; {} prefixes announced, {} withdrawn, {} TCP segments; \
         speaker counter (End-of-RIB left out) {counter}\n\
         speaker with {n} routes advertised: VmRSS {:.1} MiB, VmHWM {:.1} MiB\n\
         {}\n{}\n\
         BIRD session since {} at the full table, {} at the end\n\
         load average after: {}",
        figures.created_in.as_secs_f64(),
        figures.established_after.as_secs_f64(),
        figures.bird_routes,
        figures.full_table_after.as_secs_f64(),
        u.updates,
        u.update_bytes,
        u.update_bytes as f64 / n as f64,
        u.announced as f64 / (u.updates - u.end_of_rib).max(1) as f64,
        u.end_of_rib,
        u.announced,
        u.withdrawn,
        u.segments,
        figures.rss_mib,
        figures.hwm_mib,
        summary(
            &format!("EndpointSlice write answered -> route at BIRD (kernel), {n} routes"),
            figures.advertised.clone()
        ),
        summary(
            &format!(
                "EndpointSlice write answered -> route withdrawn at BIRD (kernel), {n} routes"
            ),
            figures.withdrawn.clone()
        ),
        figures.session_since.0,
        figures.session_since.1,
        load_average(),
    )
}

/// Builds the site, starts the speaker on a full apiserver and measures.
pub async fn measure(plan: BgpScalePlan) -> Result<Figures> {
    let mut lab = L2Lab::start(
        "bench-bgps",
        LabShape {
            nodes: 1,
            second_lan: false,
            own_cluster: true,
        },
    )
    .await?;
    lab.scenario.controller()?.stop();
    let router = lan_router(&lab, 3)?;
    let node = lab.nodes.first().context("no node")?;
    let (node_name, node_ip) = (node.name.clone(), node.ip4);
    let bird = Bird::start(
        &router.netns,
        &lab.scenario.cluster.dir,
        ROUTER_ASN,
        &router.ip4.to_string(),
        &[Neighbor {
            name: "n0".into(),
            address: IpAddr::V4(node_ip),
            asn: NODE_ASN,
            password: None,
        }],
    )?;
    lab.scenario
        .pool("bulk", json!({"addresses": [BULK_POOL]}))
        .await?;
    let peer = BgpLab::peer_spec(&router, ROUTER_ASN);
    apply_object::<BGPPeer>(&lab, "BGPPeer", "bird", peer).await?;
    apply_object::<BGPAdvertisement>(&lab, "BGPAdvertisement", "all", json!({})).await?;
    for i in 1..NODES {
        simulated_node(&lab, i).await?;
    }
    service(&lab, "measured", "IPv4", IpAddr::V4(MEASURED_IP), true).await?;
    slice(&lab, "measured", &[sim_name(&lab, 1)]).await?;
    let started = Instant::now();
    create_services(&lab, plan.services).await?;
    let mut figures = Figures {
        created_in: started.elapsed(),
        ..Figures::default()
    };

    let capture = PcapCapture::start(
        &router.netns,
        &lab.scenario.cluster.dir,
        &format!("tcp port 179 and src host {node_ip}"),
    )?;
    let started = Instant::now();
    lab.start_speakers()?;
    let pid = lab.speaker_pid(0).context("the speaker's pid")?;
    let (mut established, mut full) = (None, None);
    let mut last = (String::new(), 0);
    let timeout = full_table_timeout(plan.services);
    while full.is_none() {
        if started.elapsed() > timeout {
            bail!(
                "after {timeout:?}: BIRD session {}, {} of {} routes",
                last.0,
                last.1,
                plan.services
            );
        }
        if established.is_none() {
            last.0 = bird.session_state("n0").unwrap_or_default();
            if last.0 == "Established" {
                established = Some(started.elapsed());
            }
        }
        let (networks, routes) = bird_counts(&bird.birdc(&["show", "route", "count"])?, "master4");
        last.1 = routes;
        if networks >= plan.services && routes >= plan.services {
            full = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    figures.full_table_after = full.unwrap_or_default();
    figures.established_after = established.unwrap_or(figures.full_table_after);
    figures.bird_routes = last.1;
    // UPDATEs still in flight (none are expected) land in the capture too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    figures.updates = bgp_message_stats(&capture.stop()?);
    // A speaker busy with 10,000 routes may miss one scrape's deadline.
    let counter = wait_for(
        "the speaker's UPDATE counter",
        Duration::from_secs(20),
        || async {
            let metrics = lab.speaker_http(0, "/metrics").ok()?;
            sample_value(
                &metrics,
                "ferrolb_speaker_bgp_updates_sent_total{peer=\"bird\"}",
            )
        },
    );
    figures.counter_updates = counter.await.ok();
    figures.rss_mib = rss_mib(pid).unwrap_or(f64::NAN);
    figures.hwm_mib = peak_rss_mib(pid).unwrap_or(f64::NAN);
    let since = || bird.session_since("n0").unwrap_or_default();
    figures.session_since.0 = since();

    let mut monitor = RouteMonitor::start(&router.netns, &lab.scenario.cluster.dir)?;
    let ip = IpAddr::V4(MEASURED_IP);
    let (here, elsewhere) = (vec![node_name], vec![sim_name(&lab, 1)]);
    let step = Duration::from_secs(20);
    for _ in 0..plan.changes {
        let before = SystemTime::now();
        slice(&lab, "measured", &here).await?;
        let answered = SystemTime::now();
        let at = monitor
            .wait_next_hops(ip, &[IpAddr::V4(node_ip)], before, step)
            .await?;
        figures.advertised.push(since_answer(answered, at));
        let before = SystemTime::now();
        slice(&lab, "measured", &elsewhere).await?;
        let answered = SystemTime::now();
        let at = monitor.wait_next_hops(ip, &[], before, step).await?;
        figures.withdrawn.push(since_answer(answered, at));
    }
    figures.session_since.1 = since();
    drop(monitor);
    drop(bird);
    Ok(figures)
}

/// From the write's answer to the route change (zero when the change came first).
fn since_answer(answered: SystemTime, at: SystemTime) -> Duration {
    Duration::from_secs_f64(millis(answered, at).max(0.0) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench end to end at its smallest (root, network namespaces, the
    /// lab's own control plane, BIRD): every route at BIRD, each prefix
    /// announced once in as few UPDATEs as the capture and the speaker's
    /// counter agree on, every change seen at BIRD, the session never reset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smoke_advertises_every_ip_to_bird_once() {
        let plan = BgpScalePlan {
            services: 40,
            changes: 5,
        };
        let f = measure(plan).await.expect("the bgp-scale bench runs");
        let u = &f.updates;
        assert_eq!(f.bird_routes, 40, "{f:?}");
        assert_eq!((u.announced, u.withdrawn), (40, 0), "{f:?}");
        // One End-of-RIB per negotiated family (IPv4, IPv6), which the
        // speaker's counter leaves out.
        assert_eq!(u.end_of_rib, 2, "{f:?}");
        let routes = u.updates - u.end_of_rib;
        assert_eq!(f.counter_updates, Some(routes as f64), "{f:?}");
        // 40 /32s fit in one UPDATE: the table sent when the session came up,
        // and at most one plan change racing with it.
        assert!((1..=2).contains(&routes), "{f:?}");
        assert!(f.established_after <= f.full_table_after, "{f:?}");
        assert!(f.full_table_after < Duration::from_secs(60), "{f:?}");
        assert_eq!((f.advertised.len(), f.withdrawn.len()), (5, 5), "{f:?}");
        let slow = Duration::from_secs(5);
        assert!(
            f.advertised.iter().chain(&f.withdrawn).all(|d| *d < slow),
            "{f:?}"
        );
        assert_eq!(f.session_since.0, f.session_since.1, "{f:?}");
        assert!(!f.session_since.0.is_empty(), "{f:?}");
        assert!(
            f.rss_mib > 1.0 && f.rss_mib < 500.0 && f.hwm_mib >= f.rss_mib,
            "{f:?}"
        );
        let text = report(plan, &f);
        assert!(text.contains("UPDATEs to the full table: "), "{text}");
    }
}
