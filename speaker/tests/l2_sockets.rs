//! The L2 announcer on real sockets: two network namespaces joined by a veth
//! pair, the announcer in `a`, and `arping`, `ndisc6` and `tcpdump` in `b`.
//!
//! Needs root (namespaces, raw sockets) and the tools `ip`, `arping`
//! (Thomas Habets'), `ndisc6` and `tcpdump`; without them the test fails
//! and says what is missing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unsafe_code,
    reason = "an integration test fails by panicking; geteuid and setns on our own thread are sound"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ferrolb_speaker::l2::announcer::{Applied, Desired, DesiredSender, desired_channel};
use ferrolb_speaker::l2::{AnnouncerConfig, GroupView, InterfaceFilter, L2Announcer, L2Metrics};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const A_IPV4: &str = "198.51.100.1";
const B_IPV4: &str = "198.51.100.2";
const A_IPV6: &str = "2001:db8::1";
const B_IPV6: &str = "2001:db8::2";
/// Announced by the speaker, configured nowhere.
const SERVICE_IPV4: &str = "198.51.100.77";
const SERVICE_IPV6: &str = "2001:db8::77";
/// Not desired: nobody may answer for these.
const OTHER_IPV4: &str = "198.51.100.78";
const OTHER_IPV6: &str = "2001:db8::78";
/// The veth end in both namespaces; not matched by the default exclude list.
const LINK: &str = "lan0";
const GRATUITOUS_COUNT: u32 = 3;

/// Deletes the namespaces however the test ends.
struct Namespaces {
    a: String,
    b: String,
}

impl Namespaces {
    fn create() -> Namespaces {
        let pid = std::process::id();
        let namespaces = Namespaces {
            a: format!("flbt-{pid}-a"),
            b: format!("flbt-{pid}-b"),
        };
        for name in [&namespaces.a, &namespaces.b] {
            run(&["ip", "netns", "add", name]);
            for key in ["all", "default"] {
                let setting = format!("net.ipv6.conf.{key}.accept_dad=0");
                run(&["ip", "netns", "exec", name, "sysctl", "-qw", &setting]);
            }
            run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        }
        namespaces.connect();
        namespaces
    }

    /// Joins `a` and `b` with a fresh veth pair named [`LINK`] at both ends.
    fn connect(&self) {
        let namespaces = self;
        run(&[
            "ip",
            "-n",
            &namespaces.a,
            "link",
            "add",
            LINK,
            "type",
            "veth",
            "peer",
            "name",
            LINK,
            "netns",
            &namespaces.b,
        ]);
        for (name, ipv4, ipv6) in [
            (&namespaces.a, A_IPV4, A_IPV6),
            (&namespaces.b, B_IPV4, B_IPV6),
        ] {
            run(&[
                "ip",
                "-n",
                name,
                "addr",
                "add",
                &format!("{ipv4}/24"),
                "dev",
                LINK,
            ]);
            run(&[
                "ip",
                "-n",
                name,
                "addr",
                "add",
                &format!("{ipv6}/64"),
                "dev",
                LINK,
                "nodad",
            ]);
            run(&["ip", "-n", name, "link", "set", LINK, "up"]);
        }
    }

