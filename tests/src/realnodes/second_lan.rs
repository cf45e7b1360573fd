//! A second LAN for the real-node site ([`super::RealClusterShape::second_lan`]):
//! a bridge `br1` in the LAN namespace, with an `eth1` on every node and on
//! the client, for L2Advertisements that name an interface
//! (`interfaces: ["eth1"]`).
//!
//! ```text
//!        lan namespace: bridge br1 (203.0.113.128/26, 2001:db8:200::/64)
//!        /              |              |              \
//!   client .131     node-0 .140    node-1 .141    node-2 .142 ...
//! ```
//!
//! 203.0.113.0/25 is the network behind the router and 203.0.113.240/28 the
//! BGP pool, so this LAN takes 203.0.113.128/26; its pool is
//! [`SECOND_LAN_POOL_V4`]. No address of the site's other networks falls in
//! it, and the node's default route (via the router on eth0) never carries
//! it: it is on-link on eth1. The speaker's default interface exclusion
//! skips the CNI bridge (`cni0`) and the pods' veths, not `eth1`.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Result;

use super::{RealCluster, RealNode, borrowed};
use crate::l2lab::attach;
use crate::netns::Netns;

/// The second LAN's IPv4 subnet and prefix length.
pub const SECOND_LAN4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 128);
pub const SECOND_LAN4_LEN: u8 = 26;
/// The second LAN's IPv6 prefix (a /64).
pub const SECOND_LAN6: &str = "2001:db8:200:";
/// The LAN client's address on its eth1.
pub const SECOND_LAN_CLIENT_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 131);
/// Addresses of the second LAN free for a pool (no host has one).
pub const SECOND_LAN_POOL_V4: &str = "203.0.113.160-203.0.113.170";

/// Node `i`'s IPv4 address on eth1: .140 + i.
pub fn node_ip4(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(SECOND_LAN4) + 12 + i as u32)
}

/// Node `i`'s IPv6 address on eth1.
pub fn node_ip6(i: usize) -> Result<Ipv6Addr> {
    Ok(format!("{SECOND_LAN6}:{:x}", 0x10 + i).parse()?)
}

/// Builds the second LAN: `br1` in `lan`, and an `eth1` on it for the client
/// and for each node namespace in `nodes` (node `i` at index `i`).
pub(super) fn build(lan: &Netns, client: &str, nodes: &[String]) -> Result<()> {
    lan.ip(&["link", "add", "br1", "type", "bridge"])?;
    lan.ip(&["link", "set", "br1", "up"])?;
    join(
        lan,
        client,
        SECOND_LAN_CLIENT_IP,
        &format!("{SECOND_LAN6}:3"),
    )?;
    for (i, node) in nodes.iter().enumerate() {
        join(lan, node, node_ip4(i), &node_ip6(i)?.to_string())?;
    }
    Ok(())
}

/// `netns` on `br1` as eth1 with `ip4` and `ip6`; its IPv6 address survives
/// the link going down and up (as eth0's does, see `prepare_network`).
fn join(lan: &Netns, netns: &str, ip4: Ipv4Addr, ip6: &str) -> Result<()> {
    let netns = borrowed(netns);
    attach(lan, "br1", &netns, "eth1")?;
    netns.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.eth1.keep_addr_on_down=1"])?;
    netns.ip(&[
        "addr",
        "add",
        &format!("{ip4}/{SECOND_LAN4_LEN}"),
        "dev",
        "eth1",
    ])?;
    netns.ip(&["addr", "add", &format!("{ip6}/64"), "dev", "eth1"])?;
    Ok(())
}

impl RealNode {
    /// MAC of the node's eth1 on the second LAN.
    pub fn mac_eth1(&self) -> Result<String> {
        borrowed(&self.netns).mac("eth1")
    }
}

impl RealCluster {
    /// Index of the node whose eth1 has `mac`.
    pub fn node_with_eth1_mac(&self, mac: &str) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.mac_eth1().is_ok_and(|m| m.eq_ignore_ascii_case(mac)))
    }

    /// Node `i`'s eth1 goes down (the second LAN's cable pulled); eth0, and
    /// gossip over it, stay up.
    pub fn cut_second_lan(&self, i: usize) -> Result<()> {
        self.nodes[i].ip(&["link", "set", "eth1", "down"])?;
        Ok(())
    }

    /// Undoes [`RealCluster::cut_second_lan`] (idempotent).
    pub fn restore_second_lan(&self, i: usize) -> Result<()> {
        self.nodes[i].ip(&["link", "set", "eth1", "up"])?;
        Ok(())
    }
}
