//! The L2 announcer: keeps one task per interface that has something to
//! announce, each with its own ARP and NDP sockets, and tells the rest of
//! the speaker what is actually being announced.
//!
//! Decisions are made by [`super::plan`] and [`super::schedule`]; this module
//! only moves events to them and their results to the sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ferrolb_runtime::http::Health;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

pub use super::plan::{GroupView, InterfaceFilter};
pub use super::task::ConflictReport;

use super::MacAddr;
use super::arbiter::Arbiter;
pub use super::desired::{DesiredReceiver, DesiredSender, desired_channel};
use super::groups::SolicitedGroups;
use super::interfaces::{ExcludePatterns, InterfaceInfo, list_interfaces};
use super::metrics::L2Metrics;
use super::plan::Ownership;
use super::schedule::GratuitousSchedule;
pub use super::serving::{Applied, Desired};
use super::serving::{
    Assignment, InterfaceSets, InterfaceState, patch_applied, withdraw_interface,
};
use super::socket::{ArpSocket, NdpSocket};
use super::task::{Inbox, InterfaceTask};
use crate::mailbox::{Mailbox, Pending};
use crate::model::{Regrow, Touched};

#[derive(Clone, Debug)]
pub struct AnnouncerConfig {
    /// Interface names ruled out for [`InterfaceFilter::AllSuitable`].
    pub exclude_patterns: ExcludePatterns,
    /// Gratuitous ARPs / unsolicited NAs sent when an IP is gained.
    pub gratuitous_count: u32,
    pub gratuitous_spacing: Duration,
    /// How often interfaces are listed again, to follow ones that come,
    /// go, or change state.
    pub rescan_interval: Duration,
    /// This node's name: its election rank for each IP, which settles
    /// conflicts on the wire, derives from it.
    pub node: String,
    /// Where conflicts are reported (for Events); none drops them.
    pub conflicts: Option<mpsc::Sender<ConflictReport>>,
    /// Where the announcer loop beats (part "l2", at every rescan); none
    /// beats nowhere.
    pub health: Option<Health>,
    /// Where the interface list goes when a rescan finds it changed (`None`
    /// until the first listing), for this node's reach; none sends it nowhere.
    pub interfaces: Option<watch::Sender<Option<Vec<InterfaceInfo>>>>,
    /// Where the IPs whose `applied` entry changed are told (after `applied`
    /// is), for the reporter; none tells nobody.
    pub applied_changes: Option<Arc<Mailbox<Touched>>>,
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        AnnouncerConfig {
            exclude_patterns: ExcludePatterns::defaults(),
            gratuitous_count: 3,
            gratuitous_spacing: Duration::from_millis(300),
            rescan_interval: Duration::from_secs(1),
            node: String::new(),
            conflicts: None,
            health: None,
            interfaces: None,
            applied_changes: None,
        }
    }
}

/// Answers ARP and Neighbor Solicitations for the desired IPs.
pub struct L2Announcer {
    config: AnnouncerConfig,
    metrics: L2Metrics,
}

