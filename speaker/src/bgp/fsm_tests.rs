//! One test per transition of the session state machine, including unexpected
//! messages in each state.

use super::*;
use crate::bgp::update_builder::PeerKind;
use crate::bgp::update_errors::UpdateAction;
use std::net::Ipv4Addr;
use std::time::Duration;

const LOCAL_AS: u32 = 64512;
const PEER_AS: u32 = 64513;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn config() -> FsmConfig {
    FsmConfig {
        local_as: LOCAL_AS,
        peer_as: PEER_AS,
        router_id: ROUTER_ID,
        hold_time: 90,
        keepalive_time: None,
        connect_retry_time: Duration::from_secs(5),
        connect_retry_max: Duration::from_secs(60),
        families: vec![AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST],
        graceful_shutdown_drain: Some(Duration::from_secs(30)),
        graceful_restart_time: None,
    }
}

fn peer_open(hold_time: u16) -> Open {
    Open::new(
        PEER_AS,
        hold_time,
        PEER_ID,
        &[AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST],
    )
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn stop_all_timers() -> Vec<Action> {
    [
        Timer::ConnectRetry,
        Timer::Hold,
        Timer::Keepalive,
        Timer::GracefulShutdown,
    ]
    .into_iter()
    .map(Action::StopTimer)
    .collect()
}

/// A machine driven to `state` along the normal path.
fn fsm_in(state: State) -> Fsm {
    let mut fsm = Fsm::new(config());
    let path = [
        (State::Connect, Event::Start),
        (State::OpenSent, Event::TcpConnected),
        (
            State::OpenConfirm,
            Event::Message(Message::Open(peer_open(90))),
        ),
        (State::Established, Event::Message(Message::Keepalive)),
    ];
    // Active is reached by a failed connection attempt from Connect.
    let on_the_way = if state == State::Active {
        State::Connect
    } else {
        state
    };
    for (reached, event) in path {
        if fsm.state() == on_the_way {
            break;
        }
        fsm.handle(event);
        assert_eq!(fsm.state(), reached);
    }
    if state == State::Active {
        fsm.handle(Event::TcpConnectFailed);
    }
    assert_eq!(fsm.state(), state);
    fsm
}

fn notification(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
    Notification::new(code, subcode, data)
}

/// The actions of a failure after the connection was up: notification, close, timers
/// stopped, (session down), retry scheduled.
fn failure_actions(
    sent: Option<Notification>,
    down: Option<DownReason>,
    retry: Duration,
) -> Vec<Action> {
    let mut actions: Vec<Action> = sent
        .map(|n| Action::Send(Message::Notification(n)))
        .into_iter()
        .collect();
    actions.push(Action::CloseTcp);
    actions.extend(stop_all_timers());
    actions.extend(down.map(Action::SessionDown));
    actions.push(Action::StartTimer(Timer::ConnectRetry, retry));
    actions
}

#[test]
fn idle_start_connects() {
    let mut fsm = Fsm::new(config());
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(
        fsm.handle(Event::Start),
        vec![
            Action::Connect,
            Action::StartTimer(Timer::ConnectRetry, secs(5))
        ]
    );
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn idle_ignores_everything_but_start() {
    for event in [
        Event::TcpConnected,
        Event::TcpClosed,
        Event::HoldTimerExpired,
        Event::ConnectRetryTimerExpired,
        Event::Message(Message::Keepalive),
        Event::Stop { graceful: true },
    ] {
        let mut fsm = Fsm::new(config());
        assert_eq!(fsm.handle(event), vec![]);
        assert_eq!(fsm.state(), State::Idle);
    }
}

#[test]
fn connect_success_sends_open_with_our_capabilities() {
    let mut fsm = fsm_in(State::Connect);
    let actions = fsm.handle(Event::TcpConnected);
    let open = Open::new(LOCAL_AS, 90, ROUTER_ID, &config().families);
    assert_eq!(
        actions,
        vec![
            Action::StopTimer(Timer::ConnectRetry),
            Action::Send(Message::Open(open)),
            Action::StartTimer(Timer::Hold, OPEN_HOLD_TIME),
        ]
    );
    assert_eq!(fsm.state(), State::OpenSent);
}

#[test]
fn connect_failure_waits_in_active_with_exponential_backoff_up_to_the_cap() {
    let mut fsm = fsm_in(State::Connect);
    let mut delays = Vec::new();
    for _ in 0..6 {
        let actions = fsm.handle(Event::TcpConnectFailed);
        assert_eq!(fsm.state(), State::Active);
        assert_eq!(fsm.last_error(), Some(&DownReason::ConnectFailed));
        let Some(Action::StartTimer(Timer::ConnectRetry, delay)) = actions.last() else {
            panic!("no retry timer in {actions:?}");
        };
        delays.push(delay.as_secs());
        assert_eq!(
            fsm.handle(Event::ConnectRetryTimerExpired),
            vec![
                Action::Connect,
                Action::StartTimer(Timer::ConnectRetry, secs(5))
            ]
        );
        assert_eq!(fsm.state(), State::Connect);
    }
    assert_eq!(delays, vec![5, 10, 20, 40, 60, 60]);
}

#[test]
fn connect_attempt_that_times_out_is_aborted_and_retried_later() {
    let mut fsm = fsm_in(State::Connect);
    let mut expected = vec![Action::CloseTcp];
    expected.extend(stop_all_timers());
    expected.push(Action::StartTimer(Timer::ConnectRetry, secs(5)));
    assert_eq!(fsm.handle(Event::ConnectRetryTimerExpired), expected);
    assert_eq!(fsm.state(), State::Active);
    assert_eq!(fsm.last_error(), Some(&DownReason::ConnectTimedOut));
}

#[test]
fn stop_before_the_connection_is_up_returns_to_idle() {
    for state in [State::Connect, State::Active] {
        let mut fsm = fsm_in(state);
        let actions = fsm.handle(Event::Stop { graceful: true });
        assert_eq!(fsm.state(), State::Idle);
        assert!(!actions.iter().any(|a| matches!(a, Action::Send(_))));
        assert_eq!(actions.contains(&Action::CloseTcp), state == State::Connect);
        assert!(actions.contains(&Action::StopTimer(Timer::ConnectRetry)));
        // Stopped means stopped: a late timer does not reconnect.
        assert_eq!(fsm.handle(Event::ConnectRetryTimerExpired), vec![]);
    }
}

#[test]
fn open_sent_accepts_a_good_open_and_negotiates() {
    let mut fsm = fsm_in(State::OpenSent);
    let actions = fsm.handle(Event::Message(Message::Open(peer_open(30))));
    assert_eq!(
        actions,
        vec![
            Action::Send(Message::Keepalive),
            Action::StartTimer(Timer::Keepalive, secs(10)),
            Action::StartTimer(Timer::Hold, secs(30)),
        ]
    );
    assert_eq!(fsm.state(), State::OpenConfirm);
    assert_eq!(
        fsm.negotiated(),
        Some(&Negotiated {
            hold_time: 30,
            keepalive_time: 10,
            four_octet_as: true,
            families: vec![AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST],
            route_refresh: true,
            peer_router_id: PEER_ID,
            peer_kind: PeerKind::External,
            graceful_restart: false,
        })
    );
}

#[test]
fn hold_time_zero_means_no_timers_and_configured_keepalive_is_honoured() {
    let mut fsm = fsm_in(State::OpenSent);
    let actions = fsm.handle(Event::Message(Message::Open(peer_open(0))));
    assert_eq!(
        actions,
        vec![
            Action::Send(Message::Keepalive),
            Action::StopTimer(Timer::Hold)
        ]
    );
    assert_eq!(
        fsm.negotiated().map(|n| (n.hold_time, n.keepalive_time)),
        Some((0, 0))
    );
    // A keepalive in OpenConfirm does not start a hold timer either.
    assert!(matches!(
        fsm.handle(Event::Message(Message::Keepalive)).as_slice(),
        [
            Action::SessionEstablished(_),
            Action::Send(_),
            Action::Send(_)
        ]
    ));

    let mut fsm = Fsm::new(FsmConfig {
        keepalive_time: Some(5),
        ..config()
    });
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpConnected);
    fsm.handle(Event::Message(Message::Open(peer_open(180))));
    assert_eq!(
        fsm.negotiated().map(|n| (n.hold_time, n.keepalive_time)),
        Some((90, 5))
    );
}

#[test]
fn a_peer_without_multiprotocol_capabilities_gets_ipv4_unicast_only() {
    let mut fsm = fsm_in(State::OpenSent);
    let open = Open {
        capabilities: vec![],
        my_as: PEER_AS as u16,
        ..peer_open(90)
    };
    fsm.handle(Event::Message(Message::Open(open)));
    let negotiated = fsm.negotiated().cloned().unwrap();
    assert_eq!(negotiated.families, vec![AddressFamily::IPV4_UNICAST]);
    assert!(!negotiated.four_octet_as);
    assert!(!negotiated.route_refresh);
}

fn rejects_open(fsm_config: FsmConfig, open: Open, expected: Notification) {
    let mut fsm = Fsm::new(fsm_config);
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpConnected);
    let actions = fsm.handle(Event::Message(Message::Open(open)));
    assert_eq!(
        actions,
        failure_actions(Some(expected.clone()), None, secs(5))
    );
    assert_eq!(fsm.state(), State::Active);
    assert_eq!(
        fsm.last_error(),
        Some(&DownReason::LocalNotification(expected))
    );
    assert_eq!(fsm.negotiated(), None);
}