    fn mac_of_a(&self) -> String {
        let output = run(&["ip", "-n", &self.a, "-o", "link", "show", LINK]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut words = text.split_whitespace();
        words
            .find(|word| *word == "link/ether")
            .and_then(|_| words.next())
            .unwrap_or_else(|| panic!("no MAC address in {text:?}"))
            .to_lowercase()
    }

    fn in_b(&self, command: &[&str]) -> Output {
        let mut full = vec!["timeout", "20", "ip", "netns", "exec", &self.b];
        full.extend_from_slice(command);
        output_of(&full)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Kills a child process we started when the test ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn output_of(command: &[&str]) -> Output {
    Command::new(command[0])
        .args(&command[1..])
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

fn run(command: &[&str]) -> Output {
    let output = output_of(command);
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn require_environment() {
    // RUST_LOG=ferrolb_speaker=debug shows what the announcer does.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root: it creates network namespaces and raw sockets"
    );
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = format!("{}:/usr/sbin:/sbin", path.to_string_lossy());
    for tool in ["ip", "arping", "ndisc6", "tcpdump", "timeout"] {
        let found = path
            .split(':')
            .any(|dir| std::path::Path::new(dir).join(tool).exists());
        assert!(
            found,
            "this test needs `{tool}` (apt-get install iproute2 arping ndisc6 tcpdump)"
        );
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The announcer, running on its own thread inside namespace `a`.
struct RunningAnnouncer {
    desired: DesiredSender,
    applied: watch::Receiver<Applied>,
    shutdown: CancellationToken,
    finished: mpsc::Receiver<()>,
}

impl RunningAnnouncer {
    fn start(namespace: &str, metrics: L2Metrics) -> RunningAnnouncer {
        let (desired, desired_receiver) = desired_channel(Desired::new());
        let (applied_sender, applied) = watch::channel(Applied::new());
        let shutdown = CancellationToken::new();
        let (finished_sender, finished) = mpsc::channel();
        let netns_path = format!("/run/netns/{namespace}");
        let token = shutdown.clone();
        thread::spawn(move || {
            let netns = std::fs::File::open(&netns_path).expect("open the namespace");
            // SAFETY: setns on a namespace file we hold open; it only moves
            // this thread, before it creates the runtime and any socket.
            let entered = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            let config = AnnouncerConfig {
                gratuitous_count: GRATUITOUS_COUNT,
                gratuitous_spacing: Duration::from_millis(100),
                rescan_interval: Duration::from_millis(200),
                ..AnnouncerConfig::default()
            };
            // Claims at once, as a speaker that hears the whole group does.
            let (_no_doubt, group) = watch::channel(GroupView::default());
            runtime.block_on(L2Announcer::new(config, metrics).run(
                desired_receiver,
                group,
                applied_sender,
                token,
            ));
            let _ = finished_sender.send(());
        });
        RunningAnnouncer {
            desired,
            applied,
            shutdown,
            finished,
        }
    }

    fn wait_for_applied(&self, what: &str, expected: &Applied) {
        wait_until(what, Duration::from_secs(10), || {
            *self.applied.borrow() == *expected
        });
    }
}

impl Drop for RunningAnnouncer {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = self.finished.recv_timeout(Duration::from_secs(5));
    }
}

/// tcpdump in namespace `b`, started and known to be listening.
fn start_capture(namespaces: &Namespaces) -> ChildGuard {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &namespaces.b,
            "tcpdump",
            "-i",
            LINK,
            "-n",
            "-e",
            "-l",
        ])
        .arg("arp or icmp6")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcpdump");
    let mut guard = ChildGuard(child);
    let stderr = guard.0.stderr.take().expect("tcpdump stderr");
    let (ready_sender, ready) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = ready_sender.send(());
            }
        }
    });
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("tcpdump did not start listening within 10 s");
    guard
}

fn stop_capture(mut capture: ChildGuard) -> String {
    // Give the last frames a moment to be printed, then stop tcpdump.
    thread::sleep(Duration::from_millis(300));
    let _ = capture.0.kill();
    let mut lines = String::new();
    if let Some(mut stdout) = capture.0.stdout.take() {
        let _ = stdout.read_to_string(&mut lines);
    }
    lines
}

fn arping(namespaces: &Namespaces, target: &str) -> String {
    text(&namespaces.in_b(&["arping", "-c", "2", "-w", "3", "-i", LINK, target]))
}

fn ndisc6(namespaces: &Namespaces, target: &str) -> String {
    text(&namespaces.in_b(&["ndisc6", "-n", "-r", "3", "-w", "500", target, LINK]))
}

fn count_lines(capture: &str, matches: impl Fn(&str) -> bool) -> usize {
    capture.lines().filter(|line| matches(line)).count()
}

