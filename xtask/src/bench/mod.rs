//! End-to-end benchmarks against the real apiserver: see BENCHMARKS.md.

mod bgp;
mod cold_start;
mod compare;
mod controller;
mod l2;
mod measure;
mod raw;
mod realnodes;
mod speaker_scale;
mod write_cost;

use anyhow::{Result, bail};
use clap::ValueEnum;

pub use bgp::BgpBench;
pub use bgp::scale::BgpScalePlan;
pub use compare::{ComparePlan, Part as ComparePart};
pub use l2::L2BenchPlan;
pub use realnodes::RealNodesPlan;
pub use speaker_scale::SpeakerScalePlan;

/// A benchmark suite of `cargo xtask bench [SUITE]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// The controller against the real apiserver: cold start and latency.
    #[default]
    Controller,
    /// L2 mode end to end: failover, assignment to first ARP answer, reply latency, speaker memory.
    L2,
    /// BGP mode end to end: speakers, BIRD and GoBGP in network namespaces.
    Bgp,
    /// Real kubelet nodes: client-visible gaps over repeated speaker-pod and
    /// node failures, bring-up time, the whole lab's memory.
    Realnodes,
    /// FerroLB and MetalLB v0.16.2 side by side: controller cold start, L2 failover.
    Compare,
    /// One speaker with 10,000 Services and 100 Node objects: memory, EndpointSlice change to the wire.
    SpeakerScale,
    /// One speaker advertising 10,000 Service IPs to BIRD: time to full table, UPDATEs, memory.
    BgpScale,
}

/// The knobs of every suite (each suite reads its own).
pub struct BenchArgs {
    pub services: Vec<usize>,
    pub latency_samples: usize,
    pub compare: ComparePlan,
    pub bgp: BgpBench,
    pub l2: L2BenchPlan,
    pub realnodes: RealNodesPlan,
    pub speaker_scale: SpeakerScalePlan,
    pub bgp_scale: BgpScalePlan,
}

pub fn run(suite: Suite, args: &BenchArgs) -> Result<()> {
    let raw_samples = raw::open(&format!("{suite:?}").to_lowercase())?;
    println!("raw per-trial samples: {}", raw_samples.display());
    match suite {
        Suite::Controller => controller(&args.services, args.latency_samples),
        Suite::L2 => l2::run(args.l2),
        Suite::Bgp => bgp::run(args.bgp),
        Suite::Realnodes => realnodes::run(args.realnodes),
        Suite::Compare => compare::run(&args.services, args.latency_samples, &args.compare),
        Suite::SpeakerScale => speaker_scale::run(args.speaker_scale),
        Suite::BgpScale => bgp::scale::run(args.bgp_scale),
    }
}

fn controller(services: &[usize], latency_samples: usize) -> Result<()> {
    if services.is_empty() || latency_samples == 0 {
        bail!("nothing to measure");
    }
    controller::run(services, latency_samples)
}