#[test]
fn open_with_the_wrong_peer_as_is_bad_peer_as() {
    rejects_open(
        config(),
        Open::new(65000, 90, PEER_ID, &[]),
        notification(2, 2, vec![]),
    );
    // AS_TRANS in the header without the 4-octet capability is not the 4-octet peer.
    let open = Open {
        my_as: AS_TRANS,
        capabilities: vec![],
        ..peer_open(90)
    };
    rejects_open(
        FsmConfig {
            peer_as: 4_200_000_001,
            ..config()
        },
        open,
        notification(2, 2, vec![]),
    );
}

#[test]
fn hold_times_of_one_and_two_seconds_are_unacceptable() {
    rejects_open(config(), peer_open(1), notification(2, 6, vec![]));
    rejects_open(config(), peer_open(2), notification(2, 6, vec![]));
}

#[test]
fn bgp_identifier_zero_or_ours_on_ibgp_is_bad() {
    rejects_open(
        config(),
        Open::new(PEER_AS, 90, Ipv4Addr::UNSPECIFIED, &[]),
        notification(2, 3, vec![]),
    );
    let ibgp = FsmConfig {
        peer_as: LOCAL_AS,
        ..config()
    };
    rejects_open(
        ibgp,
        Open::new(LOCAL_AS, 90, ROUTER_ID, &[]),
        notification(2, 3, vec![]),
    );
    // The same identifier from an external peer is allowed.
    let mut fsm = fsm_in(State::OpenSent);
    fsm.handle(Event::Message(Message::Open(Open::new(
        PEER_AS,
        90,
        ROUTER_ID,
        &[],
    ))));
    assert_eq!(fsm.state(), State::OpenConfirm);
}

