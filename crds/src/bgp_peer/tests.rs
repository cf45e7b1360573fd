use super::*;
use crate::test_support;
use proptest::prelude::*;

fn peer() -> BGPPeerSpec {
    BGPPeerSpec {
        my_asn: 64500,
        peer_asn: Some(64501),
        dynamic_asn: None,
        peer_address: "192.0.2.1".into(),
        source_address: None,
        peer_port: DEFAULT_PEER_PORT,
        hold_time: None,
        keepalive_time: None,
        connect_time: None,
        router_id: None,
        node_selectors: vec![],
        password: None,
        password_secret: None,
        ebgp_multi_hop: false,
        enable_graceful_restart: false,
        vrf: None,
        disable_mp: false,
    }
}

fn messages(spec: &BGPPeerSpec) -> Vec<String> {
    test_support::messages(spec.validate())
}

#[test]
fn minimal_peer_is_valid() {
    assert_eq!(peer().validate(), Ok(()));
    let dynamic = BGPPeerSpec {
        peer_asn: None,
        dynamic_asn: Some(DynamicASNMode::External),
        ..peer()
    };
    assert_eq!(dynamic.validate(), Ok(()));
}

#[test]
fn asns() {
    let spec = BGPPeerSpec {
        my_asn: 0,
        peer_asn: Some(0),
        ..peer()
    };
    assert_eq!(
        messages(&spec),
        vec![
            "spec.myASN: must be between 1 and 4294967295, got 0",
            "spec.peerASN: must be between 1 and 4294967295, got 0"
        ]
    );
    let neither = BGPPeerSpec {
        peer_asn: None,
        ..peer()
    };
    assert_eq!(
        messages(&neither),
        vec!["spec.peerASN: exactly one of peerASN and dynamicASN must be set"]
    );
    let both = BGPPeerSpec {
        dynamic_asn: Some(DynamicASNMode::Internal),
        ..peer()
    };
    assert_eq!(
        messages(&both),
        vec!["spec.peerASN: exactly one of peerASN and dynamicASN must be set"]
    );
    assert_eq!(
        BGPPeerSpec {
            my_asn: u32::MAX,
            ..peer()
        }
        .validate(),
        Ok(())
    );
}

#[test]
fn addresses() {
    let spec = BGPPeerSpec {
        peer_address: "192.0.2.300".into(),
        source_address: Some("::ffff:192.0.2.2".into()),
        router_id: Some("2001:db8::1".into()),
        ..peer()
    };
    assert_eq!(
        messages(&spec),
        vec![
            "spec.peerAddress: \"192.0.2.300\" is not a valid IP address",
            "spec.sourceAddress: \"::ffff:192.0.2.2\": IPv4-mapped IPv6 addresses are not allowed, write the IPv4 address instead",
            "spec.routerID: \"2001:db8::1\" is not an IPv4 address",
        ]
    );
    let mixed = BGPPeerSpec {
        source_address: Some("2001:db8::2".into()),
        ..peer()
    };
    assert_eq!(
        messages(&mixed),
        vec![
            "spec.sourceAddress: \"2001:db8::2\" is IPv6 but peerAddress is IPv4: both must be of one IP family"
        ]
    );
    let v6 = BGPPeerSpec {
        peer_address: "2001:db8::1".into(),
        source_address: Some("2001:db8::2".into()),
        router_id: Some("10.0.0.1".into()),
        ..peer()
    };
    assert_eq!(v6.validate(), Ok(()));
    assert_eq!(
        messages(&BGPPeerSpec {
            peer_port: 0,
            ..peer()
        }),
        vec!["spec.peerPort: must be between 1 and 65535, got 0"]
    );
}

#[test]
fn timers_accepted() {
    let timers = |hold: Option<&str>, keepalive: Option<&str>| BGPPeerSpec {
        hold_time: hold.map(Into::into),
        keepalive_time: keepalive.map(Into::into),
        connect_time: Some("10s".into()),
        ..peer()
    };
    for (hold, keepalive) in [
        (Some("90s"), Some("30s")),
        (Some("0"), Some("0s")),
        (Some("0s"), None),
        (Some("3s"), Some("3s")),
        (Some("1h30m"), Some("1.5m")),
        (Some("65535s"), None),
        (None, Some("65535s")),
    ] {
        assert_eq!(
            timers(hold, keepalive).validate(),
            Ok(()),
            "{hold:?} {keepalive:?}"
        );
    }
}

/// holdTime, keepaliveTime, connectTime, and the one error expected.
type TimerCase = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

