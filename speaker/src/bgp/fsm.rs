//! The BGP session state machine (RFC 4271 §8) for a speaker that only connects out:
//! events in, actions out, no I/O and no clock. The shell owns the socket and the
//! timers and carries out the actions in order.
//!
//! Since we never listen, `Active` means "waiting for the connect retry timer before
//! the next attempt" (with exponential backoff), and `Idle` means "not started or
//! stopped by the operator". After a failure the machine goes to `Active` and retries
//! on its own.

use super::graceful_restart::{GracefulRestart, GracefulRestartFamily, end_of_rib};
use super::message::*;
use super::update_builder::PeerKind;
use super::update_errors::UpdateError;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The hold timer while we wait for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// How one session is to be run: what we say in our OPEN and what we require of the peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    /// Our AS number, 4 octets (sent as AS_TRANS in the OPEN header when above 65535).
    pub local_as: u32,
    /// The AS the peer must present in its OPEN.
    pub peer_as: u32,
    /// Our BGP identifier in OPEN; the peer must present a different one.
    pub router_id: Ipv4Addr,
    /// The hold time we propose, in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// Our keepalive interval in seconds; defaults to a third of the negotiated hold time.
    pub keepalive_time: Option<u16>,
    /// The first connect retry delay, which also bounds one connection attempt.
    pub connect_retry_time: Duration,
    /// The cap for the doubling retry delay.
    pub connect_retry_max: Duration,
    /// The families we offer in the multiprotocol capability.
    pub families: Vec<AddressFamily>,
    /// How long to keep routes announced with GRACEFUL_SHUTDOWN before withdrawing them
    /// on a graceful stop; `None` withdraws at once.
    pub graceful_shutdown_drain: Option<Duration>,
    /// The restart time we offer in the Graceful Restart capability (RFC 4724), in
    /// seconds; `None` sends no capability, so every stop withdraws.
    pub graceful_restart_time: Option<u16>,
}

impl FsmConfig {
    /// Internal (iBGP) when the peer is in our AS, else external (eBGP).
    pub fn peer_kind(&self) -> PeerKind {
        if self.peer_as == self.local_as {
            PeerKind::Internal
        } else {
            PeerKind::External
        }
    }
}

/// The session states of RFC 4271 §8.2.2, with `Active` and `Idle` as the module documentation reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started, or stopped by the operator: no connection and no attempt.
    Idle,
    /// A TCP connection attempt is under way.
    Connect,
    /// Waiting for the connect retry timer before the next attempt.
    Active,
    /// Connected and our OPEN sent; waiting for the peer's OPEN.
    OpenSent,
    /// OPENs exchanged; waiting for the peer's first KEEPALIVE.
    OpenConfirm,
    /// The session is up: routes are exchanged.
    Established,
}

/// The timers the shell runs for the machine; each expiry comes back as its event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// Delay before the next connection attempt, and the bound on one attempt.
    ConnectRetry,
    /// Time the peer may stay silent before we close the session.
    Hold,
    /// Interval between our KEEPALIVEs.
    Keepalive,
    /// How long GRACEFUL_SHUTDOWN routes stay announced before the withdrawal.
    GracefulShutdown,
}

/// What happens to the session: operator commands, socket news, messages and timer expiries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The operator starts the session (from `Idle`).
    Start,
    /// `graceful`: announce GRACEFUL_SHUTDOWN and withdraw before closing.
    Stop {
        /// Announce GRACEFUL_SHUTDOWN and wait the drain time before withdrawing, instead of closing at once.
        graceful: bool,
    },
    /// The TCP connection to the peer is up.
    TcpConnected,
    /// The TCP connection attempt failed.
    TcpConnectFailed,
    /// The peer closed the connection, or it broke.
    TcpClosed,
    /// A whole message was received and decoded.
    Message(Message),
    /// A received message failed to decode; this is the NOTIFICATION it calls for.
    DecodeError(Notification),
    /// The hold timer ran out: the peer has been silent too long.
    HoldTimerExpired,
    /// Time to send a KEEPALIVE.
    KeepaliveTimerExpired,
    /// Time for the next connection attempt (or the current one took too long).
    ConnectRetryTimerExpired,
    /// The graceful shutdown drain is over: withdraw and close.
    GracefulShutdownTimerExpired,
    /// Stop for a restart of this speaker: when the peer can keep our routes
    /// (Graceful Restart negotiated), close without a NOTIFICATION and without
    /// withdrawing; otherwise as a graceful [`Event::Stop`].
    StopForRestart,
}

