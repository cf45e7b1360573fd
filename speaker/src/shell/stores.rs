//! Watches of everything the plan depends on, kept in local caches.
//!
//! Services and EndpointSlices, one per Service, are most of what the speaker
//! holds: their watches keep only what the speaker reads of each object
//! ([`ServiceObject`], [`SliceObject`]) in an [`ObjectStore`],
//! converted once as the event arrives; the other kinds, few, keep a kube
//! reflector store of the trimmed object. Each kind has a task that keeps its store current, retrying
//! with a backoff capped at a second ([`WatchBackoff`]) when the API server is
//! away, so the watches resume about a second after it returns. A store keeps its last contents
//! through an outage, so the speaker goes on announcing what it last knew.
//! Every change wakes the plan loop through one [`Notify`]; the Services' and
//! EndpointSlices' watches also note which objects changed (see `super::keys`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use ferrolb_crds::{BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement};
use ferrolb_runtime::backoff::WatchBackoff;
use ferrolb_runtime::watch::watch_config;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::keys::{Noted, note};
use crate::model::objects::{Applied, ShareTexts, apply_event};
use crate::model::{ObjectStore, ServiceObject, SliceObject};

/// A watch's compact store, written by its watch task, read by the plan loop and
/// the reporter (never across an `await`).
pub type Shared<T> = Arc<RwLock<ObjectStore<T>>>;

/// The store to read, even if a writer panicked (each write leaves it whole).
pub fn read<T>(store: &Shared<T>) -> RwLockReadGuard<'_, ObjectStore<T>> {
    store.read().unwrap_or_else(PoisonError::into_inner)
}

/// The caches the plan reads.
#[derive(Clone)]
pub struct Stores {
    pub services: Shared<ServiceObject>,
    pub slices: Shared<SliceObject>,
    pub nodes: Store<Node>,
    pub pools: Store<IPAddressPool>,
    pub l2_advertisements: Store<L2Advertisement>,
    pub bgp_peers: Store<BGPPeer>,
    pub bgp_advertisements: Store<BGPAdvertisement>,
    pub communities: Store<Community>,
    /// The Services changed since the plan loop last took them.
    pub service_changes: Noted,
    /// The EndpointSlices changed since the plan loop last took them.
    pub slice_changes: Noted,
    synced: Arc<AtomicU8>,
}

const KINDS: u8 = 8;

impl Stores {
    /// Starts one watch task per kind. `changed` is notified on every change.
    /// Pools and advertisements are read from `namespace` only.
    pub fn start(client: &Client, namespace: &str, changed: Arc<Notify>) -> Stores {
        let synced = Arc::new(AtomicU8::new(0));
        let sync = |bit: u8| (synced.clone(), bit);
        let service_changes = Noted::default();
        let slice_changes = Noted::default();
        Stores {
            services: watch_compact::<Service, _>(
                Api::all(client.clone()),
                (changed.clone(), service_changes.clone()),
                sync(0),
                ServiceObject::of,
            ),
            slices: watch_compact::<EndpointSlice, _>(
                Api::all(client.clone()),
                (changed.clone(), slice_changes.clone()),
                sync(1),
                SliceObject::of,
            ),
            nodes: watch(
                Api::all(client.clone()),
                changed.clone(),
                sync(2),
                trim_node,
            ),
            pools: watch(
                Api::namespaced(client.clone(), namespace),
                changed.clone(),
                sync(3),
                trim_meta,
            ),
            l2_advertisements: watch(
                Api::namespaced(client.clone(), namespace),
                changed.clone(),
                sync(4),
                trim_meta,
            ),
            bgp_peers: watch(
                Api::namespaced(client.clone(), namespace),
                changed.clone(),
                sync(5),
                trim_meta,
            ),
            bgp_advertisements: watch(
                Api::namespaced(client.clone(), namespace),
                changed.clone(),
                sync(6),
                trim_meta,
            ),
            communities: watch(
                Api::namespaced(client.clone(), namespace),
                changed,
                sync(7),
                trim_meta,
            ),
            service_changes,
            slice_changes,
            synced,
        }
    }

    /// Whether every store has completed its first list: before that, a plan
    /// would see a partial cluster and could wrongly withdraw.
    pub fn all_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire).count_ones() == u32::from(KINDS)
    }
}

