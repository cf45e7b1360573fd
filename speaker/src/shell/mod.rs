//! The speaker's kube shell: watch, then plan (pure), then hand each plan to
//! the task that diffs it against what it announces and applies it.
//!
//! Tasks and channels (`─▶` is a channel, `⇢` a request to the apiserver or
//! the network; `desired`, `applied`, `owned` and `bgp sessions` are
//! `tokio::sync::watch`, so a slow consumer only ever sees the latest plan; the
//! announcer hands its interface tasks changes, not whole ownerships, through
//! a `crate::mailbox::Mailbox`, which merges them as a `watch` would, and so
//! does the BGP planner to the session tasks):
//!
//! ```text
//!  reflectors: Services, EndpointSlices, Nodes, IPAddressPools,
//!    L2Advertisements, BGPAdvertisements, BGPPeers, Communities ──┐ one Notify
//!  gossip task (membership::shell, UDP) ─▶ alive node names ─────┤ (watch)
//!                                      └─▶ each node's reach ─────┤ (watch)
//!  L2Announcer's interface rescans ─▶ interface list ─────────────┤ (watch)
//!                                                                 ▼
//!  plan loop (`run`): model::ViewCache::sync_keys ─▶ model::L2Planner ─▶ owned_by(this node)
//!    │   (our reach: shell::reach, from the interface list and the view)
//!    │                                         └─▶ BgpPlanner::plan (model::BgpPlanner)
//!    ├─ desired IP → interfaces ─▶ L2Announcer task ⇢ ARP/NDP replies, gratuitous ARP/NA
//!    │                                └─▶ applied IP → interfaces
//!    ├─ owned IP → Services ──┐                    │
//!    │                        └─▶ report task ◀────┘ ⇢ ServiceL2Status, Events
//!    │                              (retries failed writes every REPORT_RETRY; woken by
//!    │                              a mailbox of the IPs whose owned or applied entry
//!    │                              changed, and visits only those)
//!    ├─ bgp sessions ─▶ BgpManager task ─▶ one session task per peer
//!    │   └─ changed Services (mailbox) ─┘ ⇢ TCP 179 to the routers; BGPSessionState, Events
//!    ├─ each peer's changed routes ─▶ its session task (a bgp::route_feed::RouteFeed:
//!    │                                 the routes, and a mailbox of the changed prefixes)
//!    └─ seeds (other nodes' gossip addresses), our reach ─▶ gossip task ⇢ reach reports
//! ```
//!
//! Who acts: only the L2Announcer touches the L2 sockets, only session tasks
//! talk BGP, only the report task and the BgpManager write status objects.
//! Every decision (which IP this node owns, which routes go to which peer) is
//! made in the plan loop by the pure `model`, so the tasks never disagree.

mod bgp;
mod bgp_report;
mod events;
mod keys;
mod reach;
mod report;
mod stores;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferrolb_runtime::http::Health;
use kube::Client;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::l2::{
    AnnouncerConfig, ConflictReport, GroupView, InterfaceFilter, L2Announcer, L2Metrics,
    desired_channel,
};
use crate::mailbox::Mailbox;
use crate::membership::auth::Authenticator;
use crate::membership::key_file::{self, KeyFile};
use crate::membership::{GossipTimings, Membership, MembershipConfig, MembershipMetrics};
use crate::metrics::SpeakerMetrics;
use crate::model::node_address::{expected_peers, gossip_address, peer_addresses};
use crate::model::{self, ClassFilter, InterfaceSelection, Liveness, Touched};
pub use bgp_report::{BgpMetrics, PeerLabels, StateLabels, UpdateErrorLabels};
use reach::OwnReach;
use report::Reporter;
use stores::Stores;

