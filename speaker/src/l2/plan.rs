//! The decisions of L2 mode, as pure functions: which IPs each interface
//! announces, and whether a received ARP request or Neighbor Solicitation
//! gets an answer (and which).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use super::MacAddr;
use super::arp::{ArpFrame, ArpOperation};
use super::interfaces::{ExcludePatterns, InterfaceInfo, capability, suitability};
use super::ndp::{ALL_NODES, NeighborAdvertisement, NeighborSolicitation, REQUIRED_HOP_LIMIT};

/// On which interfaces an IP is announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceFilter {
    /// Every interface that passes [`suitability`] (state, capability and
    /// the exclude patterns).
    AllSuitable,
    /// Exactly these interfaces, where they exist and can carry ARP/NDP
    /// ([`capability`]); the exclude patterns do not apply to a name the
    /// user wrote down.
    Named(BTreeSet<String>),
}

/// Which IPs each interface announces. Interfaces with nothing to announce
/// are left out, so the shell opens sockets only where they are needed.
pub fn assign(
    desired: &BTreeMap<IpAddr, InterfaceFilter>,
    interfaces: &[InterfaceInfo],
    exclude: &ExcludePatterns,
) -> BTreeMap<String, BTreeSet<IpAddr>> {
    let mut plan: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
    for interface in interfaces {
        let fit = Fit::of(interface, exclude);
        // Collected per interface (sorted, so built in bulk), its name cloned
        // once rather than once per IP.
        let here: BTreeSet<IpAddr> = desired
            .iter()
            .filter(|(_, filter)| fit.takes(filter))
            .map(|(ip, _)| *ip)
            .collect();
        if !here.is_empty() {
            plan.entry(interface.name.clone()).or_default().extend(here);
        }
    }
    plan
}

/// What [`assign`] needs to know of one interface to place an IP on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fit {
    /// The interface's name.
    pub name: String,
    /// It passes [`suitability`]: [`InterfaceFilter::AllSuitable`] IPs go on it.
    pub all_suitable: bool,
    /// It passes [`capability`]: IPs that name it go on it.
    pub capable: bool,
}

impl Fit {
    /// `interface` judged with the exclude patterns.
    pub fn of(interface: &InterfaceInfo, exclude: &ExcludePatterns) -> Fit {
        Fit {
            name: interface.name.clone(),
            all_suitable: suitability(interface, exclude).is_ok(),
            capable: capability(interface).is_ok(),
        }
    }

    /// Whether an IP with `filter` goes on this interface.
    pub fn takes(&self, filter: &InterfaceFilter) -> bool {
        match filter {
            InterfaceFilter::AllSuitable => self.all_suitable,
            InterfaceFilter::Named(names) => self.capable && names.contains(&self.name),
        }
    }
}

/// What one interface answers for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership {
    /// IPs announced on this interface.
    pub here: BTreeSet<IpAddr>,
    /// IPs this node announces on other interfaces only (none of `here`);
    /// only used to tell "not ours" from "ours, but not on this interface".
    /// Empty on a node announcing on one interface: a superset of `here` held
    /// every IP a second time in each interface task.
    pub elsewhere: BTreeSet<IpAddr>,
    /// What the wire arbitration needs to know of the gossip group.
    pub group: GroupView,
}

/// What the speaker knows of its gossip group that the wire arbitration needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupView {
    /// Whether IPs gained are probed before they are claimed (see
    /// [`super::arbiter::Arbiter::want`] and `model::probe_first`).
    pub probe_first: bool,
    /// How many times a node joined or rejoined the group. When it grows
    /// (a partition healed, a node came back), owners announce their IPs
    /// again, so neighbour caches that the partition left pointing at
    /// another node converge on the final owner.
    pub joins: u64,
}

/// Whether an interface answers for an IP, and why not.
pub trait Answers {
    /// `Ok` when the IP is answered here, else why not ([`IgnoreReason::WrongInterface`]
    /// or [`IgnoreReason::NotOurs`]).
    fn check(&self, ip: IpAddr) -> Result<(), IgnoreReason>;
}

impl Answers for Ownership {
    fn check(&self, ip: IpAddr) -> Result<(), IgnoreReason> {
        if self.here.contains(&ip) {
            Ok(())
        } else if self.elsewhere.contains(&ip) {
            Err(IgnoreReason::WrongInterface)
        } else {
            Err(IgnoreReason::NotOurs)
        }
    }
}

/// Why a received packet got no answer. [`IgnoreReason::label`] is the
/// `reason` label of `ferrolb_speaker_l2_ignored_packets_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IgnoreReason {
    /// Could not be parsed or failed validation.
    Malformed,
    /// A reply, or an announcement by another host: nothing was asked.
    NotARequest,
    /// Our own transmission, looped back or echoed by a switch.
    OwnPacket,
    /// Asks for an address this node does not announce.
    NotOurs,
    /// Asks for an address this node announces, but on another interface.
    WrongInterface,
    /// A Neighbor Solicitation or Advertisement not received with hop limit 255.
    BadHopLimit,
}

