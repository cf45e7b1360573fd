//! A BGP test site: the L2 lab's nodes and LAN, plus a router namespace on the
//! LAN (BIRD or GoBGP peering with every node's speaker) and a client
//! namespace behind the router.
//!
//! ```text
//!   client eth0 --- eth1 router eth0 --- lan bridge br0 --- node 0..2 eth0
//! ```
//!
//! Address plan of lab `k` (the L2 lab's index): the router is .(32k+3) and
//! ::3 on the LAN (a second router .(32k+4) and ::4); the BGP pool `bgp` is
//! 203.0.113.(128+8k)/29 and 2001:db8:bb:k::100-2001:db8:bb:k::1ff; the
//! client link is 203.0.113.(192+4k)/30 (router .1, client .2) and
//! 2001:db8:bc:k::/64. Nodes route the client link through the router.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use anyhow::{Context, Result};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::env::wait_for;
use crate::l2lab::{L2Lab, LabShape, attach};
use crate::netns::{Netns, veth};
use crate::router::{Bird, GoBgp, Neighbor, kernel_next_hops};

/// The routers' AS number when they peer by eBGP.
pub const ROUTER_ASN: u32 = 64500;
/// The speakers' AS number.
pub const NODE_ASN: u32 = 64512;

/// A router namespace attached to the lab's LAN.
pub struct Router {
    pub netns: Netns,
    pub ip4: Ipv4Addr,
    pub ip6: Ipv6Addr,
}

/// Fields drop in order: the router daemon first, then the speakers and nodes.
pub struct BgpLab {
    pub bird: Option<Bird>,
    pub lab: L2Lab,
    pub router: Router,
    pub client: Netns,
    pub client_ip4: Ipv4Addr,
}

