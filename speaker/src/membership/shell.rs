//! The I/O shell: one tokio task owns the UDP socket and foca, hands foca
//! what arrives (datagrams, due timers, commands) and carries out what foca
//! asks for (send, schedule, notify). It makes no decisions of its own.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use foca::{AccumulatingRuntime, Foca, PostcardCodec};
use rand_foca::SeedableRng;
use rand_foca::rngs::{SmallRng, SysRng};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::alive::AliveSet;
use super::auth::{Authenticator, Envelope, OpenError};
use super::identity::SpeakerId;
use super::inbound::{Inbound, SpeakerFoca, receive};
use super::metrics::{Direction, MembershipMetrics, RejectReason};
use super::reach::{ReachBook, ReachOutbox, ReachReport, Received};
use super::timers::TimerQueue;
use super::{MembershipConfig, MembershipError, resolve_advertise, usable_seeds};
use crate::model::reach::{Reach, Reaches};

/// Big enough for any UDP datagram, so that an oversized one is seen whole
/// (and refused) rather than silently cut to look like something else.
const RECEIVE_BUFFER: usize = 65_536;

enum Command {
    SetSeeds(Vec<SocketAddr>),
    SetKeys(Authenticator),
    SetReach(Reach),
    Leave(oneshot::Sender<()>),
}

/// A running gossip membership.
///
/// Dropping it stops the task *without* telling the group, like a crash:
/// the others notice by probing. Call [`Membership::leave`] on a graceful
/// shutdown so that they take over at once.
#[derive(Debug)]
pub struct Membership {
    commands: mpsc::UnboundedSender<Command>,
    task: JoinHandle<()>,
    advertised: SocketAddr,
    leave_timeout: std::time::Duration,
    reaches: watch::Receiver<Reaches>,
}

impl Membership {
    /// Binds the socket, announces to the seeds and starts gossiping.
    /// The receiver holds the names of the nodes with a live speaker, ours
    /// included (at first, only ours). Must be called inside a tokio runtime.
    pub async fn start(
        config: MembershipConfig,
        metrics: MembershipMetrics,
    ) -> Result<(Membership, watch::Receiver<BTreeSet<String>>), MembershipError> {
        if config.node_name.is_empty() {
            return Err(MembershipError::EmptyNodeName);
        }
        let foca_config = config.timings.foca_config()?;
        let rng = SmallRng::try_from_rng(&mut SysRng)
            .map_err(|error| MembershipError::Randomness(error.to_string()))?;

        let socket =
            UdpSocket::bind(config.bind)
                .await
                .map_err(|source| MembershipError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let bound = socket
            .local_addr()
            .map_err(|source| MembershipError::Bind {
                addr: config.bind,
                source,
            })?;
        let advertised = resolve_advertise(config.advertise, bound);
        let ourselves = [advertised, bound];

        let identity = SpeakerId::starting_now(config.node_name.clone(), advertised);
        tracing::info!(node = %config.node_name, %bound, %advertised, generation = identity.generation, "gossip membership starting");
        let alive = AliveSet::new(config.node_name.clone());
        let (publish, alive_names) = watch::channel(alive.node_names());
        metrics.set_members_alive(1);

        let (commands, command_inbox) = mpsc::unbounded_channel();
        let outbox = ReachOutbox::new(&config.node_name, identity.generation);
        let book = ReachBook::new(config.node_name.clone());
        let (publish_reaches, reaches) = watch::channel(book.reaches());
        let gossiper = Gossiper {
            foca: Foca::new(identity, foca_config.clone(), rng, PostcardCodec),
            foca_config,
            runtime: AccumulatingRuntime::new(),
            timers: TimerQueue::default(),
            alive,
            seeds: usable_seeds(config.seeds, &ourselves),
            ourselves,
            authenticator: config.authenticator,
            metrics,
            publish,
            book,
            outbox,
            publish_reaches,
        };
        let rejoin_interval = config.timings.rejoin_interval;
        let task = tokio::spawn(gossiper.run(socket, command_inbox, rejoin_interval));
        Ok((
            Membership {
                commands,
                task,
                advertised,
                leave_timeout: config.timings.leave_timeout,
                reaches,
            },
            alive_names,
        ))
    }

    /// The address we gossip from, as told to the others (useful when the
    /// configuration asked for port 0).
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertised
    }

