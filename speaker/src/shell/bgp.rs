//! BGP mode's shell: turns each new [`BgpPlan`] into running sessions.
//!
//! [`BgpPlanner`] keeps the plan up to date per change ([`crate::model::BgpPlanner`]) and
//! hands each peer's routes over by change: it copies the prefixes a plan changed into
//! the peer's [`RouteFeed`], which wakes the session for them (the session sends only
//! what changed, without looking at the other routes). The Services whose advertised IPs
//! changed go to the manager through a [`Mailbox`], for their Events.
//!
//! The manager diffs the plan's peers against its sessions: it starts the new ones,
//! stops removed ones (withdrawing first), restarts a session whose settings changed
//! and hands each new session its peer's feed. Password Secrets are read when a session needs them and kept, so sessions
//! and routes survive the API server going away. On shutdown every session withdraws
//! (after GRACEFUL_SHUTDOWN when a drain time is set) and closes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use super::bgp_report::{BgpMetrics, PeerLabels, SessionReporter, UpdateErrorLabels};
use super::stores::Stores;
use crate::bgp::route_feed::{RouteFeed, RouteFeeds};
use crate::bgp::session::{
    SessionConfig, SessionStatus, StopRequest, UpdateErrorCounts, run_session,
};
use crate::mailbox::Mailbox;
use crate::model::node_address::bgp_addresses;
use crate::model::{
    BgpOptions, BgpStop, BgpView, ClusterView, Liveness, LocalNode, ServiceKey, bgp_stop,
};

/// Retry period of Secret reads and status writes that failed.
const RETRY: Duration = Duration::from_secs(2);
/// A password read from a Secret is read again after this long (on the next plan).
const PASSWORD_REFRESH: Duration = Duration::from_secs(30);
/// How long a stopping session may take beyond its drain time.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// One session the manager runs.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    /// The session settings, without the password when it lives in a Secret.
    pub session: SessionConfig,
    /// The Secret holding the password.
    pub password_secret: Option<String>,
    /// The peer's routes, kept up to date by the [`BgpPlanner`].
    pub routes: Arc<RouteFeed>,
}

impl PartialEq for SessionPlan {
    fn eq(&self, other: &SessionPlan) -> bool {
        self.session == other.session
            && self.password_secret == other.password_secret
            && Arc::ptr_eq(&self.routes, &other.routes)
    }
}

/// What the manager runs: the sessions by BGPPeer name, and what they do on stop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sessions {
    pub peers: BTreeMap<String, SessionPlan>,
    pub on_stop: BgpStop,
}

/// Per Service whose advertised IPs changed, its IPs now (`None`: not advertised).
pub type ServiceChanges = BTreeMap<ServiceKey, Option<BTreeSet<IpAddr>>>;

/// Plans BGP from the caches and hands the changes over, logging warnings when they
/// change.
#[derive(Default)]
pub struct BgpPlanner {
    plan: crate::model::BgpPlanner,
    /// Each planned peer's routes, shared with its session.
    feeds: RouteFeeds,
    last_warnings: Vec<String>,
}

impl BgpPlanner {
    /// Plans for the Services `touched` since the last call (`None`: any may have
    /// changed), copies the changed routes into the feeds, sends the changed Services to
    /// `services` and returns the sessions to run.
    #[allow(clippy::too_many_arguments)]
    pub fn plan(
        &mut self,
        stores: &Stores,
        view: &ClusterView,
        touched: Option<&BTreeSet<ServiceKey>>,
        liveness: &Liveness,
        node: &str,
        namespace: &str,
        options: &BgpOptions,
        services: &Mailbox<ServiceChanges>,
    ) -> Sessions {
        let peers = stores.bgp_peers.state();
        let advertisements = stores.bgp_advertisements.state();
        let communities = stores.communities.state();
        let (bgp, warnings) = BgpView::from_objects(
            peers.iter().map(|o| o.as_ref()),
            advertisements.iter().map(|o| o.as_ref()),
            communities.iter().map(|o| o.as_ref()),
            namespace,
        );
        let nodes = stores.nodes.state();
        let this_node = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node));
        let addresses: Vec<IpAddr> = this_node.map(|n| bgp_addresses(n)).unwrap_or_default();
        self.plan.plan_touched(
            view,
            touched,
            &bgp,
            &LocalNode {
                name: node,
                addresses: &addresses,
            },
            liveness,
            options,
        );
        let plan = self.plan.last_plan();
        let changed = self.plan.changed();
        self.feeds.follow(
            plan.peers
                .iter()
                .map(|(peer, planned)| (peer, &planned.routes)),
            changed,
        );
        let changed_services = self.plan.changed_services();
        if !changed_services.is_empty() {
            services.send(|waiting| {
                for key in changed_services {
                    waiting.insert(key.clone(), plan.services.get(key).cloned());
                }
            });
        }
        let all: Vec<String> = warnings
            .iter()
            .map(ToString::to_string)
            .chain(plan.warnings.iter().map(ToString::to_string))
            .collect();
        if all != self.last_warnings {
            for warning in &all {
                warn!(node, "BGP: {warning}");
            }
            self.last_warnings = all;
        }
        Sessions {
            peers: plan
                .peers
                .iter()
                .filter_map(|(peer, planned)| {
                    let routes = self.feeds.get(peer)?.clone();
                    Some((
                        peer.clone(),
                        SessionPlan {
                            session: planned.session.clone(),
                            password_secret: planned.password_secret.clone(),
                            routes,
                        },
                    ))
                })
                .collect(),
            on_stop: bgp_stop(
                this_node.map(|n| n.as_ref()),
                options.graceful_restart_time.is_some(),
            ),
        }
    }
}