/// A watch whose objects are kept as `convert` makes them, with their changes noted.
fn watch_compact<K, T>(
    api: Api<K>,
    (changed, keys): (Arc<Notify>, Noted),
    (synced, bit): (Arc<AtomicU8>, u8),
    convert: fn(&K) -> T,
) -> Shared<T>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    T: ShareTexts + Send + Sync + 'static,
{
    let store: Shared<T> = Arc::default();
    let writer = store.clone();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = watcher(api, watch_config()).backoff(WatchBackoff::default());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                // The backoff retries; the store keeps what it had.
                Err(e) => {
                    warn!(%kind, error = %e, "watch failed; retrying, keeping the last known state");
                    continue;
                }
            };
            let applied = {
                let mut store = writer.write().unwrap_or_else(PoisonError::into_inner);
                apply_event(&mut store, event, convert)
            };
            // Noted after the store has the change, so a pass that takes the
            // key reads the object as it is now or newer.
            match applied {
                Applied::Object(key) => note(Some(&keys), Some(key)),
                Applied::Listed => {
                    // The store was replaced by a (re-)list: anything may have changed.
                    note(Some(&keys), None);
                    synced.fetch_or(1 << bit, Ordering::AcqRel);
                    debug!(%kind, "cache synced");
                }
                Applied::Nothing => continue,
            }
            changed.notify_one();
        }
    });
    store
}

fn watch<K>(
    api: Api<K>,
    changed: Arc<Notify>,
    (synced, bit): (Arc<AtomicU8>, u8),
    trim: fn(&mut K),
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let stream = reflector::reflector(writer, watcher(api, watch_config()).modify(trim))
        .backoff(WatchBackoff::default());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    synced.fetch_or(1 << bit, Ordering::AcqRel);
                    debug!(%kind, "cache synced");
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => {
                    changed.notify_one();
                }
                Ok(_) => {}
                // The backoff retries; the store keeps what it had.
                Err(e) => {
                    warn!(%kind, error = %e, "watch failed; retrying, keeping the last known state")
                }
            }
        }
    });
    reader
}

/// Drops what the plan never reads, to keep memory per object small.
fn trim_meta<K: ResourceExt>(object: &mut K) {
    object.managed_fields_mut().clear();
    object
        .annotations_mut()
        .remove("kubectl.kubernetes.io/last-applied-configuration");
}