/// How long a starting speaker waits to hear from the other members before
/// it announces anything. Announcing earlier, it would believe it is alone and
/// claim every IP for a moment.
const JOIN_WAIT: Duration = Duration::from_secs(3);
/// Coalesces bursts of watch events: the loop plans at most once per
/// `DEBOUNCE`, but a change after a quiet spell is planned at once (a
/// trailing wait after every wake added its whole length to every
/// announcement and withdrawal).
const DEBOUNCE: Duration = Duration::from_millis(5);
/// How often the plan loop beats while nothing changes (well within the
/// maximum beat age of `/healthz`).
const PLAN_BEAT: Duration = Duration::from_secs(5);
/// Retry period of status writes that failed.
const REPORT_RETRY: Duration = Duration::from_secs(2);
/// Conflicts waiting for their Event; more are dropped (and still counted
/// and logged by the announcer).
const CONFLICT_QUEUE: usize = 64;

pub struct GossipSettings {
    pub port: u16,
    /// The address other speakers reach this one at; by default the Node's InternalIP.
    pub address: Option<IpAddr>,
    /// The keys at start.
    pub authenticator: Authenticator,
    /// The key file the keys came from, followed as it changes.
    pub key_file: Option<KeyFile>,
    pub timings: GossipTimings,
}

pub struct SpeakerConfig {
    pub node_name: String,
    pub namespace: String,
    pub class: ClassFilter,
    /// `None` (`--no-gossip`): liveness from the Node Ready condition only.
    pub gossip: Option<GossipSettings>,
    pub announcer: AnnouncerConfig,
    pub bgp: model::BgpOptions,
}

pub struct Parts {
    pub speaker: SpeakerMetrics,
    pub l2: L2Metrics,
    pub membership: MembershipMetrics,
    pub bgp: BgpMetrics,
    pub health: Health,
}

