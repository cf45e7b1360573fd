//! One interface's task: answers ARP requests and Neighbor Solicitations for
//! the IPs it owns there, sends the gratuitous announcements, and feeds the
//! [`super::arbiter`] the claims of other hosts it sees, carrying out what
//! the arbiter decides (probe, claim, defend, yield).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

use super::MacAddr;
use super::arbiter::{Action, Arbiter, Claim, Conflict, Outcome, Rank};
use super::arp::ArpFrame;
use super::claim::{
    arp_probe, foreign_advertisement_claim, foreign_arp_claim, neighbor_probe,
    tagged_advertisement, tagged_arp,
};
use super::groups::{Mode, SolicitedGroups};
use super::metrics::{AddressFamily, L2Metrics};
use super::ndp::{ALL_NODES, NeighborAdvertisement, solicited_node_multicast};
use super::ndp_frame::Icmpv6Frame;
use super::plan::{IgnoreReason, Ownership, answer_arp, answer_neighbor_solicitation};
use super::schedule::GratuitousSchedule;
use super::serving::{InterfaceState, OwnershipChange, Reception, Steps};
use super::socket::{ArpSocket, NdpSocket, interface_gone};
use crate::mailbox::{Mailbox, Pending};

/// Large enough for any Ethernet frame we accept.
const RECEIVE_BUFFER_LEN: usize = 2048;

/// A conflict one interface saw, for the Event on the IP's Services.
#[derive(Clone, Debug)]
pub struct ConflictReport {
    pub interface: String,
    pub conflict: Conflict,
}

/// The changes of ownership waiting for one interface task, and its wake-up.
pub(super) type Inbox = Mailbox<OwnershipChange>;

/// Everything one interface task owns.
pub(super) struct InterfaceTask {
    pub(super) name: String,
    /// This node's name: our rank for each IP derives from it.
    pub(super) node: String,
    pub(super) mac: MacAddr,
    pub(super) arp: Option<ArpSocket>,
    pub(super) ndp: Option<NdpSocket>,
    pub(super) metrics: L2Metrics,
    pub(super) schedule: GratuitousSchedule,
    pub(super) arbiter: Arbiter,
    /// What the plan wants announced here, and what is answered.
    pub(super) state: InterfaceState,
    pub(super) groups: SolicitedGroups,
    /// The IPs whose service here changed since the announcer last looked:
    /// served now (`true`) or not.
    pub(super) served: Arc<Pending<BTreeMap<IpAddr, bool>>>,
    pub(super) served_changed: Arc<Notify>,
    pub(super) conflicts: Option<mpsc::Sender<ConflictReport>>,
}

