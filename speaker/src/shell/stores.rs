//! Watches of everything the plan depends on, kept in local caches.
//!
//! Each kind has a reflector store and a task that keeps it current, retrying
//! with a backoff capped at a second ([`WatchBackoff`]) when the API server is
//! away, so the watches resume about a second after it returns. A store keeps its last contents
//! through an outage, so the speaker goes on announcing what it last knew.
//! Every change wakes the plan loop through one [`Notify`]; the Services' and
//! EndpointSlices' watches also note which objects changed (see `super::keys`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use ferrolb_crds::{BGPAdvertisement, BGPPeer, Community, IPAddressPool, L2Advertisement};
use ferrolb_runtime::backoff::WatchBackoff;
use ferrolb_runtime::watch::watch_config;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, Service, ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{debug, warn};

use super::keys::{Noted, note};
use crate::model::convert::LABEL_SERVICE_NAME;

/// The caches the plan reads.
#[derive(Clone)]
pub struct Stores {
    pub services: Store<Service>,
    pub slices: Store<EndpointSlice>,
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
            services: watch(
                Api::all(client.clone()),
                (changed.clone(), Some(service_changes.clone())),
                sync(0),
                trim_service,
            ),
            slices: watch(
                Api::all(client.clone()),
                (changed.clone(), Some(slice_changes.clone())),
                sync(1),
                trim_slice,
            ),
            nodes: watch(
                Api::all(client.clone()),
                (changed.clone(), None),
                sync(2),
                trim_node,
            ),
            pools: watch(
                Api::namespaced(client.clone(), namespace),
                (changed.clone(), None),
                sync(3),
                trim_meta,
            ),
            l2_advertisements: watch(
                Api::namespaced(client.clone(), namespace),
                (changed.clone(), None),
                sync(4),
                trim_meta,
            ),
            bgp_peers: watch(
                Api::namespaced(client.clone(), namespace),
                (changed.clone(), None),
                sync(5),
                trim_meta,
            ),
            bgp_advertisements: watch(
                Api::namespaced(client.clone(), namespace),
                (changed.clone(), None),
                sync(6),
                trim_meta,
            ),
            communities: watch(
                Api::namespaced(client.clone(), namespace),
                (changed, None),
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

fn watch<K>(
    api: Api<K>,
    (changed, keys): (Arc<Notify>, Option<Noted>),
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
                    // The store was replaced by a (re-)list: anything may have changed.
                    note::<K>(keys.as_ref(), None);
                    synced.fetch_or(1 << bit, Ordering::AcqRel);
                    debug!(%kind, "cache synced");
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                    note(keys.as_ref(), Some(&object));
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

/// Keeps only what the speaker reads of a Service: its identity (the
/// reporter's Events name its uid), labels (advertisements' Service
/// selectors), `resourceVersion` (the view cache), `deletionTimestamp`, the
/// type, class and traffic policy, and the ingress IPs.
fn trim_service(service: &mut Service) {
    let metadata = std::mem::take(&mut service.metadata);
    service.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        uid: metadata.uid,
        resource_version: metadata.resource_version,
        labels: metadata.labels,
        deletion_timestamp: metadata.deletion_timestamp,
        ..ObjectMeta::default()
    };
    service.spec = service.spec.take().map(|spec| ServiceSpec {
        type_: spec.type_,
        load_balancer_class: spec.load_balancer_class,
        external_traffic_policy: spec.external_traffic_policy,
        ..ServiceSpec::default()
    });
    service.status = service.status.take().map(|status| ServiceStatus {
        load_balancer: status
            .load_balancer
            .map(|load_balancer| LoadBalancerStatus {
                ingress: load_balancer.ingress.map(|ingress| {
                    ingress
                        .into_iter()
                        .filter(|entry| entry.ip.is_some())
                        .map(|entry| LoadBalancerIngress {
                            ip: entry.ip,
                            ..LoadBalancerIngress::default()
                        })
                        .collect()
                }),
            }),
        conditions: None,
    });
}

/// Keeps only what the speaker reads of an EndpointSlice: its name,
/// namespace and `resourceVersion`, the Service label, and each endpoint's
/// node and conditions (addresses and ports are most of a slice).
fn trim_slice(slice: &mut EndpointSlice) {
    let metadata = std::mem::take(&mut slice.metadata);
    slice.metadata = ObjectMeta {
        name: metadata.name,
        namespace: metadata.namespace,
        resource_version: metadata.resource_version,
        labels: metadata.labels.and_then(|mut labels| {
            let service = labels.remove_entry(LABEL_SERVICE_NAME)?;
            Some(std::iter::once(service).collect())
        }),
        ..ObjectMeta::default()
    };
    slice.ports = None;
    slice.address_type = String::new();
    let endpoints = std::mem::take(&mut slice.endpoints);
    slice.endpoints = endpoints
        .into_iter()
        .map(|endpoint| Endpoint {
            node_name: endpoint.node_name,
            conditions: endpoint.conditions,
            ..Endpoint::default()
        })
        .collect();
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
    use crate::model::{ClassFilter, ClusterView, ViewWarning};
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

    fn view(
        services: &[Service],
        slices: &[EndpointSlice],
        class: &ClassFilter,
    ) -> (ClusterView, Vec<ViewWarning>) {
        let nodes: Vec<Node> = ["a", "b", "c"]
            .iter()
            .map(|name| {
                serde_json::from_value(json!({
                    "metadata": {"name": name},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]},
                }))
                .unwrap()
            })
            .collect();
        let pool: IPAddressPool = serde_json::from_value(json!({
            "apiVersion": IPAddressPool::api_resource().api_version, "kind": "IPAddressPool",
            "metadata": {"name": "pool", "namespace": "ferrolb-system"},
            "spec": {"addresses": ["192.0.2.0/24", "2001:db8::/64"]},
        }))
        .unwrap();
        let advertisement: L2Advertisement = serde_json::from_value(json!({
            "apiVersion": L2Advertisement::api_resource().api_version, "kind": "L2Advertisement",
            "metadata": {"name": "all", "namespace": "ferrolb-system"},
            "spec": {"serviceSelectors": [{"matchLabels": {"tier": "web"}}]},
        }))
        .unwrap();
        ClusterView::from_objects(services, slices, &nodes, [&pool], [&advertisement], class)
    }

    /// What the stores keep of Services and EndpointSlices is enough: the
    /// view, the class filter and the Events' uid are the same from trimmed
    /// and untrimmed objects.
    #[test]
    fn trimmed_services_and_slices_give_the_same_view_class_and_uid() {
        let services = vec![
            service("local", json!({})),
            service(
                "cluster",
                json!({"spec": {"externalTrafficPolicy": "Cluster"}}),
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
        let (mut trimmed_services, mut trimmed_slices) = (services.clone(), slices.clone());
        trimmed_services.iter_mut().for_each(trim_service);
        trimmed_slices.iter_mut().for_each(trim_slice);
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
            assert_eq!(view(&trimmed_services, &trimmed_slices, &class), whole);
            for (service, trimmed) in services.iter().zip(&trimmed_services) {
                assert_eq!(class.interest(trimmed), class.interest(service));
                assert_eq!(trimmed.metadata.uid, service.metadata.uid);
            }
        }
        // And they did shrink.
        assert!(json_len(&trimmed_services[0]) * 3 < json_len(&services[0]));
        assert!(json_len(&trimmed_slices[0]) * 2 < json_len(&slices[0]));
    }

    fn json_len(value: &impl serde::Serialize) -> usize {
        serde_json::to_string(value).unwrap().len()
    }
}
