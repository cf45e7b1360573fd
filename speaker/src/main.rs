//! `ferrolb-speaker`: makes FerroLB Service IPs reachable from this node.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferrolb_runtime::http::{self, Health};
use ferrolb_runtime::{CommonArgs, init_tracing, shutdown_signal};
use ferrolb_speaker::l2::interfaces::ExcludePatterns;
use ferrolb_speaker::l2::{AnnouncerConfig, L2Metrics};
use ferrolb_speaker::membership::key_file::KeyFile;
use ferrolb_speaker::membership::keys::{self, GossipKeys};
use ferrolb_speaker::membership::{GossipTimings, MembershipMetrics};
use ferrolb_speaker::metrics::{Registered, SpeakerMetrics};
use ferrolb_speaker::model::BgpOptions;
use ferrolb_speaker::shell::{self, BgpMetrics, GossipSettings, Parts, SpeakerConfig};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Announces the external IPs of LoadBalancer Services from this node: in L2
/// mode it answers ARP and NDP for the IPs this node is elected for.
#[derive(Parser)]
#[command(name = "ferrolb-speaker", version, about, long_about = None)]
struct Args {
    /// Name of the Node this speaker runs on (downward API in the DaemonSet).
    #[arg(long, env = "FERROLB_NODE_NAME")]
    node_name: String,

    #[command(flatten)]
    common: CommonArgs,

    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "FERROLB_METRICS_ADDR", default_value = "0.0.0.0:7473")]
    metrics_addr: SocketAddr,

    /// Serves the endpoint on this address only, at the port of
    /// --metrics-addr (the manifests give the node's own IP, `status.hostIP`,
    /// so that it is not open on every address of the host network).
    #[arg(long, env = "FERROLB_METRICS_HOST")]
    metrics_host: Option<IpAddr>,

    /// UDP port of the speakers' gossip (the same on every node).
    #[arg(long, env = "FERROLB_GOSSIP_PORT", default_value_t = 7946)]
    gossip_port: u16,

    /// Address the other speakers reach this one at (default: the Node's InternalIP).
    #[arg(long, env = "FERROLB_GOSSIP_ADDRESS")]
    gossip_address: Option<IpAddr>,

    /// Shared key authenticating gossip messages (from Secret
    /// ferrolb-memberlist), taken byte for byte; at least 16 bytes. Required
    /// unless --gossip-key-file or --no-gossip is given.
    #[arg(long, env = "FERROLB_GOSSIP_KEY", hide_env_values = true)]
    gossip_key: Option<String>,

    /// File of gossip keys, one a line (blank lines and `#` comments skipped):
    /// signs with the first, accepts any, and is re-read when it changes, so
    /// the key can be rotated without a restart. Instead of --gossip-key.
    #[arg(long, env = "FERROLB_GOSSIP_KEY_FILE")]
    gossip_key_file: Option<PathBuf>,

    /// Runs without gossip: node liveness then comes from the Node Ready
    /// condition only, so failover waits for the Node to turn NotReady (tens
    /// of seconds) instead of about a second.
    #[arg(long, env = "FERROLB_NO_GOSSIP")]
    no_gossip: bool,

    /// Interfaces never used for L2 announcements, as regular expressions
    /// (replaces the default list of container and virtual interfaces).
    #[arg(long, env = "FERROLB_EXCLUDE_INTERFACES", value_delimiter = ',')]
    exclude_interfaces: Option<Vec<String>>,

    /// On shutdown, keep BGP routes this many seconds with the GRACEFUL_SHUTDOWN
    /// community (RFC 8326) before withdrawing them; 0 withdraws at once.
    #[arg(
        long,
        env = "FERROLB_BGP_GRACEFUL_SHUTDOWN_SECONDS",
        default_value_t = 0
    )]
    bgp_graceful_shutdown_seconds: u64,

    /// BGP Graceful Restart (RFC 4724): the restart time, in seconds, for which
    /// routers keep this node's routes while its speaker restarts (a rolling
    /// update). A speaker whose Node is cordoned, not Ready, being deleted or
    /// gone withdraws instead. 0 turns Graceful Restart off; at most 4095.
    #[arg(
        long,
        env = "FERROLB_BGP_GRACEFUL_RESTART_SECONDS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u16).range(0..=4095)
    )]
    bgp_graceful_restart_seconds: u16,
}

