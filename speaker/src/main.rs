//! `ferrolb-speaker`: makes Service IPs reachable from this node.
//!
//! This is a skeleton: the L2 (ARP/NDP) and BGP announcers arrive with their
//! own issues. It already validates its flags, so the DaemonSet in `deploy/`
//! can be wired up and fails clearly on a bad configuration.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "ferrolb-speaker", version, about)]
struct Args {
    /// Name of the Node this speaker runs on (downward API in the DaemonSet).
    #[arg(long, env = "FERROLB_NODE_NAME")]
    node_name: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    tracing::warn!(node = %args.node_name, "the speaker announces nothing yet: L2 and BGP modes are not implemented");
    anyhow::bail!(
        "ferrolb-speaker: announcing is not implemented yet (node {})",
        args.node_name
    )
}