    /// Replaces the seeds (e.g. learned from Node objects) and announces
    /// at once to those that are not members yet. Our own address is ignored.
    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        // Fails only when the task has ended, and then there is nobody to tell.
        let _ = self.commands.send(Command::SetSeeds(seeds));
    }

    /// Every node's reach that is not full, by node name: ours as set by
    /// [`Membership::set_reach`], the others' from their reports.
    pub fn reaches(&self) -> watch::Receiver<Reaches> {
        self.reaches.clone()
    }

    /// Sets our reach; when it changed, the report goes to every member at once.
    pub fn set_reach(&self, reach: Reach) {
        let _ = self.commands.send(Command::SetReach(reach));
    }

    /// Swaps the keys without leaving the group: the next datagram is
    /// signed with the new first key.
    pub fn set_keys(&self, authenticator: Authenticator) {
        self.key_setter().set(authenticator);
    }

    /// A handle that swaps the keys from another task.
    pub fn key_setter(&self) -> KeySetter {
        KeySetter {
            commands: self.commands.clone(),
        }
    }

    /// Tells the group we leave, waits (at most `leave_timeout`) until that
    /// has been sent, and stops.
    pub async fn leave(self) {
        let (done, sent) = oneshot::channel();
        if self.commands.send(Command::Leave(done)).is_ok()
            && tokio::time::timeout(self.leave_timeout, sent)
                .await
                .is_err()
        {
            tracing::warn!("gossip: leaving took too long; stopping anyway");
        }
        // Dropping `self` aborts the task if it is still running.
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Swaps a running membership's keys (see [`Membership::key_setter`]).
#[derive(Clone, Debug)]
pub struct KeySetter {
    commands: mpsc::UnboundedSender<Command>,
}

impl KeySetter {
    /// Hands the new keys over; false when the membership has stopped.
    pub fn set(&self, authenticator: Authenticator) -> bool {
        self.commands.send(Command::SetKeys(authenticator)).is_ok()
    }
}

/// The task's state: foca and what turns its output into effects.
struct Gossiper {
    foca: SpeakerFoca,
    /// foca's configuration (foca has no getter), widened on leaving.
    foca_config: foca::Config,
    runtime: AccumulatingRuntime<SpeakerId>,
    timers: TimerQueue,
    alive: AliveSet,
    seeds: Vec<SocketAddr>,
    /// Addresses that are us (advertised and bound), never announced to.
    ourselves: [SocketAddr; 2],
    authenticator: Authenticator,
    metrics: MembershipMetrics,
    publish: watch::Sender<BTreeSet<String>>,
    /// The reaches we know (ours and the reports received), and when ours goes out.
    book: ReachBook,
    outbox: ReachOutbox,
    publish_reaches: watch::Sender<Reaches>,
}

impl Gossiper {
    async fn run(
        mut self,
        socket: UdpSocket,
        mut commands: mpsc::UnboundedReceiver<Command>,
        rejoin_interval: std::time::Duration,
    ) {
        let mut buffer = vec![0u8; RECEIVE_BUFFER];
        // The first tick is immediate: that is the initial announcement.
        let mut rejoin = tokio::time::interval(rejoin_interval);
        rejoin.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let next_timer = self.timers.next_deadline();
            let next_reach = [self.outbox.next_due(), self.book.next_expiry()]
                .into_iter()
                .flatten()
                .min()
                .map(Instant::from_std);
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::SetSeeds(seeds)) => {
                        self.seeds = usable_seeds(seeds, &self.ourselves);
                        self.announce_to_seeds(&socket).await;
                    }
                    Some(Command::SetKeys(authenticator)) => {
                        self.authenticator = authenticator;
                    }
                    Some(Command::SetReach(reach)) => self.set_reach(reach, &socket).await,
                    Some(Command::Leave(done)) => {
                        self.leave(&socket).await;
                        let _ = done.send(());
                        return;
                    }
                    // The handle is gone (it aborts us too): stop quietly.
                    None => return,
                },
                received = socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => {
                        let datagram = buffer.get(..len).unwrap_or_default();
                        self.on_datagram(datagram, from, &socket).await;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "gossip: receive failed");
                        // Do not spin if the error persists.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
                () = sleep_until_or_forever(next_timer) => self.on_due_timers(&socket).await,
                () = sleep_until_or_forever(next_reach) => self.on_reach_timer(&socket).await,
                _ = rejoin.tick() => self.announce_to_seeds(&socket).await,
            }
        }
    }

    async fn on_datagram(&mut self, datagram: &[u8], from: SocketAddr, socket: &UdpSocket) {
        match receive(
            &self.authenticator,
            &mut self.foca,
            datagram,
            &mut self.runtime,
        ) {
            Inbound::Refused(error) => {
                let reason = match error {
                    OpenError::BadTag => RejectReason::BadKey,
                    OpenError::Truncated { .. } | OpenError::UnsupportedVersion(_) => {
                        RejectReason::Malformed
                    }
                };
                tracing::debug!(%from, %error, "gossip: datagram refused");
                self.metrics.count_rejected(reason);
                return;
            }
            Inbound::Handled => self.metrics.count_message(Direction::In),
            Inbound::Malformed(error) => {
                self.metrics.count_message(Direction::In);
                tracing::debug!(%from, %error, "gossip: malformed message");
                self.metrics.count_rejected(RejectReason::Malformed);
            }
            Inbound::NotHandled(error) => {
                self.metrics.count_message(Direction::In);
                tracing::debug!(%from, %error, "gossip: message not handled");
            }
            Inbound::Reach(report) => {
                self.metrics.count_message(Direction::In);
                self.on_reach_report(&report);
                return;
            }
            Inbound::BadReport(error) => {
                self.metrics.count_message(Direction::In);
                tracing::debug!(%from, %error, "gossip: malformed reach report");
                self.metrics.count_rejected(RejectReason::Malformed);
                return;
            }
        }
        self.carry_out(socket).await;
    }

    fn on_reach_report(&mut self, report: &ReachReport) {
        match self.book.receive(report, std::time::Instant::now()) {
            Received::Changed => {
                tracing::info!(
                    node = %report.node_name,
                    unusable = ?report.unusable,
                    no_suitable = report.no_suitable,
                    "gossip: a member's reach changed"
                );
                self.publish_reaches();
            }
            Received::Refreshed => {}
            Received::Stale => {
                tracing::debug!(node = %report.node_name, generation = report.generation, "gossip: stale reach report")
            }
            Received::Ours => {
                tracing::warn!(node = %report.node_name, "gossip: a reach report in our own node's name")
            }
        }
    }

    async fn set_reach(&mut self, reach: Reach, socket: &UdpSocket) {
        let now = std::time::Instant::now();
        if self.book.set_own(reach.clone()) {
            self.publish_reaches();
        }
        if self.outbox.set(&reach, now) {
            self.send_reach(socket, None).await;
        }
    }

    async fn on_reach_timer(&mut self, socket: &UdpSocket) {
        let now = std::time::Instant::now();
        if self.outbox.due(now) {
            self.send_reach(socket, None).await;
        }
        if self.book.expire(now) {
            tracing::info!("gossip: a member's reach report expired; it has full reach again");
            self.publish_reaches();
        }
    }

    /// Sends our reach report to `to`, or to every Up member.
    async fn send_reach(&self, socket: &UdpSocket, to: Option<SocketAddr>) {
        let report = self.outbox.report();
        let payload = match report.encode() {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(%error, "gossip: cannot send our reach report");
                return;
            }
        };
        let datagram = self.authenticator.seal_as(Envelope::Reach, &payload);
        let targets: Vec<SocketAddr> = match to {
            Some(addr) => vec![addr],
            None => self.alive.addrs().collect(),
        };
        for addr in targets {
            match socket.send_to(&datagram, addr).await {
                Ok(_) => self.metrics.count_message(Direction::Out),
                Err(error) => tracing::debug!(to = %addr, %error, "gossip: send failed"),
            }
        }
    }

    fn publish_reaches(&self) {
        let reaches = self.book.reaches();
        self.publish_reaches.send_if_modified(|published| {
            let changed = *published != reaches;
            *published = reaches;
            changed
        });
    }

    async fn on_due_timers(&mut self, socket: &UdpSocket) {
        let now = Instant::now();
        while let Some(event) = self.timers.pop_due(now) {
            if let Err(error) = self.foca.handle_timer(event, &mut self.runtime) {
                tracing::debug!(%error, "gossip: timer not handled");
            }
            self.carry_out(socket).await;
        }
    }

    /// Announces to each seed that is not an Up member.
    async fn announce_to_seeds(&mut self, socket: &UdpSocket) {
        let strangers: Vec<SocketAddr> = self
            .seeds
            .iter()
            .filter(|seed| !self.alive.is_up(seed))
            .copied()
            .collect();
        for seed in strangers {
            if let Err(error) = self
                .foca
                .announce(SpeakerId::seed_placeholder(seed), &mut self.runtime)
            {
                tracing::debug!(%seed, %error, "gossip: cannot announce");
            }
            self.carry_out(socket).await;
        }
    }

    /// Declares ourselves Down to every live member at once (not just to a
    /// few, as foca would), so that all of them take over without waiting
    /// for the news to spread.
    async fn leave(&mut self, socket: &UdpSocket) {
        let mut config = self.foca_config.clone();
        if let Some(everyone) = std::num::NonZeroUsize::new(self.foca.num_members()) {
            config.num_indirect_probes = everyone;
        }
        if let Err(error) = self.foca.set_config(config) {
            tracing::debug!(%error, "gossip: cannot widen the goodbye");
        }
        match self.foca.leave_cluster(&mut self.runtime) {
            Ok(()) => tracing::info!(
                members = self.foca.num_members(),
                "gossip: leaving the group"
            ),
            Err(error) => tracing::warn!(%error, "gossip: leaving failed"),
        }
        self.carry_out(socket).await;
    }

    /// Does what foca asked for during the last call: send, schedule, and
    /// update the alive set.
    async fn carry_out(&mut self, socket: &UdpSocket) {
        while let Some((to, payload)) = self.runtime.to_send() {
            let datagram = self.authenticator.seal(&payload);
            match socket.send_to(&datagram, to.addr).await {
                Ok(_) => self.metrics.count_message(Direction::Out),
                Err(error) => tracing::debug!(to = %to.addr, %error, "gossip: send failed"),
            }
        }
        let now = Instant::now();
        while let Some((after, event)) = self.runtime.to_schedule() {
            self.timers.schedule(now, after, event);
        }
        let mut changed = false;
        let mut newcomers = Vec::new();
        while let Some(notification) = self.runtime.to_notify() {
            log_notification(&notification);
            if let foca::OwnedNotification::MemberUp(member) = &notification {
                newcomers.push(member.addr);
            }
            changed |= self.alive.apply(&notification);
        }
        if self.outbox.for_newcomer().is_some() {
            for addr in newcomers {
                self.send_reach(socket, Some(addr)).await;
            }
        }
        if changed {
            let names = self.alive.node_names();
            let gone_reports = self
                .book
                .forget_all(self.publish.borrow().difference(&names));
            if gone_reports {
                self.publish_reaches();
            }
            self.metrics.set_members_alive(names.len());
            self.publish.send_if_modified(|published| {
                if *published == names {
                    false
                } else {
                    *published = names;
                    true
                }
            });
        }
    }
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn log_notification(notification: &foca::OwnedNotification<SpeakerId>) {
    use foca::OwnedNotification as N;
    match notification {
        N::MemberUp(member) => {
            tracing::info!(node = %member.node_name, addr = %member.addr, "gossip: member up")
        }
        N::MemberDown(member) => {
            tracing::info!(node = %member.node_name, addr = %member.addr, "gossip: member down")
        }
        N::Rename(before, after) => tracing::info!(
            node = %after.node_name,
            addr = %after.addr,
            from_generation = before.generation,
            to_generation = after.generation,
            "gossip: member has a new identity (restarted or rejoined)"
        ),
        N::Rejoin(ourselves) => tracing::warn!(
            generation = ourselves.generation,
            "gossip: the group declared us down; rejoined with a new generation"
        ),
        N::Defunct => tracing::info!("gossip: we are out of the group"),
        N::Idle => tracing::info!("gossip: no other member is alive"),
        N::Active => tracing::info!("gossip: joined the group"),
    }
}