/// What both sides agreed in their OPEN messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Seconds; 0 means neither side sends keepalives or checks the hold time.
    pub hold_time: u16,
    /// Seconds between our keepalives; 0 when the hold time is 0.
    pub keepalive_time: u16,
    /// Both sides announced 4-octet AS support, so AS_PATH carries 4-octet AS numbers.
    pub four_octet_as: bool,
    /// Families both sides offered (IPv4 unicast when the peer offered none, RFC 4760).
    pub families: Vec<AddressFamily>,
    /// The peer supports ROUTE-REFRESH.
    pub route_refresh: bool,
    /// The peer's BGP identifier.
    pub peer_router_id: Ipv4Addr,
    /// Internal when the peer's AS is ours.
    pub peer_kind: PeerKind,
    /// We offered Graceful Restart and the peer announced the capability, so it
    /// keeps our routes for the restart time if we close without a NOTIFICATION.
    pub graceful_restart: bool,
}

/// Why a session left `Established` (or never got there), as reported in status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    /// The operator stopped the session.
    Stopped,
    /// The TCP connection attempt failed.
    ConnectFailed,
    /// The connection attempt took longer than the connect retry time.
    ConnectTimedOut,
    /// The peer closed the connection without a NOTIFICATION, or it broke.
    TcpClosed,
    /// The peer sent this NOTIFICATION.
    PeerNotification(Notification),
    /// We sent this NOTIFICATION.
    LocalNotification(Notification),
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::Stopped => write!(f, "stopped"),
            DownReason::ConnectFailed => write!(f, "connection failed"),
            DownReason::ConnectTimedOut => write!(f, "connection attempt timed out"),
            DownReason::TcpClosed => write!(f, "connection closed by peer"),
            DownReason::PeerNotification(notification) => write!(f, "peer sent {notification}"),
            DownReason::LocalNotification(notification) => write!(f, "we sent {notification}"),
        }
    }
}

/// What the shell must do, in order, after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Encode and send this message.
    Send(Message),
    /// Close the TCP connection (after sending what came before).
    CloseTcp,
    /// Start the timer, replacing it if it runs.
    StartTimer(Timer, Duration),
    /// Stop the timer if it runs.
    StopTimer(Timer),
    /// Send all routes now (with these parameters).
    SessionEstablished(Negotiated),
    /// Routes are no longer advertised to the peer.
    SessionDown(DownReason),
    /// Re-announce every route with the GRACEFUL_SHUTDOWN community.
    AnnounceGracefulShutdown,
    /// Withdraw every route sent.
    WithdrawAll,
    /// The peer asked for our routes again (ROUTE-REFRESH) for this family.
    ResendAll(AddressFamily),
    /// Log and count these errors of a received UPDATE; the session stays up.
    ReportUpdateErrors(Vec<UpdateError>),
}

/// One BGP session's state machine. Feed it [`Event`]s; it returns the [`Action`]s to carry out.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: FsmConfig,
    state: State,
    /// Failures since the last Established, for the retry backoff.
    failures: u32,
    negotiated: Option<Negotiated>,
    last_error: Option<DownReason>,
    /// A graceful stop is draining traffic before the withdrawal.
    draining: bool,
    /// No session has reached Established yet: our OPEN says we restarted (the R
    /// bit), as a machine is new when its speaker (re)starts.
    restarting: bool,
}