struct RunningSession {
    /// With the password filled in.
    config: SessionConfig,
    routes: Arc<RouteFeed>,
    stop: watch::Sender<Option<StopRequest>>,
    status: watch::Receiver<SessionStatus>,
    task: JoinHandle<()>,
    /// Status forwarder to the manager.
    watcher: JoinHandle<()>,
    updates_counted: u64,
    update_errors_counted: UpdateErrorCounts,
}

impl RunningSession {
    /// Asks the session to stop, unless a stop was asked already (the first one wins).
    fn request_stop(&self, request: StopRequest) {
        self.stop.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(request);
            }
            first
        });
    }

    async fn stopped(self, drain: Option<Duration>) {
        self.request_stop(StopRequest::Graceful);
        self.watcher.abort();
        let mut task = self.task;
        let limit = drain.unwrap_or_default() + STOP_GRACE;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
        }
    }
}

struct CachedPassword {
    password: String,
    read_at: Instant,
}

/// Runs the sessions of this node's BGP plans until `stop` is cancelled.
pub struct BgpManager {
    node: String,
    secrets: Api<Secret>,
    reporter: SessionReporter,
    metrics: BgpMetrics,
    drain: Option<Duration>,
    sessions: BTreeMap<String, RunningSession>,
    passwords: BTreeMap<String, CachedPassword>,
    changes_tx: mpsc::UnboundedSender<String>,
    changes_rx: mpsc::UnboundedReceiver<String>,
    /// Peers whose status object needs writing.
    dirty: BTreeSet<String>,
    /// What the sessions do when the speaker stops, from the last plan.
    on_stop: BgpStop,
}

impl BgpManager {
    pub fn new(
        client: Client,
        namespace: &str,
        node: &str,
        metrics: BgpMetrics,
        options: &BgpOptions,
    ) -> BgpManager {
        let (changes_tx, changes_rx) = mpsc::unbounded_channel();
        BgpManager {
            node: node.to_string(),
            secrets: Api::namespaced(client.clone(), namespace),
            reporter: SessionReporter::new(client, namespace, node),
            metrics,
            drain: options.graceful_shutdown_drain,
            sessions: BTreeMap::new(),
            passwords: BTreeMap::new(),
            changes_tx,
            changes_rx,
            dirty: BTreeSet::new(),
            on_stop: BgpStop::default(),
        }
    }

    pub fn spawn(
        self,
        plans: watch::Receiver<Sessions>,
        services: Arc<Mailbox<ServiceChanges>>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let span = info_span!("bgp", node = %self.node);
        tokio::spawn(self.run(plans, services, stop).instrument(span))
    }

