//! The session shell against scripted peers on loopback (no root needed). The
//! run against a real BIRD 2 is `speaker/tests/bgp_bird.rs`.

use super::{RouteSet, SessionConfig, SessionStatus, StopRequest, run_session};
use crate::bgp::fsm::{FsmConfig, State};
use crate::bgp::message::AddressFamily;
use crate::bgp::route_feed::RouteFeed;
use crate::bgp::update_builder::Route;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

fn route(prefix: &str, next_hop: IpAddr) -> (ipnet::IpNet, Route) {
    let route = Route::new(prefix.parse().unwrap(), next_hop);
    (route.prefix, route)
}

/// A scripted peer on loopback: runs in every `cargo test`, no root needed.
mod scripted_peer {
    use super::*;
    use crate::bgp::codec::{CodecOptions, decode_message, encode_message};
    use crate::bgp::message::{Message, Notification, Open, PathAttribute, Update};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const FOUR_OCTET: CodecOptions = CodecOptions {
        four_octet_as: true,
    };

    async fn read_message(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Message {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((message, used)) =
                decode_message(buffer, FOUR_OCTET).expect("speaker sent a valid message")
            {
                buffer.drain(..used);
                return message;
            }
            let count = stream.read(&mut chunk).await.expect("read");
            assert!(count > 0, "speaker closed the connection");
            buffer.extend_from_slice(&chunk[..count]);
        }
    }

    async fn send(stream: &mut TcpStream, message: Message) {
        stream
            .write_all(&encode_message(&message, FOUR_OCTET).unwrap())
            .await
            .unwrap();
    }

    /// eBGP from AS 4200000001 to the scripted peer (AS 64513), IPv4 only.
    fn session_config(peer: std::net::SocketAddr) -> SessionConfig {
        SessionConfig {
            peer,
            source: None,
            md5_password: None,
            ebgp_multihop: true,
            ipv6_link_local_next_hop: None,
            fsm: FsmConfig {
                local_as: 4_200_000_001,
                peer_as: 64513,
                router_id: Ipv4Addr::new(198, 51, 100, 2),
                hold_time: 30,
                keepalive_time: None,
                connect_retry_time: Duration::from_millis(50),
                connect_retry_max: Duration::from_millis(200),
                families: vec![AddressFamily::IPV4_UNICAST],
                graceful_shutdown_drain: None,
                graceful_restart_time: None,
            },
        }
    }

    /// Accepts the speaker's connection and plays the router's side up to Established.
    async fn establish(listener: &TcpListener) -> (TcpStream, Vec<u8>) {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = Vec::new();
        let Message::Open(open) = read_message(&mut stream, &mut buffer).await else {
            panic!("expected OPEN first");
        };
        assert_eq!(open.asn(), 4_200_000_001);
        send(
            &mut stream,
            Message::Open(Open::new(
                64513,
                30,
                Ipv4Addr::new(198, 51, 100, 1),
                &[AddressFamily::IPV4_UNICAST],
            )),
        )
        .await;
        assert_eq!(
            read_message(&mut stream, &mut buffer).await,
            Message::Keepalive
        );
        send(&mut stream, Message::Keepalive).await;
        (stream, buffer)
    }

