//! The session shell: a TCP connection and tokio timers driving the pure [`Fsm`],
//! sending the routes of a [`RouteFeed`] as incremental UPDATEs. It makes no
//! decisions of its own beyond carrying out the machine's actions; what to send for
//! a set of changed prefixes is [`changes_for`], pure.

use super::codec::{CodecOptions, encode_message};
use super::framing::Framer;
use super::fsm::{Action, DownReason, Event, Fsm, FsmConfig, Negotiated, State, Timer};
use super::message::{AddressFamily, Message};
use super::route_feed::RouteFeed;
use super::socket::{set_tcp_md5_password, set_ttl};
use super::update_builder::{
    PeerKind, Route, RouteChanges, UpdateContext, build_updates, with_graceful_shutdown,
};
use super::update_errors::{UpdateAction, UpdateError};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// The routes to advertise, by prefix. A route whose next hop is unspecified
/// (0.0.0.0 or ::) gets the session's local address of the same family (next-hop self).
pub type RouteSet = BTreeMap<IpNet, Route>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// The router's address and port (usually 179).
    pub peer: SocketAddr,
    /// Local address to connect from.
    pub source: Option<IpAddr>,
    pub md5_password: Option<String>,
    /// eBGP to a router more than one hop away: TTL 255 instead of 1.
    pub ebgp_multihop: bool,
    pub ipv6_link_local_next_hop: Option<Ipv6Addr>,
    pub fsm: FsmConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    /// Announce GRACEFUL_SHUTDOWN, wait the drain time, withdraw, then close.
    Graceful,
    /// The speaker restarts: close without a NOTIFICATION when the peer keeps our
    /// routes through a Graceful Restart, else as `Graceful`.
    Restart,
    Immediate,
}

/// What the session shows to the rest of the speaker (metrics, status, logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: State,
    /// When the session last reached Established; `None` while it is not.
    pub established_since: Option<std::time::Instant>,
    pub prefixes_sent: usize,
    pub last_error: Option<String>,
    /// UPDATE messages sent over the session's whole life (all connections).
    pub updates_sent: u64,
    /// Errors in received UPDATEs that the session survived (RFC 7606), over its whole life.
    pub update_errors: UpdateErrorCounts,
}

/// Errors in received UPDATEs that the session survived, by the action RFC 7606 took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateErrorCounts {
    pub treat_as_withdraw: u64,
    pub attribute_discard: u64,
}

impl UpdateErrorCounts {
    fn count(&mut self, action: UpdateAction) {
        let counter = match action {
            UpdateAction::TreatAsWithdraw => &mut self.treat_as_withdraw,
            UpdateAction::AttributeDiscard => &mut self.attribute_discard,
            // Never reported: a reset is a decode error.
            UpdateAction::SessionReset => return,
        };
        *counter = counter.saturating_add(1);
    }

    /// The counts by action, for the actions the session survives.
    pub fn by_action(&self) -> [(UpdateAction, u64); 2] {
        [
            (UpdateAction::TreatAsWithdraw, self.treat_as_withdraw),
            (UpdateAction::AttributeDiscard, self.attribute_discard),
        ]
    }
}