    async fn run(
        mut self,
        mut plans: watch::Receiver<Sessions>,
        services: Arc<Mailbox<ServiceChanges>>,
        stop: CancellationToken,
    ) {
        let mut leftovers_removed = false;
        loop {
            let plan = plans.borrow_and_update().clone();
            if plan.on_stop != self.on_stop {
                match plan.on_stop {
                    BgpStop::Restart => info!(
                        "on stop, BGP sessions close for a Graceful Restart: routers keep this node's routes for the restart time"
                    ),
                    BgpStop::Leave(reason) => {
                        info!(?reason, "on stop, BGP routes will be withdrawn")
                    }
                }
                self.on_stop = plan.on_stop;
            }
            let mut complete = self.reconcile(&plan).await;
            if !leftovers_removed {
                let keep = plan.peers.keys().cloned().collect();
                leftovers_removed = self.reporter.remove_others(&keep).await;
                complete &= leftovers_removed;
            }
            self.report_services(&services, &plans, &stop).await;
            let wait = self.write_statuses().await;
            let retry = match (complete, wait) {
                (true, None) => None,
                (false, None) => Some(RETRY),
                (true, Some(wait)) => Some(wait),
                (false, Some(wait)) => Some(wait.min(RETRY)),
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = plans.changed() => if changed.is_err() { break },
                () = services.changed() => {}
                Some(peer) = self.changes_rx.recv() => {
                    self.dirty.insert(peer);
                    while let Ok(peer) = self.changes_rx.try_recv() {
                        self.dirty.insert(peer);
                    }
                }
                _ = tokio::time::sleep(retry.unwrap_or(Duration::MAX)), if retry.is_some() => {}
            }
        }
        self.shutdown().await;
    }

    /// Events for the Services whose advertised IPs changed, one by one; a newer plan (or
    /// the stop) comes first: the rest goes back to the mailbox, behind newer changes.
    /// (At the start every Service changes: thousands of Events must not hold back the
    /// sessions of a plan that arrives meanwhile.)
    async fn report_services(
        &mut self,
        services: &Mailbox<ServiceChanges>,
        plans: &watch::Receiver<Sessions>,
        stop: &CancellationToken,
    ) {
        let mut changes = services.take();
        while let Some((service, now)) = changes.pop_first() {
            self.reporter.service(service, now).await;
            if !changes.is_empty() && (plans.has_changed().unwrap_or(false) || stop.is_cancelled())
            {
                services.send(|waiting| {
                    for (service, now) in changes {
                        waiting.entry(service).or_insert(now);
                    }
                });
                return;
            }
        }
    }

    /// Brings the sessions in line with `plan`; false when something must be retried.
    async fn reconcile(&mut self, plan: &Sessions) -> bool {
        let mut complete = true;
        let removed: Vec<String> = self
            .sessions
            .keys()
            .filter(|peer| !plan.peers.contains_key(*peer))
            .cloned()
            .collect();
        for peer in removed {
            if let Some(session) = self.sessions.remove(&peer) {
                info!(
                    peer,
                    "peer no longer applies to this node: withdrawing and closing"
                );
                let drain = self.drain;
                tokio::spawn(session.stopped(drain));
            }
            self.metrics
                .prefixes_advertised
                .remove(&PeerLabels { peer: peer.clone() });
            complete &= self.reporter.remove(&peer).await;
            self.dirty.remove(&peer);
        }
        for (peer, wanted) in &plan.peers {
            let mut config = wanted.session.clone();
            if let Some(secret) = &wanted.password_secret {
                match self.password(secret).await {
                    Some(password) => config.md5_password = Some(password),
                    None => {
                        // Without its password the session cannot come up; a running
                        // one keeps the password it has.
                        complete = false;
                        if let Some(running) = self.sessions.get(peer) {
                            config.md5_password = running.config.md5_password.clone();
                        } else {
                            continue;
                        }
                    }
                }
            }
            if let Some(running) = self.sessions.get(peer)
                && (running.config != config || !Arc::ptr_eq(&running.routes, &wanted.routes))
            {
                // A new feed: the peer left the plan and came back in between.
                info!(peer, "session settings changed: restarting the session");
                if let Some(old) = self.sessions.remove(peer) {
                    old.stopped(None).await;
                }
            }
            if !self.sessions.contains_key(peer) {
                info!(peer, address = %config.peer, "starting BGP session");
                let session = self.start(peer, config, wanted.routes.clone());
                self.sessions.insert(peer.clone(), session);
                self.dirty.insert(peer.clone());
            }
        }
        let states: Vec<_> = self
            .sessions
            .values()
            .map(|s| s.status.borrow().state)
            .collect();
        self.metrics.set_states(states.iter());
        complete
    }

    fn start(&self, peer: &str, config: SessionConfig, routes: Arc<RouteFeed>) -> RunningSession {
        let (stop_tx, stop_rx) = watch::channel(None);
        let (status_tx, status_rx) = watch::channel(SessionStatus::default());
        let span = info_span!("session", peer);
        let task = tokio::spawn(
            run_session(config.clone(), routes.clone(), stop_rx, status_tx).instrument(span),
        );
        let mut forwarded = status_rx.clone();
        let changes = self.changes_tx.clone();
        let name = peer.to_string();
        let watcher = tokio::spawn(async move {
            while forwarded.changed().await.is_ok() {
                if changes.send(name.clone()).is_err() {
                    return;
                }
            }
        });
        RunningSession {
            config,
            routes,
            stop: stop_tx,
            status: status_rx,
            task,
            watcher,
            updates_counted: 0,
            update_errors_counted: UpdateErrorCounts::default(),
        }
    }