#[test]
fn answers_arp_and_ndp_for_desired_ips_only_and_announces_them() {
    require_environment();
    let namespaces = Namespaces::create();
    let mac = namespaces.mac_of_a();
    let metrics = L2Metrics::new();
    let announcer = RunningAnnouncer::start(&namespaces.a, metrics.clone());
    let capture = start_capture(&namespaces);

    announcer.desired.send_replace(BTreeMap::from([
        (ip(SERVICE_IPV4), InterfaceFilter::AllSuitable),
        (ip(SERVICE_IPV6), InterfaceFilter::AllSuitable),
    ]));
    let on_link = std::sync::Arc::new(BTreeSet::from([LINK.to_owned()]));
    let both = BTreeMap::from([
        (ip(SERVICE_IPV4), on_link.clone()),
        (ip(SERVICE_IPV6), on_link.clone()),
    ]);
    announcer.wait_for_applied("both service IPs applied on lan0", &both);
    // Let the gratuitous burst finish (3 x 100 ms spacing).
    thread::sleep(Duration::from_millis(600));

    // Desired IPs resolve to a's MAC.
    let answer = arping(&namespaces, SERVICE_IPV4);
    assert!(
        answer.to_lowercase().contains(&mac),
        "arping {SERVICE_IPV4} did not get {mac}:\n{answer}"
    );
    let answer = ndisc6(&namespaces, SERVICE_IPV6);
    if !answer.to_lowercase().contains(&mac) {
        let c = stop_capture(capture);
        panic!("{c}");
    }
    assert!(
        answer.to_lowercase().contains(&mac),
        "ndisc6 {SERVICE_IPV6} did not get {mac}:\n{answer}"
    );

    // Others get no answer from us.
    let answer = arping(&namespaces, OTHER_IPV4);
    assert!(
        !answer.to_lowercase().contains(&mac),
        "arping {OTHER_IPV4} was answered:\n{answer}"
    );
    let answer = ndisc6(&namespaces, OTHER_IPV6);
    assert!(
        !answer.to_lowercase().contains(&mac),
        "ndisc6 {OTHER_IPV6} was answered:\n{answer}"
    );

    // The capture shows the gratuitous announcements, broadcast from a's MAC.
    let captured = stop_capture(capture);
    let gratuitous_arps = count_lines(&captured, |line| {
        line.starts_with_mac_after_timestamp(&mac)
            && line.contains("ff:ff:ff:ff:ff:ff")
            && (line.contains(&format!("who-has {SERVICE_IPV4} tell {SERVICE_IPV4}"))
                || line.contains(&format!("Announcement {SERVICE_IPV4}")))
    });
    assert!(
        gratuitous_arps >= GRATUITOUS_COUNT as usize,
        "expected {GRATUITOUS_COUNT} gratuitous ARPs from {mac}, saw {gratuitous_arps}:\n{captured}"
    );
    let unsolicited_advertisements = count_lines(&captured, |line| {
        line.starts_with_mac_after_timestamp(&mac)
            && line.contains("> ff02::1:")
            && line.contains(&format!("neighbor advertisement, tgt is {SERVICE_IPV6}"))
    });
    assert!(
        unsolicited_advertisements >= GRATUITOUS_COUNT as usize,
        "expected {GRATUITOUS_COUNT} unsolicited NAs from {mac}, saw {unsolicited_advertisements}:\n{captured}"
    );

    // Dropping an IP from the desired set stops the answers for it.
    announcer.desired.send_replace(BTreeMap::from([(
        ip(SERVICE_IPV6),
        InterfaceFilter::AllSuitable,
    )]));
    let only_ipv6 = BTreeMap::from([(ip(SERVICE_IPV6), on_link.clone())]);
    announcer.wait_for_applied("only the IPv6 service IP applied", &only_ipv6);
    let answer = arping(&namespaces, SERVICE_IPV4);
    assert!(
        !answer.to_lowercase().contains(&mac),
        "{SERVICE_IPV4} still answered:\n{answer}"
    );

    // An interface that goes down is dropped, and picked up again when it returns.
    run(&["ip", "-n", &namespaces.a, "link", "set", LINK, "down"]);
    announcer.wait_for_applied("nothing applied while lan0 is down", &Applied::new());
    run(&["ip", "-n", &namespaces.a, "link", "set", LINK, "up"]);
    announcer.wait_for_applied("IPv6 applied again after lan0 came back", &only_ipv6);
    let answer = ndisc6(&namespaces, SERVICE_IPV6);
    assert!(
        answer.to_lowercase().contains(&mac),
        "ndisc6 after the bounce did not get {mac}:\n{answer}"
    );

    // An interface that vanishes is dropped; one made again under the same
    // name (a new device, with a new MAC) is announced on with its own MAC.
    run(&["ip", "-n", &namespaces.a, "link", "del", LINK]);
    announcer.wait_for_applied("nothing applied while lan0 is gone", &Applied::new());
    namespaces.connect();
    let new_mac = namespaces.mac_of_a();
    assert_ne!(new_mac, mac, "the recreated veth kept its MAC");
    announcer.wait_for_applied("IPv6 applied on the new lan0", &only_ipv6);
    // b's new end needs a moment before it can send (ENETUNREACH until then).
    wait_until(
        &format!("ndisc6 {SERVICE_IPV6} answered by {new_mac} on the new lan0"),
        Duration::from_secs(10),
        || {
            ndisc6(&namespaces, SERVICE_IPV6)
                .to_lowercase()
                .contains(&new_mac)
        },
    );

    // The counters saw it all.
    let mut registry = Registry::with_prefix(ferrolb_speaker::metrics::PREFIX);
    metrics.register(&mut registry);
    let mut exposition = String::new();
    prometheus_client::encoding::text::encode(&mut exposition, &registry).unwrap();
    for family in ["ipv4", "ipv6"] {
        let answered = format!("ferrolb_speaker_l2_requests_answered_total{{family=\"{family}\"}}");
        assert!(
            exposition.contains(&answered),
            "no {answered} in\n{exposition}"
        );
    }
    assert!(exposition.contains("ferrolb_speaker_l2_ignored_packets_total{reason=\"not_ours\"}"));
    assert!(
        exposition.contains("ferrolb_speaker_l2_announced_ips 1"),
        "{exposition}"
    );
}

trait CaptureLine {
    /// With `tcpdump -e`, the source MAC follows the timestamp.
    fn starts_with_mac_after_timestamp(&self, mac: &str) -> bool;
}

impl CaptureLine for str {
    fn starts_with_mac_after_timestamp(&self, mac: &str) -> bool {
        self.split_whitespace().nth(1) == Some(mac)
    }
}
