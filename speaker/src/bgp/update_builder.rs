//! Turns a change in the desired route set into the fewest UPDATE messages: routes
//! that share attributes share a message, IPv4 goes in the classic NLRI and withdrawn
//! routes fields, IPv6 in MP_REACH_NLRI / MP_UNREACH_NLRI, and no message exceeds the
//! 4096-byte limit.

use super::codec::CodecOptions;
use super::message::*;
use super::wire::encoded_prefix_len;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

/// A route we advertise. `next_hop` is next-hop self: an address of this node in the
/// prefix's family.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    /// The announced prefix, with the host bits cleared.
    pub prefix: IpNet,
    /// The next hop: an address of this node, of the prefix's family.
    pub next_hop: IpAddr,
    /// Sent to internal peers only; `None` sends [`DEFAULT_LOCAL_PREF`].
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC to send; `None` sends none.
    pub med: Option<u32>,
    /// Standard communities (RFC 1997), each `AA << 16 | NN`.
    pub communities: BTreeSet<u32>,
    /// Large communities (RFC 8092).
    pub large_communities: BTreeSet<LargeCommunity>,
}

impl Route {
    /// A route with no optional attributes.
    pub fn new(prefix: IpNet, next_hop: IpAddr) -> Route {
        Route {
            prefix: prefix.trunc(),
            next_hop,
            local_pref: None,
            med: None,
            communities: BTreeSet::new(),
            large_communities: BTreeSet::new(),
        }
    }
}

/// LOCAL_PREF sent to internal peers when a route does not set one (the usual default).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Whether the peer is in our AS; decides AS_PATH and LOCAL_PREF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// Same AS: empty AS_PATH, LOCAL_PREF sent.
    Internal,
    /// Other AS: AS_PATH is our AS, no LOCAL_PREF.
    External,
}

/// What the session tells the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateContext {
    /// Our AS number, put in AS_PATH for external peers.
    pub local_as: u32,
    /// Internal or external peer.
    pub peer: PeerKind,
    /// How AS numbers are encoded on this session.
    pub codec: CodecOptions,
    /// Sent after the global next hop of IPv6 routes (RFC 2545), for directly
    /// connected peers that want it.
    pub ipv6_link_local_next_hop: Option<Ipv6Addr>,
}

/// Routes to (re)announce and prefixes to withdraw. Announcing a prefix again with
/// other attributes replaces it (implicit withdraw).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteChanges {
    /// Routes to announce (new or changed).
    pub announce: Vec<Route>,
    /// Prefixes to withdraw.
    pub withdraw: Vec<IpNet>,
}

impl RouteChanges {
    /// What to send to go from the routes the peer has to the routes we want.
    pub fn between(
        sent: &BTreeMap<IpNet, Route>,
        desired: &BTreeMap<IpNet, Route>,
    ) -> RouteChanges {
        RouteChanges {
            announce: desired
                .iter()
                .filter(|(prefix, route)| sent.get(prefix) != Some(route))
                .map(|(_, route)| route.clone())
                .collect(),
            withdraw: sent
                .keys()
                .filter(|prefix| !desired.contains_key(prefix))
                .copied()
                .collect(),
        }
    }

    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty()
    }
}

/// The same routes tagged with GRACEFUL_SHUTDOWN (RFC 8326), announced before a
/// planned shutdown so that routers move traffic away before we withdraw.
pub fn with_graceful_shutdown<'a>(routes: impl IntoIterator<Item = &'a Route>) -> Vec<Route> {
    routes
        .into_iter()
        .map(|route| {
            let mut route = route.clone();
            route.communities.insert(GRACEFUL_SHUTDOWN);
            route
        })
        .collect()
}

