//! The BGP session shell against a real BIRD 2 in a pair of network
//! namespaces: routes, next-hop self, large communities, incremental
//! changes, then the graceful shutdown on the wire (GRACEFUL_SHUTDOWN during
//! the drain, the withdrawal, the Cease NOTIFICATION).
//!
//! Needs root (namespaces, setns) and the `bird`/`birdc` binaries, like the
//! other network suites of `cargo xtask test`; without them it fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unsafe_code,
    reason = "an integration test fails by panicking; setns on our own thread is sound"
)]

use ferrolb_speaker::bgp::fsm::{FsmConfig, State};
use ferrolb_speaker::bgp::message::AddressFamily;
use ferrolb_speaker::bgp::route_feed::RouteFeed;
use ferrolb_speaker::bgp::session::{
    RouteSet, SessionConfig, SessionStatus, StopRequest, run_session,
};
use ferrolb_speaker::bgp::update_builder::Route;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const SPEAKER_V4: &str = "198.51.100.2";
const ROUTER_V4: &str = "198.51.100.1";
const SPEAKER_V6: &str = "2001:db8:b6::2";
const ROUTER_V6: &str = "2001:db8:b6::1";
const PASSWORD: &str = "lab-secret";

fn run(args: &[&str]) {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run command");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Two namespaces joined by a veth pair, BIRD in one of them. Everything is removed
/// on drop, also when the test fails.
struct Lab {
    speaker_ns: String,
    router_ns: String,
    dir: PathBuf,
    bird: Option<Child>,
}

impl Lab {
    fn new() -> Lab {
        let pid = std::process::id();
        let mut lab = Lab {
            speaker_ns: format!("fbgp-s-{pid}"),
            router_ns: format!("fbgp-r-{pid}"),
            dir: std::env::temp_dir().join(format!("ferrolb-bgp-lab-{pid}")),
            bird: None,
        };
        let (s, r) = (lab.speaker_ns.clone(), lab.router_ns.clone());
        let (s_if, r_if) = (format!("fbs{pid}"), format!("fbr{pid}"));
        run(&["ip", "netns", "add", &s]);
        run(&["ip", "netns", "add", &r]);
        run(&[
            "ip", "link", "add", &s_if, "netns", &s, "type", "veth", "peer", "name", &r_if,
            "netns", &r,
        ]);
        for (ns, interface, v4, v6) in [
            (&s, &s_if, SPEAKER_V4, SPEAKER_V6),
            (&r, &r_if, ROUTER_V4, ROUTER_V6),
        ] {
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v4}/24"),
                "dev",
                interface,
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                interface,
                "nodad",
            ]);
            run(&["ip", "-n", ns, "link", "set", interface, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        std::fs::create_dir_all(&lab.dir).expect("lab dir");
        let config = format!(
            r#"router id {ROUTER_V4};
protocol device {{ }}
protocol bgp speaker {{
  local {ROUTER_V4} as 64513;
  neighbor {SPEAKER_V4} as 64512;
  passive on;
  password "{PASSWORD}";
  hold time 9;
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
"#
        );
        std::fs::write(lab.dir.join("bird.conf"), config).expect("bird.conf");
        let bird = Command::new("ip")
            .args(["netns", "exec", &r, "bird", "-f", "-c"])
            .arg(lab.dir.join("bird.conf"))
            .arg("-s")
            .arg(lab.socket())
            .stdout(Stdio::null())
            .spawn()
            .expect("start bird");
        lab.bird = Some(bird);
        lab
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    fn birdc(&self, command: &str) -> String {
        let output = Command::new("birdc")
            .arg("-s")
            .arg(self.socket())
            .args(command.split(' '))
            .output()
            .expect("birdc");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Polls `birdc` until `check` holds, for at most `limit`.
    fn wait_for(&self, command: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let output = self.birdc(command);
            if check(&output) || start.elapsed() > limit {
                return output;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut bird) = self.bird.take() {
            let _ = bird.kill();
            let _ = bird.wait();
        }
        for ns in [&self.speaker_ns, &self.router_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn enter_namespace(name: &str) {
    let file = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open netns");
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace descriptor only changes this thread's namespace.
    let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
}

fn wait_for_status(
    status: &watch::Receiver<SessionStatus>,
    limit: Duration,
    check: impl Fn(&SessionStatus) -> bool,
) -> SessionStatus {
    let start = Instant::now();
    loop {
        let current = status.borrow().clone();
        if check(&current) || start.elapsed() > limit {
            return current;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn route(prefix: &str, next_hop: IpAddr) -> (ipnet::IpNet, Route) {
    let route = Route::new(prefix.parse().unwrap(), next_hop);
    (route.prefix, route)
}

#[test]
fn announces_to_bird_withdraws_and_shuts_down_gracefully() {
    let lab = Lab::new();
    let config = SessionConfig {
        peer: format!("{ROUTER_V4}:179").parse().unwrap(),
        source: Some(SPEAKER_V4.parse().unwrap()),
        md5_password: Some(PASSWORD.into()),
        ebgp_multihop: false,
        ipv6_link_local_next_hop: None,
        fsm: FsmConfig {
            local_as: 64512,
            peer_as: 64513,
            router_id: SPEAKER_V4.parse().unwrap(),
            hold_time: 9,
            keepalive_time: None,
            connect_retry_time: Duration::from_millis(500),
            connect_retry_max: Duration::from_secs(2),
            families: vec![AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST],
            graceful_shutdown_drain: Some(Duration::from_secs(2)),
            graceful_restart_time: None,
        },
    };
    let mut tagged = route("2001:db8:b6:1::10/128", SPEAKER_V6.parse().unwrap());
    tagged.1.large_communities.insert((64512, 1, 1).into());
    let initial: RouteSet = [
        route("203.0.113.10/32", IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        tagged,
    ]
    .into_iter()
    .collect();
    let routes_tx = Arc::new(RouteFeed::new(initial.clone()));
    let routes_rx = routes_tx.clone();
    let (stop_tx, stop_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(SessionStatus::default());
    let speaker_ns = lab.speaker_ns.clone();
    let session = std::thread::spawn(move || {
        enter_namespace(&speaker_ns);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(120),
                run_session(config, routes_rx, stop_rx, status_tx),
            )
            .await
            .is_ok()
        })
    });

    let status = wait_for_status(&status_rx, Duration::from_secs(30), |s| {
        s.state == State::Established && s.prefixes_sent == 2
    });
    assert_eq!(
        status.state,
        State::Established,
        "{status:?}\n{}",
        lab.birdc("show protocols all speaker")
    );
    assert!(status.established_since.is_some());
    let routes = lab.wait_for("show route all", Duration::from_secs(10), |out| {
        out.contains("203.0.113.10/32") && out.contains("2001:db8:b6:1::10/128")
    });
    assert!(routes.contains("203.0.113.10/32"), "{routes}");
    assert!(routes.contains("2001:db8:b6:1::10/128"), "{routes}");
    assert!(
        routes.contains(&format!("via {SPEAKER_V4}")),
        "next-hop self: {routes}"
    );
    assert!(
        routes.contains("(64512, 1, 1)"),
        "large community: {routes}"
    );
    println!("BIRD sees:\n{routes}");

    // Incremental: withdraw the IPv4 route, add another.
    let mut next = initial.clone();
    next.remove(&"203.0.113.10/32".parse().unwrap());
    next.extend([route("203.0.113.20/32", IpAddr::V4(Ipv4Addr::UNSPECIFIED))]);
    let changed = ["203.0.113.10/32", "203.0.113.20/32"]
        .iter()
        .map(|prefix| prefix.parse().unwrap())
        .collect();
    routes_tx.update(&next, &changed);
    let routes = lab.wait_for("show route", Duration::from_secs(10), |out| {
        !out.contains("203.0.113.10/32") && out.contains("203.0.113.20/32")
    });
    assert!(
        !routes.contains("203.0.113.10/32") && routes.contains("203.0.113.20/32"),
        "{routes}"
    );

    // Graceful shutdown: GRACEFUL_SHUTDOWN community during the drain, then nothing.
    stop_tx.send(Some(StopRequest::Graceful)).unwrap();
    let draining = lab.wait_for("show route all", Duration::from_secs(5), |out| {
        out.contains("(65535,0)")
    });
    assert!(draining.contains("(65535,0)"), "{draining}");
    assert!(
        session.join().expect("session thread"),
        "session did not stop in time"
    );
    let after = lab.wait_for("show route", Duration::from_secs(5), |out| {
        !out.contains("203.0.113.20/32")
    });
    assert!(
        !after.contains("203.0.113.20/32") && !after.contains("2001:db8:b6:1::10"),
        "{after}"
    );
    let protocol = lab.birdc("show protocols all speaker");
    assert!(
        protocol.contains("Administrative shutdown")
            || protocol.contains("Received: Administrative shutdown"),
        "{protocol}"
    );
    assert_eq!(status_rx.borrow().state, State::Idle);
}
