//! `cargo xtask bench compare`: FerroLB and MetalLB v0.16.2 (built from the Go module proxy,
//! cached) measured in the same run, on the same machine, with the same client, in
//! alternation; medians and ratios. See BENCHMARKS.md, "FerroLB and MetalLB, side by side".

mod bgp;
mod controller;
mod l2;
mod metallb_lab;
pub(super) mod table;

use anyhow::{Result, bail};
use clap::ValueEnum;

use self::controller::ColdStart;
use self::table::{Figure, render};
use super::l2::Failovers;
use super::measure::{machine_line, release_runtime};
use super::raw;

/// A part of the comparison (`--parts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// Controller cold start and create-to-IP latency.
    Controller,
    /// L2 failover (SIGKILL of the owner's speaker to the new owner's ARP answer) and
    /// speaker memory with `--bulk-ips` announced IPs.
    L2,
    /// BGP against BIRD: IP assigned to route in the FIB, speaker SIGKILL to withdrawal.
    Bgp,
}

/// What `cargo xtask bench compare` measures.
#[derive(Clone, Debug)]
pub struct ComparePlan {
    pub parts: Vec<Part>,
    /// Rounds of both projects' cold starts.
    pub runs: usize,
    /// SIGKILLs of an owner's speaker, per project.
    pub failovers: usize,
    /// IPv6 Service IPs one speaker announces for the memory figure, per project.
    pub bulk_ips: usize,
    /// BGP: Services timed from IP to route, per project.
    pub route_samples: usize,
}

/// The project a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Project {
    FerroLB,
    MetalLB,
}

impl std::fmt::Display for Project {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Project::FerroLB => "FerroLB",
            Project::MetalLB => "MetalLB",
        })
    }
}

/// The order of the two projects in run `run`: FerroLB first in even runs, MetalLB first
/// in odd ones, so that drifting load on a shared machine falls on both.
fn order(run: usize) -> [Project; 2] {
    if run.is_multiple_of(2) {
        [Project::FerroLB, Project::MetalLB]
    } else {
        [Project::MetalLB, Project::FerroLB]
    }
}

/// The cold-start figures of both projects at one N.
fn figures(n: usize, ferrolb: &[ColdStart], metallb: &[ColdStart]) -> Vec<Figure> {
    let figure = |name: String, unit: &'static str, get: &dyn Fn(&ColdStart) -> f64| Figure {
        name,
        unit,
        ferrolb: ferrolb.iter().map(get).collect(),
        metallb: metallb.iter().map(get).collect(),
    };
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    vec![
        figure(format!("N = {n}: controller start to all IPs"), "s", &|c| {
            c.all_ips.as_secs_f64()
        }),
        figure(
            format!("N = {n}: controller peak RSS (VmHWM)"),
            "MiB",
            &|c| c.peak_rss_mib,
        ),
        figure(format!("N = {n}: controller CPU to all IPs"), "s", &|c| {
            c.controller_cpu
        }),
        figure(format!("N = {n}: apiserver CPU to all IPs"), "s", &|c| {
            c.apiserver_cpu
        }),
        figure(format!("N = {n}: duplicate IPs"), "", &|c| {
            c.duplicates as f64
        }),
        figure(
            format!("N = {n}: Services without exactly one IP"),
            "",
            &|c| c.missing as f64,
        ),
        figure(
            format!("N = {n}: create to IP after the cold start, p50"),
            "ms",
            &|c| ms(c.latency_p50),
        ),
        figure(
            format!("N = {n}: create to IP after the cold start, p99"),
            "ms",
            &|c| ms(c.latency_p99),
        ),
    ]
}

/// The L2 failover figures: median and p90 of kill to first packet and to answer.
fn failover_figures(ferrolb: &Failovers, metallb: &Failovers) -> Vec<Figure> {
    let ms = |v: &[std::time::Duration]| -> Vec<f64> {
        v.iter().map(|d| d.as_secs_f64() * 1000.0).collect()
    };
    let figure = |name: &str, get: &dyn Fn(&Failovers) -> &[std::time::Duration]| Figure {
        name: format!(
            "{name} ({} / {} kills)",
            get(ferrolb).len(),
            get(metallb).len()
        ),
        unit: "ms",
        ferrolb: ms(get(ferrolb)),
        metallb: ms(get(metallb)),
    };
    vec![
        figure(
            "L2: SIGKILL of the owner's speaker to the new owner's first ARP packet",
            &|f| &f.first_packet,
        ),
        figure(
            "L2: SIGKILL of the owner's speaker to the new owner answering the client",
            &|f| &f.first_answer,
        ),
    ]
}