/// Bound on how long shutdown waits for interface tasks to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl L2Announcer {
    pub fn new(config: AnnouncerConfig, metrics: L2Metrics) -> Self {
        L2Announcer { config, metrics }
    }

    /// Announces what `desired` holds until `shutdown` is cancelled, placing
    /// again only the IPs it says changed. If the
    /// sender of `desired` goes away, the last desired set stays announced
    /// (the data plane outlives the control plane). `group` is what the
    /// wire arbitration needs of the gossip group ([`GroupView`]). Interfaces are
    /// listed in the network namespace of the thread that polls this future,
    /// and sockets are created there.
    pub async fn run(
        self,
        mut desired: DesiredReceiver,
        mut group: watch::Receiver<GroupView>,
        applied: watch::Sender<Applied>,
        shutdown: CancellationToken,
    ) {
        let heartbeat = self.config.health.as_ref().map(|h| h.heartbeat("l2"));
        let mut state = State::new(self.config, self.metrics, applied);
        let mut rescan = tokio::time::interval(state.config.rescan_interval);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut desired_open = true;
        let mut view = *group.borrow_and_update();
        let mut group_open = true;
        let mut listing: Vec<InterfaceInfo> = Vec::new();
        let served_changed = state.served_changed.clone();

        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = rescan.tick() => {
                    if let Some(heartbeat) = &heartbeat {
                        heartbeat.beat();
                    }
                    match list_interfaces() {
                        Ok(found) => {
                            listing = found;
                            state.publish_interfaces(&listing);
                        }
                        Err(error) => warn!(%error, "keeping the previous interface list"),
                    }
                    state.reconcile(&mut desired, &listing, view);
                }
                changed = desired.changed(), if desired_open => {
                    if changed.is_err() {
                        warn!("desired announcements are no longer updated; keeping the last ones");
                        desired_open = false;
                        continue;
                    }
                    state.reconcile(&mut desired, &listing, view);
                }
                changed = group.changed(), if group_open => {
                    match changed {
                        Ok(()) => view = *group.borrow_and_update(),
                        Err(_) => group_open = false,
                    }
                    state.reconcile(&mut desired, &listing, view);
                }
                () = served_changed.notified() => {}
                Some(joined) = state.tasks.join_next(), if !state.tasks.is_empty() => {
                    // Not reconciled now: a failed interface is retried at the
                    // next rescan, so a persistent error cannot spin.
                    match joined {
                        Ok(exit) => state.interface_exited(exit),
                        Err(error) => warn!(%error, "an interface task panicked or was aborted"),
                    }
                }
            }
            state.publish();
        }

        state.stop_all().await;
    }
}

struct RunningInterface {
    index: u32,
    mac: MacAddr,
    generation: u64,
    /// Where the changes of its ownership go.
    inbox: Arc<Inbox>,
    /// What the task reports it started or stopped serving (sockets open,
    /// groups joined, the arbiter owning), since the last look.
    served: Arc<Pending<BTreeMap<IpAddr, bool>>>,
    stop: CancellationToken,
}

struct InterfaceExit {
    name: String,
    generation: u64,
    result: Result<(), std::io::Error>,
}

struct State {
    config: AnnouncerConfig,
    metrics: L2Metrics,
    running: BTreeMap<String, RunningInterface>,
    tasks: JoinSet<InterfaceExit>,
    next_generation: u64,
    /// Woken by interface tasks when what they serve changes.
    served_changed: Arc<Notify>,
    /// Which IPs each interface announces, kept up to date change by change.
    assignment: Assignment,
    /// What is announced, patched with what the tasks report.
    applied: watch::Sender<Applied>,
    /// The sets of interfaces the IPs of `applied` share.
    sets: InterfaceSets,
    /// `applied` grows an IP at a time: rebuilt now and then.
    applied_regrow: Regrow,
}

impl State {
    fn new(config: AnnouncerConfig, metrics: L2Metrics, applied: watch::Sender<Applied>) -> Self {
        State {
            config,
            metrics,
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            next_generation: 0,
            served_changed: Arc::new(Notify::new()),
            assignment: Assignment::default(),
            applied,
            sets: InterfaceSets::default(),
            applied_regrow: Regrow::default(),
        }
    }

    /// Places the desired IPs that changed (all of them on a new listing)
    /// and hands each interface task its change.
    fn reconcile(
        &mut self,
        desired: &mut DesiredReceiver,
        listing: &[InterfaceInfo],
        group: GroupView,
    ) {
        let mut changes = {
            let (changed, desired) = desired.take();
            self.assignment.update(
                &desired,
                &changed,
                listing,
                &self.config.exclude_patterns,
                group,
            )
        };

        // Stop tasks whose interface is no longer planned, or is not the
        // same device any more (recreated under the same name, new MAC).
        let planned: Vec<&String> = self.assignment.interfaces().collect();
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, running)| {
                let current = listing.iter().find(|info| &info.name == *name);
                !planned.contains(name)
                    || current.is_none_or(|info| {
                        info.index != running.index || info.mac != Some(running.mac)
                    })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if self.running.contains_key(&name) {
                info!(interface = %name, "no longer announcing on this interface");
            }
            self.forget(&name);
        }