/// A route that cannot be put into an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The next hop's family differs from the prefix's.
    #[error("route {prefix} has next hop {next_hop} of the other address family")]
    NextHopFamilyMismatch {
        /// The route's prefix.
        prefix: IpNet,
        /// Its next hop.
        next_hop: IpAddr,
    },
    /// The route's attributes alone fill a 4096-byte UPDATE, leaving no room for the prefix.
    #[error("the attributes of route {prefix} leave no room for a prefix in a 4096-byte UPDATE")]
    AttributesTooLarge {
        /// The route's prefix.
        prefix: IpNet,
    },
}

/// Room for withdrawn routes, attributes and NLRI: the limit less the header and the
/// two section lengths.
const UPDATE_BODY_ROOM: usize = MAX_MESSAGE_LEN - HEADER_LEN - 4;
/// MP_UNREACH_NLRI before its prefixes: flags, type, extended length, AFI, SAFI.
const MP_UNREACH_OVERHEAD: usize = 4 + 3;

/// Attributes shared by the routes of one message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SharedAttributes {
    next_hop: IpAddr,
    local_pref: Option<u32>,
    med: Option<u32>,
    communities: BTreeSet<u32>,
    large_communities: BTreeSet<LargeCommunity>,
}

/// Builds the UPDATE messages for `changes`: withdrawals first, then announcements
/// grouped by attributes. Every message encodes (with `context.codec`) to at most
/// 4096 bytes.
pub fn build_updates(
    changes: &RouteChanges,
    context: &UpdateContext,
) -> Result<Vec<Update>, BuildError> {
    let mut groups: BTreeMap<SharedAttributes, Vec<IpNet>> = BTreeMap::new();
    for route in &changes.announce {
        if route.prefix.addr().is_ipv4() != route.next_hop.is_ipv4() {
            return Err(BuildError::NextHopFamilyMismatch {
                prefix: route.prefix,
                next_hop: route.next_hop,
            });
        }
        let shared = SharedAttributes {
            next_hop: route.next_hop,
            local_pref: match context.peer {
                PeerKind::Internal => Some(route.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)),
                PeerKind::External => None,
            },
            med: route.med,
            communities: route.communities.clone(),
            large_communities: route.large_communities.clone(),
        };
        groups.entry(shared).or_default().push(route.prefix.trunc());
    }

    let (withdraw_v4, withdraw_v6) = split_families(&changes.withdraw);
    let mut updates = withdrawals(&withdraw_v4, &withdraw_v6);
    for (shared, prefixes) in groups {
        let (v4, v6) = split_families(&prefixes);
        updates.extend(announcements(&shared, &v4, &v6, context)?);
    }
    Ok(updates)
}

fn split_families(prefixes: &[IpNet]) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for prefix in prefixes {
        match prefix.trunc() {
            IpNet::V4(net) => v4.push(net),
            IpNet::V6(net) => v6.push(net),
        }
    }
    (v4, v6)
}

fn v4_cost(net: &Ipv4Net) -> usize {
    encoded_prefix_len(net.prefix_len())
}

fn v6_cost(net: &Ipv6Net) -> usize {
    encoded_prefix_len(net.prefix_len())
}

/// Takes items from the front of `items` while their cost fits in `room`.
fn take_fitting<T: Copy>(
    items: &mut std::iter::Peekable<std::slice::Iter<'_, T>>,
    room: &mut usize,
    cost: fn(&T) -> usize,
) -> Vec<T> {
    let mut taken = Vec::new();
    while let Some(item) = items.next_if(|item| cost(item) <= *room) {
        *room -= cost(item);
        taken.push(*item);
    }
    taken
}

