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
                    attributes: attributes.clone(),
                    nlri,
                    ..Update::default()
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
                    attributes: message_attributes,
                    ..Update::default()
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
#[path = "update_builder_tests.rs"]
mod tests;