impl Fsm {
    /// A machine in `Idle`, waiting for [`Event::Start`].
    pub fn new(config: FsmConfig) -> Fsm {
        Fsm {
            config,
            state: State::Idle,
            failures: 0,
            negotiated: None,
            last_error: None,
            draining: false,
            restarting: true,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration the machine was built with.
    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    /// The parameters of the current session, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Why the session last went down or a connection attempt last failed (a stop by
    /// the operator does not count).
    pub fn last_error(&self) -> Option<&DownReason> {
        self.last_error.as_ref()
    }

    /// The delay before the next connection attempt: the connect retry time, doubled
    /// for each failure since the last Established, capped.
    pub fn retry_delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(20);
        self.config
            .connect_retry_time
            .saturating_mul(1 << doublings)
            .min(self.config.connect_retry_max)
    }

    /// Feeds one event; returns what the shell must do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut actions = Vec::new();
        match (self.state, event) {
            (State::Idle, Event::Start) => self.connect(&mut actions),
            (_, Event::Start) => {}
            (_, Event::Stop { graceful }) => self.stop(graceful, &mut actions),
            (State::Established, Event::StopForRestart)
                if !self.draining
                    && self
                        .negotiated
                        .as_ref()
                        .is_some_and(|negotiated| negotiated.graceful_restart) =>
            {
                self.tear_down(DownReason::Stopped, None, &mut actions);
                self.finish_stop();
            }
            (_, Event::StopForRestart) => self.stop(true, &mut actions),

            (State::Connect, Event::TcpConnected) => {
                actions.push(Action::StopTimer(Timer::ConnectRetry));
                actions.push(Action::Send(Message::Open(self.our_open())));
                actions.push(Action::StartTimer(Timer::Hold, OPEN_HOLD_TIME));
                self.state = State::OpenSent;
            }
            (State::Connect, Event::TcpConnectFailed | Event::TcpClosed) => {
                self.fail(DownReason::ConnectFailed, None, &mut actions)
            }
            (State::Connect, Event::ConnectRetryTimerExpired) => {
                self.fail(DownReason::ConnectTimedOut, None, &mut actions)
            }
            (State::Active, Event::ConnectRetryTimerExpired) => self.connect(&mut actions),

            (State::OpenSent, Event::Message(Message::Open(open))) => match self.negotiate(&open) {
                Ok(negotiated) => {
                    actions.push(Action::Send(Message::Keepalive));
                    self.start_session_timers(&negotiated, &mut actions);
                    self.negotiated = Some(negotiated);
                    self.state = State::OpenConfirm;
                }
                Err(notification) => self.fail_with_notification(notification, &mut actions),
            },
            (State::OpenConfirm, Event::Message(Message::Keepalive)) => {
                if let Some(negotiated) = self.negotiated.clone() {
                    self.restart_hold_timer(&mut actions);
                    self.failures = 0;
                    self.restarting = false;
                    self.state = State::Established;
                    let markers: Vec<Action> = negotiated
                        .families
                        .iter()
                        .filter_map(|family| end_of_rib(*family))
                        .map(|update| Action::Send(Message::Update(update)))
                        .collect();
                    // Our routes first, then the End-of-RIB of each family.
                    actions.push(Action::SessionEstablished(negotiated));
                    actions.extend(markers);
                }
            }
            (State::Established, Event::Message(Message::Keepalive)) => {
                self.restart_hold_timer(&mut actions)
            }
            // The routes we receive are ignored; only the errors RFC 7606 lets the
            // session survive are reported.
            (State::Established, Event::Message(Message::Update(update))) => {
                self.restart_hold_timer(&mut actions);
                if !update.errors.is_empty() {
                    actions.push(Action::ReportUpdateErrors(update.errors));
                }
            }
            (State::Established, Event::Message(Message::RouteRefresh(refresh))) => {
                self.restart_hold_timer(&mut actions);
                actions.push(Action::ResendAll(refresh.family));
            }
            (State::OpenConfirm | State::Established, Event::KeepaliveTimerExpired) => {
                actions.push(Action::Send(Message::Keepalive));
                if let Some(negotiated) = &self.negotiated {
                    actions.push(Action::StartTimer(
                        Timer::Keepalive,
                        Duration::from_secs(u64::from(negotiated.keepalive_time)),
                    ));
                }
            }
            (State::Established, Event::GracefulShutdownTimerExpired) if self.draining => {
                self.close_gracefully(&mut actions)
            }

            // Failures once the connection is up.
            (
                State::OpenSent | State::OpenConfirm | State::Established,
                Event::Message(Message::Notification(notification)),
            ) => self.fail(
                DownReason::PeerNotification(notification),
                None,
                &mut actions,
            ),
            (
                State::OpenSent | State::OpenConfirm | State::Established,
                Event::DecodeError(notification),
            ) => self.fail_with_notification(notification, &mut actions),
            (
                State::OpenSent | State::OpenConfirm | State::Established,
                Event::HoldTimerExpired,
            ) => {
                let notification = Notification::new(error_code::HOLD_TIMER_EXPIRED, 0, Vec::new());
                self.fail_with_notification(notification, &mut actions)
            }
            (State::OpenSent | State::OpenConfirm | State::Established, Event::TcpClosed) => {
                self.fail(DownReason::TcpClosed, None, &mut actions)
            }
            (
                state @ (State::OpenSent | State::OpenConfirm | State::Established),
                Event::Message(_),
            ) => {
                let subcode = match state {
                    State::OpenSent => fsm_subcode::UNEXPECTED_IN_OPEN_SENT,
                    State::OpenConfirm => fsm_subcode::UNEXPECTED_IN_OPEN_CONFIRM,
                    _ => fsm_subcode::UNEXPECTED_IN_ESTABLISHED,
                };
                let notification = Notification::new(error_code::FSM, subcode, Vec::new());
                self.fail_with_notification(notification, &mut actions)
            }

            // Everything else is a timer or socket event that lost a race with a state
            // change (its timer was stopped, its socket closed): nothing to do.
            (_, _) => {}
        }
        actions
    }