impl BgpLab {
    /// The L2 lab with 3 nodes, a router and a client behind it, and the pool
    /// `bgp`. No router daemon runs yet: see [`BgpLab::start_bird`].
    pub async fn start(prefix: &str) -> Result<BgpLab> {
        let lab = L2Lab::start(
            prefix,
            LabShape {
                nodes: 3,
                second_lan: false,
                own_cluster: false,
            },
        )
        .await?;
        let k = u32::from(lab.index());
        let router = lan_router(&lab, 3)?;
        router
            .netns
            .exec_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        router
            .netns
            .exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
        let client = Netns::create("bc")?;
        veth(&router.netns, "eth1", &client, "eth0")?;
        let link = u32::from(Ipv4Addr::new(203, 0, 113, 192)) + 4 * k;
        let router_side = Ipv4Addr::from(link + 1);
        let client_ip4 = Ipv4Addr::from(link + 2);
        router
            .netns
            .ip(&["addr", "add", &format!("{router_side}/30"), "dev", "eth1"])?;
        router.netns.ip(&[
            "addr",
            "add",
            &format!("2001:db8:bc:{k:x}::1/64"),
            "dev",
            "eth1",
        ])?;
        client.ip(&["addr", "add", &format!("{client_ip4}/30"), "dev", "eth0"])?;
        client.ip(&[
            "addr",
            "add",
            &format!("2001:db8:bc:{k:x}::2/64"),
            "dev",
            "eth0",
        ])?;
        client.ip(&["route", "add", "default", "via", &router_side.to_string()])?;
        client.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("2001:db8:bc:{k:x}::1"),
        ])?;
        for node in &lab.nodes {
            node.netns.ip(&[
                "route",
                "add",
                &format!("{}/30", Ipv4Addr::from(link)),
                "via",
                &router.ip4.to_string(),
            ])?;
            node.netns.ip(&[
                "-6",
                "route",
                "add",
                &format!("2001:db8:bc:{k:x}::/64"),
                "via",
                &router.ip6.to_string(),
            ])?;
        }
        for i in 0..lab.nodes.len() {
            set_dual_stack_addresses(&lab, i).await?;
        }
        let bgp_lab = BgpLab {
            lab,
            router,
            client,
            client_ip4,
            bird: None,
        };
        bgp_lab
            .lab
            .scenario
            .pool(
                "bgp",
                json!({"addresses": [bgp_lab.pool_v4(), bgp_lab.pool_v6()], "autoAssign": false}),
            )
            .await?;
        Ok(bgp_lab)
    }

    pub fn pool_v4(&self) -> String {
        format!("203.0.113.{}/29", 128 + 8 * u32::from(self.lab.index()))
    }

    pub fn pool_v6(&self) -> String {
        let k = self.lab.index();
        format!("2001:db8:bb:{k:x}::100-2001:db8:bb:{k:x}::1ff")
    }

    /// A second router namespace on the LAN (for another router implementation).
    pub fn second_router(&self) -> Result<Router> {
        lan_router(&self.lab, 4)
    }

    /// The nodes as neighbors of a router, all in AS `node_asn`.
    pub fn neighbors(&self, node_asn: u32, password: Option<&str>) -> Vec<Neighbor> {
        self.lab
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| Neighbor {
                name: format!("n{i}"),
                address: IpAddr::V4(node.ip4),
                asn: node_asn,
                password: password.map(str::to_string),
            })
            .collect()
    }

    /// Starts BIRD in the router namespace, in AS `asn`, peering with every node.
    pub fn start_bird(&mut self, asn: u32, password: Option<&str>) -> Result<()> {
        let neighbors = self.neighbors(NODE_ASN, password);
        let bird = Bird::start(
            &self.router.netns,
            &self.lab.scenario.cluster.dir,
            asn,
            &self.router.ip4.to_string(),
            &neighbors,
        )?;
        self.bird = Some(bird);
        Ok(())
    }

    /// GoBGP in `router`, in AS [`ROUTER_ASN`], peering with every node.
    pub fn start_gobgp(&self, router: &Router, password: Option<&str>) -> Result<GoBgp> {
        GoBgp::start(
            &router.netns,
            &self.lab.scenario.cluster.dir,
            ROUTER_ASN,
            &router.ip4.to_string(),
            &self.neighbors(NODE_ASN, password),
        )
    }

    pub fn bird(&self) -> Result<&Bird> {
        self.bird.as_ref().context("BIRD is not running")
    }

    /// Creates a BGPPeer (server-side apply of `spec`).
    pub async fn peer(&self, name: &str, spec: Value) -> Result<()> {
        apply_object::<ferrolb_crds::BGPPeer>(&self.lab, "BGPPeer", name, spec).await
    }

    /// The usual peer to `router`: eBGP, 3 s hold time, 1 s connect time.
    pub fn peer_spec(router: &Router, peer_asn: u32) -> Value {
        json!({
            "peerAddress": router.ip4.to_string(),
            "peerASN": peer_asn,
            "myASN": NODE_ASN,
            "holdTime": "3s",
            "connectTime": "1s",
        })
    }

    pub async fn advertise(&self, name: &str, spec: Value) -> Result<()> {
        apply_object::<ferrolb_crds::BGPAdvertisement>(&self.lab, "BGPAdvertisement", name, spec)
            .await
    }

    pub async fn community(&self, name: &str, spec: Value) -> Result<()> {
        apply_object::<ferrolb_crds::Community>(&self.lab, "Community", name, spec).await
    }

    /// A Service from the `bgp` pool with `extra` merged in; waits for `count` IPs.
    pub async fn service(&self, name: &str, extra: Value, count: usize) -> Result<Vec<IpAddr>> {
        let mut body = json!({"metadata": {"annotations": {"ferrolb.io/address-pool": "bgp"}}});
        crate::scenario::merge(&mut body, extra);
        self.lab.service(name, body, count).await
    }

    /// The node IPs of `nodes`, in the family of `ip`, sorted.
    pub fn hops(&self, nodes: &[usize], ip: IpAddr) -> Vec<IpAddr> {
        let mut hops: Vec<IpAddr> = nodes
            .iter()
            .map(|&i| match ip {
                IpAddr::V4(_) => IpAddr::V4(self.lab.nodes[i].ip4),
                IpAddr::V6(_) => IpAddr::V6(self.lab.nodes[i].ip6),
            })
            .collect();
        hops.sort();
        hops
    }

    /// Waits until the router's kernel route to `ip` has exactly the next hops of
    /// `nodes` (none: no route). Returns how long that took.
    pub async fn wait_next_hops(
        &self,
        ip: IpAddr,
        nodes: &[usize],
        timeout: Duration,
    ) -> Result<Duration> {
        let prefix = match ip {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        let expected = self.hops(nodes, ip);
        let started = std::time::Instant::now();
        let result = wait_for(
            &format!("next hops {expected:?} for {prefix} in the router's kernel"),
            timeout,
            || async {
                let hops = kernel_next_hops(&self.router.netns, &prefix).ok()?;
                (hops == expected).then_some(())
            },
        )
        .await;
        if let Err(error) = result {
            let now = kernel_next_hops(&self.router.netns, &prefix).unwrap_or_default();
            let bird = self
                .bird
                .as_ref()
                .and_then(|b| b.birdc(&["show", "protocols"]).ok())
                .unwrap_or_default();
            // The speakers whose next hop is missing say why in their logs.
            let mut logs = String::new();
            for (i, node) in self.lab.nodes.iter().enumerate() {
                let hop = self.hops(&[i], ip);
                if nodes.contains(&i) && !hop.iter().all(|h| now.contains(h)) {
                    let log = self.lab.speaker_logs(i);
                    let tail: Vec<&str> = without_backtrace(&log).lines().rev().take(40).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    logs.push_str(&format!(
                        "\n--- speaker log {} (last 40 lines, a final backtrace left out) ---\n{}",
                        node.name,
                        tail.join("\n")
                    ));
                }
            }
            return Err(error.context(format!("kernel has {now:?}; BIRD protocols:\n{bird}{logs}")));
        }
        Ok(started.elapsed())
    }
}

