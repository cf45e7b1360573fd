//! `ferrolb-controller`: assigns external IPs to LoadBalancer Services.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use ferrolb_controller::leader::{Fence, LeaderElector, LeaseTimings};
use ferrolb_controller::memberlist;
use ferrolb_controller::metrics::Metrics;
use ferrolb_controller::shell::write_body::WriteMethod;
use ferrolb_controller::shell::{self, LoopConfig};
use ferrolb_runtime::http::{self, Health};
use ferrolb_runtime::{CommonArgs, init_tracing, shutdown_signal};
use tracing::{error, info, warn};

/// Assigns external IPs from IPAddressPools to Services of type LoadBalancer,
/// writes them to status.loadBalancer.ingress, and explains every decision
/// with Events and a status condition.
#[derive(Debug, Parser)]
#[command(name = "ferrolb-controller", version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Address of the /metrics, /healthz and /readyz endpoint.
    #[arg(long, env = "FERROLB_METRICS_ADDR", default_value = "0.0.0.0:7472")]
    metrics_addr: SocketAddr,

    /// Run without leader election (only safe with a single replica).
    #[arg(long, env = "FERROLB_NO_LEADER_ELECTION")]
    no_leader_election: bool,

    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, env = "FERROLB_LEASE_NAME", default_value = "ferrolb-controller")]
    lease_name: String,

    /// This replica's identity in the Lease (defaults to the pod or host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,

    /// How long a Lease is valid without renewal, in seconds: how long a
    /// standby waits for a dead leader.
    #[arg(long, env = "FERROLB_LEASE_DURATION", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_duration_seconds: u64,

    /// Concurrent Service writes. Every pending status goes out before any
    /// pool annotation, and Events wait until no status write is left.
    #[arg(long, env = "FERROLB_WRITE_WORKERS", default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    write_workers: u64,

    /// Events sent per second at most, after the status writes (bursts of
    /// as many). While 1,000 wait, routine (Normal) ones are counted rather
    /// than sent; Warnings always go. 0: no limit, nothing folded.
    #[arg(long, env = "FERROLB_EVENTS_PER_SECOND", default_value_t = 20)]
    events_per_second: u32,

    /// How Service status and the pool annotation are written: `patch` (one
    /// strategic merge patch of the status subresource carrying our
    /// annotation too; the cheaper for the apiserver) or `apply` (server-side
    /// apply of the status, then of the annotation, forced, with our field
    /// manager).
    #[arg(
        long,
        env = "FERROLB_STATUS_WRITE",
        value_enum,
        default_value = "patch"
    )]
    status_write: WriteMethod,

    /// Secret in --namespace holding the speakers' gossip key: created with a
    /// random key when missing, never changed when present. Empty: do not
    /// create it.
    #[arg(
        long,
        env = "FERROLB_MEMBERLIST_SECRET_NAME",
        default_value = "ferrolb-memberlist"
    )]
    memberlist_secret_name: String,
}

/// Creates the gossip key Secret unless it exists, retrying (with backoff)
/// while the API server cannot be reached or refuses. Runs beside leader
/// election: every replica may try, creation is idempotent.
async fn ensure_memberlist_secret(client: kube::Client, namespace: String, name: String) {
    let mut delay = Duration::from_secs(1);
    loop {
        match memberlist::ensure_secret(client.clone(), &namespace, &name).await {
            Ok(memberlist::Outcome::Created) => {
                info!(secret = %format!("{namespace}/{name}"), "created the speakers' gossip key Secret");
                return;
            }
            Ok(memberlist::Outcome::AlreadyExists) => {
                info!(secret = %format!("{namespace}/{name}"), "the speakers' gossip key Secret exists; left as it is");
                return;
            }
            Err(e) => {
                warn!(error = %e, retry_in = ?delay, "could not create the speakers' gossip key Secret");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        }
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.common.log_format);
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (KUBECONFIG or in-cluster)")?;

    let memberlist_task = (!args.memberlist_secret_name.is_empty()).then(|| {
        tokio::spawn(ensure_memberlist_secret(
            client.clone(),
            args.common.namespace.clone(),
            args.memberlist_secret_name.clone(),
        ))
    });
    if memberlist_task.is_none() {
        info!("--memberlist-secret-name is empty: not creating the speakers' gossip key Secret");
    }

    let metrics = Metrics::new();
    metrics.set_leader(false);
    let health = Health::new();
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(http::serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
        async {
            let _ = http_stopped.await;
        },
    ));

    let config = LoopConfig {
        pool_namespace: args.common.namespace.clone(),
        class: args.common.class_filter(),
        write_workers: args.write_workers as usize,
        write_method: args.status_write,
        identity: identity.clone(),
        fence: Fence::open(),
        event_rate: shell::events::EventRate {
            per_second: args.events_per_second,
            burst: args.events_per_second,
        },
    };
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let result = if args.no_leader_election {
        metrics.set_leader(true);
        shell::run(client, config, metrics.clone(), health.clone(), shutdown).await
    } else {
        // A standby is healthy and ready: it has nothing to serve but its wait.
        health.set_ready(true);
        let duration = Duration::from_secs(args.lease_duration_seconds);
        let timings = LeaseTimings::new(
            duration,
            duration / 3,
            (duration / 7).max(Duration::from_millis(500)),
        );
        let elector = LeaderElector::new(
            client.clone(),
            &args.common.namespace,
            &args.lease_name,
            &identity,
        )
        .with_timings(timings);
        let leadership = tokio::select! {
            _ = &mut shutdown => { info!("stopped while standing by"); return Ok(()); }
            won = elector.acquire() => won.context("leader election")?,
        };
        info!(identity = %identity, "became leader");
        metrics.set_leader(true);
        health.set_ready(false);
        let lost = leadership.lost();
        let config = LoopConfig {
            fence: leadership.fence(),
            ..config
        };
        let mut lost_reason = None;
        let run = shell::run(client, config, metrics.clone(), health.clone(), async {
            tokio::select! {
                _ = &mut shutdown => {},
                reason = lost => { lost_reason = Some(reason); },
            }
        })
        .await;
        metrics.set_leader(false);
        if let Some(reason) = lost_reason {
            error!(%reason, "lost leadership; exiting so a fresh start rebuilds from the API");
            std::process::exit(1);
        }
        if let Err(e) = leadership.release().await {
            error!(error = %e, "could not release the lease; the standby takes over when it expires");
        }
        run
    };
    if let Some(task) = memberlist_task {
        task.abort();
    }
    let _ = stop_http.send(());
    let _ = http_task.await;
    result
}
