//! The speaker's plan at scale: 10,000 LoadBalancer Services × 100 nodes.
//!
//! Every 10th Service has `externalTrafficPolicy: Local` with ready endpoints on
//! 2 nodes; the others are `Cluster` with endpoints on 3 nodes (one
//! EndpointSlice each, nodes picked pseudo-randomly). One pool, one
//! L2Advertisement and one BGPAdvertisement with empty specs, one BGPPeer.
//!
//! Scenarios (each one plan of the speaker's loop, or a part of it):
//! - `view`: `ClusterView::from_objects` over the watched objects;
//! - `l2_plan`, `bgp_plan`: the plans from a built view (every node alive);
//! - `slice_change`: the work the plan loop does today after one EndpointSlice
//!   changes: the view again, then both plans;
//! - `node_dies`: the work after a membership change (one node leaves the
//!   alive set): the view again, then both plans; and `l2_plan_node_dies`, the
//!   L2 plan alone with the smaller alive set;
//! - `planner_node_dies`, `planner_slice_change`: the same changes handed to the
//!   incremental [`L2Planner`] (views built beforehand; a death is timed from
//!   everyone alive, a slice change alternates back and forth), and
//!   `slice_change_incremental`, the plan loop's work with it: the view, the
//!   planner, the BGP plan;
//! - `slice_change_cached`, `node_dies_cached`: the plan loop's L2 work as the shell does
//!   it now, a [`ViewCache`] synced (only changed resourceVersions converted again) and
//!   [`L2Planner::plan_touched`] (no BGP: with no BGPPeer for the node it returns at once).
//!
//! - `bgp_plan_compare`, `bgp_plan_clone`, `bgp_session_diff`: what followed every BGP
//!   plan before the plan was incremental: the shell compared the new plan with the last,
//!   the manager cloned it, each session cloned the routes and diffed them with what it
//!   had sent (one route differs);
//! - `bgp_planner_slice_change`, `bgp_slice_change_cached`: one EndpointSlice change handed
//!   to the incremental [`BgpPlanner`], alone and after the cached view's sync.
//!
//! `cargo bench -p ferrolb-speaker --bench plan` (`-- --quick` for a quicker run)

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ferrolb_crds::l2::{L2Advertisement, L2AdvertisementSpec};
use ferrolb_crds::pool::{IPAddressPool, IPAddressPoolSpec};
use ferrolb_speaker::bgp::update_builder::RouteChanges;
use ferrolb_speaker::model::bgp::{BgpAdvertisementView, BgpPeerView, DEFAULT_CONNECT_TIME};
use ferrolb_speaker::model::{
    AdvertisementScope as _, BgpOptions, BgpPlan, BgpPlanner, BgpView, ClassFilter, ClusterView,
    L2Planner, Liveness, LocalNode, ObjectStore, Reaches, ServiceKey, ServiceObject, SliceObject,
    ViewCache, bgp_plan, l2_plan_within,
};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeCondition, NodeStatus, Service, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

const SERVICES: usize = 10_000;
const NODES: usize = 100;
const NAMESPACE: &str = "apps";

/// The watched objects of the scenario.
struct Objects {
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    nodes: Vec<Node>,
    pools: Vec<IPAddressPool>,
    l2: Vec<L2Advertisement>,
}

/// The Services and EndpointSlices as the speaker's watches keep them.
#[derive(Default)]
struct Compact {
    services: ObjectStore<ServiceObject>,
    slices: ObjectStore<SliceObject>,
}

fn key_of(meta: &ObjectMeta) -> ServiceKey {
    ServiceKey::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Compact {
    fn of(objects: &Objects) -> Compact {
        let mut compact = Compact::default();
        for service in &objects.services {
            let key = key_of(&service.metadata);
            compact.services.apply(&key, ServiceObject::of(service));
        }
        for slice in &objects.slices {
            compact.put_slice(slice);
        }
        compact
    }

    /// A slice written, as its watch takes it in.
    fn put_slice(&mut self, slice: &EndpointSlice) {
        self.slices
            .apply(&key_of(&slice.metadata), SliceObject::of(slice));
    }
}

fn node_name(i: usize) -> String {
    format!("node-{i:03}")
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.map(Into::into),
        name: Some(name.into()),
        resource_version: Some("1".into()),
        ..Default::default()
    }
}

/// A small deterministic generator, so every run plans the same cluster.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % n
    }
}