/// Runs the comparison: for each N, `runs` rounds of both projects' cold starts, in
/// alternating order, each on a fresh control plane; then the L2 failovers; prints every
/// run and the table.
pub fn run(sizes: &[usize], latency_samples: usize, plan: &ComparePlan) -> Result<()> {
    let runs = plan.runs;
    if sizes.is_empty() || runs == 0 || latency_samples == 0 || plan.parts.is_empty() {
        bail!("nothing to measure");
    }
    let runtime = release_runtime()?;
    // Both projects' binaries before any clock starts.
    ferrolb_tests::env::binary("ferrolb-controller")?;
    ferrolb_tests::metallb_source::controller_binary()?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("command: {command}");
    println!("{}", machine_line());
    println!(
        "both controllers run as processes with the admin kubeconfig (system:masters), \
         log level info, against etcd + kube-apiserver with the same flags, a fresh control \
         plane per run; FerroLB {} (release build), MetalLB {}",
        env!("CARGO_PKG_VERSION"),
        ferrolb_tests::metallb_source::METALLB_MODULE
    );
    let mut tables = Vec::new();
    let controller_sizes = if plan.parts.contains(&Part::Controller) {
        sizes
    } else {
        &[]
    };
    for &n in controller_sizes {
        let (mut ferrolb, mut metallb) = (Vec::new(), Vec::new());
        for run in 0..runs {
            for project in order(run) {
                let figures =
                    runtime.block_on(controller::cold_start(project, n, latency_samples))?;
                println!("run {}/{runs}: {}", run + 1, figures.line(project, n));
                match project {
                    Project::FerroLB => ferrolb.push(figures),
                    Project::MetalLB => metallb.push(figures),
                }
            }
        }
        tables.extend(figures(n, &ferrolb, &metallb));
    }
    if plan.parts.contains(&Part::L2) {
        let (ferrolb, metallb) = runtime.block_on(l2::run(plan.failovers, plan.bulk_ips))?;
        println!(
            "FerroLB:\n{}\nMetalLB:\n{}",
            ferrolb.failovers.summary(),
            metallb.failovers.summary()
        );
        if plan.failovers > 0 {
            tables.extend(failover_figures(&ferrolb.failovers, &metallb.failovers));
        }
        if plan.bulk_ips > 0 {
            for (name, get) in [
                (
                    "VmRSS",
                    (|f: &l2::L2Figures| f.rss_mib) as fn(&l2::L2Figures) -> f64,
                ),
                ("VmHWM", |f: &l2::L2Figures| f.peak_rss_mib),
            ] {
                tables.push(Figure {
                    name: format!(
                        "L2: speaker {name} announcing {} IPv6 Service IPs",
                        plan.bulk_ips
                    ),
                    unit: "MiB",
                    ferrolb: vec![get(&ferrolb)],
                    metallb: vec![get(&metallb)],
                });
            }
        }
    }
    if plan.parts.contains(&Part::Bgp) {
        let (ferrolb, metallb) = runtime.block_on(bgp::run(plan.route_samples, plan.failovers))?;
        tables.push(Figure {
            name: format!(
                "BGP: IP assigned to route with 3 next hops in BIRD's FIB ({} / {} Services)",
                ferrolb.ip_to_route.len(),
                metallb.ip_to_route.len()
            ),
            unit: "ms",
            ferrolb: ferrolb.ip_to_route,
            metallb: metallb.ip_to_route,
        });
        tables.push(Figure {
            name: format!(
                "BGP: speaker SIGKILL to its next hop leaving BIRD's FIB ({} / {} kills)",
                ferrolb.kill_to_withdrawal.len(),
                metallb.kill_to_withdrawal.len()
            ),
            unit: "ms",
            ferrolb: ferrolb.kill_to_withdrawal,
            metallb: metallb.kill_to_withdrawal,
        });
    }
    println!(
        "\nFerroLB and MetalLB side by side (controller: medians over {runs} run(s) each; \
         L2 and BGP: medians over every kill or Service):\n"
    );
    for figure in &tables {
        raw::record(
            &format!("FerroLB: {}", figure.name),
            figure.unit,
            figure.ferrolb.iter().copied(),
        );
        raw::record(
            &format!("MetalLB: {}", figure.name),
            figure.unit,
            figure.metallb.iter().copied(),
        );
    }
    println!("{}", render(&tables));
    println!("{}", machine_line());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_alternate_which_project_goes_first() {
        assert_eq!(order(0), [Project::FerroLB, Project::MetalLB]);
        assert_eq!(order(1), [Project::MetalLB, Project::FerroLB]);
        assert_eq!(order(2), order(0));
    }
}