#[test]
fn an_unsupported_version_is_refused_with_our_version() {
    let open = Open {
        version: 3,
        ..peer_open(90)
    };
    rejects_open(config(), open, notification(2, 1, vec![0, 4]));
}

#[test]
fn unexpected_messages_are_fsm_errors_with_the_state_subcode() {
    let update = Message::Update(Update::default());
    let refresh = Message::RouteRefresh(RouteRefresh {
        family: AddressFamily::IPV4_UNICAST,
        subtype: 0,
    });
    let cases = [
        (State::OpenSent, Message::Keepalive, 1),
        (State::OpenSent, update.clone(), 1),
        (State::OpenSent, refresh.clone(), 1),
        (State::OpenConfirm, Message::Open(peer_open(90)), 2),
        (State::OpenConfirm, update, 2),
        (State::OpenConfirm, refresh, 2),
        (State::Established, Message::Open(peer_open(90)), 3),
    ];
    for (state, message, subcode) in cases {
        let mut fsm = fsm_in(state);
        let actions = fsm.handle(Event::Message(message.clone()));
        let sent = notification(5, subcode, vec![]);
        let down =
            (state == State::Established).then(|| DownReason::LocalNotification(sent.clone()));
        assert_eq!(
            actions,
            failure_actions(Some(sent), down, secs(5)),
            "{message:?} in {state:?}"
        );
        assert_eq!(fsm.state(), State::Active);
    }
}

#[test]
fn notification_from_the_peer_closes_without_answering() {
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state);
        let received = notification(6, 2, vec![]);
        let actions = fsm.handle(Event::Message(Message::Notification(received.clone())));
        let down =
            (state == State::Established).then(|| DownReason::PeerNotification(received.clone()));
        assert_eq!(actions, failure_actions(None, down, secs(5)));
        assert_eq!(
            fsm.last_error(),
            Some(&DownReason::PeerNotification(received))
        );
    }
}

#[test]
fn decode_errors_send_their_notification() {
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state);
        let error = notification(3, 1, vec![]);
        let actions = fsm.handle(Event::DecodeError(error.clone()));
        let down =
            (state == State::Established).then(|| DownReason::LocalNotification(error.clone()));
        assert_eq!(actions, failure_actions(Some(error), down, secs(5)));
    }
}