        let planned: Vec<String> = self.assignment.interfaces().cloned().collect();
        for name in planned {
            if let Some(running) = self.running.get(&name) {
                if let Some(change) = changes.remove(&name) {
                    running.inbox.send(|pending| pending.merge(change));
                }
            } else if let Some(info) = listing.iter().find(|info| info.name == name) {
                // A task starts with its whole ownership.
                let ownership = self.assignment.ownership(&name);
                self.start(info, ownership);
            }
        }
    }

    /// Stops the task of `name`, if any, and takes what it served out of `applied`.
    fn forget(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            running.stop.cancel();
        }
        let withdrawn = self
            .applied
            .send_if_modified(|applied| withdraw_interface(applied, &mut self.sets, name));
        if withdrawn && let Some(changes) = &self.config.applied_changes {
            // Rare (an interface stops): the reporter looks at every IP.
            changes.send(|touched| touched.add(None));
        }
        self.metrics.set_announced_ips(self.applied.borrow().len());
    }

    fn publish_interfaces(&self, listing: &[InterfaceInfo]) {
        if let Some(sender) = &self.config.interfaces {
            sender.send_if_modified(|current| {
                let changed = current.as_deref() != Some(listing);
                if changed {
                    *current = Some(listing.to_vec());
                }
                changed
            });
        }
    }

    fn start(&mut self, info: &InterfaceInfo, ownership: Ownership) {
        let Some(mac) = info.mac else { return };
        let span = info_span!("l2_interface", interface = %info.name, ifindex = info.index);
        let entered = span.enter();
        let arp = ArpSocket::open(info.index)
            .inspect_err(
                |error| warn!(%error, "cannot open the ARP socket; IPv4 not announced here"),
            )
            .ok();
        let ndp = NdpSocket::open(&info.name, info.index)
            .inspect_err(
                |error| warn!(%error, "cannot open the NDP socket; IPv6 not announced here"),
            )
            .ok();
        if arp.is_none() && ndp.is_none() {
            return;
        }
        info!(%mac, "announcing on this interface");

        let generation = self.next_generation;
        self.next_generation += 1;
        let inbox = Arc::new(Inbox::default());
        let served = Arc::new(Pending::default());
        let stop = CancellationToken::new();
        let task = InterfaceTask {
            name: info.name.clone(),
            node: self.config.node.clone(),
            mac,
            arp,
            ndp,
            metrics: self.metrics.clone(),
            schedule: GratuitousSchedule::new(
                self.config.gratuitous_count,
                self.config.gratuitous_spacing,
            ),
            arbiter: Arbiter::new(mac),
            state: InterfaceState::default(),
            groups: SolicitedGroups::default(),
            served: served.clone(),
            served_changed: self.served_changed.clone(),
            conflicts: self.config.conflicts.clone(),
        };
        let name = info.name.clone();
        let task_stop = stop.clone();
        let task_inbox = inbox.clone();
        drop(entered);
        self.tasks.spawn(
            async move {
                let result = task.run(ownership, task_inbox, task_stop).await;
                InterfaceExit {
                    name,
                    generation,
                    result,
                }
            }
            .instrument(span),
        );
        self.running.insert(
            info.name.clone(),
            RunningInterface {
                index: info.index,
                mac,
                generation,
                inbox,
                served,
                stop,
            },
        );
    }

    fn interface_exited(&mut self, exit: InterfaceExit) {
        let current = self
            .running
            .get(&exit.name)
            .map(|running| running.generation);
        if current == Some(exit.generation) {
            self.forget(&exit.name);
        }
        if let Err(error) = exit.result {
            warn!(interface = %exit.name, %error, "dropped the interface until the next rescan");
        }
    }

    /// Patches `applied` with what the tasks started or stopped serving.
    fn publish(&mut self) {
        let mut touched = BTreeSet::new();
        self.applied.send_if_modified(|applied| {
            let mut changed = false;
            for (name, running) in &self.running {
                let served = running.served.take();
                changed |= patch_applied(applied, &mut self.sets, name, &served);
                touched.extend(served.into_keys());
            }
            self.applied_regrow.after_inserts(applied);
            changed
        });
        if !touched.is_empty()
            && let Some(changes) = &self.config.applied_changes
        {
            changes.send(|pending| pending.add(Some(&touched)));
        }
        self.metrics.set_announced_ips(self.applied.borrow().len());
    }

    async fn stop_all(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            self.forget(&name);
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!("interface tasks did not stop in time; aborting them");
            self.tasks.abort_all();
        }
    }
}