/// IPv4 withdrawals in the withdrawn routes field; IPv6 ones in MP_UNREACH_NLRI,
/// sharing a message when there is room.
fn withdrawals(v4: &[Ipv4Net], v6: &[Ipv6Net]) -> Vec<Update> {
    let mut updates = Vec::new();
    let mut v4 = v4.iter().peekable();
    let mut v6 = v6.iter().peekable();
    // Each round takes at least one prefix (a prefix costs at most 17 bytes), so this
    // ends after at most as many rounds as there are prefixes.
    while v4.peek().is_some() || v6.peek().is_some() {
        let mut room = UPDATE_BODY_ROOM;
        let mut update = Update {
            withdrawn: take_fitting(&mut v4, &mut room, v4_cost),
            ..Update::default()
        };
        if v6.peek().is_some() && room > MP_UNREACH_OVERHEAD {
            room -= MP_UNREACH_OVERHEAD;
            let nets = take_fitting(&mut v6, &mut room, v6_cost);
            if !nets.is_empty() {
                update
                    .attributes
                    .push(PathAttribute::MpUnreach(MpNlri::Ipv6(nets)));
            }
        }
        updates.push(update);
    }
    updates
}

/// The attributes every message of a group carries, apart from MP_REACH_NLRI.
fn common_attributes(shared: &SharedAttributes, context: &UpdateContext) -> Vec<PathAttribute> {
    let mut attributes = vec![PathAttribute::Origin(Origin::Igp)];
    let as_path = match context.peer {
        PeerKind::Internal => AsPath::default(),
        PeerKind::External => AsPath::originated_by(context.local_as),
    };
    // A peer without 4-octet AS support sees AS_TRANS in AS_PATH and needs the real
    // path in AS4_PATH (RFC 6793 §4.2.2).
    let as4_path =
        (!context.codec.four_octet_as && as_path.contains_4_octet_as()).then(|| as_path.clone());
    attributes.push(PathAttribute::AsPath(as_path));
    if let IpAddr::V4(next_hop) = shared.next_hop {
        attributes.push(PathAttribute::NextHop(next_hop));
    }
    attributes.extend(shared.med.map(PathAttribute::MultiExitDisc));
    attributes.extend(shared.local_pref.map(PathAttribute::LocalPref));
    if !shared.communities.is_empty() {
        attributes.push(PathAttribute::Communities(
            shared.communities.iter().copied().collect(),
        ));
    }
    if !shared.large_communities.is_empty() {
        attributes.push(PathAttribute::LargeCommunities(
            shared.large_communities.iter().copied().collect(),
        ));
    }
    attributes.extend(as4_path.map(PathAttribute::As4Path));
    attributes
}

fn announcements(
    shared: &SharedAttributes,
    v4: &[Ipv4Net],
    v6: &[Ipv6Net],
    context: &UpdateContext,
) -> Result<Vec<Update>, BuildError> {
    let attributes = common_attributes(shared, context);
    let attributes_len = encoded_attributes_len(&attributes, context.codec);
    let mut room_after_attributes = UPDATE_BODY_ROOM.saturating_sub(attributes_len);
    let mut updates = Vec::new();
    match shared.next_hop {
        IpAddr::V4(_) => {
            let mut v4 = v4.iter().peekable();
            while v4.peek().is_some() {
                let mut room = room_after_attributes;
                let nlri = take_fitting(&mut v4, &mut room, v4_cost);
                if let Some(net) = v4.peek().filter(|_| nlri.is_empty()) {
                    return Err(BuildError::AttributesTooLarge {
                        prefix: IpNet::V4(**net),
                    });
                }
                updates.push(Update {
                    withdrawn: Vec::new(),
                    attributes: attributes.clone(),
                    nlri,
                });
            }
        }
        IpAddr::V6(global) => {
            let next_hop = MpNextHop::V6 {
                global,
                link_local: context.ipv6_link_local_next_hop,
            };
            let next_hop_len = if context.ipv6_link_local_next_hop.is_some() {
                32
            } else {
                16
            };
            // flags, type, extended length, AFI, SAFI, next hop length, next hop, reserved
            room_after_attributes =
                room_after_attributes.saturating_sub(4 + 3 + 1 + next_hop_len + 1);
            let mut v6 = v6.iter().peekable();
            while v6.peek().is_some() {
                let mut room = room_after_attributes;
                let nets = take_fitting(&mut v6, &mut room, v6_cost);
                if let Some(net) = v6.peek().filter(|_| nets.is_empty()) {
                    return Err(BuildError::AttributesTooLarge {
                        prefix: IpNet::V6(**net),
                    });
                }
                let mut message_attributes = attributes.clone();
                message_attributes.push(PathAttribute::MpReach(MpReach {
                    next_hop,
                    nlri: MpNlri::Ipv6(nets),
                }));
                updates.push(Update {
                    withdrawn: Vec::new(),
                    attributes: message_attributes,
                    nlri: Vec::new(),
                });
            }
        }
    }
    Ok(updates)
}