impl InterfaceTask {
    /// Serves until stopped, or until the interface fails (the error).
    /// `first` is the whole ownership at the start; then `inbox` brings changes.
    /// Only `stop` ends it: the inbox has no closed state (a `watch` channel
    /// did), so the announcer cancels every task's token on each way out
    /// (`State::forget`, `State::stop_all`).
    pub(super) async fn run(
        mut self,
        first: Ownership,
        inbox: Arc<Inbox>,
        stop: CancellationToken,
    ) -> Result<(), std::io::Error> {
        let mut arp_buffer = [0u8; RECEIVE_BUFFER_LEN];
        let mut ndp_buffer = [0u8; RECEIVE_BUFFER_LEN];
        self.take(Taken::Whole(first)).await?;
        loop {
            let next = [self.schedule.next_deadline(), self.arbiter.next_deadline()]
                .into_iter()
                .flatten()
                .min()
                .map(Instant::from_std);
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = inbox.changed() => {
                    let change = inbox.take();
                    if !change.is_empty() {
                        self.take(Taken::Change(&change)).await?;
                    }
                }
                received = receive_arp(self.arp.as_ref(), &mut arp_buffer) => {
                    let len = received?;
                    self.on_arp(arp_buffer.get(..len).unwrap_or_default()).await?;
                }
                received = receive_ndp(self.ndp.as_ref(), &mut ndp_buffer) => {
                    let len = received?;
                    self.on_ndp_frame(ndp_buffer.get(..len).unwrap_or_default()).await?;
                }
                () = sleep_until_some(next) => {
                    let now = std::time::Instant::now();
                    let actions = self.arbiter.tick(now);
                    self.arbiter_acted(actions).await?;
                    for ip in self.schedule.take_due(now) {
                        self.announce(ip).await?;
                    }
                }
            }
        }
    }

    /// Takes the whole ownership (at the start: every IP visited) or a change
    /// of it (only the IPs it names are visited, and the arbiter's IPs in doubt).
    async fn take(&mut self, taken: Taken<'_>) -> Result<(), std::io::Error> {
        let node = self.node.clone();
        let rank = |ip| Rank::of(&node, ip);
        let mut reception = TaskReception {
            arp: self.arp.is_some(),
            ndp: self.ndp.as_ref(),
            groups: &mut self.groups,
            name: &self.name,
            metrics: &self.metrics,
        };
        let now = std::time::Instant::now();
        let (state, arbiter) = (&mut self.state, &mut self.arbiter);
        let steps = match taken {
            Taken::Whole(ownership) => state.replace(ownership, arbiter, &mut reception, rank, now),
            Taken::Change(change) => state.apply(change, arbiter, &mut reception, rank, now),
        };
        self.follow(steps).await
    }

    /// Carries out what a change of ownership calls for.
    async fn follow(&mut self, steps: Steps) -> Result<(), std::io::Error> {
        for ip in &steps.stopped {
            info!(%ip, interface = %self.name, "stopped announcing");
        }
        for ip in &steps.lost {
            self.schedule.cancel(*ip);
        }
        if let Some(first) = steps.unserved.first() {
            // One line per plan, not one per IP (10,000 of them, say).
            warn!(ip = %first, count = steps.unserved.len(), interface = %self.name, "cannot announce: no socket for the family, or no group joined, here");
        }
        let now = std::time::Instant::now();
        for ip in &steps.again {
            debug!(%ip, interface = %self.name, "a node joined: announcing again");
            self.schedule.start(*ip, now);
        }
        self.report_served(steps.served);
        self.carry_out(steps.actions).await
    }

    /// The arbiter acted on its own (a tick, a claim seen): what is answered
    /// follows, then its actions are carried out.
    async fn arbiter_acted(&mut self, actions: Vec<Action>) -> Result<(), std::io::Error> {
        if actions.is_empty() {
            return Ok(());
        }
        let served = self.state.after(&self.arbiter, &actions);
        self.report_served(served);
        self.carry_out(actions).await
    }

    /// Sends probes and starts or stops announcements as the arbiter says.
    async fn carry_out(&mut self, actions: Vec<Action>) -> Result<(), std::io::Error> {
        if actions.is_empty() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        for action in actions {
            match action {
                Action::Probe(ip) => self.probe(ip).await?,
                Action::Claim(ip) => {
                    info!(%ip, interface = %self.name, "announcing");
                    self.schedule.start(ip, now);
                }
                Action::Defend(ip) => {
                    info!(%ip, interface = %self.name, "announcing again: we won a conflict");
                    self.schedule.start(ip, now);
                }
                Action::Yield(ip) => {
                    info!(%ip, interface = %self.name, "stopped announcing: another node owns it");
                    self.schedule.cancel(ip);
                }
            }
        }
        Ok(())
    }

    /// Tells the announcer which IPs this interface now answers for or no
    /// longer does, so `applied` never claims more than is on the wire.
    fn report_served(&self, served: BTreeMap<IpAddr, bool>) {
        if served.is_empty() {
            return;
        }
        self.served.push(|pending| pending.extend(served));
        self.served_changed.notify_one();
    }

    /// Another MAC claims `ip`: let the arbiter decide, and say so if it
    /// was a conflict.
    async fn observe(
        &mut self,
        ip: IpAddr,
        claim: Claim,
        family: AddressFamily,
    ) -> Result<(), std::io::Error> {
        let (action, conflict) = self.arbiter.observe(ip, claim, std::time::Instant::now());
        if let Some(conflict) = conflict {
            self.metrics.conflict(family, conflict.outcome);
            let (other, ranked, outcome) = (
                conflict.other,
                conflict.other_ranked,
                conflict.outcome.label(),
            );
            if conflict.outcome == Outcome::HeldOff {
                // Repeats at every re-probe while a partition lasts.
                debug!(%ip, node = %self.node, interface = %self.name, %other, ranked, "probe answered: another MAC owns this IP, holding off");
            } else {
                warn!(%ip, node = %self.node, interface = %self.name, %other, ranked, outcome, "another MAC claimed an IP we announce");
                if let Some(sender) = &self.conflicts {
                    let report = ConflictReport {
                        interface: self.name.clone(),
                        conflict,
                    };
                    if sender.try_send(report).is_err() {
                        debug!(%ip, "conflict report dropped: the reporter is behind");
                    }
                }
            }
        }
        self.arbiter_acted(action.into_iter().collect()).await
    }

    async fn on_arp(&mut self, bytes: &[u8]) -> Result<(), std::io::Error> {
        let frame = match ArpFrame::parse(bytes) {
            Ok(frame) => frame,
            Err(error) => {
                trace!(%error, "ignoring a malformed ARP frame");
                self.metrics.packet_ignored(IgnoreReason::Malformed);
                return Ok(());
            }
        };
        if let Some((ip, claim)) = foreign_arp_claim(&frame, bytes, self.mac) {
            self.observe(ip, claim, AddressFamily::ipv4).await?;
        }
        match answer_arp(&frame, self.mac, &self.state) {
            Ok(reply) => {
                let Some(arp) = &self.arp else { return Ok(()) };
                let ip = IpAddr::V4(frame.target_ip);
                let bytes = tagged_arp(&reply, self.arbiter.rank(&ip));
                send_or_log(arp.send(&bytes).await, ip)?;
                debug!(%ip, asker = %frame.sender_ip, "answered ARP request");
                self.metrics.request_answered(AddressFamily::ipv4);
            }
            Err(reason) => {
                trace!(ip = %frame.target_ip, reason = reason.label(), "ARP request not answered");
                self.metrics.packet_ignored(reason);
            }
        }
        Ok(())
    }

    /// A Neighbor Solicitation or Advertisement frame: solicitations are
    /// answered, advertisements by other MACs go to the arbiter.
    async fn on_ndp_frame(&mut self, bytes: &[u8]) -> Result<(), std::io::Error> {
        let frame = match Icmpv6Frame::parse(bytes) {
            Ok(frame) => frame,
            Err(error) => {
                debug!(%error, "ignoring a malformed Neighbor Discovery frame");
                self.metrics.packet_ignored(IgnoreReason::Malformed);
                return Ok(());
            }
        };
        if !frame.is_advertisement() {
            return self.on_neighbor_solicitation(&frame).await;
        }
        match foreign_advertisement_claim(&frame, self.mac) {
            Ok(Some((ip, claim))) => self.observe(ip, claim, AddressFamily::ipv6).await,
            Ok(None) => Ok(()),
            Err(reason) => {
                self.metrics.packet_ignored(reason);
                Ok(())
            }
        }
    }

    async fn on_neighbor_solicitation(
        &self,
        frame: &Icmpv6Frame<'_>,
    ) -> Result<(), std::io::Error> {
        let source = frame.source;
        let solicitation = match frame.solicitation() {
            Ok(solicitation) => solicitation,
            Err(error) => {
                debug!(%error, %source, "ignoring an invalid Neighbor Solicitation");
                self.metrics.packet_ignored(IgnoreReason::Malformed);
                return Ok(());
            }
        };
        match answer_neighbor_solicitation(&solicitation, frame.hop_limit, self.mac, &self.state) {
            Ok((destination, advertisement)) => {
                let Some(ndp) = &self.ndp else { return Ok(()) };
                let ip = IpAddr::V6(solicitation.target);
                let bytes = tagged_advertisement(&advertisement.to_bytes(), self.arbiter.rank(&ip));
                let sent = ndp.send_to(&bytes, destination, solicitation.target).await;
                send_or_log(sent, ip)?;
                let unicast = !frame.destination.is_multicast();
                debug!(%ip, asker = %source, unicast, "answered Neighbor Solicitation");
                self.metrics.request_answered(AddressFamily::ipv6);
            }
            Err(reason) => {
                trace!(ip = %solicitation.target, reason = reason.label(), "Neighbor Solicitation not answered");
                self.metrics.packet_ignored(reason);
            }
        }
        Ok(())
    }

    /// Sends one probe for `ip`: an ARP probe, or a Neighbor Solicitation
    /// to its solicited-node group from our link-local address.
    async fn probe(&self, ip: IpAddr) -> Result<(), std::io::Error> {
        let sent = match (ip, &self.arp, &self.ndp) {
            (IpAddr::V4(v4), Some(arp), _) => arp.send(&arp_probe(v4, self.mac).to_bytes()).await,
            (IpAddr::V6(v6), _, Some(ndp)) => {
                ndp.send_from_any(&neighbor_probe(v6, self.mac), solicited_node_multicast(v6))
                    .await
            }
            _ => return Ok(()),
        };
        if send_or_log(sent, ip)? {
            trace!(%ip, interface = %self.name, "probe sent");
        }
        Ok(())
    }

    /// Sends one gratuitous ARP or unsolicited Neighbor Advertisement.
    async fn announce(&self, ip: IpAddr) -> Result<(), std::io::Error> {
        let rank = self.arbiter.rank(&ip);
        let (sent, family) = match (ip, &self.arp, &self.ndp) {
            (IpAddr::V4(v4), Some(arp), _) => (
                self.send_gratuitous_arp(arp, v4, rank).await,
                AddressFamily::ipv4,
            ),
            (IpAddr::V6(v6), _, Some(ndp)) => {
                let advertisement = NeighborAdvertisement::unsolicited(v6, self.mac);
                let bytes = tagged_advertisement(&advertisement.to_bytes(), rank);
                (
                    ndp.send_to(&bytes, ALL_NODES, v6).await,
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
        rank: Option<Rank>,
    ) -> Result<(), std::io::Error> {
        arp.send(&tagged_arp(&ArpFrame::gratuitous(ip, self.mac), rank))
            .await
    }
}

/// What an interface task is handed: its whole ownership, or a change of it.
enum Taken<'a> {
    Whole(Ownership),
    Change(&'a OwnershipChange),
}

/// What [`InterfaceState`] asks of the task's sockets and groups.
struct TaskReception<'a> {
    arp: bool,
    ndp: Option<&'a NdpSocket>,
    groups: &'a mut SolicitedGroups,
    name: &'a str,
    metrics: &'a L2Metrics,
}

impl Reception for TaskReception<'_> {
    fn follow(&mut self, here: &BTreeSet<IpAddr>, v6_changed: bool) -> bool {
        let Some(ndp) = self.ndp else {
            return false;
        };
        if !v6_changed {
            // The groups follow the IPv6 addresses only.
            return false;
        }
        let before = self.groups.mode();
        self.groups.update(ndp, here, self.name, self.metrics);
        // With every group joined, or all multicast received, every IPv6
        // address wanted is received; a change of mode, or some groups refused,
        // may change it for any of them.
        let after = self.groups.mode();
        before != after || after == Mode::Partial
    }

    fn can_serve(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => self.arp,
            IpAddr::V6(v6) => self.ndp.is_some() && self.groups.receives(*v6),
        }
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
) -> Result<usize, std::io::Error> {
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