    fn our_open(&self) -> Open {
        let mut open = Open::new(
            self.config.local_as,
            self.config.hold_time,
            self.config.router_id,
            &self.config.families,
        );
        if let Some(restart_time) = self.config.graceful_restart_time {
            // Forwarding survives a restart of the speaker: the node's data plane
            // (kube-proxy) does not depend on it.
            let families = self
                .config
                .families
                .iter()
                .map(|family| GracefulRestartFamily {
                    family: *family,
                    forwarding_preserved: true,
                })
                .collect();
            open.capabilities
                .push(Capability::GracefulRestart(GracefulRestart {
                    restart_state: self.restarting,
                    notification: false,
                    restart_time,
                    families,
                }));
        }
        open
    }

    fn connect(&mut self, actions: &mut Vec<Action>) {
        actions.push(Action::Connect);
        actions.push(Action::StartTimer(
            Timer::ConnectRetry,
            self.config.connect_retry_time,
        ));
        self.state = State::Connect;
    }

    fn start_session_timers(&self, negotiated: &Negotiated, actions: &mut Vec<Action>) {
        if negotiated.hold_time == 0 {
            actions.push(Action::StopTimer(Timer::Hold));
        } else {
            actions.push(Action::StartTimer(
                Timer::Keepalive,
                Duration::from_secs(u64::from(negotiated.keepalive_time)),
            ));
            actions.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(negotiated.hold_time)),
            ));
        }
    }

    fn restart_hold_timer(&self, actions: &mut Vec<Action>) {
        if let Some(negotiated) = self.negotiated.as_ref().filter(|n| n.hold_time > 0) {
            actions.push(Action::StartTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(negotiated.hold_time)),
            ));
        }
    }

    /// Checks the peer's OPEN (RFC 4271 §6.2) and agrees on the session parameters.
    fn negotiate(&self, open: &Open) -> Result<Negotiated, Notification> {
        let open_error =
            |subcode: u8, data: Vec<u8>| Notification::new(error_code::OPEN_MESSAGE, subcode, data);
        if open.version != BGP_VERSION {
            return Err(open_error(
                open_subcode::UNSUPPORTED_VERSION,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ));
        }
        if open.asn() != self.config.peer_as {
            return Err(open_error(open_subcode::BAD_PEER_AS, Vec::new()));
        }
        if matches!(open.hold_time, 1 | 2) {
            return Err(open_error(open_subcode::UNACCEPTABLE_HOLD_TIME, Vec::new()));
        }
        let peer_kind = self.config.peer_kind();
        let same_id_on_ibgp =
            peer_kind == PeerKind::Internal && open.bgp_identifier == self.config.router_id;
        if open.bgp_identifier.is_unspecified() || same_id_on_ibgp {
            return Err(open_error(open_subcode::BAD_BGP_IDENTIFIER, Vec::new()));
        }
        let hold_time = open.hold_time.min(self.config.hold_time);
        let keepalive_time = if hold_time == 0 {
            0
        } else {
            let third = hold_time / 3;
            self.config
                .keepalive_time
                .map_or(third, |configured| configured.min(third))
                .max(1)
        };
        let mut offered = open.families();
        if offered.is_empty() {
            offered.push(AddressFamily::IPV4_UNICAST);
        }
        let families = self
            .config
            .families
            .iter()
            .filter(|family| offered.contains(family))
            .copied()
            .collect();
        Ok(Negotiated {
            hold_time,
            keepalive_time,
            four_octet_as: open.four_octet_as().is_some(),
            families,
            route_refresh: open.supports_route_refresh(),
            peer_router_id: open.bgp_identifier,
            peer_kind,
            graceful_restart: self.config.graceful_restart_time.is_some()
                && open.graceful_restart().is_some(),
        })
    }

    fn fail_with_notification(&mut self, notification: Notification, actions: &mut Vec<Action>) {
        self.fail(
            DownReason::LocalNotification(notification.clone()),
            Some(notification),
            actions,
        )
    }

    /// Drops the connection (after sending `notification`, if any) and schedules the
    /// next attempt, unless a graceful stop was under way.
    fn fail(
        &mut self,
        reason: DownReason,
        notification: Option<Notification>,
        actions: &mut Vec<Action>,
    ) {
        self.tear_down(reason, notification, actions);
        if self.draining {
            self.draining = false;
            self.state = State::Idle;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        actions.push(Action::StartTimer(Timer::ConnectRetry, self.retry_delay()));
        self.state = State::Active;
    }

    fn tear_down(
        &mut self,
        reason: DownReason,
        notification: Option<Notification>,
        actions: &mut Vec<Action>,
    ) {
        if let Some(notification) = notification {
            actions.push(Action::Send(Message::Notification(notification)));
        }
        if self.state != State::Idle && self.state != State::Active {
            actions.push(Action::CloseTcp);
        }
        for timer in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::GracefulShutdown,
        ] {
            actions.push(Action::StopTimer(timer));
        }
        if self.state == State::Established {
            actions.push(Action::SessionDown(reason.clone()));
        }
        self.negotiated = None;
        // An operator's stop is not an error: keep the last real one for the status.
        if reason != DownReason::Stopped {
            self.last_error = Some(reason);
        }
    }

    fn stop(&mut self, graceful: bool, actions: &mut Vec<Action>) {
        match self.state {
            State::Established if graceful && self.draining => {}
            State::Established if graceful => match self.config.graceful_shutdown_drain {
                Some(drain) => {
                    self.draining = true;
                    actions.push(Action::AnnounceGracefulShutdown);
                    actions.push(Action::StartTimer(Timer::GracefulShutdown, drain));
                }
                None => self.close_gracefully(actions),
            },
            State::OpenSent | State::OpenConfirm | State::Established => {
                let cease = Notification::cease(cease_subcode::ADMINISTRATIVE_SHUTDOWN);
                self.tear_down(DownReason::Stopped, Some(cease), actions);
                self.finish_stop();
            }
            State::Connect | State::Active => {
                self.tear_down(DownReason::Stopped, None, actions);
                self.finish_stop();
            }
            State::Idle => {}
        }
    }

    /// Withdraw, then Cease, then close.
    fn close_gracefully(&mut self, actions: &mut Vec<Action>) {
        actions.push(Action::WithdrawAll);
        let cease = Notification::cease(cease_subcode::ADMINISTRATIVE_SHUTDOWN);
        self.tear_down(DownReason::Stopped, Some(cease), actions);
        self.finish_stop();
    }

    fn finish_stop(&mut self) {
        self.draining = false;
        self.failures = 0;
        self.state = State::Idle;
    }
}

#[cfg(test)]
#[path = "fsm_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fsm_restart_tests.rs"]
mod restart_tests;