#[test]
fn hold_timer_expiry_sends_hold_timer_expired() {
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state);
        let expired = notification(4, 0, vec![]);
        let down =
            (state == State::Established).then(|| DownReason::LocalNotification(expired.clone()));
        assert_eq!(
            fsm.handle(Event::HoldTimerExpired),
            failure_actions(Some(expired), down, secs(5))
        );
    }
}

#[test]
fn tcp_closed_by_the_peer_retries() {
    for state in [State::OpenSent, State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state);
        let down = (state == State::Established).then_some(DownReason::TcpClosed);
        assert_eq!(
            fsm.handle(Event::TcpClosed),
            failure_actions(None, down, secs(5))
        );
        assert_eq!(fsm.state(), State::Active);
    }
}

#[test]
fn keepalive_in_open_confirm_establishes_and_resets_the_backoff() {
    let mut fsm = fsm_in(State::Connect);
    fsm.handle(Event::TcpConnectFailed);
    fsm.handle(Event::ConnectRetryTimerExpired);
    fsm.handle(Event::TcpConnected);
    fsm.handle(Event::Message(Message::Open(peer_open(90))));
    let negotiated = fsm.negotiated().cloned().unwrap();
    let actions = fsm.handle(Event::Message(Message::Keepalive));
    assert_eq!(
        actions,
        vec![
            Action::StartTimer(Timer::Hold, secs(90)),
            Action::SessionEstablished(negotiated),
            // End-of-RIB of both families, after the routes.
            Action::Send(Message::Update(Update::default())),
            Action::Send(Message::Update(Update {
                attributes: vec![PathAttribute::MpUnreach(MpNlri::Ipv6(Vec::new()))],
                ..Update::default()
            })),
        ]
    );
    assert_eq!(fsm.state(), State::Established);
    // The next failure starts the backoff from the connect retry time again.
    let actions = fsm.handle(Event::TcpClosed);
    assert_eq!(
        actions.last(),
        Some(&Action::StartTimer(Timer::ConnectRetry, secs(5)))
    );
}

#[test]
fn keepalive_timer_sends_a_keepalive_and_restarts() {
    for state in [State::OpenConfirm, State::Established] {
        let mut fsm = fsm_in(state);
        assert_eq!(
            fsm.handle(Event::KeepaliveTimerExpired),
            vec![
                Action::Send(Message::Keepalive),
                Action::StartTimer(Timer::Keepalive, secs(30))
            ]
        );
        assert_eq!(fsm.state(), state);
    }
}

#[test]
fn established_restarts_the_hold_timer_on_keepalive_and_update() {
    let mut fsm = fsm_in(State::Established);
    let restart = vec![Action::StartTimer(Timer::Hold, secs(90))];
    assert_eq!(fsm.handle(Event::Message(Message::Keepalive)), restart);
    assert_eq!(
        fsm.handle(Event::Message(Message::Update(Update::default()))),
        restart
    );
    assert_eq!(fsm.state(), State::Established);
}

#[test]
fn an_update_with_errors_rfc_7606_tolerates_is_reported_and_the_session_stays_up() {
    let mut fsm = fsm_in(State::Established);
    let errors = vec![
        UpdateError {
            action: UpdateAction::AttributeDiscard,
            error: crate::bgp::codec::DecodeError::DuplicateAttribute { type_code: 1 },
        },
        UpdateError {
            action: UpdateAction::TreatAsWithdraw,
            error: crate::bgp::codec::DecodeError::UnrecognizedWellKnownAttribute {
                type_code: 42,
                attribute: vec![0x40, 42, 0],
            },
        },
    ];
    let update = Update {
        errors: errors.clone(),
        ..Update::default()
    };
    assert_eq!(
        fsm.handle(Event::Message(Message::Update(update))),
        vec![
            Action::StartTimer(Timer::Hold, secs(90)),
            Action::ReportUpdateErrors(errors),
        ]
    );
    assert_eq!(fsm.state(), State::Established);
    assert_eq!(fsm.last_error(), None);
}

#[test]
fn route_refresh_asks_for_all_routes_again() {
    let mut fsm = fsm_in(State::Established);
    let refresh = RouteRefresh {
        family: AddressFamily::IPV6_UNICAST,
        subtype: 0,
    };
    assert_eq!(
        fsm.handle(Event::Message(Message::RouteRefresh(refresh))),
        vec![
            Action::StartTimer(Timer::Hold, secs(90)),
            Action::ResendAll(AddressFamily::IPV6_UNICAST)
        ]
    );
}

