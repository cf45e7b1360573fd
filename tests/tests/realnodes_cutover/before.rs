//! Before the cut-over: MetalLB's configuration and Services, and MetalLB
//! serving them to the LAN client.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use ferrolb_tests::l2lab::macs_in;
use ferrolb_tests::metallb::NAMESPACE as METALLB_NS;
use ferrolb_tests::realnodes::apps::NS;
use ferrolb_tests::realnodes::http_probe::get_from;
use ferrolb_tests::realnodes::{RealCluster, until};

use crate::{APP, GOLD_POOL_V4, LAN_POOL_V4, LAN_POOL_V6, REQUESTED_IP};

pub fn metallb_config() -> Vec<Value> {
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
pub fn service(name: &str, annotations: Value, port: u16, dual: bool) -> Value {
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
pub fn in_range(ip: IpAddr, range: &str) -> bool {
    let (from, to) = range.split_once('-').unwrap();
    let (from, to): (IpAddr, IpAddr) = (from.parse().unwrap(), to.parse().unwrap());
    from <= ip && ip <= to && from.is_ipv4() == ip.is_ipv4()
}

/// Waits until a GET from the client to `target` succeeds.
pub fn wait_served(site: &RealCluster, target: SocketAddr) -> Result<()> {
    until(
        &format!("{target} answering the client"),
        Duration::from_secs(90),
        Duration::from_millis(200),
        || Ok(get_from(&site.client, target, Duration::from_secs(2)).ok()),
    )
    .map(|_| ())
}

/// The client's neighbour cache entry for `ip` on its LAN.
pub fn neighbour(site: &RealCluster, ip: Ipv6Addr) -> Result<String> {
    site.client_netns()
        .exec_ok(&["ip", "-6", "neigh", "show", &ip.to_string(), "dev", "eth0"])
}

/// Each Service's IPs, by `namespace/name`.
pub type Assigned = BTreeMap<String, Vec<String>>;

/// One HTTP target the client requests throughout.
pub struct Target {
    pub label: String,
    pub addr: SocketAddr,
}

impl Target {
    pub fn v4(&self) -> Option<Ipv4Addr> {
        match self.addr.ip() {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        }
    }

    pub fn v6(&self) -> Option<Ipv6Addr> {
        match self.addr.ip() {
            IpAddr::V6(ip) => Some(ip),
            IpAddr::V4(_) => None,
        }
    }
}

/// MetalLB, installed as its users install it, with its configuration and
/// the echo Services; waits until the client is served through every IP
/// (ARP and NDP resolved by MetalLB's speakers). Returns each Service's IPs
/// by `namespace/name`, and the targets the client requests.
pub fn metallb_serves(site: &RealCluster, say: &dyn Fn(&str)) -> Result<(Assigned, Vec<Target>)> {
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
        expected.insert(format!("{NS}/{name}"), site.ingress_now(&name, NS)?);
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
        wait_served(site, target.addr)?;
    }
    let v6_ips: Vec<Ipv6Addr> = targets.iter().filter_map(Target::v6).collect();
    // The client resolved each IPv6 address by NDP: its neighbour cache
    // names a node. (ndisc6's own solicitations got no answer from MetalLB's
    // speaker here; the kernel's do.)
    for ip in &v6_ips {
        let cached = neighbour(site, *ip)?;
        let node = macs_in(&cached).iter().find_map(|m| site.node_with_mac(m));
        assert!(
            node.is_some(),
            "the client resolved {ip} to a node's MAC: {cached:?}"
        );
    }
    say("MetalLB's speakers serve every IP to the client and answer ARP and NDP");
    Ok((expected, targets))
}