#[test]
fn timers_rejected() {
    let cases: &[TimerCase] = &[
        (
            Some("2s"),
            None,
            None,
            "spec.holdTime: 2s must be 0 or between 3s and 65535s",
        ),
        (
            Some("65536s"),
            None,
            None,
            "spec.holdTime: 65536s must be 0 or between 3s and 65535s",
        ),
        (
            Some("3.5s"),
            None,
            None,
            "spec.holdTime: 3.5s must be a whole number of seconds",
        ),
        (
            Some("-3s"),
            None,
            None,
            "spec.holdTime: \"-3s\" must not have a sign",
        ),
        (
            Some("90"),
            None,
            None,
            "spec.holdTime: \"90\" is not a duration: use a number and a unit, e.g. 90s, 1m30s, 1.5h",
        ),
        (
            Some("0"),
            Some("1s"),
            None,
            "spec.keepaliveTime: 1s must not be longer than holdTime 0s",
        ),
        (
            Some("30s"),
            Some("1m"),
            None,
            "spec.keepaliveTime: 1m0s must not be longer than holdTime 30s",
        ),
        (
            None,
            Some("65536s"),
            None,
            "spec.keepaliveTime: 65536s must be at most 65535s",
        ),
        (
            None,
            None,
            Some("0s"),
            "spec.connectTime: 0s must be between 1s and 65535s",
        ),
        (
            None,
            None,
            Some("1500ms"),
            "spec.connectTime: 1500ms must be a whole number of seconds",
        ),
        (
            None,
            None,
            Some("2562047h47m16.854775808s"),
            "spec.connectTime: \"2562047h47m16.854775808s\" is too long a duration (more than about 292 years)",
        ),
    ];
    for (hold, keepalive, connect, message) in cases {
        let spec = BGPPeerSpec {
            hold_time: hold.map(Into::into),
            keepalive_time: keepalive.map(Into::into),
            connect_time: connect.map(Into::into),
            ..peer()
        };
        assert_eq!(messages(&spec), vec![message.to_string()]);
    }
}

#[test]
fn effective_timers_follow_metallb() {
    let with = |hold: Option<&str>, keepalive: Option<&str>| {
        BGPPeerSpec {
            hold_time: hold.map(Into::into),
            keepalive_time: keepalive.map(Into::into),
            ..peer()
        }
        .timers()
    };
    let secs = Duration::from_secs;
    assert_eq!(
        with(None, None),
        Ok(BgpTimers {
            hold_time: secs(90),
            keepalive_time: secs(30)
        })
    );
    assert_eq!(
        with(Some("9s"), None),
        Ok(BgpTimers {
            hold_time: secs(9),
            keepalive_time: secs(3)
        })
    );
    assert_eq!(
        with(None, Some("20s")),
        Ok(BgpTimers {
            hold_time: secs(60),
            keepalive_time: secs(20)
        })
    );
    assert_eq!(
        with(None, Some("30000s")),
        Ok(BgpTimers {
            hold_time: MAX_TIMER,
            keepalive_time: secs(30000)
        })
    );
    assert_eq!(
        with(Some("0"), Some("0")),
        Ok(BgpTimers {
            hold_time: secs(0),
            keepalive_time: secs(0)
        })
    );
    assert_eq!(
        with(Some("x"), None).map_err(|e| e.field),
        Err("spec.holdTime".to_string())
    );
    let connect = BGPPeerSpec {
        connect_time: Some("1m".into()),
        ..peer()
    };
    assert_eq!(connect.connect_time(), Ok(Some(secs(60))));
}

#[test]
fn passwords() {
    let secret = |name: Option<&str>| SecretReference {
        name: name.map(Into::into),
        namespace: None,
    };
    let both = BGPPeerSpec {
        password: Some("s3cret".into()),
        password_secret: Some(secret(Some("bgp"))),
        ..peer()
    };
    assert_eq!(
        messages(&both),
        vec!["spec.password: must not be set together with passwordSecret"]
    );
    // MetalLB's Go types write an unset passwordSecret as {}.
    let metallb_style = BGPPeerSpec {
        password: Some("s3cret".into()),
        password_secret: Some(secret(None)),
        ..peer()
    };
    assert_eq!(metallb_style.validate(), Ok(()));
    assert_eq!(
        metallb_style.password_source(),
        Some(PeerPassword::Inline("s3cret"))
    );
    let from_secret = BGPPeerSpec {
        password: Some(String::new()),
        password_secret: Some(secret(Some("bgp"))),
        ..peer()
    };
    assert_eq!(
        from_secret.password_source(),
        Some(PeerPassword::Secret(&secret(Some("bgp"))))
    );
    assert_eq!(peer().password_source(), None);
    let long = BGPPeerSpec {
        password: Some("x".repeat(81)),
        ..peer()
    };
    assert_eq!(
        messages(&long),
        vec!["spec.password: at most 80 bytes allowed, got 81"]
    );
    let bad_name = BGPPeerSpec {
        password_secret: Some(secret(Some("Bad_Name"))),
        ..peer()
    };
    assert_eq!(messages(&bad_name).len(), 1);
}

#[test]
fn vrf_is_an_interface_name() {
    assert_eq!(
        BGPPeerSpec {
            vrf: Some("red".into()),
            ..peer()
        }
        .validate(),
        Ok(())
    );
    assert_eq!(
        messages(&BGPPeerSpec {
            vrf: Some("red/blue".into()),
            ..peer()
        })
        .len(),
        1
    );
}

proptest! {
    #[test]
    fn validate_never_panics(
        address in ".{0,40}",
        hold in proptest::option::of(".{0,20}"),
        keepalive in proptest::option::of("[0-9.a-z]{0,20}"),
        connect in proptest::option::of("[0-9.hmsu]{0,20}"),
    ) {
        let spec = BGPPeerSpec {
            peer_address: address.clone(),
            source_address: Some(address),
            hold_time: hold,
            keepalive_time: keepalive,
            connect_time: connect,
            ..peer()
        };
        let _ = spec.validate();
        let _ = spec.timers();
        let _ = spec.connect_time();
    }

    #[test]
    fn whole_second_timers_in_range_pass(hold in 3u64..=65535, keepalive_share in 0u64..=100) {
        let keepalive = hold * keepalive_share / 100;
        let spec = BGPPeerSpec {
            hold_time: Some(format!("{hold}s")),
            keepalive_time: Some(format!("{keepalive}s")),
            ..peer()
        };
        prop_assert_eq!(spec.validate(), Ok(()));
    }
}