#[test]
fn graceful_stop_announces_gshut_then_withdraws_then_ceases() {
    let mut fsm = fsm_in(State::Established);
    assert_eq!(
        fsm.handle(Event::Stop { graceful: true }),
        vec![
            Action::AnnounceGracefulShutdown,
            Action::StartTimer(Timer::GracefulShutdown, secs(30))
        ]
    );
    assert_eq!(fsm.state(), State::Established);
    // A second graceful stop while draining changes nothing; keepalives go on.
    assert_eq!(fsm.handle(Event::Stop { graceful: true }), vec![]);
    assert_eq!(
        fsm.handle(Event::KeepaliveTimerExpired).first(),
        Some(&Action::Send(Message::Keepalive))
    );
    let mut expected = vec![
        Action::WithdrawAll,
        Action::Send(Message::Notification(notification(6, 2, vec![]))),
        Action::CloseTcp,
    ];
    expected.extend(stop_all_timers());
    expected.push(Action::SessionDown(DownReason::Stopped));
    assert_eq!(fsm.handle(Event::GracefulShutdownTimerExpired), expected);
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(fsm.handle(Event::ConnectRetryTimerExpired), vec![]);
}

#[test]
fn graceful_stop_without_drain_withdraws_at_once_and_hard_stop_just_ceases() {
    let mut fsm = Fsm::new(FsmConfig {
        graceful_shutdown_drain: None,
        graceful_restart_time: None,
        ..config()
    });
    fsm.handle(Event::Start);
    fsm.handle(Event::TcpConnected);
    fsm.handle(Event::Message(Message::Open(peer_open(90))));
    fsm.handle(Event::Message(Message::Keepalive));
    let actions = fsm.handle(Event::Stop { graceful: true });
    assert_eq!(actions.first(), Some(&Action::WithdrawAll));
    assert_eq!(fsm.state(), State::Idle);

    let mut fsm = fsm_in(State::Established);
    let mut expected = vec![
        Action::Send(Message::Notification(notification(6, 2, vec![]))),
        Action::CloseTcp,
    ];
    expected.extend(stop_all_timers());
    expected.push(Action::SessionDown(DownReason::Stopped));
    assert_eq!(fsm.handle(Event::Stop { graceful: false }), expected);
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn a_hard_stop_during_the_drain_closes_at_once_and_failures_then_stay_idle() {
    let mut fsm = fsm_in(State::Established);
    fsm.handle(Event::Stop { graceful: true });
    let actions = fsm.handle(Event::Stop { graceful: false });
    assert!(
        actions.contains(&Action::Send(Message::Notification(notification(
            6,
            2,
            vec![]
        ))))
    );
    assert_eq!(fsm.state(), State::Idle);

    let mut fsm = fsm_in(State::Established);
    fsm.handle(Event::Stop { graceful: true });
    let actions = fsm.handle(Event::TcpClosed);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::StartTimer(Timer::ConnectRetry, _)))
    );
    assert_eq!(fsm.state(), State::Idle);
}

#[test]
fn stop_in_open_sent_and_open_confirm_sends_cease() {
    for state in [State::OpenSent, State::OpenConfirm] {
        let mut fsm = fsm_in(state);
        let mut expected = vec![
            Action::Send(Message::Notification(notification(6, 2, vec![]))),
            Action::CloseTcp,
        ];
        expected.extend(stop_all_timers());
        assert_eq!(fsm.handle(Event::Stop { graceful: true }), expected);
        assert_eq!(fsm.state(), State::Idle);
    }
}

#[test]
fn restart_after_stop_connects_again() {
    let mut fsm = fsm_in(State::Established);
    fsm.handle(Event::TcpClosed);
    fsm.handle(Event::Stop { graceful: false });
    assert_eq!(
        fsm.last_error(),
        Some(&DownReason::TcpClosed),
        "a stop is not an error"
    );
    assert_eq!(fsm.handle(Event::Start).first(), Some(&Action::Connect));
    assert_eq!(fsm.state(), State::Connect);
}

#[test]
fn stale_timer_and_socket_events_are_ignored() {
    let stale = [
        (State::Connect, Event::HoldTimerExpired),
        (State::Connect, Event::KeepaliveTimerExpired),
        (State::Active, Event::HoldTimerExpired),
        (State::Active, Event::TcpClosed),
        (State::OpenSent, Event::ConnectRetryTimerExpired),
        (State::OpenSent, Event::KeepaliveTimerExpired),
        (State::Established, Event::ConnectRetryTimerExpired),
        (State::Established, Event::GracefulShutdownTimerExpired),
        (State::Established, Event::Start),
    ];
    for (state, event) in stale {
        let mut fsm = fsm_in(state);
        assert_eq!(fsm.handle(event.clone()), vec![], "{event:?} in {state:?}");
        assert_eq!(fsm.state(), state);
    }
}