fn service(i: usize, local: bool) -> Service {
    let [_, _, high, low] = u32::try_from(i).unwrap_or(0).to_be_bytes();
    Service {
        metadata: meta(Some(NAMESPACE), &format!("svc-{i:05}")),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
            ..Default::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(Ipv4Addr::new(198, 19, high, low).to_string()),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        }),
    }
}

fn slice(i: usize, nodes: &[usize]) -> EndpointSlice {
    let mut metadata = meta(Some(NAMESPACE), &format!("svc-{i:05}-abcde"));
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_string(),
        format!("svc-{i:05}"),
    )]));
    EndpointSlice {
        metadata,
        address_type: "IPv4".into(),
        endpoints: nodes
            .iter()
            .map(|n| Endpoint {
                addresses: vec![format!("10.{}.0.{}", n, i % 250)],
                node_name: Some(node_name(*n)),
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: None,
    }
}

fn node(i: usize) -> Node {
    Node {
        metadata: meta(None, &node_name(i)),
        spec: None,
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn objects() -> Objects {
    let mut random = Lcg(13);
    let mut services = Vec::with_capacity(SERVICES);
    let mut slices = Vec::with_capacity(SERVICES);
    for i in 0..SERVICES {
        let local = i % 10 == 0;
        let on: Vec<usize> = (0..if local { 2 } else { 3 })
            .map(|_| random.below(NODES))
            .collect();
        services.push(service(i, local));
        slices.push(slice(i, &on));
    }
    let mut pool = IPAddressPool::new(
        "default",
        IPAddressPoolSpec {
            addresses: vec!["198.19.0.0/16".into()],
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
        },
    );
    pool.metadata.namespace = Some("ferrolb-system".into());
    let mut l2 = L2Advertisement::new("all", L2AdvertisementSpec::default());
    l2.metadata.namespace = Some("ferrolb-system".into());
    Objects {
        services,
        slices,
        nodes: (0..NODES).map(node).collect(),
        pools: vec![pool],
        l2: vec![l2],
    }
}

fn view_of(objects: &Objects) -> ClusterView {
    ClusterView::from_objects(
        &objects.services,
        &objects.slices,
        &objects.nodes,
        &objects.pools,
        &objects.l2,
        &ClassFilter::default(),
    )
    .0
}

fn bgp_view() -> BgpView {
    let mut bgp = BgpView::default();
    bgp.insert_peer(BgpPeerView {
        name: "router".into(),
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        port: 179,
        my_asn: 64512,
        peer_asn: 64513,
        source_address: None,
        router_id: None,
        hold_time: 90,
        keepalive_time: 30,
        connect_time: DEFAULT_CONNECT_TIME,
        password: None,
        ebgp_multihop: false,
        graceful_restart: false,
        node_selectors: Vec::new(),
    });
    bgp.insert_advertisement(BgpAdvertisementView {
        name: "all".into(),
        aggregation_length: 32,
        aggregation_length_v6: 128,
        local_pref: None,
        communities: BTreeSet::new(),
        selectors: Default::default(),
        peers: Vec::new(),
    });
    bgp
}

fn alive(except: Option<usize>) -> Liveness {
    Liveness::Gossip(
        (0..NODES)
            .filter(|i| Some(*i) != except)
            .map(node_name)
            .collect(),
    )
}

/// One pass of the plan loop: the view, then both plans, as `shell::run` does.
fn plan_all(objects: &Objects, bgp: &BgpView, liveness: &Liveness, addresses: &[IpAddr]) -> usize {
    let view = view_of(objects);
    let l2 = l2_plan_within(&view, liveness, &Reaches::new());
    let local = LocalNode {
        name: "node-000",
        addresses,
    };
    let bgp = bgp_plan(&view, bgp, &local, liveness, &BgpOptions::default());
    l2.len() + bgp.services.len()
}

fn scale(c: &mut Criterion) {
    let mut objects = objects();
    let view = view_of(&objects);
    let bgp = bgp_view();
    let everyone = alive(None);
    let one_dead = alive(Some(NODES / 2));
    let addresses = [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))];
    let reaches = Reaches::new();
    assert!(
        bgp.advertisements
            .values()
            .all(|ad| ad.selects_node(&Default::default()))
    );

    let mut group = c.benchmark_group("speaker_10k_services_100_nodes");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("view", |b| b.iter(|| black_box(view_of(&objects))));
    group.bench_function("l2_plan", |b| {
        b.iter(|| black_box(l2_plan_within(&view, &everyone, &reaches)))
    });
    group.bench_function("bgp_plan", |b| {
        let local = LocalNode {
            name: "node-000",
            addresses: &addresses,
        };
        b.iter(|| {
            black_box(bgp_plan(
                &view,
                &bgp,
                &local,
                &everyone,
                &BgpOptions::default(),
            ))
        })
    });
    // Where a BGP change's time goes besides the plan: the shell compares the new plan
    // with the last (`send_if_modified`), the manager clones it, the session clones
    // the routes (next-hop self) and diffs them against its Adj-RIB-Out.
    let whole = {
        let local = LocalNode {
            name: "node-000",
            addresses: &addresses,
        };
        bgp_plan(&view, &bgp, &local, &everyone, &BgpOptions::default())
    };
    let mut other = whole.clone();
    if let Some(peer) = other.peers.values_mut().next() {
        let first = peer.routes.keys().next().copied();
        if let Some(prefix) = first {
            peer.routes.remove(&prefix);
        }
    }
    // Equal plans: the whole walk (a plan with a route fewer differs in length at once).
    let same = whole.clone();
    group.bench_function("bgp_plan_compare", |b| b.iter(|| black_box(whole == same)));
    group.bench_function("bgp_plan_clone", |b| b.iter(|| black_box(whole.clone())));
    let routes_of = |plan: &BgpPlan| {
        let peer = plan.peers.values().next();
        peer.map(|peer| peer.routes.clone()).unwrap_or_default()
    };
    let (routes, fewer) = (routes_of(&whole), routes_of(&other));
    group.bench_function("bgp_session_diff", |b| {
        b.iter(|| {
            let desired: BTreeMap<_, _> = routes
                .values()
                .map(|route| (route.prefix, route.clone()))
                .collect();
            black_box(RouteChanges::between(&fewer, &desired).announce.len())
        })
    });
    group.bench_function("l2_plan_node_dies", |b| {
        b.iter(|| black_box(l2_plan_within(&view, &one_dead, &reaches)))
    });
    group.bench_function("node_dies", |b| {
        b.iter(|| black_box(plan_all(&objects, &bgp, &one_dead, &addresses)))
    });
    let mut flip = 0usize;
    group.bench_function("slice_change", |b| {
        b.iter(|| {
            // Service 0 is Local: its only endpoint moves between two nodes.
            flip += 1;
            objects.slices[0] = slice(0, &[flip % 2]);
            black_box(plan_all(&objects, &bgp, &everyone, &addresses))
        })
    });
    let moved = {
        let objects = objects_with_moved_endpoint(&objects);
        Arc::new(view_of(&objects))
    };
    let shared = Arc::new(view.clone());
    let mut planner = L2Planner::default();
    planner.plan(shared.clone(), &everyone, &reaches);
    group.bench_function("planner_node_dies", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                // Everyone alive again (a join: planned whole), untimed.
                planner.plan(shared.clone(), &everyone, &reaches);
                let whole = planner.full_recomputes();
                let started = std::time::Instant::now();
                black_box(planner.plan(shared.clone(), &one_dead, &reaches).len());
                timed += started.elapsed();
                assert_eq!(planner.full_recomputes(), whole, "a death is incremental");
            }
            timed
        })
    });
    let mut moved_now = false;
    group.bench_function("planner_slice_change", |b| {
        b.iter(|| {
            moved_now = !moved_now;
            let view = if moved_now { &moved } else { &shared };
            black_box(planner.plan(view.clone(), &everyone, &reaches).len())
        })
    });
    group.bench_function("slice_change_incremental", |b| {
        b.iter(|| {
            flip += 1;
            objects.slices[0] = slice(0, &[flip % 2]);
            let view = Arc::new(view_of(&objects));
            let owned = planner.plan(view.clone(), &everyone, &reaches).len();
            let local = LocalNode {
                name: "node-000",
                addresses: &addresses,
            };
            let bgp = bgp_plan(&view, &bgp, &local, &everyone, &BgpOptions::default());
            black_box(owned + bgp.services.len())
        })
    });
    // The plan loop as `shell::run` runs it in L2 mode: the cached view synced, the
    // touched Services' IPs re-decided (no BGPPeer selects the node: no BGP work).
    let mut cache = ViewCache::default();
    let mut cached_planner = L2Planner::default();
    let mut compact = Compact::of(&objects);
    let sync = |cache: &mut ViewCache, compact: &Compact, objects: &Objects| {
        cache.sync(
            compact.services.iter(),
            compact.slices.iter(),
            &objects.nodes,
            &objects.pools,
            &objects.l2,
            &ClassFilter::default(),
        )
    };
    let synced = sync(&mut cache, &compact, &objects);
    cached_planner.plan_touched(cache.view(), synced.touched.as_ref(), &everyone, &reaches);
    group.bench_function("slice_change_cached", |b| {
        b.iter(|| {
            move_endpoint(&mut objects, &mut compact, &mut flip);
            let synced = sync(&mut cache, &compact, &objects);
            let plan = cached_planner.plan_touched(
                cache.view(),
                synced.touched.as_ref(),
                &everyone,
                &reaches,
            );
            black_box(plan.len())
        })
    });
    group.bench_function("node_dies_cached", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                // Everyone alive again (a join: planned whole), untimed.
                let synced = sync(&mut cache, &compact, &objects);
                cached_planner.plan_touched(
                    cache.view(),
                    synced.touched.as_ref(),
                    &everyone,
                    &reaches,
                );
                let started = std::time::Instant::now();
                let synced = sync(&mut cache, &compact, &objects);
                let plan = cached_planner.plan_touched(
                    cache.view(),
                    synced.touched.as_ref(),
                    &one_dead,
                    &reaches,
                );
                black_box(plan.len());
                timed += started.elapsed();
            }
            timed
        })
    });
    // BGP mode: the touched Service's IPs re-decided by the `BgpPlanner`, alone (the
    // views built beforehand, alternating) and after the cached view's sync.
    let local = LocalNode {
        name: "node-000",
        addresses: &addresses,
    };
    let options = BgpOptions::default();
    let touched: BTreeSet<ServiceKey> = shared
        .endpoints
        .iter()
        .filter(|(key, endpoints)| moved.endpoints.get(*key) != Some(*endpoints))
        .map(|(key, _)| key.clone())
        .collect();
    let mut bgp_planner = BgpPlanner::default();
    bgp_planner.plan_touched(&shared, None, &bgp, &local, &everyone, &options);
    group.bench_function("bgp_planner_slice_change", |b| {
        b.iter(|| {
            moved_now = !moved_now;
            let view = if moved_now { &moved } else { &shared };
            let plan =
                bgp_planner.plan_touched(view, Some(&touched), &bgp, &local, &everyone, &options);
            black_box(plan.peers.len())
        })
    });
    let synced = sync(&mut cache, &compact, &objects);
    bgp_planner.plan_touched(
        cache.view(),
        synced.touched.as_ref(),
        &bgp,
        &local,
        &everyone,
        &options,
    );
    group.bench_function("bgp_slice_change_cached", |b| {
        b.iter(|| {
            move_endpoint(&mut objects, &mut compact, &mut flip);
            let synced = sync(&mut cache, &compact, &objects);
            let plan = bgp_planner.plan_touched(
                cache.view(),
                synced.touched.as_ref(),
                &bgp,
                &local,
                &everyone,
                &options,
            );
            black_box(plan.peers.len())
        })
    });
    assert!(
        bgp_planner.full_recomputes() <= 2,
        "slice changes are incremental"
    );
    group.finish();
}

/// Moves Service 0's (Local) only endpoint to the other of two nodes, as a watch would
/// see it (a new resourceVersion), in `objects` and in the compact store.
fn move_endpoint(objects: &mut Objects, compact: &mut Compact, flip: &mut usize) {
    *flip += 1;
    objects.slices[0] = slice(0, &[*flip % 2]);
    objects.slices[0].metadata.resource_version = Some(format!("v{flip}"));
    compact.put_slice(&objects.slices[0]);
}

/// `objects` with Service 0's (Local) only endpoint moved to another node.
fn objects_with_moved_endpoint(objects: &Objects) -> Objects {
    let mut slices = objects.slices.clone();
    slices[0] = slice(0, &[NODES - 1]);
    Objects {
        services: objects.services.clone(),
        slices,
        nodes: objects.nodes.clone(),
        pools: objects.pools.clone(),
        l2: objects.l2.clone(),
    }
}

criterion_group!(benches, scale);
criterion_main!(benches);