    #[tokio::test]
    async fn establishes_sends_routes_and_retries_after_a_notification() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = session_config(listener.local_addr().unwrap());
        let routes: RouteSet = [route("203.0.113.7/32", IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
            .into_iter()
            .collect();
        let routes_rx = Arc::new(RouteFeed::new(routes));
        let (stop_tx, stop_rx) = watch::channel(None);
        let (status_tx, mut status_rx) = watch::channel(SessionStatus::default());
        let session = tokio::spawn(run_session(config, routes_rx, stop_rx, status_tx));

        let script = async {
            let (mut stream, mut buffer) = establish(&listener).await;
            let Message::Update(update) = read_message(&mut stream, &mut buffer).await else {
                panic!("expected the routes after establishment");
            };
            assert_eq!(update.nlri, vec!["203.0.113.7/32".parse().unwrap()]);
            assert!(
                update
                    .attributes
                    .contains(&PathAttribute::NextHop(Ipv4Addr::LOCALHOST)),
                "next-hop self"
            );
            assert_eq!(
                read_message(&mut stream, &mut buffer).await,
                Message::Update(Update::default()),
                "End-of-RIB after the routes"
            );
            // Reset the session; the speaker must come back on its own.
            send(&mut stream, Message::Notification(Notification::cease(4))).await;
            drop(stream);
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buffer = Vec::new();
            assert!(matches!(
                read_message(&mut stream, &mut buffer).await,
                Message::Open(_)
            ));
        };
        tokio::time::timeout(Duration::from_secs(10), script)
            .await
            .expect("script finished in time");
        let status = status_rx
            .wait_for(|s| s.last_error.is_some())
            .await
            .unwrap()
            .clone();
        assert!(status.last_error.unwrap().contains("peer sent cease"));

        stop_tx.send(Some(StopRequest::Immediate)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("session stopped")
            .unwrap();
        assert_eq!(status_rx.borrow().state, State::Idle);
    }

    /// The next message from the speaker other than a KEEPALIVE.
    async fn next_non_keepalive(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Message {
        loop {
            match read_message(stream, buffer).await {
                Message::Keepalive => continue,
                other => return other,
            }
        }
    }

    /// Establishes, then reads the speaker's one route (203.0.113.7/32) and its End-of-RIB.
    async fn established_with_203_0_113_7(listener: &TcpListener) -> (TcpStream, Vec<u8>) {
        let (mut stream, mut buffer) = establish(listener).await;
        let Message::Update(update) = next_non_keepalive(&mut stream, &mut buffer).await else {
            panic!("expected the routes after establishment");
        };
        assert_eq!(update.nlri, vec!["203.0.113.7/32".parse().unwrap()]);
        assert_eq!(
            next_non_keepalive(&mut stream, &mut buffer).await,
            Message::Update(Update::default()),
            "End-of-RIB after the routes"
        );
        (stream, buffer)
    }

    #[tokio::test]
    async fn malformed_updates_keep_the_session_up_but_a_framing_error_resets_it() {
        use crate::bgp::codec::tests::{
            EMPTY_AS_PATH, HOST_ROUTE, NEXT_HOP, ORIGIN_IGP, update_bytes,
        };
        use crate::bgp::session::UpdateErrorCounts;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = session_config(listener.local_addr().unwrap());
        let first = route("203.0.113.7/32", IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let routes_rx = Arc::new(RouteFeed::new(RouteSet::from([first.clone()])));
        let routes_tx = routes_rx.clone();
        let (stop_tx, stop_rx) = watch::channel(None);
        let (status_tx, mut status_rx) = watch::channel(SessionStatus::default());
        let session = tokio::spawn(run_session(config, routes_rx, stop_rx, status_tx));

        // Announcements of 198.51.100.10/32 with: ORIGIN twice; ATOMIC_AGGREGATE of
        // length 1; a well-known attribute of unknown type 42.
        let announce = |extra: &[u8]| {
            let attributes = [ORIGIN_IGP.as_slice(), &EMPTY_AS_PATH, &NEXT_HOP, extra].concat();
            update_bytes(&[], &attributes, &HOST_ROUTE)
        };
        let counts = |attribute_discard, treat_as_withdraw| UpdateErrorCounts {
            treat_as_withdraw,
            attribute_discard,
        };
        let crafted = [
            ("duplicate ORIGIN", announce(&[0x40, 1, 1, 2]), counts(1, 0)),
            (
                "ATOMIC_AGGREGATE of length 1",
                announce(&[0x40, 6, 1, 0]),
                counts(2, 0),
            ),
            (
                "unknown well-known attribute",
                announce(&[0x40, 42, 1, 7]),
                counts(2, 1),
            ),
        ];

        let script = async {
            let (mut stream, mut buffer) = established_with_203_0_113_7(&listener).await;
            for (case, bytes, expected) in crafted {
                stream.write_all(&bytes).await.unwrap();
                let status = status_rx
                    .wait_for(|s| s.update_errors == expected || s.state != State::Established)
                    .await
                    .unwrap()
                    .clone();
                assert_eq!(status.state, State::Established, "{case}: {status:?}");
                assert_eq!(status.update_errors, expected, "{case}");
                assert_eq!(status.last_error, None, "{case}");
            }
            send(&mut stream, Message::Keepalive).await;

            // The session still advertises, and nothing (no NOTIFICATION) came before.
            let second = route("203.0.113.8/32", IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let prefixes = [second.0].into();
            routes_tx.update(&RouteSet::from([first, second]), &prefixes);
            let message = next_non_keepalive(&mut stream, &mut buffer).await;
            let Message::Update(update) = message else {
                panic!("expected the new route, got {message:?}");
            };
            assert_eq!(update.nlri, vec!["203.0.113.8/32".parse().unwrap()]);
            assert_eq!(status_rx.borrow().state, State::Established);

            // A broken marker is still fatal: NOTIFICATION (1/1), then the close.
            let mut broken = encode_message(&Message::Keepalive, FOUR_OCTET).unwrap();
            broken[0] = 0;
            stream.write_all(&broken).await.unwrap();
            assert_eq!(
                next_non_keepalive(&mut stream, &mut buffer).await,
                Message::Notification(Notification::new(1, 1, Vec::new()))
            );
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "nothing after the NOTIFICATION");
        };
        tokio::time::timeout(Duration::from_secs(10), script)
            .await
            .expect("script finished in time");
        let status = tokio::time::timeout(
            Duration::from_secs(5),
            status_rx.wait_for(|s| s.last_error.is_some()),
        )
        .await
        .expect("the reset is reported")
        .unwrap()
        .clone();
        assert_ne!(status.state, State::Established);
        assert_eq!(
            status.last_error.as_deref(),
            Some("we sent message header error (1/1)")
        );
        assert_eq!(status.update_errors, counts(2, 1));

        stop_tx.send(Some(StopRequest::Immediate)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("session stopped")
            .unwrap();
    }

    /// A leaving speaker withdraws its routes on the session before the Cease: the
    /// FSM has forgotten the session's parameters by the time the shell sends them.
    #[tokio::test]
    async fn a_graceful_stop_withdraws_the_routes_then_sends_a_cease() {
        use crate::bgp::message::cease_subcode;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = session_config(listener.local_addr().unwrap());
        let routes = RouteSet::from([route("203.0.113.7/32", IpAddr::V4(Ipv4Addr::UNSPECIFIED))]);
        let routes_rx = Arc::new(RouteFeed::new(routes));
        let (stop_tx, stop_rx) = watch::channel(None);
        let (status_tx, _status_rx) = watch::channel(SessionStatus::default());
        let session = tokio::spawn(run_session(config, routes_rx, stop_rx, status_tx));

        let script = async {
            let (mut stream, mut buffer) = established_with_203_0_113_7(&listener).await;
            stop_tx.send(Some(StopRequest::Graceful)).unwrap();
            let message = next_non_keepalive(&mut stream, &mut buffer).await;
            let Message::Update(update) = message else {
                panic!("expected the withdrawal first, got {message:?}");
            };
            assert_eq!(update.withdrawn, vec!["203.0.113.7/32".parse().unwrap()]);
            assert!(update.nlri.is_empty());
            assert_eq!(
                next_non_keepalive(&mut stream, &mut buffer).await,
                Message::Notification(Notification::cease(cease_subcode::ADMINISTRATIVE_SHUTDOWN))
            );
        };
        tokio::time::timeout(Duration::from_secs(10), script)
            .await
            .expect("script finished in time");
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("session stopped")
            .unwrap();
    }
}
