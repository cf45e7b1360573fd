//! The README's cut-over from MetalLB to FerroLB (issue 12 §2) on real
//! kubelet nodes, with real speakers on both sides, sampled on the wire.
//!
//! A site of its own comes up without FerroLB; MetalLB v0.16.2 is installed
//! from its own `metallb-native.yaml` with its own images (webhooks off, see
//! `realnodes::metallb`), serves a handful of Services (plain, a requested
//! IP, a named pool, two sharing an IP, one dual-stack) and answers ARP and
//! NDP for them. Then, while a Service watch, the LAN client's HTTP requests
//! and an ARP prober per IP sample continuously, the README's procedure runs
//! step by step with the real binaries (`kubectl ferrolb migrate`, `kubectl
//! scale`, `kubectl apply`, `kubectl delete`), and MetalLB is removed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use ferrolb_tests::arp_probe::{ArpProber, Claim, overlapping_answers, unsettled_moments};
use ferrolb_tests::env::{apply_deploy, binary, wait_crds_established};
use ferrolb_tests::l2lab::{macs_in, ndisc};
use ferrolb_tests::metallb::NAMESPACE as METALLB_NS;
use ferrolb_tests::realnodes::apps::NS;
use ferrolb_tests::realnodes::http_probe::{ProbeLoop, get_from, outage};
use ferrolb_tests::realnodes::metallb::{native_manifest, start_bare_site};
use ferrolb_tests::realnodes::{CLIENT_IP, RealCluster, until};
use ferrolb_tests::service_watch::{Watched, check_no_violations, watch_services};
use ferrolb_tests::tools::repo_root;

/// MetalLB's pools: `lan` hands out automatically (both families), `gold`
/// only on request. Away from the IPs the other real-node tests use.
const LAN_POOL_V4: &str = "198.51.100.160-198.51.100.169";
const LAN_POOL_V6: &str = "2001:db8:100::160-2001:db8:100::16f";
const GOLD_POOL_V4: &str = "198.51.100.170-198.51.100.179";
const REQUESTED_IP: &str = "198.51.100.165";
/// The echo backend every Service selects.
const APP: &str = "cutover-echo";
/// How often the client asks who has each IP, and requests each target.
const EVERY: Duration = Duration::from_millis(100);
/// After MetalLB is gone: settling allowed, then the window in which every
/// request must succeed and one MAC answer each IP.
const SETTLE: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_secs(15);
/// The longest a client may go without an answer through the cut-over.
const MAX_GAP: Duration = Duration::from_millis(500);
/// Upper bound on everything the loops sample.
const SAMPLING_LIMIT: Duration = Duration::from_secs(600);

fn metallb_config() -> Vec<Value> {
    vec![
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": "lan", "namespace": METALLB_NS},
               "spec": {"addresses": [LAN_POOL_V4, LAN_POOL_V6]}}),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": "gold", "namespace": METALLB_NS},
               "spec": {"addresses": [GOLD_POOL_V4], "autoAssign": false}}),
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
               "metadata": {"name": "l2", "namespace": METALLB_NS},
               "spec": {"ipAddressPools": ["lan", "gold"]}}),
    ]
}

/// A LoadBalancer Service for the echo pods, with MetalLB's `annotations`,
/// on `port`; IPv4 only unless `dual`.
fn service(name: &str, annotations: Value, port: u16, dual: bool) -> Value {
    let families = if dual {
        json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]})
    } else {
        json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]})
    };
    let mut service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                 "selector": {"app": APP},
                 "ports": [{"name": "http", "port": port, "targetPort": 8080}]},
    });
    ferrolb_tests::scenario::merge(&mut service["spec"], families);
    service
}

