//! `cargo xtask bench realnodes`: what a client sees on real kubelet nodes,
//! as distributions over repeated trials, plus bring-up time and the whole
//! lab's memory. Raw per-trial rows go to `target/bench/realnodes/*.csv`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferrolb_tests::realnodes::failover::{self, requests};
use ferrolb_tests::realnodes::http_probe::Outage;
use ferrolb_tests::realnodes::node_loss::{self, NodeLoss};
use ferrolb_tests::realnodes::site::{L2_POOL, start_site};
use ferrolb_tests::realnodes::{HostState, Policy, RealCluster};

use super::measure::{machine_line, summary};

/// How many times each disruption is repeated.
#[derive(Clone, Copy, Debug)]
pub struct RealNodesPlan {
    pub speaker_kills: usize,
    pub node_losses: usize,
    pub graceful: usize,
}

pub fn run(plan: RealNodesPlan) -> Result<()> {
    crate::image::run(None, None)?;
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::NETWORK_PACKAGES)?;
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::REAL_NODE_PACKAGES)?;
    let out = ferrolb_tests::tools::target_dir().join("bench/realnodes");
    std::fs::create_dir_all(&out)?;
    println!("{}", machine_line());

    let up = Instant::now();
    let site = start_site()?;
    let brought_up = up.elapsed();
    println!(
        "bring-up with cached binaries and images: {:.1} s (3 nodes Ready, FerroLB rolled out, pools applied)",
        brought_up.as_secs_f64()
    );
    let memory = MemorySampler::start(site.dir.clone());

    let name = "bench";
    let mut deployment = RealCluster::echo_deployment(name, "default", 3, None);
    deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] =
        serde_json::json!("DoNotSchedule");
    let mut service = RealCluster::echo_service(name, "default", L2_POOL, Policy::Cluster);
    service["spec"]["ipFamilyPolicy"] = serde_json::json!("SingleStack");
    service["spec"]["ipFamilies"] = serde_json::json!(["IPv4"]);
    site.apply(&[deployment, service])?;
    site.rollout(&format!("deployment/{name}"), "default")?;
    let ip: IpAddr = *site
        .wait_ingress(name, "default", 1)?
        .first()
        .context("no IP")?;
    requests(&site.client, ip, 1)?;

    let mut gaps = Csv::create(
        &out.join("speaker-disruptions.csv"),
        "kind,trial,longest_gap_ms,failed,total",
    )?;
    let mut kinds: BTreeMap<&str, Vec<Outage>> = BTreeMap::new();
    let disruptions: [(&str, usize, Disruption); 3] = [
        (
            "speaker pod force-deleted (grace 0)",
            plan.speaker_kills,
            failover::force_delete_owner_speaker,
        ),
        (
            "speaker pod deleted gracefully",
            plan.graceful,
            failover::gracefully_delete_owner_speaker,
        ),
        (
            "speaker DaemonSet rolling update",
            plan.graceful,
            failover::rolling_update_speakers,
        ),
    ];
    for (kind, trials, disrupt) in disruptions {
        for trial in 0..trials {
            let seen = disrupt(&site, ip)?;
            println!(
                "  {kind} #{trial}: gap {:.0} ms, {} of {} requests failed",
                seen.longest_gap.as_secs_f64() * 1000.0,
                seen.failed,
                seen.total
            );
            gaps.row(&format!(
                "{kind},{trial},{:.1},{},{}",
                seen.longest_gap.as_secs_f64() * 1000.0,
                seen.failed,
                seen.total
            ))?;
            kinds.entry(kind).or_default().push(seen);
        }
    }

    let mut losses = Csv::create(
        &out.join("node-loss.csv"),
        "trial,node,arp_moved_ms,first_answer_ms,endpoints_gone_ms,failed,total,last_failure_ms,stale_conntrack,unexplained_late",
    )?;
    let mut node_losses = Vec::new();
    for trial in 0..plan.node_losses {
        let loss = node_loss::node_loss(&site, name, ip, Duration::from_secs(40))?;
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
                .unwrap_or_default()
        };
        let (arp, first, gone, last) = (
            ms(Some(loss.arp_moved_after)),
            ms(loss.first_answer_after),
            ms(loss.endpoints_gone_after),
            ms(loss.last_failure_after()),
        );
        let (node, failed, total) = (&loss.node, loss.failed(), loss.total);
        let (stale, unexplained) = (loss.late.stale_conntrack, loss.late.unexplained.len());
        println!(
            "  node loss #{trial} ({node}): ARP moved after {arp} ms, first answer after {first} ms, \
             endpoints gone after {gone} ms, {failed} of {total} failed, last failure at {last} ms \
             ({stale} later on stale conntrack entries, {unexplained} later unexplained)"
        );
        losses.row(&format!(
            "{trial},{node},{arp},{first},{gone},{failed},{total},{last},{stale},{unexplained}"
        ))?;
        node_losses.push(loss);
    }
    let (peak, breakdown) = memory.finish();

    println!("\n== real-node figures (raw rows in {})", out.display());
    println!("bring-up (cached): {:.1} s", brought_up.as_secs_f64());
    for (kind, seen) in &kinds {
        let failed: usize = seen.iter().map(|s| s.failed).sum();
        let total: usize = seen.iter().map(|s| s.total).sum();
        println!(
            "{} ({failed} of {total} requests failed over all trials)",
            summary(
                &format!("{kind}, longest gap"),
                seen.iter().map(|s| s.longest_gap).collect()
            )
        );
    }
    if !node_losses.is_empty() {
        println!(
            "{}",
            summary(
                "node loss: kill to ARP answered by a live node (FerroLB)",
                node_losses.iter().map(|l| l.arp_moved_after).collect()
            )
        );
        println!(
            "{}",
            summary(
                "node loss: kill to first request answered",
                node_losses
                    .iter()
                    .filter_map(|l| l.first_answer_after)
                    .collect()
            )
        );
        println!(
            "{}",
            summary(
                "node loss: kill to last failed request (kube-proxy drops the dead endpoints)",
                node_losses
                    .iter()
                    .filter_map(NodeLoss::last_failure_after)
                    .collect()
            )
        );
        let failed: usize = node_losses.iter().map(NodeLoss::failed).sum();
        let total: usize = node_losses.iter().map(|l| l.total).sum();
        println!(
            "node loss: {failed} of {total} requests failed over {} trials",
            node_losses.len()
        );
    }
    println!(
        "peak memory of the whole lab (RSS of every process in it): {:.0} MiB",
        peak / 1024.0
    );
    for (comm, kib) in breakdown {
        println!("  {comm}: {:.1} MiB", kib / 1024.0);
    }
    Ok(())
}