    /// The `password` key of Secret `name`, cached; `None` when it cannot be read and
    /// nothing is cached.
    async fn password(&mut self, name: &str) -> Option<String> {
        if let Some(cached) = self.passwords.get(name)
            && cached.read_at.elapsed() < PASSWORD_REFRESH
        {
            return Some(cached.password.clone());
        }
        match self.secrets.get(name).await {
            Ok(secret) => {
                let password = secret
                    .data
                    .as_ref()
                    .and_then(|data| data.get("password"))
                    .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|data| data.get("password").cloned())
                    });
                match password {
                    Some(password) => {
                        self.passwords.insert(
                            name.to_string(),
                            CachedPassword {
                                password: password.clone(),
                                read_at: Instant::now(),
                            },
                        );
                        Some(password)
                    }
                    None => {
                        warn!(
                            secret = name,
                            "the BGP password Secret has no key `password`"
                        );
                        self.passwords.remove(name);
                        None
                    }
                }
            }
            Err(error) => {
                let cached = self.passwords.get(name).map(|c| c.password.clone());
                if cached.is_none() {
                    warn!(secret = name, %error, "cannot read the BGP password Secret; will retry");
                }
                cached
            }
        }
    }

    /// Writes the status objects of changed sessions and updates the metrics. Returns how
    /// long to wait before the next write, when some write is held back by the rate limit.
    async fn write_statuses(&mut self) -> Option<Duration> {
        let mut wait: Option<Duration> = None;
        let dirty: Vec<String> = std::mem::take(&mut self.dirty).into_iter().collect();
        for peer in dirty {
            let Some(session) = self.sessions.get_mut(&peer) else {
                continue;
            };
            let status = session.status.borrow().clone();
            let labels = PeerLabels { peer: peer.clone() };
            self.metrics
                .prefixes_advertised
                .get_or_create(&labels)
                .set(i64::try_from(status.prefixes_sent).unwrap_or(i64::MAX));
            let new_updates = status.updates_sent.saturating_sub(session.updates_counted);
            self.metrics
                .updates_sent
                .get_or_create(&labels)
                .inc_by(new_updates);
            session.updates_counted = status.updates_sent;
            let counted = session.update_errors_counted.by_action();
            for ((action, now), (_, before)) in
                status.update_errors.by_action().into_iter().zip(counted)
            {
                let labels = UpdateErrorLabels {
                    peer: peer.clone(),
                    action: action.name().to_string(),
                };
                self.metrics
                    .update_errors
                    .get_or_create(&labels)
                    .inc_by(now.saturating_sub(before));
            }
            session.update_errors_counted = status.update_errors;
            let address = session.config.peer.to_string();
            let object = self.reporter.status_of(&peer, &address, &status);
            match self.reporter.write(&peer, object).await {
                Ok(true) => {}
                Ok(false) => {
                    self.dirty.insert(peer);
                    wait = Some(wait.map_or(RETRY, |w| w.min(RETRY)));
                }
                Err(hold) => {
                    self.dirty.insert(peer);
                    wait = Some(wait.map_or(hold, |w| w.min(hold)));
                }
            }
        }
        let states: Vec<_> = self
            .sessions
            .values()
            .map(|s| s.status.borrow().state)
            .collect();
        self.metrics.set_states(states.iter());
        wait
    }

    /// Closes every session, for a Graceful Restart or after withdrawing (see
    /// [`crate::model::bgp_stop`]), then deletes the status objects.
    async fn shutdown(mut self) {
        let request = match self.on_stop {
            BgpStop::Restart => {
                info!(
                    sessions = self.sessions.len(),
                    "stopping BGP for a restart: closing sessions, routers keep the routes (Graceful Restart)"
                );
                StopRequest::Restart
            }
            BgpStop::Leave(reason) => {
                info!(
                    sessions = self.sessions.len(),
                    ?reason,
                    "stopping BGP: withdrawing routes and closing sessions"
                );
                StopRequest::Graceful
            }
        };
        let sessions = std::mem::take(&mut self.sessions);
        for session in sessions.values() {
            session.request_stop(request);
        }
        let drain = self.drain;
        futures::future::join_all(sessions.into_values().map(|s| s.stopped(drain))).await;
        let _ = self.reporter.remove_others(&BTreeSet::new()).await;
        self.metrics.set_states(std::iter::empty());
    }
}