/// The Services MetalLB serves before the cut-over, and how many IPs each gets.
fn services() -> Vec<(Value, usize)> {
    let shared = json!({"metallb.io/allow-shared-ip": "cutover"});
    vec![
        (service("cut-plain", json!({}), 80, false), 1),
        (
            service(
                "cut-requested",
                json!({"metallb.io/loadBalancerIPs": REQUESTED_IP}),
                80,
                false,
            ),
            1,
        ),
        (
            service(
                "cut-gold",
                json!({"metallb.io/address-pool": "gold"}),
                80,
                false,
            ),
            1,
        ),
        (service("cut-shared-a", shared.clone(), 80, false), 1),
        (service("cut-shared-b", shared, 8081, false), 1),
        (service("cut-dual", json!({}), 80, true), 2),
    ]
}

fn name_of(service: &Value) -> String {
    service["metadata"]["name"].as_str().unwrap().to_string()
}

/// Whether `ip` lies in the range `from-to` (same family).
fn in_range(ip: IpAddr, range: &str) -> bool {
    let (from, to) = range.split_once('-').unwrap();
    let (from, to): (IpAddr, IpAddr) = (from.parse().unwrap(), to.parse().unwrap());
    from <= ip && ip <= to && from.is_ipv4() == ip.is_ipv4()
}