impl Default for SessionStatus {
    fn default() -> Self {
        SessionStatus {
            state: State::Idle,
            established_since: None,
            prefixes_sent: 0,
            last_error: None,
            updates_sent: 0,
            update_errors: UpdateErrorCounts::default(),
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

struct Connection {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    local: SocketAddr,
    received: Framer,
}

/// Runs one session until it is stopped (a `StopRequest` arrives, or the stop sender
/// is dropped, which counts as an immediate stop). Routes come from `routes`; the
/// session's state goes to `status`.
pub async fn run_session(
    config: SessionConfig,
    routes: Arc<RouteFeed>,
    stop: watch::Receiver<Option<StopRequest>>,
    status: watch::Sender<SessionStatus>,
) {
    let mut shell = Shell {
        fsm: Fsm::new(config.fsm.clone()),
        config,
        connection: None,
        connecting: None,
        deadlines: BTreeMap::new(),
        sent: RouteSet::new(),
        pending: VecDeque::from([Event::Start]),
        draining: false,
        established: None,
        updates_sent: 0,
        update_errors: UpdateErrorCounts::default(),
        status,
    };
    shell.run(routes, stop).await
}

struct Shell {
    config: SessionConfig,
    fsm: Fsm,
    connection: Option<Connection>,
    connecting: Option<Connecting>,
    deadlines: BTreeMap<Timer, Instant>,
    /// What the peer has from us (our Adj-RIB-Out).
    sent: RouteSet,
    pending: VecDeque<Event>,
    /// Announcing GRACEFUL_SHUTDOWN: route changes wait until we withdraw.
    draining: bool,
    /// Since when the session is Established, and its parameters, kept until its
    /// `SessionDown` action. The FSM forgets the parameters as soon as it decides to
    /// close, but the goodbye it asks for first (withdrawals, then the NOTIFICATION)
    /// still goes out on that session.
    established: Option<(std::time::Instant, Negotiated)>,
    updates_sent: u64,
    update_errors: UpdateErrorCounts,
    status: watch::Sender<SessionStatus>,
}

impl Shell {
    async fn run(
        &mut self,
        routes: Arc<RouteFeed>,
        mut stop: watch::Receiver<Option<StopRequest>>,
    ) {
        let mut stop_requested = false;
        let mut chunk = vec![0u8; 4096];
        loop {
            self.process_pending(&routes).await;
            if stop_requested && self.fsm.state() == State::Idle {
                return;
            }
            let next_timer = self
                .deadlines
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(timer, at)| (*timer, *at));
            let connecting = async {
                match self.connecting.as_mut() {
                    Some(connecting) => connecting.await,
                    None => std::future::pending().await,
                }
            };
            let reading = async {
                match self.connection.as_mut() {
                    Some(connection) => connection.reader.read(&mut chunk).await,
                    None => std::future::pending().await,
                }
            };
            let timer = async {
                match next_timer {
                    Some((timer, at)) => {
                        tokio::time::sleep_until(at).await;
                        timer
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                connected = connecting => {
                    self.connecting = None;
                    self.on_connect_result(connected);
                }
                read = reading => match read {
                    Ok(0) => self.on_connection_lost("closed by peer".into()),
                    Ok(count) => self.on_bytes(chunk.get(..count).unwrap_or_default()),
                    Err(error) => self.on_connection_lost(error.to_string()),
                },
                timer = timer => {
                    self.deadlines.remove(&timer);
                    self.pending.push_back(match timer {
                        Timer::ConnectRetry => Event::ConnectRetryTimerExpired,
                        Timer::Hold => Event::HoldTimerExpired,
                        Timer::Keepalive => Event::KeepaliveTimerExpired,
                        Timer::GracefulShutdown => Event::GracefulShutdownTimerExpired,
                    });
                }
                () = routes.changed() => {
                    // Changes taken while the session is not up are covered by the whole
                    // set it sends when it comes up.
                    let prefixes = routes.take();
                    if self.fsm.state() == State::Established && !self.draining {
                        self.sync_prefixes(&routes, &prefixes).await;
                    }
                }
                requested = stop.changed(), if !stop_requested => {
                    let request = if requested.is_ok() { *stop.borrow_and_update() } else { Some(StopRequest::Immediate) };
                    if let Some(request) = request {
                        stop_requested = true;
                        self.pending.push_back(match request {
                            StopRequest::Restart => Event::StopForRestart,
                            StopRequest::Graceful => Event::Stop { graceful: true },
                            StopRequest::Immediate => Event::Stop { graceful: false },
                        });
                    }
                }
            }
        }
    }

    fn on_connect_result(&mut self, connected: io::Result<TcpStream>) {
        match connected.and_then(|stream| Ok((stream.local_addr()?, stream))) {
            Ok((local, stream)) => {
                tracing::info!(peer = %self.config.peer, %local, "TCP connected");
                let (reader, writer) = stream.into_split();
                self.connection = Some(Connection {
                    reader,
                    writer,
                    local,
                    received: Framer::new(),
                });
                self.pending.push_back(Event::TcpConnected);
            }
            Err(error) => {
                tracing::info!(peer = %self.config.peer, %error, "TCP connect failed");
                self.pending.push_back(Event::TcpConnectFailed);
            }
        }
    }

    fn on_connection_lost(&mut self, why: String) {
        tracing::info!(peer = %self.config.peer, why, "TCP connection lost");
        self.connection = None;
        self.pending.push_back(Event::TcpClosed);
    }

    fn on_bytes(&mut self, bytes: &[u8]) {
        if let Some(connection) = self.connection.as_mut() {
            connection.received.push(bytes);
        }
    }

    /// The session's parameters: the Established session's until it is down, else
    /// what the FSM has negotiated so far (from OpenConfirm on).
    fn negotiated(&self) -> Option<&Negotiated> {
        self.established
            .as_ref()
            .map(|(_, negotiated)| negotiated)
            .or_else(|| self.fsm.negotiated())
    }

    fn codec(&self) -> CodecOptions {
        CodecOptions {
            four_octet_as: self
                .negotiated()
                .is_some_and(|negotiated| negotiated.four_octet_as),
        }
    }

    /// Feeds queued events and then whole received messages to the FSM, one at a
    /// time: a message's handling (the OPEN) can change how the next is decoded.
    async fn process_pending(&mut self, routes: &RouteFeed) {
        loop {
            if let Some(event) = self.pending.pop_front() {
                for action in self.fsm.handle(event) {
                    self.execute(action, routes).await;
                }
                self.publish_status();
                continue;
            }
            let codec = self.codec();
            let Some(connection) = self.connection.as_mut() else {
                return;
            };
            match connection.received.next_message(codec) {
                Ok(Some(message)) => {
                    tracing::debug!(peer = %self.config.peer, kind = message.kind(), "received");
                    self.pending.push_back(Event::Message(message));
                }
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(peer = %self.config.peer, %error, "malformed message");
                    self.pending
                        .push_back(Event::DecodeError(error.notification()));
                }
            }
        }
    }

    async fn execute(&mut self, action: Action, routes: &RouteFeed) {
        match action {
            Action::Connect => {
                self.connection = None;
                self.connecting = Some(Box::pin(connect(self.config.clone())));
            }
            Action::Send(message) => self.send(&message).await,
            Action::CloseTcp => {
                if let Some(mut connection) = self.connection.take() {
                    // Best effort: the peer may already be gone.
                    let _ = connection.writer.shutdown().await;
                }
                self.connecting = None;
            }
            Action::StartTimer(timer, duration) => {
                self.deadlines.insert(timer, Instant::now() + duration);
            }
            Action::StopTimer(timer) => {
                self.deadlines.remove(&timer);
            }
            Action::SessionEstablished(negotiated) => {
                tracing::info!(peer = %self.config.peer, ?negotiated, "session established");
                self.established = Some((std::time::Instant::now(), negotiated.clone()));
                self.sent.clear();
                // What changed until now is in the whole set.
                routes.take();
                self.sync_routes(routes).await;
            }
            Action::SessionDown(reason) => {
                tracing::warn!(peer = %self.config.peer, %reason, "session down");
                self.established = None;
                self.sent.clear();
                self.draining = false;
            }
            Action::AnnounceGracefulShutdown => {
                self.draining = true;
                let tagged = with_graceful_shutdown(self.sent.values());
                let changes = RouteChanges {
                    announce: tagged,
                    withdraw: Vec::new(),
                };
                self.send_changes(&changes).await;
            }
            Action::WithdrawAll => {
                let changes = RouteChanges {
                    announce: Vec::new(),
                    withdraw: self.sent.keys().copied().collect(),
                };
                self.send_changes(&changes).await;
                self.sent.clear();
            }
            Action::ReportUpdateErrors(errors) => {
                for UpdateError { action, error } in errors {
                    tracing::warn!(peer = %self.config.peer, %action, %error, "malformed UPDATE received; the session stays up (RFC 7606)");
                    self.update_errors.count(action);
                }
            }
            Action::ResendAll(family) => {
                let announce = self
                    .sent
                    .values()
                    .filter(|route| family_of(&route.prefix) == family)
                    .cloned()
                    .collect();
                self.send_changes(&RouteChanges {
                    announce,
                    withdraw: Vec::new(),
                })
                .await;
            }
        }
    }

    async fn send(&mut self, message: &Message) {
        let bytes = match encode_message(message, self.codec()) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::error!(peer = %self.config.peer, %error, kind = message.kind(), "cannot encode");
                return;
            }
        };
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(error) = connection.writer.write_all(&bytes).await {
            self.on_connection_lost(error.to_string());
        }
    }

    /// The local address of the connection: the next hop of routes with next-hop self.
    fn local(&self) -> Option<IpAddr> {
        self.connection
            .as_ref()
            .map(|connection| connection.local.ip())
    }

    /// Sends the whole route set: what the peer lacks or has differently, and the
    /// withdrawals of what it should not have.
    async fn sync_routes(&mut self, routes: &RouteFeed) {
        let every: BTreeSet<IpNet> =
            routes.with_routes(|routes| routes.keys().chain(self.sent.keys()).copied().collect());
        self.sync_prefixes(routes, &every).await;
    }

    /// Sends what changed at `prefixes`.
    async fn sync_prefixes(&mut self, routes: &RouteFeed, prefixes: &BTreeSet<IpNet>) {
        let Some(negotiated) = self.negotiated().cloned() else {
            return;
        };
        let local = self.local();
        let changes = routes.with_routes(|routes| {
            changes_for(&self.sent, routes, prefixes, &negotiated.families, local)
        });
        self.send_and_record(changes).await;
    }

    /// Sends `changes` and records them in the Adj-RIB-Out once sent.
    async fn send_and_record(&mut self, changes: RouteChanges) {
        if changes.is_empty() {
            return;
        }
        if self.send_changes(&changes).await {
            record(&mut self.sent, changes);
        }
        self.publish_status();
    }

    /// Sends the UPDATEs for `changes`; false if they could not be built.
    async fn send_changes(&mut self, changes: &RouteChanges) -> bool {
        let Some(negotiated) = self.negotiated() else {
            return false;
        };
        let context = UpdateContext {
            local_as: self.config.fsm.local_as,
            peer: negotiated.peer_kind,
            codec: self.codec(),
            ipv6_link_local_next_hop: self.config.ipv6_link_local_next_hop,
        };
        match build_updates(changes, &context) {
            Ok(updates) => {
                tracing::debug!(peer = %self.config.peer, announced = changes.announce.len(), withdrawn = changes.withdraw.len(), messages = updates.len(), "sending routes");
                for update in updates {
                    self.send(&Message::Update(update)).await;
                    self.updates_sent = self.updates_sent.saturating_add(1);
                }
                true
            }
            Err(error) => {
                tracing::error!(peer = %self.config.peer, %error, "cannot build UPDATEs");
                false
            }
        }
    }

    fn publish_status(&self) {
        let status = SessionStatus {
            state: self.fsm.state(),
            established_since: self.established.as_ref().map(|(since, _)| *since),
            prefixes_sent: self.sent.len(),
            last_error: self.fsm.last_error().map(DownReason::to_string),
            updates_sent: self.updates_sent,
            update_errors: self.update_errors,
        };
        self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }
}

/// How `route` goes to a peer of `families` over a connection from `local`: with
/// next-hop self filled in; `None` when its family is not negotiated or it has no next
/// hop of its family.
pub fn advertisable(
    route: &Route,
    families: &[AddressFamily],
    local: Option<IpAddr>,
) -> Option<Route> {
    if !families.contains(&family_of(&route.prefix)) {
        return None;
    }
    let mut route = route.clone();
    if route.next_hop.is_unspecified() {
        route.next_hop = local.filter(|local| local.is_ipv4() == route.prefix.addr().is_ipv4())?;
    }
    (route.next_hop.is_ipv4() == route.prefix.addr().is_ipv4()).then_some(route)
}

/// What to send so that the peer, having `sent`, has at `prefixes` what `routes` wants
/// there (see [`advertisable`]); prefixes elsewhere are left alone.
pub fn changes_for(
    sent: &RouteSet,
    routes: &RouteSet,
    prefixes: &BTreeSet<IpNet>,
    families: &[AddressFamily],
    local: Option<IpAddr>,
) -> RouteChanges {
    let mut changes = RouteChanges::default();
    for prefix in prefixes {
        let wanted = routes
            .get(prefix)
            .and_then(|route| advertisable(route, families, local));
        match (wanted, sent.get(prefix)) {
            (Some(wanted), Some(had)) if wanted == *had => {}
            (Some(wanted), _) => changes.announce.push(wanted),
            (None, Some(_)) => changes.withdraw.push(*prefix),
            (None, None) => {}
        }
    }
    changes
}

/// The peer has received `changes`: the Adj-RIB-Out `sent` follows.
pub fn record(sent: &mut RouteSet, changes: RouteChanges) {
    for prefix in changes.withdraw {
        sent.remove(&prefix);
    }
    for route in changes.announce {
        sent.insert(route.prefix, route);
    }
}

fn family_of(prefix: &IpNet) -> AddressFamily {
    match prefix {
        IpNet::V4(_) => AddressFamily::IPV4_UNICAST,
        IpNet::V6(_) => AddressFamily::IPV6_UNICAST,
    }
}

/// Opens the TCP connection with the session's socket options set before the SYN.
async fn connect(config: SessionConfig) -> io::Result<TcpStream> {
    let socket = match config.peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(password) = &config.md5_password {
        set_tcp_md5_password(&socket, config.peer.ip(), password)?;
    }
    if config.fsm.peer_kind() == PeerKind::External {
        set_ttl(
            &socket,
            config.peer,
            if config.ebgp_multihop { 255 } else { 1 },
        )?;
    }
    if let Some(source) = config.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.set_nodelay(true)?;
    socket.connect(config.peer).await
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
