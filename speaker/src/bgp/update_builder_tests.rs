//! The UPDATE builder: packing, per-session attributes, IPv6 next hops, route set
//! changes, and a property test that every route arrives once with its own attributes.

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

/// The wire size of one more host prefix in an UPDATE of its family: the
/// length byte and the address.
fn host_prefix_len(family_v6: bool) -> usize {
    if family_v6 { 17 } else { 5 }
}

/// Whether an UPDATE carries IPv6 routes (in MP_REACH/MP_UNREACH) rather
/// than IPv4 ones (in the classic NLRI and withdrawn fields).
fn carries_ipv6(update: &Update) -> bool {
    update
        .attributes
        .iter()
        .any(|a| matches!(a, PathAttribute::MpReach(_) | PathAttribute::MpUnreach(_)))
}

/// Checks that `updates` are packed tight: of each family's messages, all
/// but the last are too full to take one more host prefix. Returns how
/// many messages and bytes went out.
fn assert_packed_tight(updates: &[Update], what: &str) -> (usize, usize) {
    let mut bytes_total = 0;
    for family_v6 in [false, true] {
        let sizes: Vec<usize> = updates
            .iter()
            .filter(|update| carries_ipv6(update) == family_v6)
            .map(|update| {
                encode_message(&Message::Update(update.clone()), FOUR_OCTET)
                    .unwrap()
                    .len()
            })
            .collect();
        bytes_total += sizes.iter().sum::<usize>();
        if let Some((_, all_but_last)) = sizes.split_last() {
            for size in all_but_last {
                assert!(
                    size + host_prefix_len(family_v6) > MAX_MESSAGE_LEN,
                    "{what}: an UPDATE of {size} bytes had room for one more prefix"
                );
            }
        }
    }
    (updates.len(), bytes_total)
}

/// The route sets the BENCHMARKS.md rows name: a full table of host routes
/// going out at once (a session coming up), by family.
fn full_tables() -> [(&'static str, Vec<Route>); 3] {
    let v4 = |range: std::ops::Range<u32>| -> Vec<Route> {
        range.map(|i| Route::new(host_v4(i), node_v4())).collect()
    };
    let v6 = |range: std::ops::Range<u32>| -> Vec<Route> {
        range.map(|i| Route::new(host_v6(i), node_v6())).collect()
    };
    [
        ("1,000 IPv4 /32s", v4(0..1000)),
        ("1,000 IPv6 /128s", v6(0..1000)),
        ("500 IPv4 /32s and 500 IPv6 /128s", {
            let mut mix = v4(0..500);
            mix.extend(v6(0..500));
            mix
        }),
    ]
}

#[test]
fn a_full_table_packs_tight_and_carries_each_prefix_once() {
    for (what, announce) in full_tables() {
        let mut expected: Vec<IpNet> = announce.iter().map(|route| route.prefix).collect();
        expected.sort();
        let updates = build_updates(
            &RouteChanges {
                announce,
                withdraw: vec![],
            },
            &context(PeerKind::External),
        )
        .unwrap();
        let (messages, bytes) = assert_packed_tight(&updates, what);
        let received = on_the_wire(&updates, FOUR_OCTET);
        println!("announcing {what}: {messages} UPDATE messages, {bytes} bytes");
        assert_eq!(received.bytes, bytes);
        assert!(received.withdrawn.is_empty());
        let mut announced: Vec<IpNet> = received.announced.iter().map(|(net, _)| *net).collect();
        announced.sort();
        assert_eq!(announced, expected, "{what}: every prefix exactly once");

        let updates = build_updates(
            &RouteChanges {
                announce: vec![],
                withdraw: expected.clone(),
            },
            &context(PeerKind::External),
        )
        .unwrap();
        let (messages, bytes) = assert_packed_tight(&updates, what);
        let mut received = on_the_wire(&updates, FOUR_OCTET);
        println!("withdrawing {what}: {messages} UPDATE messages, {bytes} bytes");
        assert!(received.announced.is_empty());
        received.withdrawn.sort();
        assert_eq!(
            received.withdrawn, expected,
            "{what}: every withdrawal exactly once"
        );
    }
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