impl IgnoreReason {
    /// The reason as a metrics label value, snake_case.
    pub fn label(self) -> &'static str {
        match self {
            IgnoreReason::Malformed => "malformed",
            IgnoreReason::NotARequest => "not_request",
            IgnoreReason::OwnPacket => "own_packet",
            IgnoreReason::NotOurs => "not_ours",
            IgnoreReason::WrongInterface => "wrong_interface",
            IgnoreReason::BadHopLimit => "bad_hop_limit",
        }
    }
}

/// The reply to an ARP request, if it deserves one.
pub fn answer_arp(
    request: &ArpFrame,
    our_mac: MacAddr,
    ownership: &impl Answers,
) -> Result<ArpFrame, IgnoreReason> {
    if request.sender_mac == our_mac || request.ethernet_source == our_mac {
        return Err(IgnoreReason::OwnPacket);
    }
    if request.operation != ArpOperation::Request || request.is_announcement() {
        return Err(IgnoreReason::NotARequest);
    }
    ownership.check(IpAddr::V4(request.target_ip))?;
    Ok(ArpFrame::reply_to(request, our_mac))
}

/// The Neighbor Advertisement answering `solicitation`, with its IPv6
/// destination, if it deserves one. `hop_limit` is the IPv6 header's.
pub fn answer_neighbor_solicitation(
    solicitation: &NeighborSolicitation,
    hop_limit: u8,
    our_mac: MacAddr,
    ownership: &impl Answers,
) -> Result<(Ipv6Addr, NeighborAdvertisement), IgnoreReason> {
    if hop_limit != REQUIRED_HOP_LIMIT {
        return Err(IgnoreReason::BadHopLimit);
    }
    if solicitation.source_link_layer == Some(our_mac) {
        return Err(IgnoreReason::OwnPacket);
    }
    ownership.check(IpAddr::V6(solicitation.target))?;
    if solicitation.is_duplicate_address_detection() {
        // RFC 4861 section 7.2.4: answer a DAD probe to all nodes, unsolicited.
        Ok((
            ALL_NODES,
            NeighborAdvertisement::unsolicited(solicitation.target, our_mac),
        ))
    } else {
        Ok((
            solicitation.source,
            NeighborAdvertisement::solicited(solicitation.target, our_mac),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    const THEIRS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn interface(name: &str, index: u32) -> InterfaceInfo {
        InterfaceInfo {
            name: name.to_owned(),
            index,
            up: true,
            running: true,
            broadcast: true,
            loopback: false,
            bridge_port: false,
            mac: Some(MacAddr([0x02, 0, 0, 0, 0, index as u8])),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn all_suitable_goes_everywhere_the_defaults_allow() {
        let interfaces = [
            interface("eth0", 2),
            interface("eth1", 3),
            interface("veth9", 4),
        ];
        let desired = BTreeMap::from([(ip("198.51.100.77"), InterfaceFilter::AllSuitable)]);
        let plan = assign(&desired, &interfaces, &ExcludePatterns::defaults());
        assert_eq!(
            plan,
            BTreeMap::from([
                ("eth0".to_owned(), BTreeSet::from([ip("198.51.100.77")])),
                ("eth1".to_owned(), BTreeSet::from([ip("198.51.100.77")])),
            ])
        );
    }

    #[test]
    fn named_interfaces_bypass_the_exclude_list_but_not_capability() {
        let mut down = interface("eth1", 3);
        down.up = false;
        let interfaces = [interface("eth0", 2), down, interface("veth9", 4)];
        let desired = BTreeMap::from([
            (
                ip("2001:db8::77"),
                InterfaceFilter::Named(names(&["veth9", "eth1", "missing0"])),
            ),
            (ip("198.51.100.77"), InterfaceFilter::AllSuitable),
        ]);
        let plan = assign(&desired, &interfaces, &ExcludePatterns::defaults());
        assert_eq!(
            plan,
            BTreeMap::from([
                ("eth0".to_owned(), BTreeSet::from([ip("198.51.100.77")])),
                ("veth9".to_owned(), BTreeSet::from([ip("2001:db8::77")])),
            ])
        );
    }

    #[test]
    fn nothing_desired_means_no_interface_is_used() {
        let plan = assign(
            &BTreeMap::new(),
            &[interface("eth0", 2)],
            &ExcludePatterns::defaults(),
        );
        assert!(plan.is_empty());
    }

    fn ownership() -> Ownership {
        Ownership {
            here: BTreeSet::from([ip("198.51.100.77"), ip("2001:db8::77")]),
            elsewhere: BTreeSet::from([ip("198.51.100.78"), ip("2001:db8::78")]),
            group: GroupView::default(),
        }
    }

    fn who_has(target: [u8; 4]) -> ArpFrame {
        ArpFrame {
            ethernet_destination: MacAddr::BROADCAST,
            ethernet_source: THEIRS,
            operation: ArpOperation::Request,
            sender_mac: THEIRS,
            sender_ip: Ipv4Addr::new(198, 51, 100, 2),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::from(target),
        }
    }

    #[test]
    fn answers_arp_only_for_our_addresses_on_this_interface() {
        let reply = answer_arp(&who_has([198, 51, 100, 77]), OURS, &ownership()).unwrap();
        assert_eq!(
            reply,
            ArpFrame::reply_to(&who_has([198, 51, 100, 77]), OURS)
        );
        assert_eq!(
            answer_arp(&who_has([198, 51, 100, 78]), OURS, &ownership()),
            Err(IgnoreReason::WrongInterface)
        );
        assert_eq!(
            answer_arp(&who_has([198, 51, 100, 79]), OURS, &ownership()),
            Err(IgnoreReason::NotOurs)
        );
    }

    #[test]
    fn arp_replies_announcements_and_our_own_frames_are_not_answered() {
        let mut reply = who_has([198, 51, 100, 77]);
        reply.operation = ArpOperation::Reply;
        assert_eq!(
            answer_arp(&reply, OURS, &ownership()),
            Err(IgnoreReason::NotARequest)
        );

        let other_host_announces = ArpFrame::gratuitous(Ipv4Addr::new(198, 51, 100, 77), THEIRS);
        assert_eq!(
            answer_arp(&other_host_announces, OURS, &ownership()),
            Err(IgnoreReason::NotARequest)
        );

        let ours = ArpFrame::gratuitous(Ipv4Addr::new(198, 51, 100, 77), OURS);
        assert_eq!(
            answer_arp(&ours, OURS, &ownership()),
            Err(IgnoreReason::OwnPacket)
        );
    }

    #[test]
    fn arp_probes_from_the_unspecified_address_are_answered() {
        // RFC 5227 probe: someone wants to use our address; defend it.
        let mut probe = who_has([198, 51, 100, 77]);
        probe.sender_ip = Ipv4Addr::UNSPECIFIED;
        let reply = answer_arp(&probe, OURS, &ownership()).unwrap();
        assert_eq!(reply.ethernet_destination, THEIRS);
        assert_eq!(reply.sender_ip, Ipv4Addr::new(198, 51, 100, 77));
    }

    fn solicitation(target: &str, source: &str) -> NeighborSolicitation {
        let source: Ipv6Addr = source.parse().unwrap();
        NeighborSolicitation {
            source,
            target: target.parse().unwrap(),
            source_link_layer: (!source.is_unspecified()).then_some(THEIRS),
        }
    }

    #[test]
    fn answers_a_solicitation_unicast_with_solicited_and_override() {
        let ns = solicitation("2001:db8::77", "fe80::2");
        let (destination, na) = answer_neighbor_solicitation(&ns, 255, OURS, &ownership()).unwrap();
        assert_eq!(destination, "fe80::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(na, NeighborAdvertisement::solicited(ns.target, OURS));
        assert!(na.solicited && na.override_cache);
    }

    #[test]
    fn answers_duplicate_address_detection_to_all_nodes() {
        let ns = solicitation("2001:db8::77", "::");
        let (destination, na) = answer_neighbor_solicitation(&ns, 255, OURS, &ownership()).unwrap();
        assert_eq!(destination, ALL_NODES);
        assert!(!na.solicited && na.override_cache);
    }

    #[test]
    fn solicitations_with_another_hop_limit_are_dropped() {
        let ns = solicitation("2001:db8::77", "fe80::2");
        for hop_limit in [0, 254, 1] {
            assert_eq!(
                answer_neighbor_solicitation(&ns, hop_limit, OURS, &ownership()),
                Err(IgnoreReason::BadHopLimit)
            );
        }
    }

    #[test]
    fn solicitations_for_other_addresses_are_ignored_with_the_reason() {
        let elsewhere = solicitation("2001:db8::78", "fe80::2");
        assert_eq!(
            answer_neighbor_solicitation(&elsewhere, 255, OURS, &ownership()),
            Err(IgnoreReason::WrongInterface)
        );
        let unknown = solicitation("2001:db8::79", "fe80::2");
        assert_eq!(
            answer_neighbor_solicitation(&unknown, 255, OURS, &ownership()),
            Err(IgnoreReason::NotOurs)
        );
    }
}