/// `log` without the backtrace a speaker that exited with an error prints after
/// the error and its causes (40 lines of frames would hide them).
fn without_backtrace(log: &str) -> &str {
    log.rsplit_once("\nStack backtrace:")
        .map_or(log, |(before, _)| before)
}

/// Server-side applies the FerroLB object `name` of `kind` with `spec` in the lab's namespace.
pub async fn apply_object<K>(lab: &L2Lab, kind: &str, name: &str, spec: Value) -> Result<()>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(lab.scenario.client.clone(), &lab.scenario.ns.name);
    api.patch(
        name,
        &PatchParams::apply("ferrolb-tests").force(),
        &Patch::Apply(json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": kind,
            "metadata": {"name": name}, "spec": spec,
        })),
    )
    .await?;
    Ok(())
}

/// A router namespace on the lab's LAN at host `host` of the lab's /27 (and ::`host`).
pub fn lan_router(lab: &L2Lab, host: u32) -> Result<Router> {
    let k = u32::from(lab.index());
    let netns = Netns::create(&format!("r{host}"))?;
    attach(lab.lan(), "br0", &netns, "eth0")?;
    let ip4 = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 51, 100, 0)) + 32 * k + host);
    let ip6: Ipv6Addr = format!("2001:db8:5100:{k:x}::{host:x}").parse()?;
    netns.ip(&["addr", "add", &format!("{ip4}/27"), "dev", "eth0"])?;
    netns.ip(&["addr", "add", &format!("{ip6}/64"), "dev", "eth0"])?;
    Ok(Router { netns, ip4, ip6 })
}

/// Node `i` Ready with both its InternalIPs (the L2 lab writes only the IPv4 one):
/// speakers use the IPv6 one as next hop of IPv6 routes over IPv4 sessions.
async fn set_dual_stack_addresses(lab: &L2Lab, i: usize) -> Result<()> {
    let node = &lab.nodes[i];
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(lab.scenario.client.clone());
    // A merge patch: server-side apply keys addresses by type, so it cannot hold two
    // InternalIPs (a known limit of the Node schema).
    api.patch_status(
        &node.name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": node.ip4.to_string()},
                    {"type": "InternalIP", "address": node.ip6.to_string()},
                ],
            },
        })),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::without_backtrace;

    #[test]
    fn a_final_backtrace_is_cut_and_the_error_kept() {
        let log = "INFO starting\nError: starting the gossip membership\n\nCaused by:\n    0: binding\n\nStack backtrace:\n   0: anyhow::msg\n             at src/lib.rs:1:1\n";
        assert_eq!(
            without_backtrace(log),
            "INFO starting\nError: starting the gossip membership\n\nCaused by:\n    0: binding\n"
        );
        assert_eq!(without_backtrace("INFO starting\n"), "INFO starting\n");
    }
}
