//! The proof of [`ViewCache`]: after any sequence of object changes, its view is
//! [`ClusterView::from_objects`]'s, with the same warnings, and every Service whose view
//! or endpoints changed is reported touched; the same through
//! [`ViewCache::sync_keys`], handed only the keys of the objects changed since its last
//! call (several changes at a time, like a debounced plan loop).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use proptest::prelude::*;

use super::ViewCache;
use crate::model::fixtures::*;
use crate::model::{
    Changes, ClassFilter, ClusterView, ObjectStore, ServiceKey, ServiceObject, SliceObject, Synced,
};

const SERVICES: usize = 5;
const SLICES: usize = 6;
const NODES: usize = 3;
const IPS: [&str; 4] = ["203.0.113.1", "203.0.113.2", "2001:db8::1", "not-an-ip"];

/// One watched object written or deleted; `bool` says whether it gets a resourceVersion.
#[derive(Debug, Clone)]
enum Change {
    /// Service index, class (0 ours, 1 another), IP mask, Local, versioned.
    PutService(usize, u8, u8, bool, bool),
    DeleteService(usize),
    /// Slice index, Service index, endpoints (node or none, ready, serving, terminating), versioned.
    PutSlice(
        usize,
        usize,
        Vec<(Option<usize>, Option<bool>, Option<bool>)>,
        bool,
    ),
    DeleteSlice(usize),
    /// Node index, Ready.
    PutNode(usize, bool),
    DeleteNode(usize),
}

fn change() -> impl Strategy<Value = Change> {
    let endpoint = (
        prop::option::of(0..NODES),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
    );
    prop_oneof![
        3 => (0..SERVICES, 0u8..2, 0u8..16, any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(i, c, m, l, v)| Change::PutService(i, c, m, l, v)),
        1 => (0..SERVICES).prop_map(Change::DeleteService),
        4 => (0..SLICES, 0..SERVICES, prop::collection::vec(endpoint, 0..3), prop::bool::weighted(0.8))
            .prop_map(|(i, s, e, v)| Change::PutSlice(i, s, e, v)),
        1 => (0..SLICES).prop_map(Change::DeleteSlice),
        2 => (0..NODES, any::<bool>()).prop_map(|(i, r)| Change::PutNode(i, r)),
        1 => (0..NODES).prop_map(Change::DeleteNode),
    ]
}

#[derive(Default)]
struct Cluster {
    services: BTreeMap<usize, Service>,
    slices: BTreeMap<usize, EndpointSlice>,
    nodes: BTreeMap<usize, Node>,
    /// The Services and slices as the watches' stores keep them.
    compact_services: ObjectStore<ServiceObject>,
    compact_slices: ObjectStore<SliceObject>,
    version: u64,
}

impl Cluster {
    fn version(&mut self, versioned: bool) -> Option<String> {
        self.version += 1;
        versioned.then(|| self.version.to_string())
    }

    /// Applies `change`, noting the Service or EndpointSlice it writes or deletes.
    fn apply(&mut self, change: &Change, services: &mut Changes, slices: &mut Changes) {
        match change {
            Change::PutService(i, ..) | Change::DeleteService(i) => {
                services.mark(service_key(*i));
            }
            Change::PutSlice(i, ..) | Change::DeleteSlice(i) => {
                slices.mark(slice_key(*i));
            }
            Change::PutNode(..) | Change::DeleteNode(..) => {}
        }
        match change {
            Change::PutService(i, class, mask, local, versioned) => {
                let ips: Vec<&str> = (0..IPS.len())
                    .filter(|b| mask & (1 << b) != 0)
                    .map(|b| IPS[b])
                    .collect();
                let class = (*class == 1).then_some("example.com/other");
                let mut service = k8s_service(&format!("s{i}"), class, &ips, *local);
                service.metadata.resource_version = self.version(*versioned);
                self.compact_services
                    .apply(&service_key(*i), ServiceObject::of(&service));
                self.services.insert(*i, service);
            }
            Change::DeleteService(i) => {
                self.compact_services.delete(&service_key(*i));
                self.services.remove(i);
            }
            Change::PutSlice(i, service, endpoints, versioned) => {
                let endpoints = endpoints
                    .iter()
                    .map(|(node, ready, terminating)| {
                        let node = node.map(|n| format!("n{n}"));
                        k8s_endpoint(node.as_deref(), Some((*ready, Some(true), *terminating)))
                    })
                    .collect();
                let mut slice = k8s_slice(&format!("sl{i}"), &format!("s{service}"), endpoints);
                slice.metadata.resource_version = self.version(*versioned);
                self.compact_slices
                    .apply(&slice_key(*i), SliceObject::of(&slice));
                self.slices.insert(*i, slice);
            }
            Change::DeleteSlice(i) => {
                self.compact_slices.delete(&slice_key(*i));
                self.slices.remove(i);
            }
            Change::PutNode(i, ready) => {
                let status = if *ready { "True" } else { "False" };
                let node = k8s_node(&format!("n{i}"), labels(&[]), &[("Ready", status)]);
                self.nodes.insert(*i, node);
            }
            Change::DeleteNode(i) => {
                self.nodes.remove(i);
            }
        }
    }
}