fn trim_node(node: &mut Node) {
    trim_meta(node);
    if let Some(status) = node.status.as_mut() {
        // Image lists are by far the largest part of a Node.
        status.images = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::object_key;
    use crate::model::{ClassFilter, ClusterView, ServiceKey, ViewCache, ViewWarning};
    use kube::core::crd::CustomResourceExt as _;
    use serde_json::json;

    const CLASS: &str = "example.com/lb";

    /// A Service as the apiserver sends it, every field the speaker ignores filled in.
    fn service(name: &str, extra: serde_json::Value) -> Service {
        let mut object = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": name, "namespace": "team", "uid": format!("uid-{name}"),
                "resourceVersion": "41", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": name, "tier": "web"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x"},
                "finalizers": ["service.kubernetes.io/load-balancer-cleanup"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {
                "type": "LoadBalancer", "loadBalancerClass": CLASS,
                "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
                "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}],
                "selector": {"app": name}, "sessionAffinity": "None",
                "healthCheckNodePort": 31000, "allocateLoadBalancerNodePorts": true,
            },
            "status": {
                "loadBalancer": {"ingress": [
                    {"ip": "192.0.2.10", "ipMode": "VIP", "ports": [{"port": 80, "protocol": "TCP"}]},
                    {"hostname": "lb.example.com"},
                    {"ip": "2001:db8::10", "ipMode": "VIP"},
                    {"ip": "not-an-ip"},
                ]},
                "conditions": [{"type": "Ready", "status": "True", "reason": "R", "message": "m",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            },
        });
        merge(&mut object, extra);
        serde_json::from_value(object).unwrap()
    }

    fn slice(name: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": name, "namespace": "team", "uid": format!("uid-{name}"),
                "resourceVersion": "42", "generation": 1,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                },
                "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service, "uid": "u"}],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }))
        .unwrap()
    }

    fn endpoint(node: Option<&str>, conditions: serde_json::Value) -> serde_json::Value {
        json!({
            "addresses": ["10.0.0.1"], "conditions": conditions, "nodeName": node,
            "hostname": "pod-0", "zone": "a",
            "targetRef": {"kind": "Pod", "name": "pod-0", "namespace": "team"},
            "hints": {"forZones": [{"name": "a"}]},
        })
    }

    fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
        match (into, extra) {
            (serde_json::Value::Object(into), serde_json::Value::Object(extra)) => {
                for (key, value) in extra {
                    merge(into.entry(key).or_insert(serde_json::Value::Null), value);
                }
            }
            (into, extra) => *into = extra,
        }
    }

    fn nodes() -> Vec<Node> {
        ["a", "b", "c"]
            .iter()
            .map(|name| {
                serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                }))
                .unwrap()
            })
            .collect()
    }

    fn pool() -> IPAddressPool {
        serde_json::from_value(json!({
            "apiVersion": IPAddressPool::api_resource().api_version, "kind": "IPAddressPool",
            "metadata": {"name": "pool", "namespace": "ferrolb-system"},
            "spec": {"addresses": ["192.0.2.0/24", "2001:db8::/64"]},
        }))
        .unwrap()
    }

    fn advertisement() -> L2Advertisement {
        serde_json::from_value(json!({
            "apiVersion": L2Advertisement::api_resource().api_version, "kind": "L2Advertisement",
            "metadata": {"name": "all", "namespace": "ferrolb-system"},
            "spec": {"serviceSelectors": [{"matchLabels": {"tier": "web"}}]},
        }))
        .unwrap()
    }

    /// The view of whole objects, with its warnings sorted as [`ViewCache`] sorts them.
    fn view(
        services: &[Service],
        slices: &[EndpointSlice],
        class: &ClassFilter,
    ) -> (ClusterView, Vec<ViewWarning>) {
        let (view, mut warnings) = ClusterView::from_objects(
            services,
            slices,
            &nodes(),
            [&pool()],
            [&advertisement()],
            class,
        );
        warnings.sort_by_cached_key(ToString::to_string);
        (view, warnings)
    }

    /// `objects` as their watch's store takes them in: listed, then one written.
    fn stored<K: Resource + Clone, T: ShareTexts>(
        objects: &[K],
        convert: fn(&K) -> T,
    ) -> ObjectStore<T> {
        let mut store = ObjectStore::default();
        let (listed, written) = objects.split_at(objects.len() / 2);
        assert_eq!(
            apply_event(&mut store, watcher::Event::Init, convert),
            Applied::Nothing
        );
        for object in listed {
            let event = watcher::Event::InitApply(object.clone());
            assert_eq!(apply_event(&mut store, event, convert), Applied::Nothing);
        }
        assert_eq!(
            apply_event(&mut store, watcher::Event::InitDone, convert),
            Applied::Listed
        );
        for object in written {
            let event = watcher::Event::Apply(object.clone());
            let key = object_key(object.meta()).unwrap();
            assert_eq!(
                apply_event(&mut store, event, convert),
                Applied::Object(key)
            );
        }
        assert_eq!(store.len(), objects.len());
        store
    }

    /// What the stores keep of Services and EndpointSlices is enough: the
    /// view, the class filter and the Events' uid are the same from the
    /// stores' compact objects as from the whole ones.
    #[test]
    fn compact_services_and_slices_give_the_same_view_class_and_uid() {
        let services = vec![
            service("local", json!({})),
            // A uid as the API server writes them (kept as its bytes), beside the
            // others' free text.
            service(
                "cluster",
                json!({
                    "metadata": {"uid": "5f3c1d2e-0a9b-4c8d-9e7f-6a5b4c3d2e1f"},
                    "spec": {"externalTrafficPolicy": "Cluster"},
                }),
            ),
            service(
                "other-labels",
                json!({"metadata": {"labels": {"tier": "db"}}}),
            ),
            service(
                "other-class",
                json!({"spec": {"loadBalancerClass": "other"}}),
            ),
            service("unclassed", json!({"spec": {"loadBalancerClass": null}})),
            service("node-port", json!({"spec": {"type": "NodePort"}})),
            service(
                "going",
                json!({"metadata": {"deletionTimestamp": "2026-01-02T00:00:00Z"}}),
            ),
        ];
        let slices = vec![
            slice(
                "local-1",
                "local",
                json!([
                    endpoint(Some("a"), json!({"ready": true})),
                    endpoint(
                        Some("b"),
                        json!({"ready": false, "serving": true, "terminating": false})
                    ),
                    endpoint(
                        Some("c"),
                        json!({"ready": false, "serving": true, "terminating": true})
                    ),
                    endpoint(None, json!({"ready": true})),
                ]),
            ),
            slice(
                "cluster-1",
                "cluster",
                json!([endpoint(Some("c"), json!({}))]),
            ),
            slice(
                "cluster-2",
                "cluster",
                json!([endpoint(Some("b"), json!({"ready": false}))]),
            ),
            slice(
                "other-labels-1",
                "other-labels",
                json!([endpoint(Some("a"), json!({}))]),
            ),
        ];
        let compact_services = stored(&services, ServiceObject::of);
        let compact_slices = stored(&slices, SliceObject::of);
        for class in [
            ClassFilter::new(CLASS, false),
            ClassFilter::new(CLASS, true),
        ] {
            let whole = view(&services, &slices, &class);
            let ours = if class.accepts(&services[4]) { 4 } else { 3 };
            assert_eq!(whole.0.services.len(), ours, "{whole:?}");
            assert_eq!(whole.0.endpoints.len(), 3, "{whole:?}");
            // One for each of our Services' "not-an-ip".
            assert_eq!(whole.1.len(), ours, "{whole:?}");
            let mut cache = ViewCache::default();
            let synced = cache.sync(
                compact_services.iter(),
                compact_slices.iter(),
                &nodes(),
                [&pool()],
                [&advertisement()],
                &class,
            );
            assert_eq!((cache.view(), &synced.warnings), (&whole.0, &whole.1));
            for service in &services {
                let key = object_key(&service.metadata).unwrap();
                let compact = compact_services.get(&key).unwrap();
                assert_eq!(compact.interest(&class), class.interest(service));
                assert_eq!(
                    compact.uid.as_ref().map(ToString::to_string),
                    service.metadata.uid,
                    "{key}"
                );
            }
        }
    }

    /// The compact store follows its watch as kube's reflector store would:
    /// writes and deletes one at a time, and a re-list that replaces the
    /// whole set only once complete (objects deleted meanwhile disappear).
    #[test]
    fn the_compact_store_follows_writes_deletes_and_relists() {
        let convert: fn(&Service) -> ServiceObject = ServiceObject::of;
        let names = |store: &ObjectStore<ServiceObject>| {
            let mut names: Vec<String> = store
                .iter()
                .map(|(namespace, name, object)| {
                    format!(
                        "{namespace}/{name}@{}",
                        object
                            .version
                            .as_ref()
                            .map_or("-".into(), ToString::to_string)
                    )
                })
                .collect();
            names.sort();
            names
        };
        let versioned = |name: &str, version: &str| {
            service(name, json!({"metadata": {"resourceVersion": version}}))
        };
        let mut store = stored(&[versioned("a", "1"), versioned("b", "1")], convert);
        assert_eq!(names(&store), ["team/a@1", "team/b@1"]);
        apply_event(
            &mut store,
            watcher::Event::Apply(versioned("a", "2")),
            convert,
        );
        apply_event(
            &mut store,
            watcher::Event::Apply(versioned("c", "3")),
            convert,
        );
        let deleted = apply_event(
            &mut store,
            watcher::Event::Delete(versioned("b", "4")),
            convert,
        );
        assert_eq!(deleted, Applied::Object(ServiceKey::new("team", "b")));
        assert_eq!(names(&store), ["team/a@2", "team/c@3"]);
        // A re-list: the old set stays until it is done.
        apply_event(&mut store, watcher::Event::Init, convert);
        apply_event(
            &mut store,
            watcher::Event::InitApply(versioned("c", "5")),
            convert,
        );
        apply_event(
            &mut store,
            watcher::Event::InitApply(versioned("d", "5")),
            convert,
        );
        assert_eq!(names(&store), ["team/a@2", "team/c@3"]);
        apply_event(&mut store, watcher::Event::InitDone, convert);
        assert_eq!(names(&store), ["team/c@5", "team/d@5"]);
        // An object without a name is not kept, and not noted.
        let mut nameless = versioned("e", "6");
        nameless.metadata.name = None;
        let applied = apply_event(&mut store, watcher::Event::Apply(nameless), convert);
        assert_eq!(applied, Applied::Nothing);
        assert_eq!(store.len(), 2);
    }
}
