//! `cargo xtask`: the project's own commands.
//!
//! - `lab`: real kubelet nodes on this machine with FerroLB installed as pods.
//! - `test`: every test suite.
//! - `cluster up [--nodes N]|down`: a control plane (with N kubelet nodes) without FerroLB.
//! - `fuzz [--seconds N]`: each cargo-fuzz target of `speaker/fuzz` for N seconds.
//! - `crds`: regenerate `deploy/crds/` and `charts/ferrolb/crds/` from the Rust types.
//! - `bench [controller|l2|bgp|realnodes|compare|speaker-scale]`: end-to-end benchmarks (BENCHMARKS.md).
//! - `image [--out DIR] [--tag TAG]`: static release binaries and OCI image
//!   archives (controller, speaker, echo, pause) without Docker, plus
//!   `images.json` listing their digests.

mod bench;
mod image;
mod lab;
mod metallb_image;
mod oci;

use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use ferrolb_tests::tools::repo_root;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "FerroLB development commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the lab: etcd + kube-apiserver, deploy/, the controller, an example pool and Service.
    Lab {
        #[command(subcommand)]
        action: Option<LabAction>,
    },
    /// Start or stop a bare control plane (etcd + kube-apiserver) on loopback.
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Run every test suite: unit, property, CRD freshness, and the scenarios against the real apiserver.
    Test,
    /// Regenerate deploy/crds/ and charts/ferrolb/crds/ from the Rust types.
    Crds,
    /// Run each cargo-fuzz target of speaker/fuzz in turn (needs nightly and cargo-fuzz).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Build OCI image archives (controller, speaker, echo, pause) without Docker.
    Image {
        /// Output directory (default: $CARGO_TARGET_DIR or target, then /images).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Tag of the FerroLB images (default: the workspace version). The pause image is always 3.10.
        #[arg(long)]
        tag: Option<String>,
        /// Instead: MetalLB's controller and speaker (built from the Go module proxy, cached),
        /// in OUT/metallb with an images.json of their own, for the real-node cut-over test.
        #[arg(long)]
        metallb: bool,
    },
    /// (internal) Forward 127.0.0.1:PORT inside a lab namespace to the apiserver
    /// (with --reverse: 127.0.0.1:PORT here to TARGET inside the namespace).
    #[command(hide = true)]
    Forward {
        #[arg(long)]
        netns: String,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        reverse: bool,
        #[arg(long)]
        target: Option<std::net::SocketAddr>,
    },
    /// End-to-end benchmarks against the real apiserver (results for BENCHMARKS.md).
    Bench {
        /// The suite to run (default: controller).
        #[arg(value_enum)]
        suite: Option<bench::Suite>,
        /// Controller and compare suites: numbers of Services to measure with.
        #[arg(long, value_delimiter = ',', default_values_t = [1000usize, 5000])]
        services: Vec<usize>,
        /// Controller and compare suites: Services created one at a time for the latency figures.
        #[arg(long, default_value_t = 200)]
        latency_samples: usize,
        /// Compare suite: rounds of both projects (alternating which goes first).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Compare suite: the parts to run.
        #[arg(long, value_enum, value_delimiter = ',', default_values_t = [bench::ComparePart::Controller, bench::ComparePart::L2, bench::ComparePart::Bgp])]
        parts: Vec<bench::ComparePart>,
        /// Compare suite: SIGKILLs of a speaker per project (L2: the owner's; BGP: each node's in turn).
        #[arg(long, default_value_t = 20)]
        failovers: usize,
        /// BGP and compare suites: Services created one at a time for the route-latency figure.
        #[arg(long, default_value_t = 20)]
        route_samples: usize,
        /// BGP suite: endpoint moves for the convergence figure.
        #[arg(long, default_value_t = 20)]
        moves: usize,
        /// L2, BGP and compare suites: IPv6 Service IPs for the memory figures (BGP: at most 1024).
        #[arg(long, default_value_t = 1000)]
        bulk_ips: usize,
        /// L2 suite: hard kills of an owner's speaker for the failover figures.
        #[arg(long, default_value_t = 24)]
        kills: usize,
        /// L2 suite: Services created for the assignment-to-first-answer figure.
        #[arg(long, default_value_t = 20)]
        assignments: usize,
        /// L2 suite: sequential ARP requests for the reply-latency figure.
        #[arg(long, default_value_t = 500)]
        round_trips: usize,
        /// Realnodes suite: speaker pods force-deleted (the owner's each time).
        #[arg(long, default_value_t = 10)]
        speaker_kills: usize,
        /// Realnodes suite: owner nodes killed (and brought back).
        #[arg(long, default_value_t = 10)]
        node_losses: usize,
        /// Realnodes suite: graceful deletes and rolling updates, each.
        #[arg(long, default_value_t = 3)]
        graceful: usize,
        /// Speaker-scale and bgp-scale suites: Services announced (advertised) by the measured speaker.
        #[arg(long, default_value_t = 10_000)]
        scale_services: usize,
        /// Speaker-scale and bgp-scale suites: EndpointSlice changes timed to the wire (to BIRD).
        #[arg(long, default_value_t = 200)]
        slice_changes: usize,
    },
}