/// A disruption of the speakers, measured as the client sees it.
type Disruption = fn(&RealCluster, IpAddr) -> Result<Outage>;

/// Rows of raw data, one file per figure.
struct Csv(std::fs::File);

impl Csv {
    fn create(path: &PathBuf, header: &str) -> Result<Csv> {
        let mut file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{header}")?;
        Ok(Csv(file))
    }

    fn row(&mut self, row: &str) -> Result<()> {
        writeln!(self.0, "{row}")?;
        Ok(())
    }
}

/// Samples, once a second, the summed RSS of every process of the lab (its
/// namespaces and the kubelets' cgroups), and keeps the peak with its
/// breakdown by command.
struct MemorySampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<(f64, BTreeMap<String, f64>)>,
}

impl MemorySampler {
    fn start(dir: PathBuf) -> MemorySampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = (0.0, BTreeMap::new());
            // Bounded: the bench ends long before.
            let deadline = Instant::now() + Duration::from_secs(6 * 3600);
            while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok(Some(host)) = HostState::load(&dir) {
                    let by_comm = rss_by_command(&host.lab_pids());
                    let total: f64 = by_comm.values().sum();
                    if total > peak.0 {
                        peak = (total, by_comm);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            peak
        });
        MemorySampler { stop, handle }
    }

    /// Peak total RSS in KiB, and how it was made up.
    fn finish(self) -> (f64, BTreeMap<String, f64>) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap_or_default()
    }
}

fn rss_by_command(pids: &[u32]) -> BTreeMap<String, f64> {
    let mut by_comm = BTreeMap::new();
    for pid in pids {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_string)
        };
        let (Some(name), Some(rss)) = (field("Name:"), field("VmRSS:")) else {
            continue;
        };
        let kib: f64 = rss.parse().unwrap_or(0.0);
        *by_comm.entry(name).or_insert(0.0) += kib;
    }
    by_comm
}
