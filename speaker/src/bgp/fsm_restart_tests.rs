//! Graceful Restart (RFC 4724) in the state machine: the capability in our OPEN,
//! its negotiation, the stop for a restart, and End-of-RIB after the routes.

use super::*;
use std::time::Duration;

const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const FAMILIES: [AddressFamily; 2] = [AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST];

fn config(restart_time: Option<u16>) -> FsmConfig {
    FsmConfig {
        local_as: 64512,
        peer_as: 64513,
        router_id: ROUTER_ID,
        hold_time: 90,
        keepalive_time: None,
        connect_retry_time: Duration::from_secs(5),
        connect_retry_max: Duration::from_secs(60),
        families: FAMILIES.to_vec(),
        graceful_shutdown_drain: None,
        graceful_restart_time: restart_time,
    }
}

/// The router's OPEN; `helper`: it announces Graceful Restart (as BIRD's
/// `graceful restart on` does, with no families of its own).
fn peer_open(helper: bool) -> Open {
    let mut open = Open::new(64513, 90, PEER_ID, &FAMILIES);
    if helper {
        open.capabilities
            .push(Capability::GracefulRestart(GracefulRestart {
                restart_state: false,
                notification: false,
                restart_time: 120,
                families: Vec::new(),
            }));
    }
    open
}

/// Our OPEN from `Connect` on.
fn our_open(fsm: &mut Fsm) -> Open {
    let actions = fsm.handle(Event::TcpConnected);
    actions
        .into_iter()
        .find_map(|action| match action {
            Action::Send(Message::Open(open)) => Some(open),
            _ => None,
        })
        .expect("an OPEN is sent once connected")
}

fn establish(fsm: &mut Fsm, helper: bool) -> Vec<Action> {
    fsm.handle(Event::Message(Message::Open(peer_open(helper))));
    fsm.handle(Event::Message(Message::Keepalive))
}

#[test]
fn our_open_offers_both_families_with_forwarding_kept_and_r_until_the_first_session() {
    let mut fsm = Fsm::new(config(Some(120)));
    fsm.handle(Event::Start);
    let restart = our_open(&mut fsm).graceful_restart().cloned();
    let families = FAMILIES.map(|family| GracefulRestartFamily {
        family,
        forwarding_preserved: true,
    });
    assert_eq!(
        restart,
        Some(GracefulRestart {
            restart_state: true,
            notification: false,
            restart_time: 120,
            families: families.to_vec(),
        })
    );
    establish(&mut fsm, true);
    // The session flaps: the speaker did not restart, so R is clear now.
    fsm.handle(Event::TcpClosed);
    fsm.handle(Event::ConnectRetryTimerExpired);
    let again = our_open(&mut fsm);
    assert_eq!(
        again.graceful_restart().map(|r| r.restart_state),
        Some(false)
    );
}

#[test]
fn without_a_restart_time_no_capability_is_sent() {
    let mut fsm = Fsm::new(config(None));
    fsm.handle(Event::Start);
    assert_eq!(our_open(&mut fsm).graceful_restart(), None);
}

#[test]
fn established_sends_end_of_rib_per_family_after_the_routes() {
    let mut fsm = Fsm::new(config(Some(120)));
    fsm.handle(Event::Start);
    our_open(&mut fsm);
    let actions = establish(&mut fsm, true);
    let routes_at = actions
        .iter()
        .position(|a| matches!(a, Action::SessionEstablished(n) if n.graceful_restart))
        .expect("established, with Graceful Restart negotiated");
    let markers: Vec<Action> = FAMILIES
        .iter()
        .filter_map(|family| end_of_rib(*family))
        .map(|update| Action::Send(Message::Update(update)))
        .collect();
    assert_eq!(actions[routes_at + 1..], markers[..]);
}

#[test]
fn stop_for_restart_closes_without_notification_or_withdrawal_when_the_peer_helps() {
    let mut fsm = Fsm::new(config(Some(120)));
    fsm.handle(Event::Start);
    our_open(&mut fsm);
    establish(&mut fsm, true);
    let actions = fsm.handle(Event::StopForRestart);
    assert!(actions.contains(&Action::CloseTcp), "{actions:?}");
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::WithdrawAll | Action::Send(Message::Notification(_))
        )),
        "a restart must neither withdraw nor notify: {actions:?}"
    );
    assert!(actions.contains(&Action::SessionDown(DownReason::Stopped)));
    assert_eq!(fsm.state(), State::Idle);
    assert_eq!(fsm.last_error(), None);
}

#[test]
fn stop_for_restart_withdraws_and_ceases_when_the_peer_cannot_help_or_gr_is_off() {
    for (restart_time, helper) in [(Some(120), false), (None, true)] {
        let mut fsm = Fsm::new(config(restart_time));
        fsm.handle(Event::Start);
        our_open(&mut fsm);
        establish(&mut fsm, helper);
        let actions = fsm.handle(Event::StopForRestart);
        assert_eq!(actions.first(), Some(&Action::WithdrawAll), "{actions:?}");
        assert!(
            actions.contains(&Action::Send(Message::Notification(Notification::cease(
                cease_subcode::ADMINISTRATIVE_SHUTDOWN
            ))))
        );
        assert_eq!(fsm.state(), State::Idle);
    }
}

#[test]
fn stop_for_restart_before_established_is_a_plain_stop() {
    let mut fsm = Fsm::new(config(Some(120)));
    fsm.handle(Event::Start);
    our_open(&mut fsm);
    let actions = fsm.handle(Event::StopForRestart);
    assert_eq!(
        actions.first(),
        Some(&Action::Send(Message::Notification(Notification::cease(
            cease_subcode::ADMINISTRATIVE_SHUTDOWN
        ))))
    );
    assert_eq!(fsm.state(), State::Idle);
}