/// Waits until a GET from the client to `target` succeeds.
fn wait_served(site: &RealCluster, target: SocketAddr) -> Result<()> {
    until(
        &format!("{target} answering the client"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || Ok(get_from(&site.client, target, Duration::from_secs(2)).ok()),
    )
    .map(|_| ())
}

/// `kubectl ARGS` as the README's reader runs it: the admin kubeconfig in
/// `KUBECONFIG`, the `kubectl-ferrolb` plugin on the `PATH`.
fn kubectl(site: &RealCluster, plugin_dir: &Path, args: &[&str]) -> Result<std::process::Output> {
    let path = std::env::var("PATH").unwrap_or_default();
    let output = Command::new(site.api.tools.kubectl())
        .args(args)
        .env("KUBECONFIG", site.api.admin_kubeconfig())
        .env("PATH", format!("{}:{path}", plugin_dir.display()))
        .output()
        .with_context(|| format!("running kubectl {}", args.join(" ")))?;
    Ok(output)
}

fn kubectl_ok(site: &RealCluster, plugin_dir: &Path, args: &[&str]) -> Result<String> {
    let output = kubectl(site, plugin_dir, args)?;
    if !output.status.success() {
        bail!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The ingress IPs Service `name` shows now, in status order.
fn ingress_now(site: &RealCluster, name: &str) -> Result<Vec<String>> {
    let out = site.api.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "service",
        name,
        "-o",
        "jsonpath={range .status.loadBalancer.ingress[*]}{.ip}{\"\\n\"}{end}",
    ])?;
    Ok(out.lines().map(str::to_string).collect())
}

/// The client's neighbour cache entry for `ip` on its LAN.
fn neighbour(site: &RealCluster, ip: std::net::Ipv6Addr) -> Result<String> {
    site.client_netns()
        .exec_ok(&["ip", "-6", "neigh", "show", &ip.to_string(), "dev", "eth0"])
}

/// What an ARP prober saw of one IP through the swap.
struct ArpHandOver {
    /// Who answered in the window (lower case).
    macs: BTreeSet<String>,
    /// The one of them, or empty.
    owner: String,
    /// When the answers in the window were not one MAC answering each request.
    unsettled: Vec<Duration>,
    /// The longest time without any claim of the IP after the swap.
    silence: Duration,
    /// The owner's first gratuitous ARP after the swap.
    garp: Option<Instant>,
    /// Requests answered by two MACs between the swap and the window.
    overlaps: usize,
}

impl ArpHandOver {
    fn read(claims: &[Claim], swap: Instant, (from, to): (Instant, Instant)) -> ArpHandOver {
        let macs: BTreeSet<String> = claims
            .iter()
            .filter(|c| !c.gratuitous && c.at >= from && c.at <= to)
            .map(|c| c.mac.to_ascii_lowercase())
            .collect();
        let owner = macs.iter().next().cloned().unwrap_or_default();
        let silence = claims
            .iter()
            .filter(|c| c.at >= swap)
            .fold((swap, Duration::ZERO), |(last, longest), c| {
                (c.at, longest.max(c.at - last))
            })
            .1;
        let garp = claims
            .iter()
            .find(|c| c.gratuitous && c.at >= swap && c.mac.eq_ignore_ascii_case(&owner))
            .map(|c| c.at);
        let during: Vec<Claim> = claims
            .iter()
            .filter(|c| c.at >= swap && c.at < from)
            .cloned()
            .collect();
        ArpHandOver {
            unsettled: unsettled_moments(claims, from, to, EVERY),
            overlaps: overlapping_answers(&during, EVERY / 2).len(),
            macs,
            owner,
            silence,
            garp,
        }
    }
}

/// One HTTP target the client requests throughout.
struct Target {
    label: String,
    addr: SocketAddr,
}

#[test]
fn readme_cut_over_from_metallb_keeps_ips_and_clients_on_real_nodes() -> Result<()> {
    let started = Instant::now();
    let say = |what: &str| eprintln!("[cutover {:>6.1}s] {what}", started.elapsed().as_secs_f64());
    // The plugin first: no build during the cut-over.
    let plugin = binary("kubectl-ferrolb")?;
    let plugin_dir = plugin
        .parent()
        .context("the plugin's directory")?
        .to_path_buf();
    // Dropping the site (also on a failure) tears everything down.
    let site = start_bare_site(3)?;
    say("site up, nothing installed");

    // MetalLB, installed as its users do, and its configuration.
    site.install_metallb()?;
    site.apply(&metallb_config())?;
    say("MetalLB rolled out");
    let bodies = services();
    let mut objects = vec![RealCluster::echo_deployment(APP, NS, 3, None)];
    objects.extend(bodies.iter().map(|(s, _)| s.clone()));
    site.apply(&objects)?;
    site.rollout(&format!("deployment/{APP}"), NS)?;
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (body, count) in &bodies {
        let name = name_of(body);
        site.wait_ingress(&name, NS, *count)?;
        expected.insert(format!("{NS}/{name}"), ingress_now(&site, &name)?);
    }
    say(&format!("MetalLB assigned {expected:?}"));
    let ip_of = |name: &str| -> IpAddr { expected[&format!("{NS}/{name}")][0].parse().unwrap() };
    assert_eq!(ip_of("cut-requested").to_string(), REQUESTED_IP);
    assert!(in_range(ip_of("cut-gold"), GOLD_POOL_V4), "{expected:?}");
    assert!(in_range(ip_of("cut-plain"), LAN_POOL_V4), "{expected:?}");
    assert_eq!(
        ip_of("cut-shared-a"),
        ip_of("cut-shared-b"),
        "MetalLB shares the IP"
    );
    let dual: Vec<IpAddr> = expected[&format!("{NS}/cut-dual")]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    assert!(dual.iter().any(|ip| in_range(*ip, LAN_POOL_V6)), "{dual:?}");

    // What the client requests: every IP, and both ports of the shared one.
    let mut targets = Vec::new();
    for (body, _) in &bodies {
        let name = name_of(body);
        let port = body["spec"]["ports"][0]["port"].as_u64().unwrap() as u16;
        for ip in &expected[&format!("{NS}/{name}")] {
            targets.push(Target {
                label: format!("{name} {ip}"),
                addr: SocketAddr::new(ip.parse()?, port),
            });
        }
    }
    for target in &targets {
        wait_served(&site, target.addr)?;
    }
    let v6_ips: Vec<std::net::Ipv6Addr> = targets
        .iter()
        .filter_map(|t| match t.addr.ip() {
            IpAddr::V6(ip) => Some(ip),
            IpAddr::V4(_) => None,
        })
        .collect();
    // The client resolved each IPv6 address by NDP: its neighbour cache
    // names a node. (ndisc6's own solicitations got no answer from MetalLB's
    // speaker here; the kernel's do.)
    for ip in &v6_ips {
        let cached = neighbour(&site, *ip)?;
        let node = macs_in(&cached).iter().find_map(|m| site.node_with_mac(m));
        assert!(
            node.is_some(),
            "the client resolved {ip} to a node's MAC: {cached:?}"
        );
    }
    say("MetalLB's speakers serve every IP to the client and answer ARP and NDP");

    // Continuous sampling from before the switch: ARP per IPv4 address...
    let v4_ips: BTreeSet<std::net::Ipv4Addr> = targets
        .iter()
        .filter_map(|t| match t.addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        })
        .collect();
    let client = site.client_netns();
    let mut probers = BTreeMap::new();
    for ip in &v4_ips {
        let prober = ArpProber::start(
            &client,
            "eth0",
            CLIENT_IP.parse()?,
            *ip,
            EVERY,
            SAMPLING_LIMIT,
        )?;
        probers.insert(*ip, prober);
    }
    let mut metallb_macs = BTreeMap::new();
    for (ip, prober) in &probers {
        let since = Instant::now();
        let answer = until(
            &format!("MetalLB's speaker answering ARP for {ip}"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                Ok(prober
                    .claims()
                    .into_iter()
                    .find(|c| c.at >= since && !c.gratuitous))
            },
        )?;
        let node = site.node_with_mac(&answer.mac).context("a node's MAC")?;
        metallb_macs.insert(*ip, answer.mac.to_ascii_lowercase());
        say(&format!(
            "MetalLB: {ip} answered by {}",
            site.nodes[node].name
        ));
    }
    // ...the Service watch...
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let kube = runtime.block_on(site.api.admin_client())?;
    let seen = Arc::new(Mutex::new(Watched::default()));
    let watch = {
        let _in = runtime.enter();
        watch_services(kube, Arc::new(expected.clone()), seen.clone())
    };
    until(
        "the Service watch to list",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || Ok(seen.lock().unwrap().listed.then_some(())),
    )?;
    // ...and the client's requests.
    let mut loops = Vec::new();
    for target in &targets {
        loops.push(ProbeLoop::start(
            &site.client,
            target.addr,
            EVERY,
            Duration::from_secs(1),
            SAMPLING_LIMIT,
        )?);
    }

    // The README's procedure, step by step.
    // 1. Convert first, change nothing yet.
    let migrate = kubectl(
        &site,
        &plugin_dir,
        &["ferrolb", "migrate", "--from-cluster"],
    )?;
    let stderr = String::from_utf8_lossy(&migrate.stderr);
    assert_eq!(
        migrate.status.code(),
        Some(0),
        "kubectl ferrolb migrate: {stderr}"
    );
    let converted = site.dir.join("ferrolb.yaml");
    std::fs::write(&converted, &migrate.stdout)?;
    say(&format!(
        "1. converted ({} bytes; stderr: {})",
        migrate.stdout.len(),
        stderr.trim()
    ));
    // 2. Stop MetalLB's controller.
    kubectl_ok(
        &site,
        &plugin_dir,
        &[
            "-n",
            METALLB_NS,
            "scale",
            "deployment",
            "controller",
            "--replicas=0",
        ],
    )?;
    say("2. MetalLB's controller scaled to 0");
    // 3. FerroLB's namespace and CRDs, then the converted objects.
    let deploy = repo_root().join("deploy");
    for part in ["namespace", "crds"] {
        kubectl_ok(
            &site,
            &plugin_dir,
            &[
                "apply",
                "--server-side",
                "-k",
                &deploy.join(part).to_string_lossy(),
            ],
        )?;
    }
    kubectl_ok(
        &site,
        &plugin_dir,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ],
    )?;
    let applied = kubectl_ok(
        &site,
        &plugin_dir,
        &["apply", "-f", &converted.to_string_lossy()],
    )?;
    for object in [
        "ipaddresspool.ferrolb.io/lan",
        "ipaddresspool.ferrolb.io/gold",
        "l2advertisement.ferrolb.io/l2",
    ] {
        assert!(applied.contains(object), "{applied}");
    }
    say("3. FerroLB's namespace, CRDs and the converted objects applied");
    // 4. Swap the speakers, then start the controller.
    let swap = Instant::now();
    kubectl_ok(
        &site,
        &plugin_dir,
        &["-n", METALLB_NS, "delete", "daemonset", "speaker"],
    )?;
    apply_deploy(&site.api)?;
    say("4. MetalLB's speakers deleted, deploy/ applied");
    site.rollout("daemonset/ferrolb-speaker", "ferrolb-system")?;
    let speakers_ready = swap.elapsed();
    site.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
    let owned = until(
        "FerroLB to own every Service",
        Duration::from_secs(120),
        Duration::from_millis(100),
        || {
            let seen = seen.lock().unwrap();
            Ok((seen.owned.len() == expected.len()).then(|| swap.elapsed()))
        },
    )?;
    for (key, ips) in &expected {
        let name = key.split_once('/').unwrap().1;
        assert_eq!(&ingress_now(&site, name)?, ips, "{key} kept its IPs");
    }
    say(&format!(
        "FerroLB owns every Service {owned:?} after the speakers' swap (speakers ready after {speakers_ready:?})"
    ));
    // 5. Remove MetalLB: what its manifest installed, as its users uninstall it.
    let manifest = json!({"apiVersion": "v1", "kind": "List", "items": native_manifest()?});
    site.api.kubectl_stdin(
        &[
            "delete",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
            "-f",
            "-",
        ],
        &manifest.to_string(),
    )?;
    wait_crds_established(&site.api)?;
    let left = site.api.kubectl_ok(&["get", "crd", "-o", "name"])?;
    assert!(
        !left.contains("metallb.io"),
        "MetalLB's CRDs are gone: {left}"
    );
    say("5. MetalLB removed (Deployment, RBAC, CRDs, namespace)");

    // Settle, then the window: every request succeeds, one MAC per IP.
    let window_from = Instant::now() + SETTLE;
    let window_to = window_from + WINDOW;
    // A new Service meanwhile gets an IP of a migrated pool and is served.
    site.apply(&[service("cut-new", json!({}), 80, false)])?;
    let new_ip: IpAddr = site.wait_ingress("cut-new", NS, 1)?[0];
    let taken: BTreeSet<&String> = expected.values().flatten().collect();
    assert!(in_range(new_ip, LAN_POOL_V4), "cut-new got {new_ip}");
    assert!(
        !taken.contains(&new_ip.to_string()),
        "cut-new got a taken IP, {new_ip}"
    );
    let pool = site.api.kubectl_ok(&[
        "-n",
        NS,
        "get",
        "service",
        "cut-new",
        "-o",
        "jsonpath={.metadata.annotations.ferrolb\\.io/ip-allocated-from-pool}",
    ])?;
    assert_eq!(pool, "lan");
    wait_served(&site, SocketAddr::new(new_ip, 80))?;
    say(&format!(
        "a new Service got {new_ip} from the migrated pool `lan` and is served"
    ));
    std::thread::sleep(window_to.saturating_duration_since(Instant::now()));

    // NDP after the window: one node answers each IPv6 address, and the
    // client's neighbour cache names it (its unsolicited NA moved the client
    // if the owner changed).
    let mut ndp = Vec::new();
    for ip in &v6_ips {
        let macs = ndisc(&site.client_netns(), *ip, "eth0")?;
        let cached = neighbour(&site, *ip)?;
        ndp.push((*ip, macs, cached));
    }
    let restarts = site.api.kubectl_ok(&[
        "-n",
        "ferrolb-system",
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.containerStatuses[0].restartCount} {end}",
    ])?;

    // What the samplers saw: first who answered ARP, and when the owner's
    // gratuitous ARP moved the client...
    let mut samples = Vec::new();
    for (target, probe) in targets.iter().zip(loops) {
        let from = probe.started();
        samples.push((target, from, probe.finish()?));
    }
    watch.abort();
    check_no_violations(&seen)?;
    let mut report = Vec::new();
    let mut problems = Vec::new();
    let mut moved_at = BTreeMap::new();
    for (ip, prober) in probers {
        let claims = prober.stop()?;
        let arp = ArpHandOver::read(&claims, swap, (window_from, window_to));
        let node = site
            .node_with_mac(&arp.owner)
            .map(|i| site.nodes[i].name.clone());
        report.push(format!(
            "{ip}: MetalLB's {} -> FerroLB's {} ({node:?}); longest ARP silence after the swap {:?}; \
             owner's first gratuitous ARP {:?} after the swap; {} requests answered by two MACs during the swap; \
             unsettled in the window at {:?}",
            metallb_macs[&ip],
            arp.owner,
            arp.silence,
            arp.garp.map(|at| at - swap),
            arp.overlaps,
            arp.unsettled
        ));
        if arp.macs.len() != 1 || !arp.unsettled.is_empty() {
            problems.push(format!(
                "{ip}: answered by {:?} in the window, unsettled at {:?}",
                arp.macs, arp.unsettled
            ));
        }
        match arp.garp {
            Some(at) => {
                moved_at.insert(IpAddr::V4(ip), at);
            }
            None => problems.push(format!(
                "{ip}: FerroLB's owner {} sent no gratuitous ARP after the swap",
                arp.owner
            )),
        }
    }
    // ...then the client's requests: none fails in the gap before FerroLB's
    // speakers answer (the client's cached MAC still leads to a node that
    // forwards); a request in flight when the owner's gratuitous ARP moves
    // the client to another node may be reset (its connection's state is on
    // the old node); every request succeeds after settling.
    for (target, from, samples) in &samples {
        let label = &target.label;
        let through = outage(samples);
        let failures: Vec<Duration> = samples
            .iter()
            .filter(|s| !s.ok())
            .map(|s| (*from + s.at).saturating_duration_since(swap))
            .collect();
        let in_window = samples
            .iter()
            .filter(|s| *from + s.at >= window_from && *from + s.at <= window_to);
        let (window_total, window_failed) =
            in_window.fold((0, 0), |(n, f), s| (n + 1, f + usize::from(!s.ok())));
        let moved = moved_at.get(&target.addr.ip()).map(|at| *at - swap);
        report.push(format!(
            "{label}: {} of {} requests failed, at {failures:?} after the swap (owner moved {moved:?} after it), \
             longest gap {:?}; {window_failed} of {window_total} failed in the window",
            through.failed, through.total, through.longest_gap
        ));
        if window_total == 0 || window_failed > 0 {
            problems.push(format!(
                "{label}: {window_failed} failed requests of {window_total} after settling"
            ));
        }
        let explained = |failure: &Duration| {
            moved.is_some_and(|moved| failure.abs_diff(moved) <= Duration::from_millis(1500))
                || (moved.is_none() && failures.len() <= 1)
        };
        if through.longest_gap > MAX_GAP || !failures.iter().all(explained) {
            problems.push(format!(
                "{label}: a client with a cached MAC was not served through the swap: failures at {failures:?} \
                 after the swap, the owner moved {moved:?} after it, longest gap {:?}",
                through.longest_gap
            ));
        }
    }
    for (ip, macs, cached) in &ndp {
        let node = macs.iter().next().and_then(|m| site.node_with_mac(m));
        report.push(format!(
            "{ip}: NDP answered by {macs:?} (node {node:?}); the client caches {:?}",
            cached.trim()
        ));
        let cached_ok = macs.len() == 1
            && macs
                .iter()
                .all(|m| cached.to_ascii_lowercase().contains(m.as_str()));
        if node.is_none() || !cached_ok {
            problems.push(format!(
                "{ip}: NDP answered by {macs:?}, the client caches {:?}",
                cached.trim()
            ));
        }
    }
    report.push(format!("FerroLB's pods and their restarts: {restarts}"));
    let seen = seen.lock().unwrap();
    report.push(format!(
        "the watch saw {} Service events, none with other IPs than MetalLB's; FerroLB owned all {} Services {owned:?} after the swap; test took {:?}",
        seen.events,
        expected.len(),
        started.elapsed()
    ));
    println!("{}", report.join("\n"));
    assert!(
        problems.is_empty(),
        "{}\n\n{}",
        problems.join("\n"),
        report.join("\n")
    );
    Ok(())
}
