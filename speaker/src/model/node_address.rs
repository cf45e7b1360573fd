//! Which of a Node's `status.addresses` the speaker uses, and for what.
//!
//! * Gossip: the first InternalIP, in the order the kubelet lists them (its
//!   primary family first on a dual-stack node). No ExternalIP fallback: the
//!   speakers talk to each other inside the cluster.
//! * BGP: every InternalIP, then every ExternalIP, IPv4 before IPv6 within each
//!   type. The plan takes its router ID and its other-family next hop as the
//!   first address of the family it needs, so an InternalIP of that family wins,
//!   and an ExternalIP serves when the node has no InternalIP of it.
//!
//! Entries that do not parse as an IP address are skipped; types other than
//! InternalIP and ExternalIP (Hostname, InternalDNS, ...) are ignored.
//!
//! The gossip peers follow from the same rule: every other node with a gossip
//! address is contacted, and a joining speaker waits for the Ready ones.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Node, NodeAddress};

const INTERNAL_IP: &str = "InternalIP";
const EXTERNAL_IP: &str = "ExternalIP";

/// Why a Node offers no address to gossip from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeAddressError {
    /// The Node's status has no InternalIP address.
    #[error("the Node lists no InternalIP")]
    NoInternalIp,
    /// The Node's InternalIP does not parse; holds it as written.
    #[error("the Node's InternalIP {0:?} is not an IP address")]
    GarbledInternalIp(String),
}

/// The address other speakers reach this node's speaker at.
pub fn gossip_address(node: &Node) -> Result<IpAddr, NodeAddressError> {
    let mut garbled = None;
    for address in addresses_of(node).filter(|a| a.type_ == INTERNAL_IP) {
        match address.address.parse() {
            Ok(ip) => return Ok(ip),
            Err(_) => {
                garbled.get_or_insert_with(|| address.address.clone());
            }
        }
    }
    Err(garbled.map_or(
        NodeAddressError::NoInternalIp,
        NodeAddressError::GarbledInternalIp,
    ))
}

/// The node's own addresses for BGP (router ID, next hops), best first.
pub fn bgp_addresses(node: &Node) -> Vec<IpAddr> {
    let mut ranked: Vec<(u8, IpAddr)> = addresses_of(node)
        .filter_map(|address| {
            let rank = match address.type_.as_str() {
                INTERNAL_IP => 0,
                EXTERNAL_IP => 1,
                _ => return None,
            };
            Some((rank, address.address.parse().ok()?))
        })
        .collect();
    // Stable: the kubelet's order is kept among addresses of one type and family.
    ranked.sort_by_key(|(rank, ip)| (*rank, ip.is_ipv6()));
    ranked.into_iter().map(|(_, ip)| ip).collect()
}

/// Gossip addresses of every node but `own`, at the gossip `port`.
pub fn peer_addresses<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own: &str,
    port: u16,
) -> Vec<SocketAddr> {
    nodes
        .into_iter()
        .filter(|node| node.metadata.name.as_deref() != Some(own))
        .filter_map(|node| gossip_address(node).ok())
        .map(|ip| SocketAddr::new(ip, port))
        .collect()
}

/// The other nodes a joining speaker waits to hear from: Ready ones it can
/// reach. A NotReady node's speaker may well be down, and one without a gossip
/// address cannot answer, so waiting for them would only delay the start.
pub fn expected_peers<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own: &str,
) -> BTreeSet<String> {
    nodes
        .into_iter()
        .filter(|node| has_condition(node, "Ready") && gossip_address(node).is_ok())
        .filter_map(|node| node.metadata.name.clone())
        .filter(|name| name != own)
        .collect()
}

/// Whether the Node reports condition `type_` with status `True`.
pub fn has_condition(node: &Node, type_: &str) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|condition| condition.type_ == type_ && condition.status == "True")
}