#[derive(Subcommand)]
enum LabAction {
    /// Stop the lab and delete its state.
    Down,
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Start it. With --nodes N: a real cluster with N kubelet nodes (each a
    /// network namespace with containerd, kubelet and kube-proxy), a client
    /// and a BIRD router on one LAN, and the images of `cargo xtask image`.
    Up {
        #[arg(long, default_value_t = 0)]
        nodes: usize,
    },
    Down,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Lab { action: None } => lab::up(),
        Cmd::Lab {
            action: Some(LabAction::Down),
        } => lab::down(),
        Cmd::Cluster {
            action: ClusterAction::Up { nodes: 0 },
        } => lab::cluster_up().map(|_| ()),
        Cmd::Cluster {
            action: ClusterAction::Up { nodes },
        } => lab::real_cluster_up(nodes).map(|_| ()),
        Cmd::Cluster {
            action: ClusterAction::Down,
        } => lab::cluster_down(),
        Cmd::Test => test(),
        Cmd::Forward {
            netns,
            port,
            reverse: false,
            ..
        } => forward(&netns, port),
        Cmd::Forward {
            netns,
            port,
            reverse: true,
            target,
        } => reverse_forward(&netns, port, target),
        Cmd::Crds => crds(),
        Cmd::Fuzz { seconds } => fuzz(seconds),
        Cmd::Image {
            out,
            tag: _,
            metallb: true,
        } => metallb_image::run(out.map(|o| o.join(metallb_image::SUBDIR))),
        Cmd::Image {
            out,
            tag,
            metallb: false,
        } => image::run(out, tag),
        Cmd::Bench {
            suite,
            services,
            latency_samples,
            runs,
            parts,
            failovers,
            route_samples,
            moves,
            bulk_ips,
            kills,
            assignments,
            round_trips,
            speaker_kills,
            node_losses,
            graceful,
            scale_services,
            slice_changes,
        } => bench::run(
            suite.unwrap_or_default(),
            &bench::BenchArgs {
                services,
                latency_samples,
                compare: bench::ComparePlan {
                    parts,
                    runs,
                    failovers,
                    bulk_ips,
                    route_samples,
                },
                bgp: bench::BgpBench {
                    route_samples,
                    moves,
                    bulk_ips,
                },
                l2: bench::L2BenchPlan {
                    kills,
                    assignments,
                    round_trips,
                    bulk_ips,
                },
                realnodes: bench::RealNodesPlan {
                    speaker_kills,
                    node_losses,
                    graceful,
                },
                speaker_scale: bench::SpeakerScalePlan {
                    services: scale_services,
                    changes: slice_changes,
                },
                bgp_scale: bench::BgpScalePlan {
                    services: scale_services,
                    changes: slice_changes,
                },
            },
        ),
    }
}

/// Runs a forwarder for a lab node until killed (`lab down`).
fn forward(netns: &str, port: u16) -> Result<()> {
    let netns = ferrolb_tests::netns::Netns {
        name: netns.to_string(),
    };
    let started =
        ferrolb_tests::forward::Forwarder::start(&netns, port, ([127, 0, 0, 1], port).into());
    // The namespace belongs to the lab: dropping the handle must not delete it.
    netns.persist();
    let _forwarder = started?;
    loop {
        std::thread::park();
    }
}

/// Runs a reverse forwarder for a real-node cluster until killed.
fn reverse_forward(netns: &str, port: u16, target: Option<std::net::SocketAddr>) -> Result<()> {
    let target = target.context("--reverse needs --target")?;
    let handle = ferrolb_tests::realnodes::borrowed(netns);
    let _forwarder = ferrolb_tests::forward::Forwarder::start_reverse(port, &handle, target)?;
    loop {
        std::thread::park();
    }
}

/// Writes the CRDs to `deploy/crds/` and identical copies to the Helm chart's
/// `charts/ferrolb/crds/`.
fn crds() -> Result<()> {
    for dir in ["deploy/crds", "charts/ferrolb/crds"] {
        let path = repo_root().join(dir);
        std::fs::create_dir_all(&path)?;
        for (name, yaml) in ferrolb_crds::render_crd_files() {
            std::fs::write(path.join(&name), yaml)
                .with_context(|| format!("writing {dir}/{name}"))?;
            println!("wrote {dir}/{name}");
        }
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    println!("+ cargo {}", args.join(" "));
    let status = ferrolb_tests::env::nested_cargo()
        .args(args)
        .current_dir(repo_root())
        .status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

fn fuzz(seconds: u64) -> Result<()> {
    let time = format!("-max_total_time={seconds}");
    for target in ["arp", "ndp", "bgp_message", "bgp_stream", "gossip_frame"] {
        println!("+ cargo +nightly fuzz run {target} -- {time}");
        // The rustup proxy, not $CARGO: only the proxy understands +nightly.
        let status = Command::new("cargo")
            .args(["+nightly", "fuzz", "run", target, "--", &time])
            .current_dir(repo_root().join("speaker/fuzz"))
            .status()?;
        if !status.success() {
            bail!("fuzz target {target} failed ({status})");
        }
    }
    Ok(())
}

fn test() -> Result<()> {
    // Build the Kubernetes tools first, with their progress visible.
    let tools = ferrolb_tests::Tools::ensure()?;
    println!("kubernetes test tools: {}", tools.bin_dir.display());
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::NETWORK_PACKAGES)?;
    ferrolb_tests::tools::ensure_debian_packages(ferrolb_tests::tools::REAL_NODE_PACKAGES)?;
    cargo(&["build", "--bins", "--workspace"])?;
    // The real-node tier runs these images as pods.
    image::run(None, None)?;
    // The real-node cut-over installs MetalLB's own images.
    metallb_image::run(None)?;
    cargo(&["test", "--workspace", "--no-fail-fast"])
}