/// Runs until `shutdown` is cancelled, then leaves gracefully: out of the
/// gossip group first (so the others take over at once), then silent, then
/// the status objects removed.
pub async fn run(
    client: Client,
    mut config: SpeakerConfig,
    parts: Parts,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let node = config.node_name.clone();
    let changed = Arc::new(Notify::new());
    let stores = Stores::start(&client, &config.namespace, changed.clone());

    parts
        .health
        .set_not_ready("waiting for the first list of every watched kind");
    while !stores.all_synced() {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = changed.notified() => {}
        }
    }
    info!(node = %node, "caches synced");

    let (membership, alive) = match config.gossip.as_mut() {
        Some(gossip) => {
            let (membership, alive) =
                start_gossip(&config.node_name, gossip, &stores, parts.membership.clone())
                    .await
                    .context("starting the gossip membership")?;
            if let Some(file) = gossip.key_file.take() {
                let keys = membership.key_setter();
                // Ends by itself once the membership has stopped.
                tokio::spawn(key_file::follow(file, key_file::POLL_EVERY, move |new| {
                    keys.set(new)
                }));
            }
            wait_for_members(&alive, &stores, &node, &shutdown).await;
            (Some(membership), Some(alive))
        }
        None => (None, None),
    };

    let (desired_tx, desired_rx) = desired_channel(BTreeMap::new());
    let (group_tx, group_rx) = watch::channel(GroupView {
        probe_first: true,
        joins: 0,
    });
    let (conflicts_tx, conflicts_rx) = mpsc::channel(CONFLICT_QUEUE);
    config.announcer.node = node.clone();
    config.announcer.conflicts = Some(conflicts_tx);
    config.announcer.health = Some(parts.health.clone());
    let (interfaces_tx, mut interfaces_rx) = watch::channel(None);
    config.announcer.interfaces = Some(interfaces_tx);
    let mut own_reach = OwnReach::new(
        &node,
        config.announcer.exclude_patterns.clone(),
        parts.l2.clone(),
    );
    let mut reaches = membership.as_ref().map(Membership::reaches);
    let (applied_tx, applied_rx) = watch::channel(crate::l2::announcer::Applied::new());
    let (owned_tx, owned_rx) = watch::channel(BTreeMap::<IpAddr, model::ServiceSet>::new());
    // The IPs whose `applied` or `owned` entry changed, for the reporter.
    let report_changes = Arc::new(Mailbox::<Touched>::default());
    config.announcer.applied_changes = Some(report_changes.clone());
    let announcer_stop = CancellationToken::new();
    let announcer = tokio::spawn(
        L2Announcer::new(config.announcer, parts.l2.clone())
            .run(desired_rx, group_rx, applied_tx, announcer_stop.clone())
            .instrument(info_span!("l2", node = %node)),
    );
    let reporter = Reporter::new(client.clone(), &config.namespace, &node);
    reporter.remove_leftovers().await;
    let report_stop = CancellationToken::new();
    let report_task = tokio::spawn(report_loop(
        reporter,
        applied_rx,
        owned_rx,
        report_changes.clone(),
        conflicts_rx,
        stores.clone(),
        report_stop.clone(),
    ));

    let (bgp_tx, bgp_rx) = watch::channel(bgp::Sessions::default());
    // The Services whose advertised IPs changed, for the BGP manager's Events.
    let bgp_services = Arc::new(Mailbox::<bgp::ServiceChanges>::default());
    let bgp_stop = CancellationToken::new();
    let bgp_task = bgp::BgpManager::new(
        client.clone(),
        &config.namespace,
        &node,
        parts.bgp.clone(),
        &config.bgp,
    )
    .spawn(bgp_rx, bgp_services.clone(), bgp_stop.clone());
    let mut bgp_planner = bgp::BgpPlanner::default();
    let mut l2_planner = model::L2Planner::default();
    let mut view_cache = model::ViewCache::default();

    parts.health.set_ready(true);
    let plan_beat = parts.health.heartbeat("plan");
    let mut beat_every = tokio::time::interval(PLAN_BEAT);
    beat_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut alive_changes = alive.clone();
    let mut last_warnings = Vec::new();
    // Nodes joining after the first plan make owners announce again.
    let mut last_alive = alive
        .as_ref()
        .map(|alive| alive.borrow().clone())
        .unwrap_or_default();
    let mut joins = 0u64;
    // The owned and desired maps grow an IP at a time: rebuilt now and then.
    let (mut desired_regrow, mut owned_regrow) =
        (model::Regrow::default(), model::Regrow::default());
    loop {
        let started = std::time::Instant::now();
        let nodes = stores.nodes.state();
        if let (Some(membership), Some(gossip)) = (&membership, &config.gossip) {
            membership.set_seeds(peer_addresses(
                nodes.iter().map(AsRef::as_ref),
                &node,
                gossip.port,
            ));
        }
        let liveness = match &alive {
            Some(alive) => Liveness::Gossip(alive.borrow().clone()),
            None => Liveness::NodeReadyOnly,
        };
        let synced = keys::sync_view(&mut view_cache, &stores, &nodes, &config.class);
        let view = view_cache.view();
        let synced_at = std::time::Instant::now();
        let touched = synced.touched.as_ref().map_or(-1, |t| t.len() as i64);
        let warnings = synced.warnings;
        if warnings != last_warnings {
            for warning in &warnings {
                warn!(node = %node, "skipping invalid input: {warning}");
            }
            last_warnings = warnings;
        }
        parts
            .speaker
            .invalid_objects
            .set(last_warnings.len() as i64);
        let changed_reach = own_reach.update(view, interfaces_rx.borrow_and_update().as_deref());
        if let Some(reach) = changed_reach
            && let Some(membership) = &membership
        {
            membership.set_reach(reach);
        }
        let within = own_reach.merged(reaches.as_mut().map(|r| r.borrow_and_update()).as_deref());
        l2_planner.plan_touched(view, synced.touched.as_ref(), &liveness, &within);
        let l2_at = std::time::Instant::now();
        if let Liveness::Gossip(alive) = &liveness {
            if alive.iter().any(|name| !last_alive.contains(name)) {
                joins += 1;
            }
            last_alive.clone_from(alive);
        }
        let group = GroupView {
            probe_first: model::probe_first(
                &liveness,
                &expected_peers(nodes.iter().map(AsRef::as_ref), &node),
            ),
            joins,
        };
        group_tx.send_if_modified(|current| replace_if_changed(current, Cow::Owned(group)));
        let redecided = l2_planner.redecided();
        let plan = l2_planner.last_plan();
        desired_tx.send_patch(|current| {
            let changed =
                model::patch_owned(current, plan, &node, redecided, |decision| match &decision
                    .interfaces
                {
                    InterfaceSelection::AllSuitable => InterfaceFilter::AllSuitable,
                    InterfaceSelection::Named(names) => InterfaceFilter::Named(names.clone()),
                });
            desired_regrow.after_inserts(current);
            changed.then(|| {
                let mut touched = Touched::default();
                touched.add(redecided);
                touched
            })
        });
        let owned_changed = owned_tx.send_if_modified(|current| {
            let changed = model::patch_owned(current, plan, &node, redecided, |decision| {
                decision.services.clone()
            });
            owned_regrow.after_inserts(current);
            changed
        });
        if owned_changed {
            report_changes.send(|touched| touched.add(redecided));
        }
        parts.speaker.plans.inc();
        parts.speaker.owned_ips.set(desired_tx.len() as i64);
        let handed_at = std::time::Instant::now();
        let sessions = bgp_planner.plan(
            &stores,
            view,
            synced.touched.as_ref(),
            &liveness,
            &node,
            &config.namespace,
            &config.bgp,
            &bgp_services,
        );
        bgp_tx.send_if_modified(|current| replace_if_changed(current, Cow::Owned(sessions)));
        let done = std::time::Instant::now();
        parts
            .speaker
            .plan_duration
            .observe(done.duration_since(started).as_secs_f64());
        // Where a pass's time goes, in µs (`touched` -1: every Service re-decided).
        debug!(
            node = %node,
            touched,
            sync_us = synced_at.duration_since(started).as_micros() as u64,
            l2_us = l2_at.duration_since(synced_at).as_micros() as u64,
            hand_over_us = handed_at.duration_since(l2_at).as_micros() as u64,
            bgp_us = done.duration_since(handed_at).as_micros() as u64,
            "planned"
        );

        plan_beat.beat();
        let planned_at = tokio::time::Instant::now();
        // Beats while waiting, so a quiet cluster is not a stale loop.
        let woke = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break false,
                _ = changed.notified() => break true,
                Ok(()) = changed_or_pending(&mut alive_changes) => break true,
                Ok(()) = changed_or_pending(&mut reaches) => break true,
                Ok(()) = interfaces_rx.changed() => break true,
                _ = beat_every.tick() => plan_beat.beat(),
            }
        };
        if !woke {
            break;
        }
        tokio::time::sleep_until(planned_at + DEBOUNCE).await;
    }

    info!(node = %node, "stopping: leaving the group, then going silent");
    parts.health.set_not_ready("stopping");
    drop(plan_beat);
    if let Some(membership) = membership {
        membership.leave().await;
    }
    announcer_stop.cancel();
    bgp_stop.cancel();
    let _ = announcer.await;
    let _ = bgp_task.await;
    report_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), report_task).await;
    Ok(())
}