fn addresses_of(node: &Node) -> impl Iterator<Item = &NodeAddress> {
    node.status
        .as_ref()
        .and_then(|status| status.addresses.as_ref())
        .into_iter()
        .flatten()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    use super::*;
    use crate::model::fixtures::ip;

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(type_, address)| NodeAddress {
                            type_: type_.to_string(),
                            address: address.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ips(texts: &[&str]) -> Vec<IpAddr> {
        texts.iter().map(|t| ip(t)).collect()
    }

    #[test]
    fn gossip_prefers_the_internal_ip_wherever_it_is_listed() {
        let n = node(&[
            ("Hostname", "node-a"),
            ("ExternalIP", "203.0.113.7"),
            ("InternalIP", "10.0.0.7"),
        ]);
        assert_eq!(gossip_address(&n), Ok(ip("10.0.0.7")));
    }

    #[test]
    fn gossip_on_dual_stack_takes_the_family_listed_first() {
        let v4_first = node(&[("InternalIP", "10.0.0.7"), ("InternalIP", "fd00::7")]);
        let v6_first = node(&[("InternalIP", "fd00::7"), ("InternalIP", "10.0.0.7")]);
        assert_eq!(gossip_address(&v4_first), Ok(ip("10.0.0.7")));
        assert_eq!(gossip_address(&v6_first), Ok(ip("fd00::7")));
    }

    #[test]
    fn gossip_has_no_external_ip_fallback() {
        let n = node(&[("ExternalIP", "203.0.113.7")]);
        assert_eq!(gossip_address(&n), Err(NodeAddressError::NoInternalIp));
    }

    fn without_addresses() -> [Node; 3] {
        let no_list = Node {
            status: Some(NodeStatus::default()),
            ..Default::default()
        };
        [Node::default(), no_list, node(&[])]
    }

    #[test]
    fn gossip_without_status_or_addresses_is_an_error() {
        for n in without_addresses() {
            assert_eq!(gossip_address(&n), Err(NodeAddressError::NoInternalIp));
        }
    }

    #[test]
    fn gossip_skips_a_garbled_internal_ip_and_names_it_when_none_parses() {
        let one_good = node(&[("InternalIP", "10.0.0.300"), ("InternalIP", "10.0.0.7")]);
        assert_eq!(gossip_address(&one_good), Ok(ip("10.0.0.7")));
        let none_good = node(&[("InternalIP", "node-a.local"), ("InternalIP", "")]);
        assert_eq!(
            gossip_address(&none_good),
            Err(NodeAddressError::GarbledInternalIp("node-a.local".into()))
        );
    }

    #[test]
    fn bgp_ranks_internal_before_external_and_ipv4_before_ipv6() {
        let n = node(&[
            ("ExternalIP", "2001:db8::7"),
            ("InternalIP", "fd00::7"),
            ("ExternalIP", "203.0.113.7"),
            ("Hostname", "node-a"),
            ("InternalIP", "10.0.0.7"),
        ]);
        assert_eq!(
            bgp_addresses(&n),
            ips(&["10.0.0.7", "fd00::7", "203.0.113.7", "2001:db8::7"])
        );
    }

    #[test]
    fn bgp_per_family_pick_falls_back_to_the_external_ip_of_that_family() {
        // IPv4 only as an InternalIP, IPv6 only as an ExternalIP.
        let n = node(&[("ExternalIP", "2001:db8::7"), ("InternalIP", "10.0.0.7")]);
        let addresses = bgp_addresses(&n);
        let first_v6 = addresses.iter().find(|a| a.is_ipv6());
        assert_eq!(first_v6, Some(&ip("2001:db8::7")));
        let only_external = node(&[("ExternalIP", "203.0.113.7")]);
        assert_eq!(bgp_addresses(&only_external), ips(&["203.0.113.7"]));
    }

    #[test]
    fn bgp_keeps_the_listed_order_within_a_type_and_family() {
        let n = node(&[("InternalIP", "10.0.0.9"), ("InternalIP", "10.0.0.7")]);
        assert_eq!(bgp_addresses(&n), ips(&["10.0.0.9", "10.0.0.7"]));
    }

    #[test]
    fn bgp_drops_garbled_addresses_and_tolerates_a_missing_status() {
        let n = node(&[("InternalIP", "not-an-ip"), ("ExternalIP", "203.0.113.7")]);
        assert_eq!(bgp_addresses(&n), ips(&["203.0.113.7"]));
        for n in without_addresses() {
            assert!(bgp_addresses(&n).is_empty());
        }
    }

    /// A named node with one InternalIP (when given) and a Ready condition.
    fn peer(name: &str, internal_ip: Option<&str>, ready: &str) -> Node {
        let mut n = node(
            &internal_ip
                .map(|a| ("InternalIP", a))
                .into_iter()
                .collect::<Vec<_>>(),
        );
        n.metadata.name = Some(name.into());
        if let Some(status) = n.status.as_mut() {
            status.conditions = Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: ready.into(),
                ..Default::default()
            }]);
        }
        n
    }

    #[test]
    fn peers_are_the_other_nodes_with_a_gossip_address() {
        let nodes = [
            peer("self", Some("198.51.100.10"), "True"),
            peer("a", Some("198.51.100.11"), "True"),
            peer("down", Some("2001:db8:100::12"), "False"),
            peer("mute", None, "True"),
        ];
        let expected: Vec<SocketAddr> = ["198.51.100.11:7946", "[2001:db8:100::12]:7946"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        assert_eq!(peer_addresses(&nodes, "self", 7946), expected);
    }

    #[test]
    fn a_joining_speaker_waits_only_for_ready_reachable_peers() {
        let nodes = [
            peer("self", Some("198.51.100.10"), "True"),
            peer("a", Some("198.51.100.11"), "True"),
            peer("down", Some("198.51.100.12"), "False"),
            peer("unknown", Some("198.51.100.13"), "Unknown"),
            peer("mute", None, "True"),
            peer("garbled", Some("not-an-ip"), "True"),
        ];
        assert_eq!(
            expected_peers(&nodes, "self"),
            BTreeSet::from(["a".to_string()])
        );
    }

    #[test]
    fn conditions_count_only_when_true() {
        assert!(has_condition(&peer("n", None, "True"), "Ready"));
        assert!(!has_condition(&peer("n", None, "False"), "Ready"));
        assert!(!has_condition(
            &peer("n", None, "True"),
            "NetworkUnavailable"
        ));
        assert!(!has_condition(&Node::default(), "Ready"));
    }
}