fn service_key(i: usize) -> ServiceKey {
    ServiceKey::new(NAMESPACE, format!("s{i}"))
}

fn slice_key(i: usize) -> ServiceKey {
    ServiceKey::new(NAMESPACE, format!("sl{i}"))
}

fn sorted(warnings: &[crate::model::ViewWarning]) -> Vec<String> {
    let mut all: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    all.sort();
    all
}

/// The objects named by `changes` (all of them for [`Changes::Everything`]), each with
/// its current object in `store` or `None` when it is gone.
fn named<T>(
    changes: &Changes,
    store: &ObjectStore<T>,
    key: fn(usize) -> ServiceKey,
    count: usize,
) -> Vec<(ServiceKey, Option<Arc<T>>)> {
    let all: BTreeSet<ServiceKey> = (0..count).map(key).collect();
    let keys = match changes {
        Changes::Everything => &all,
        Changes::Keys(keys) => keys,
    };
    keys.iter()
        .map(|key| (key.clone(), store.get(key).cloned()))
        .collect()
}

/// Every Service whose view or endpoints differ between `before` and `after` is touched.
fn check_touched(
    synced: &Synced,
    before: &ClusterView,
    after: &ClusterView,
) -> Result<(), TestCaseError> {
    if let Some(touched) = &synced.touched {
        let keys = after.services.keys().chain(before.services.keys());
        for key in keys
            .chain(after.endpoints.keys())
            .chain(before.endpoints.keys())
        {
            let differs = after.services.get(key) != before.services.get(key)
                || after.endpoints.get(key) != before.endpoints.get(key);
            prop_assert!(
                !differs || touched.contains(key),
                "{key} changed, not touched"
            );
        }
    }
    Ok(())
}

/// One Service, one key: its view and its endpoints hold the very key (one allocation)
/// the view's Service map holds.
fn check_one_key(view: &ClusterView) -> Result<(), TestCaseError> {
    for (key, service) in &view.services {
        prop_assert!(service.key.shares(key), "{key}: its view holds another key");
    }
    for key in view.endpoints.keys() {
        let held = view.services.get_key_value(key).map(|(held, _)| held);
        prop_assert!(
            held.is_some_and(|held| held.shares(key)),
            "{key}: its endpoints hold another key"
        );
    }
    Ok(())
}

/// The cache holds each Service's key once: the Services it keeps are the view's, by
/// the view's very key, and so are the slice lists of the Services in the view.
fn check_cache_shares(cache: &ViewCache) -> Result<(), TestCaseError> {
    let view = &cache.view;
    prop_assert_eq!(cache.services.len(), view.services.len());
    for key in cache.services.keys().chain(cache.slices_of.keys()) {
        if let Some((held, _)) = view.services.get_key_value(key) {
            prop_assert!(held.shares(key), "{key}: the cache holds another key");
        } else {
            prop_assert!(
                !cache.services.contains_key(key),
                "{key}: kept, not in the view"
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_cache_equals_a_rebuild_after_any_changes(
        changes in prop::collection::vec((change(), prop::bool::weighted(0.6)), 1..40),
    ) {
        let class = ClassFilter::default();
        let mut cluster = Cluster::default();
        let mut cache = ViewCache::default();
        let mut keyed = ViewCache::default();
        let (mut service_changes, mut slice_changes) = (Changes::default(), Changes::default());
        let mut before = ClusterView::default();
        let mut keyed_before = ClusterView::default();
        for (step, (change, sync_keyed)) in changes.iter().enumerate() {
            cluster.apply(change, &mut service_changes, &mut slice_changes);
            let synced = cache.sync(
                cluster.compact_services.iter(),
                cluster.compact_slices.iter(),
                cluster.nodes.values(),
                &[],
                &[],
                &class,
            );
            let (full, warnings) = ClusterView::from_objects(
                cluster.services.values(),
                cluster.slices.values(),
                cluster.nodes.values(),
                &[],
                &[],
                &class,
            );
            prop_assert_eq!(cache.view(), &full);
            check_one_key(cache.view())?;
            check_cache_shares(&cache)?;
            check_one_key(&full)?;
            prop_assert_eq!(sorted(&synced.warnings), sorted(&warnings));
            check_touched(&synced, &before, &full)?;
            if *sync_keyed || step + 1 == changes.len() {
                let services =
                    named(&service_changes.take(), &cluster.compact_services, service_key, SERVICES);
                let slices = named(&slice_changes.take(), &cluster.compact_slices, slice_key, SLICES);
                let synced = keyed.sync_keys(
                    services.iter().map(|(key, service)| (key, service.as_ref())),
                    slices.iter().map(|(key, slice)| (key, slice.as_ref())),
                    cluster.nodes.values(),
                    &[],
                    &[],
                    &class,
                );
                prop_assert_eq!(keyed.view(), &full);
                check_one_key(keyed.view())?;
                check_cache_shares(&keyed)?;
                prop_assert_eq!(sorted(&synced.warnings), sorted(&warnings));
                check_touched(&synced, &keyed_before, &full)?;
                keyed_before = full.clone();
            }
            before = full;
        }
    }
}