/// For `watch::Sender::send_if_modified`: stores `new` and says so only when
/// it differs, so receivers wake only for real changes. A borrowed `new` is
/// cloned only then.
fn replace_if_changed<T: PartialEq + Clone>(current: &mut T, new: Cow<'_, T>) -> bool {
    if *current == *new {
        false
    } else {
        *current = new.into_owned();
        true
    }
}

/// Waits for a change of what gossip publishes (the alive set, the
/// reaches), or forever when there is no gossip.
async fn changed_or_pending<T>(
    published: &mut Option<watch::Receiver<T>>,
) -> Result<(), watch::error::RecvError> {
    match published {
        Some(published) => published.changed().await,
        None => std::future::pending().await,
    }
}

async fn start_gossip(
    node: &str,
    gossip: &GossipSettings,
    stores: &Stores,
    metrics: MembershipMetrics,
) -> anyhow::Result<(Membership, watch::Receiver<BTreeSet<String>>)> {
    let address = match gossip.address {
        Some(address) => address,
        None => stores
            .nodes
            .state()
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node))
            .context("the Node is not in the cache")
            .and_then(|n| gossip_address(n).map_err(Into::into))
            .with_context(|| {
                format!("node {node} has no address to gossip from; pass --gossip-address")
            })?,
    };
    let bind = SocketAddr::new(
        match address {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        },
        gossip.port,
    );
    let config = MembershipConfig {
        node_name: node.to_string(),
        bind,
        advertise: SocketAddr::new(address, gossip.port),
        seeds: peer_addresses(
            stores.nodes.state().iter().map(AsRef::as_ref),
            node,
            gossip.port,
        ),
        authenticator: gossip.authenticator.clone(),
        timings: gossip.timings.clone(),
    };
    info!(node, advertise = %config.advertise, seeds = config.seeds.len(), "joining the speakers' gossip group");
    Ok(Membership::start(config, metrics).await?)
}

