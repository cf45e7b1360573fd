//! The L2 announcer: keeps one task per interface that has something to
//! announce, each with its own ARP and NDP sockets, and tells the rest of
//! the speaker what is actually being announced.
//!
//! Decisions are made by [`super::plan`] and [`super::schedule`]; this module
//! only moves events to them and their results to the sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, trace, warn};

pub use super::plan::InterfaceFilter;

use super::MacAddr;
use super::arp::ArpFrame;
use super::interfaces::{ExcludePatterns, InterfaceInfo, list_interfaces};
use super::metrics::{AddressFamily, L2Metrics};
use super::ndp::{
    ALL_NODES, NeighborAdvertisement, NeighborSolicitation, solicited_node_multicast,
};
use super::plan::{IgnoreReason, Ownership, answer_arp, answer_neighbor_solicitation, assign};
use super::schedule::GratuitousSchedule;
use super::socket::{ArpSocket, NdpSocket, interface_gone};

/// The desired announcements: each IP and where to announce it.
pub type Desired = BTreeMap<IpAddr, InterfaceFilter>;
/// What is announced: each IP and the interfaces it is announced on.
pub type Applied = BTreeMap<IpAddr, BTreeSet<String>>;

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
}

impl Default for AnnouncerConfig {
    fn default() -> Self {
        AnnouncerConfig {
            exclude_patterns: ExcludePatterns::defaults(),
            gratuitous_count: 3,
            gratuitous_spacing: Duration::from_millis(300),
            rescan_interval: Duration::from_secs(1),
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
/// Large enough for any Ethernet frame or ICMPv6 message we accept.
const RECEIVE_BUFFER_LEN: usize = 2048;

impl L2Announcer {
    pub fn new(config: AnnouncerConfig, metrics: L2Metrics) -> Self {
        L2Announcer { config, metrics }
    }

    /// Announces what `desired` holds until `shutdown` is cancelled. If the
    /// sender of `desired` goes away, the last desired set stays announced
    /// (the data plane outlives the control plane). Interfaces are listed in
    /// the network namespace of the thread that polls this future, and
    /// sockets are created there.
    pub async fn run(
        self,
        mut desired: watch::Receiver<Desired>,
        applied: watch::Sender<Applied>,
        shutdown: CancellationToken,
    ) {
        let mut state = State::new(self.config, self.metrics);
        let mut rescan = tokio::time::interval(state.config.rescan_interval);
        rescan.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut desired_open = true;
        let mut wanted = desired.borrow_and_update().clone();
        let mut listing: Vec<InterfaceInfo> = Vec::new();
        let served_changed = state.served_changed.clone();

        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = rescan.tick() => {
                    match list_interfaces() {
                        Ok(found) => listing = found,
                        Err(error) => warn!(%error, "keeping the previous interface list"),
                    }
                    state.reconcile(&wanted, &listing);
                }
                changed = desired.changed(), if desired_open => {
                    if changed.is_err() {
                        warn!("desired announcements are no longer updated; keeping the last ones");
                        desired_open = false;
                        continue;
                    }
                    wanted = desired.borrow_and_update().clone();
                    state.reconcile(&wanted, &listing);
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
            state.publish(&applied);
        }

        state.stop_all().await;
        state.publish(&applied);
    }
}

struct RunningInterface {
    index: u32,
    mac: MacAddr,
    generation: u64,
    ownership: watch::Sender<Ownership>,
    /// What the task reports it actually serves (sockets open, groups joined).
    served: watch::Receiver<BTreeSet<IpAddr>>,
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
}

impl State {
    fn new(config: AnnouncerConfig, metrics: L2Metrics) -> Self {
        State {
            config,
            metrics,
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            next_generation: 0,
            served_changed: Arc::new(Notify::new()),
        }
    }

    fn reconcile(&mut self, desired: &Desired, listing: &[InterfaceInfo]) {
        let plan = assign(desired, listing, &self.config.exclude_patterns);
        let anywhere: BTreeSet<IpAddr> = plan.values().flatten().copied().collect();

        // Stop tasks whose interface is no longer planned, or is not the
        // same device any more (recreated under the same name, new MAC).
        let stale: Vec<String> = self
            .running
            .iter()
            .filter(|(name, running)| {
                let current = listing.iter().find(|info| &info.name == *name);
                !plan.contains_key(*name)
                    || current.is_none_or(|info| {
                        info.index != running.index || info.mac != Some(running.mac)
                    })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(running) = self.running.remove(&name) {
                info!(interface = %name, "no longer announcing on this interface");
                running.stop.cancel();
            }
        }

        for (name, here) in plan {
            let ownership = Ownership {
                here,
                anywhere: anywhere.clone(),
            };
            if let Some(running) = self.running.get(&name) {
                running.ownership.send_if_modified(|current| {
                    let changed = *current != ownership;
                    *current = ownership;
                    changed
                });
            } else if let Some(info) = listing.iter().find(|info| info.name == name) {
                self.start(info, ownership);
            }
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
        let (ownership_sender, ownership_receiver) = watch::channel(Ownership::default());
        let (served_sender, served_receiver) = watch::channel(BTreeSet::new());
        ownership_sender.send_replace(ownership);
        let stop = CancellationToken::new();
        let task = InterfaceTask {
            name: info.name.clone(),
            mac,
            arp,
            ndp,
            metrics: self.metrics.clone(),
            schedule: GratuitousSchedule::new(
                self.config.gratuitous_count,
                self.config.gratuitous_spacing,
            ),
            current: Ownership::default(),
            joined_groups: BTreeSet::new(),
            served: served_sender,
            served_changed: self.served_changed.clone(),
        };
        let name = info.name.clone();
        let task_stop = stop.clone();
        drop(entered);
        self.tasks.spawn(
            async move {
                let result = task.run(ownership_receiver, task_stop).await;
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
                served: served_receiver,
                ownership: ownership_sender,
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
            self.running.remove(&exit.name);
        }
        if let Err(error) = exit.result {
            warn!(interface = %exit.name, %error, "dropped the interface until the next rescan");
        }
    }

    fn applied(&self) -> Applied {
        let mut applied = Applied::new();
        for (name, running) in &self.running {
            for ip in running.served.borrow().iter() {
                applied.entry(*ip).or_default().insert(name.clone());
            }
        }
        applied
    }

    fn publish(&self, sender: &watch::Sender<Applied>) {
        let applied = self.applied();
        self.metrics.set_announced_ips(applied.len());
        sender.send_if_modified(|current| {
            let changed = *current != applied;
            if changed {
                *current = applied;
            }
            changed
        });
    }

    async fn stop_all(&mut self) {
        for running in std::mem::take(&mut self.running).into_values() {
            running.stop.cancel();
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

/// Everything one interface task owns.
struct InterfaceTask {
    name: String,
    mac: MacAddr,
    arp: Option<ArpSocket>,
    ndp: Option<NdpSocket>,
    metrics: L2Metrics,
    schedule: GratuitousSchedule,
    current: Ownership,
    joined_groups: BTreeSet<Ipv6Addr>,
    served: watch::Sender<BTreeSet<IpAddr>>,
    served_changed: Arc<Notify>,
}

impl InterfaceTask {
    /// Serves until stopped, or until the interface fails (the error).
    async fn run(
        mut self,
        mut ownership: watch::Receiver<Ownership>,
        stop: CancellationToken,
    ) -> Result<(), std::io::Error> {
        let mut arp_buffer = [0u8; RECEIVE_BUFFER_LEN];
        let mut ndp_buffer = [0u8; RECEIVE_BUFFER_LEN];
        let first = ownership.borrow_and_update().clone();
        self.update_ownership(first);
        loop {
            let next_announcement = self.schedule.next_deadline().map(Instant::from_std);
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                changed = ownership.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let next = ownership.borrow_and_update().clone();
                    self.update_ownership(next);
                }
                received = receive_arp(self.arp.as_ref(), &mut arp_buffer) => {
                    let len = received?;
                    self.on_arp(arp_buffer.get(..len).unwrap_or_default()).await?;
                }
                received = receive_ndp(self.ndp.as_ref(), &mut ndp_buffer) => {
                    let received = received?;
                    let message = ndp_buffer.get(..received.len).unwrap_or_default();
                    self.on_neighbor_solicitation(message, received.source, received.hop_limit).await?;
                }
                () = sleep_until_some(next_announcement) => {
                    let due = self.schedule.take_due(std::time::Instant::now());
                    for ip in due {
                        self.announce(ip).await?;
                    }
                }
            }
        }
    }

    fn update_ownership(&mut self, next: Ownership) {
        let now = std::time::Instant::now();
        for lost in self.current.here.difference(&next.here) {
            info!(ip = %lost, interface = %self.name, "stopped announcing");
            self.schedule.cancel(*lost);
        }
        self.update_groups(&next.here);
        for gained in next.here.difference(&self.current.here) {
            if self.can_serve(gained) {
                info!(ip = %gained, interface = %self.name, "announcing");
                self.schedule.start(*gained, now);
            } else {
                warn!(ip = %gained, interface = %self.name, "cannot announce: no socket for its family here");
            }
        }
        self.current = next;
        self.report_served();
    }

    /// Whether requests for `ip` can reach us and be answered here.
    fn can_serve(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.arp.is_some(),
            IpAddr::V6(v6) => {
                self.ndp.is_some() && self.joined_groups.contains(&solicited_node_multicast(*v6))
            }
        }
    }

    /// Tells the announcer what this interface really serves, so `applied`
    /// never claims more than is on the wire.
    fn report_served(&self) {
        let served: BTreeSet<IpAddr> = self
            .current
            .here
            .iter()
            .filter(|ip| self.can_serve(ip))
            .copied()
            .collect();
        let changed = self.served.send_if_modified(|current| {
            let changed = *current != served;
            *current = served;
            changed
        });
        if changed {
            self.served_changed.notify_one();
        }
    }

    /// Joins the solicited-node groups of the IPv6 addresses in `here` and
    /// leaves the rest. Several addresses can share a group. A group that
    /// cannot be joined (IPv6 disabled on the interface, say) leaves its
    /// addresses unserved here, without harming the others.
    fn update_groups(&mut self, here: &BTreeSet<IpAddr>) {
        let Some(ndp) = &self.ndp else { return };
        let wanted: BTreeSet<Ipv6Addr> = here
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(solicited_node_multicast(*v6)),
                IpAddr::V4(_) => None,
            })
            .collect();
        for group in self.joined_groups.difference(&wanted) {
            if let Err(error) = ndp.leave(*group) {
                debug!(%group, %error, "leaving a solicited-node group failed");
            }
        }
        let mut joined: BTreeSet<Ipv6Addr> =
            self.joined_groups.intersection(&wanted).copied().collect();
        for group in wanted.difference(&self.joined_groups) {
            match ndp.join(*group) {
                Ok(()) => {
                    debug!(%group, "joined the solicited-node group");
                    joined.insert(*group);
                }
                Err(error) => warn!(%group, %error, "cannot join the solicited-node group"),
            }
        }
        self.joined_groups = joined;
    }

    async fn on_arp(&self, frame: &[u8]) -> Result<(), std::io::Error> {
        let request = match ArpFrame::parse(frame) {
            Ok(request) => request,
            Err(error) => {
                trace!(%error, "ignoring a malformed ARP frame");
                self.metrics.packet_ignored(IgnoreReason::Malformed);
                return Ok(());
            }
        };
        match answer_arp(&request, self.mac, &self.current) {
            Ok(reply) => {
                let Some(arp) = &self.arp else { return Ok(()) };
                send_or_log(arp.send(&reply.to_bytes()).await, request.target_ip.into())?;
                debug!(ip = %request.target_ip, asker = %request.sender_ip, "answered ARP request");
                self.metrics.request_answered(AddressFamily::ipv4);
            }
            Err(reason) => {
                trace!(ip = %request.target_ip, reason = reason.label(), "ARP request not answered");
                self.metrics.packet_ignored(reason);
            }
        }
        Ok(())
    }

    async fn on_neighbor_solicitation(
        &self,
        message: &[u8],
        source: Ipv6Addr,
        hop_limit: Option<u8>,
    ) -> Result<(), std::io::Error> {
        let solicitation = match NeighborSolicitation::parse(message, source) {
            Ok(solicitation) => solicitation,
            Err(error) => {
                debug!(%error, %source, "ignoring an invalid Neighbor Solicitation");
                self.metrics.packet_ignored(IgnoreReason::Malformed);
                return Ok(());
            }
        };
        match answer_neighbor_solicitation(&solicitation, hop_limit, self.mac, &self.current) {
            Ok((destination, advertisement)) => {
                let Some(ndp) = &self.ndp else { return Ok(()) };
                let sent = ndp
                    .send_to(&advertisement.to_bytes(), destination, solicitation.target)
                    .await;
                send_or_log(sent, solicitation.target.into())?;
                debug!(ip = %solicitation.target, asker = %source, "answered Neighbor Solicitation");
                self.metrics.request_answered(AddressFamily::ipv6);
            }
            Err(reason) => {
                trace!(ip = %solicitation.target, reason = reason.label(), "Neighbor Solicitation not answered");
                self.metrics.packet_ignored(reason);
            }
        }
        Ok(())
    }

    /// Sends one gratuitous ARP or unsolicited Neighbor Advertisement.
    async fn announce(&self, ip: IpAddr) -> Result<(), std::io::Error> {
        let (sent, family) = match (ip, &self.arp, &self.ndp) {
            (IpAddr::V4(v4), Some(arp), _) => {
                (self.send_gratuitous_arp(arp, v4).await, AddressFamily::ipv4)
            }
            (IpAddr::V6(v6), _, Some(ndp)) => {
                let advertisement = NeighborAdvertisement::unsolicited(v6, self.mac);
                (
                    ndp.send_to(&advertisement.to_bytes(), ALL_NODES, v6).await,
                    AddressFamily::ipv6,
                )
            }
            _ => return Ok(()),
        };
        if send_or_log(sent, ip)? {
            debug!(%ip, "sent gratuitous announcement");
            self.metrics.gratuitous_sent(family);
        }
        Ok(())
    }

    async fn send_gratuitous_arp(
        &self,
        arp: &ArpSocket,
        ip: Ipv4Addr,
    ) -> Result<(), std::io::Error> {
        arp.send(&ArpFrame::gratuitous(ip, self.mac).to_bytes())
            .await
    }
}

/// Errors that mean the interface is gone end the task; others (a full
/// queue, no route back to a solicitor) are logged and the packet dropped.
/// Returns whether the packet was sent.
fn send_or_log(result: Result<(), std::io::Error>, ip: IpAddr) -> Result<bool, std::io::Error> {
    match result {
        Ok(()) => Ok(true),
        Err(error) if interface_gone(&error) => Err(error),
        Err(error) => {
            warn!(%ip, %error, "sending failed");
            Ok(false)
        }
    }
}

async fn receive_arp(
    socket: Option<&ArpSocket>,
    buffer: &mut [u8],
) -> Result<usize, std::io::Error> {
    match socket {
        Some(socket) => socket.recv(buffer).await,
        None => std::future::pending().await,
    }
}

async fn receive_ndp(
    socket: Option<&NdpSocket>,
    buffer: &mut [u8],
) -> Result<super::socket::ReceivedIcmpv6, std::io::Error> {
    match socket {
        Some(socket) => socket.recv(buffer).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