/// The address the endpoint binds: `addr`, or its port on `host` when given
/// (an IPv6 host works as it is: it is never spelled into a string).
fn metrics_bind(addr: SocketAddr, host: Option<IpAddr>) -> SocketAddr {
    match host {
        Some(host) => SocketAddr::new(host, addr.port()),
        None => addr,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.common.log_format);
    let gossip_keys = keys::choose(
        args.gossip_key.as_deref(),
        args.gossip_key_file.as_deref(),
        args.no_gossip,
    )?;
    let (authenticator, key_file) = match gossip_keys {
        GossipKeys::Off => {
            warn!(
                "--no-gossip: node liveness comes from the Node Ready condition only, so failover waits for the Node to turn NotReady (tens of seconds)"
            );
            (None, None)
        }
        GossipKeys::Fixed(authenticator) => (Some(authenticator), None),
        GossipKeys::File(path) => {
            let (file, authenticator) =
                KeyFile::load(path).context("--gossip-key-file / FERROLB_GOSSIP_KEY_FILE")?;
            info!(path = %file.path().display(), keys = authenticator.key_count(), "gossip keys read from the key file");
            (Some(authenticator), Some(file))
        }
    };
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (KUBECONFIG or in-cluster)")?;

    let speaker_metrics = SpeakerMetrics::default();
    let l2_metrics = L2Metrics::default();
    let membership_metrics = MembershipMetrics::default();
    let bgp_metrics = BgpMetrics::default();
    let registry = Registered::new(
        &speaker_metrics,
        &l2_metrics,
        &membership_metrics,
        &bgp_metrics,
    );
    let health = Health::new();
    let stop = CancellationToken::new();
    let http_stop = stop.clone();
    let http_task = tokio::spawn(http::serve(
        metrics_bind(args.metrics_addr, args.metrics_host),
        registry,
        health.clone(),
        async move { http_stop.cancelled().await },
    ));

    let mut announcer = AnnouncerConfig::default();
    if let Some(patterns) = args.exclude_interfaces {
        announcer.exclude_patterns =
            ExcludePatterns::new(&patterns).context("--exclude-interfaces")?;
    }
    let gossip = authenticator.map(|authenticator| GossipSettings {
        port: args.gossip_port,
        address: args.gossip_address,
        authenticator,
        key_file,
        timings: GossipTimings::default(),
    });
    let config = SpeakerConfig {
        node_name: args.node_name.clone(),
        class: args.common.class_filter(),
        namespace: args.common.namespace,
        gossip,
        announcer,
        bgp: BgpOptions {
            graceful_shutdown_drain: (args.bgp_graceful_shutdown_seconds > 0)
                .then(|| Duration::from_secs(args.bgp_graceful_shutdown_seconds)),
            graceful_restart_time: Some(args.bgp_graceful_restart_seconds)
                .filter(|seconds| *seconds > 0),
        },
    };
    let parts = Parts {
        speaker: speaker_metrics,
        l2: l2_metrics,
        membership: membership_metrics,
        bgp: bgp_metrics,
        health,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    info!(node = %args.node_name, "starting");
    let result = shell::run(client, config, parts, shutdown).await;
    stop.cancel();
    let _ = http_task.await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(args: &[&str]) -> SocketAddr {
        let args = Args::try_parse_from(
            ["ferrolb-speaker", "--node-name=n1"]
                .iter()
                .chain(args)
                .copied(),
        )
        .expect("valid flags");
        metrics_bind(args.metrics_addr, args.metrics_host)
    }

    #[test]
    fn the_metrics_host_replaces_the_address_and_keeps_the_port() {
        assert_eq!(bind(&[]), "0.0.0.0:7473".parse().expect("address"));
        assert_eq!(
            bind(&["--metrics-host=192.0.2.7"]),
            "192.0.2.7:7473".parse().expect("address")
        );
        assert_eq!(
            bind(&[
                "--metrics-addr=127.0.0.1:9000",
                "--metrics-host=2001:db8::7"
            ]),
            "[2001:db8::7]:9000".parse().expect("address")
        );
    }

    #[test]
    fn a_bad_metrics_host_is_refused() {
        let parsed = Args::try_parse_from([
            "ferrolb-speaker",
            "--node-name=n1",
            "--metrics-host=[2001:db8::7]",
        ]);
        assert!(parsed.is_err());
    }
}