fn encoded_attributes_len(attributes: &[PathAttribute], codec: CodecOptions) -> usize {
    // Only an absurd number of communities can fail here; counting it as full makes
    // the group send nothing rather than an oversized message.
    super::attributes::encode_attributes(attributes, codec).map_or(usize::MAX, |bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::codec::{decode_message, encode_message};
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    const FOUR_OCTET: CodecOptions = CodecOptions {
        four_octet_as: true,
    };

    fn context(peer: PeerKind) -> UpdateContext {
        UpdateContext {
            local_as: 64512,
            peer,
            codec: FOUR_OCTET,
            ipv6_link_local_next_hop: None,
        }
    }

    fn node_v4() -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2))
    }

    fn node_v6() -> IpAddr {
        "2001:db8::2".parse().unwrap()
    }

    fn host_v4(index: u32) -> IpNet {
        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0xcb00_7100 + index), 32).unwrap())
    }

    fn host_v6(index: u32) -> IpNet {
        let base: u128 = "2001:db8:100::".parse::<Ipv6Addr>().unwrap().into();
        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(base + u128::from(index)), 128).unwrap())
    }

    /// What a router learns from a batch of UPDATEs.
    struct Received {
        bytes: usize,
        /// Each announced prefix with the attributes it came with.
        announced: Vec<(IpNet, Vec<PathAttribute>)>,
        withdrawn: Vec<IpNet>,
    }

    /// Encodes, checks the size limit, decodes, and lists what each message announces
    /// and withdraws.
    fn on_the_wire(updates: &[Update], codec: CodecOptions) -> Received {
        let mut bytes_total = 0;
        let mut announced = Vec::new();
        let mut withdrawn = Vec::new();
        for update in updates {
            let bytes = encode_message(&Message::Update(update.clone()), codec).unwrap();
            assert!(bytes.len() <= MAX_MESSAGE_LEN);
            bytes_total += bytes.len();
            let Some((Message::Update(decoded), _)) = decode_message(&bytes, codec).unwrap() else {
                panic!("not an UPDATE");
            };
            assert_eq!(&decoded, update);
            let shared: Vec<PathAttribute> = decoded
                .attributes
                .iter()
                .filter(|a| !matches!(a, PathAttribute::MpReach(_) | PathAttribute::MpUnreach(_)))
                .cloned()
                .collect();
            withdrawn.extend(decoded.withdrawn.iter().copied().map(IpNet::V4));
            announced.extend(
                decoded
                    .nlri
                    .iter()
                    .map(|net| (IpNet::V4(*net), shared.clone())),
            );
            for attribute in &decoded.attributes {
                match attribute {
                    PathAttribute::MpReach(reach) => {
                        let mut with_next_hop = shared.clone();
                        with_next_hop.push(PathAttribute::MpReach(MpReach {
                            next_hop: reach.next_hop,
                            nlri: MpNlri::Ipv6(vec![]),
                        }));
                        announced.extend(
                            reach
                                .nlri
                                .prefixes()
                                .into_iter()
                                .map(|net| (net, with_next_hop.clone())),
                        );
                    }
                    PathAttribute::MpUnreach(nlri) => withdrawn.extend(nlri.prefixes()),
                    _ => {}
                }
            }
        }
        Received {
            bytes: bytes_total,
            announced,
            withdrawn,
        }
    }

    #[test]
    fn a_thousand_routes_pack_into_few_messages_each_prefix_once() {
        let mut announce: Vec<Route> = (0..500)
            .map(|i| Route::new(host_v4(i), node_v4()))
            .collect();
        announce.extend((0..500).map(|i| Route::new(host_v6(i), node_v6())));
        let changes = RouteChanges {
            announce,
            withdraw: vec![],
        };
        let updates = build_updates(&changes, &context(PeerKind::External)).unwrap();
        let Received {
            bytes,
            announced,
            withdrawn,
        } = on_the_wire(&updates, FOUR_OCTET);
        println!(
            "1000 routes (500 IPv4 /32, 500 IPv6 /128): {} UPDATE messages, {bytes} bytes",
            updates.len()
        );
        assert!(withdrawn.is_empty());
        let mut prefixes: Vec<IpNet> = announced.iter().map(|(net, _)| *net).collect();
        prefixes.sort();
        let mut expected: Vec<IpNet> = changes.announce.iter().map(|route| route.prefix).collect();
        expected.sort();
        assert_eq!(prefixes, expected, "every prefix exactly once");
        // 500 * 5 bytes of IPv4 NLRI fit in one message; 500 * 17 bytes of IPv6 need 3.
        assert_eq!(updates.len(), 4);

        // Withdrawing them all again.
        let withdraw = changes.announce.iter().map(|route| route.prefix).collect();
        let updates = build_updates(
            &RouteChanges {
                announce: vec![],
                withdraw,
            },
            &context(PeerKind::External),
        )
        .unwrap();
        let Received {
            bytes,
            announced,
            mut withdrawn,
        } = on_the_wire(&updates, FOUR_OCTET);
        println!(
            "withdrawing them: {} UPDATE messages, {bytes} bytes",
            updates.len()
        );
        assert!(announced.is_empty());
        withdrawn.sort();
        assert_eq!(withdrawn, expected);
        assert_eq!(updates.len(), 3);
    }

    #[test]
    fn routes_with_different_attributes_go_in_different_messages() {
        let plain = Route::new(host_v4(1), node_v4());
        let mut tagged = Route::new(host_v4(2), node_v4());
        tagged.communities.insert(0xfde8_0001);
        tagged.large_communities.insert((64512, 7, 7).into());
        let also_tagged = Route {
            prefix: host_v4(3),
            ..tagged.clone()
        };
        let changes = RouteChanges {
            announce: vec![plain, tagged, also_tagged],
            withdraw: vec![],
        };
        let updates = build_updates(&changes, &context(PeerKind::External)).unwrap();
        assert_eq!(updates.len(), 2);
        let nlri: Vec<usize> = updates.iter().map(|update| update.nlri.len()).collect();
        assert_eq!(nlri, vec![1, 2]);
        assert!(updates.iter().any(|update| {
            update
                .attributes
                .contains(&PathAttribute::Communities(vec![0xfde8_0001]))
        }));
    }

    #[test]
    fn ebgp_sends_our_as_and_no_local_pref_ibgp_the_opposite() {
        let mut route = Route::new(host_v4(1), node_v4());
        route.local_pref = Some(200);
        let changes = RouteChanges {
            announce: vec![route],
            withdraw: vec![],
        };
        let external = build_updates(&changes, &context(PeerKind::External)).unwrap();
        assert_eq!(
            external[0].attributes,
            vec![
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath::originated_by(64512)),
                PathAttribute::NextHop(Ipv4Addr::new(198, 51, 100, 2)),
            ]
        );
        let internal = build_updates(&changes, &context(PeerKind::Internal)).unwrap();
        assert_eq!(
            internal[0].attributes,
            vec![
                PathAttribute::Origin(Origin::Igp),
                PathAttribute::AsPath(AsPath::default()),
                PathAttribute::NextHop(Ipv4Addr::new(198, 51, 100, 2)),
                PathAttribute::LocalPref(200),
            ]
        );
        let default_pref = RouteChanges {
            announce: vec![Route::new(host_v4(1), node_v4())],
            withdraw: vec![],
        };
        let internal = build_updates(&default_pref, &context(PeerKind::Internal)).unwrap();
        assert!(
            internal[0]
                .attributes
                .contains(&PathAttribute::LocalPref(DEFAULT_LOCAL_PREF))
        );
    }

    #[test]
    fn a_4_octet_as_on_a_2_octet_session_adds_as4_path() {
        let mut ctx = context(PeerKind::External);
        ctx.local_as = 4_200_000_001;
        ctx.codec = CodecOptions {
            four_octet_as: false,
        };
        let changes = RouteChanges {
            announce: vec![Route::new(host_v4(1), node_v4())],
            withdraw: vec![],
        };
        let updates = build_updates(&changes, &ctx).unwrap();
        assert!(
            updates[0]
                .attributes
                .contains(&PathAttribute::As4Path(AsPath::originated_by(
                    4_200_000_001
                )))
        );
        ctx.codec = FOUR_OCTET;
        let updates = build_updates(&changes, &ctx).unwrap();
        assert!(
            !updates[0]
                .attributes
                .iter()
                .any(|a| matches!(a, PathAttribute::As4Path(_)))
        );
    }

    #[test]
    fn ipv6_routes_use_mp_reach_with_the_optional_link_local_next_hop() {
        let mut ctx = context(PeerKind::External);
        ctx.ipv6_link_local_next_hop = Some("fe80::2".parse().unwrap());
        let changes = RouteChanges {
            announce: vec![Route::new(host_v6(1), node_v6())],
            withdraw: vec![host_v6(9), host_v4(9)],
        };
        let updates = build_updates(&changes, &ctx).unwrap();
        assert_eq!(updates.len(), 2);
        let withdrawal = &updates[0];
        assert_eq!(
            withdrawal.withdrawn,
            vec![Ipv4Net::new(Ipv4Addr::new(203, 0, 113, 9), 32).unwrap()]
        );
        assert_eq!(
            withdrawal.attributes,
            vec![PathAttribute::MpUnreach(MpNlri::Ipv6(vec![
                host_v6(9).to_string().parse().unwrap()
            ]))]
        );
        let reach = updates[1].attributes.iter().find_map(|a| match a {
            PathAttribute::MpReach(reach) => Some(reach),
            _ => None,
        });
        assert_eq!(
            reach.map(|reach| reach.next_hop),
            Some(MpNextHop::V6 {
                global: "2001:db8::2".parse().unwrap(),
                link_local: Some("fe80::2".parse().unwrap())
            })
        );
        assert!(updates[1].nlri.is_empty());
        assert!(
            !updates[1]
                .attributes
                .iter()
                .any(|a| matches!(a, PathAttribute::NextHop(_)))
        );
    }

    #[test]
    fn mismatched_next_hop_family_and_oversized_attributes_are_errors() {
        let changes = RouteChanges {
            announce: vec![Route::new(host_v4(1), node_v6())],
            withdraw: vec![],
        };
        assert!(matches!(
            build_updates(&changes, &context(PeerKind::External)),
            Err(BuildError::NextHopFamilyMismatch { .. })
        ));
        let mut huge = Route::new(host_v4(1), node_v4());
        huge.communities = (0..1100).collect();
        let changes = RouteChanges {
            announce: vec![huge],
            withdraw: vec![],
        };
        assert_eq!(
            build_updates(&changes, &context(PeerKind::External)),
            Err(BuildError::AttributesTooLarge { prefix: host_v4(1) })
        );
    }

    #[test]
    fn changes_between_route_sets() {
        let kept = Route::new(host_v4(1), node_v4());
        let gone = Route::new(host_v4(2), node_v4());
        let changed_before = Route::new(host_v4(3), node_v4());
        let changed_after = Route {
            med: Some(5),
            ..changed_before.clone()
        };
        let added = Route::new(host_v6(1), node_v6());
        let sent: BTreeMap<IpNet, Route> = [&kept, &gone, &changed_before]
            .into_iter()
            .map(|r| (r.prefix, r.clone()))
            .collect();
        let desired: BTreeMap<IpNet, Route> = [&kept, &changed_after, &added]
            .into_iter()
            .map(|r| (r.prefix, r.clone()))
            .collect();
        let changes = RouteChanges::between(&sent, &desired);
        assert_eq!(changes.withdraw, vec![gone.prefix]);
        assert_eq!(changes.announce, vec![changed_after, added]);
        assert!(RouteChanges::between(&desired, &desired).is_empty());
    }

    #[test]
    fn graceful_shutdown_adds_the_well_known_community() {
        let route = Route::new(host_v4(1), node_v4());
        let tagged = with_graceful_shutdown([&route]);
        assert_eq!(tagged.len(), 1);
        assert!(tagged[0].communities.contains(&0xffff_0000));
        assert_eq!(tagged[0].prefix, route.prefix);
    }

    fn arb_route() -> impl Strategy<Value = Route> {
        (
            any::<bool>(),
            any::<u128>(),
            0u8..=128,
            prop::option::of(0u32..3),
            prop::option::of(0u32..3),
            prop::collection::btree_set(0u32..4, 0..3),
            prop::collection::btree_set((0u32..2, 0u32..2, 0u32..2), 0..2),
        )
            .prop_map(|(is_v4, bits, len, local_pref, med, communities, large)| {
                let (prefix, next_hop) = if is_v4 {
                    (
                        IpNet::V4(Ipv4Net::new(Ipv4Addr::from(bits as u32), len % 33).unwrap()),
                        node_v4(),
                    )
                } else {
                    (
                        IpNet::V6(Ipv6Net::new(Ipv6Addr::from(bits), len).unwrap()),
                        node_v6(),
                    )
                };
                Route {
                    local_pref,
                    med,
                    communities,
                    large_communities: large.into_iter().map(Into::into).collect(),
                    ..Route::new(prefix, next_hop)
                }
            })
    }

    proptest! {
        #[test]
        fn every_route_arrives_once_with_its_own_attributes(
            routes in prop::collection::vec(arb_route(), 0..400),
            withdraw in prop::collection::vec(arb_route(), 0..400),
            internal in any::<bool>(),
        ) {
            let desired: BTreeMap<IpNet, Route> = routes.into_iter().map(|r| (r.prefix, r)).collect();
            let withdraw: BTreeSet<IpNet> = withdraw.into_iter().map(|r| r.prefix).filter(|p| !desired.contains_key(p)).collect();
            let ctx = context(if internal { PeerKind::Internal } else { PeerKind::External });
            let changes = RouteChanges { announce: desired.values().cloned().collect(), withdraw: withdraw.iter().copied().collect() };
            let updates = build_updates(&changes, &ctx).unwrap();
            let Received { announced, withdrawn, .. } = on_the_wire(&updates, FOUR_OCTET);
            prop_assert_eq!(withdrawn.into_iter().collect::<BTreeSet<_>>().len(), withdraw.len());
            prop_assert_eq!(announced.len(), desired.len());
            for (prefix, attributes) in announced {
                let route = &desired[&prefix];
                let has = |wanted: &PathAttribute| attributes.contains(wanted);
                prop_assert_eq!(has(&PathAttribute::MultiExitDisc(route.med.unwrap_or_default())), route.med.is_some());
                if internal {
                    prop_assert!(has(&PathAttribute::LocalPref(route.local_pref.unwrap_or(DEFAULT_LOCAL_PREF))));
                }
                let communities: Vec<u32> = route.communities.iter().copied().collect();
                prop_assert_eq!(has(&PathAttribute::Communities(communities)), !route.communities.is_empty());
                let large: Vec<LargeCommunity> = route.large_communities.iter().copied().collect();
                prop_assert_eq!(has(&PathAttribute::LargeCommunities(large)), !route.large_communities.is_empty());
            }
        }
    }
}