/// Until every Ready node with an address answers, or [`JOIN_WAIT`] passes.
async fn wait_for_members(
    alive: &watch::Receiver<BTreeSet<String>>,
    stores: &Stores,
    node: &str,
    shutdown: &CancellationToken,
) {
    let expected = expected_peers(stores.nodes.state().iter().map(AsRef::as_ref), node);
    let mut alive = alive.clone();
    let wait = async {
        loop {
            if expected.iter().all(|n| alive.borrow().contains(n)) {
                return;
            }
            if alive.changed().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = wait => info!(node, members = alive.borrow().len(), "joined the group"),
        _ = tokio::time::sleep(JOIN_WAIT) => info!(node, members = alive.borrow().len(), expected = expected.len(), "did not hear from every Ready node; going on with the members that answered"),
        _ = shutdown.cancelled() => {}
    }
}

/// IPs the report loop visits at a time.
const REPORT_BATCH: usize = 256;

/// Reports what the announcer does, retrying writes that failed. Each pass
/// visits only the IPs whose `applied` or `owned` entry changed (`changes`),
/// and those a write failed for.
async fn report_loop(
    mut reporter: Reporter,
    applied: watch::Receiver<crate::l2::announcer::Applied>,
    owned: watch::Receiver<BTreeMap<IpAddr, model::ServiceSet>>,
    changes: Arc<Mailbox<Touched>>,
    mut conflicts: mpsc::Receiver<ConflictReport>,
    stores: Stores,
    stop: CancellationToken,
) {
    let mut touched = Touched::everything();
    loop {
        let visit: Vec<IpAddr> = reporter
            .to_visit(&touched, &applied.borrow())
            .into_iter()
            .collect();
        let mut complete = true;
        // A batch at a time: the map of what to report and the writes to do
        // are built for a few IPs, not for every IP after a full visit. Each
        // `sync` answers for every IP (a failure in an earlier batch stays
        // unsettled), so the last answer is the pass's.
        for batch in visit.chunks(REPORT_BATCH) {
            let now = {
                let applied = applied.borrow();
                model::announced_at(batch.iter().copied(), &applied, &owned.borrow())
            };
            complete = reporter.sync(&now, &stores.services).await;
        }
        touched = Touched::default();
        tokio::select! {
            _ = stop.cancelled() => break,
            () = changes.changed() => touched = changes.take(),
            Some(report) = conflicts.recv() => {
                let services = owned.borrow().get(&report.conflict.ip).cloned().unwrap_or_default();
                reporter.conflict(&report, &services, &stores.services).await;
            }
            _ = tokio::time::sleep(REPORT_RETRY), if !complete => {}
        }
    }
    reporter.withdraw_all(&stores.services).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_if_changed_reports_and_stores_only_a_change() {
        let mut current = vec![1, 2];
        assert!(!replace_if_changed(&mut current, Cow::Owned(vec![1, 2])));
        assert!(!replace_if_changed(
            &mut current,
            Cow::Borrowed(&vec![1, 2])
        ));
        assert!(replace_if_changed(&mut current, Cow::Owned(vec![3])));
        assert_eq!(current, vec![3]);
        assert!(replace_if_changed(&mut current, Cow::Borrowed(&vec![4, 5])));
        assert_eq!(current, vec![4, 5]);
    }
}
