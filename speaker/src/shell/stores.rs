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
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(trim),
    )
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

fn trim_service(service: &mut Service) {
    trim_meta(service);
    // The plan reads type, class, traffic policy and the ingress IPs.
    if let Some(spec) = service.spec.as_mut() {
        spec.ports = None;
        spec.selector = None;
    }
}

fn trim_slice(slice: &mut EndpointSlice) {
    trim_meta(slice);
    slice.metadata.owner_references = None;
    // The plan reads the Service label, and each endpoint's node and
    // conditions; addresses and ports are most of a slice.
    slice.ports = None;
    for endpoint in &mut slice.endpoints {
        endpoint.addresses = Vec::new();
        endpoint.target_ref = None;
        endpoint.hints = None;
        endpoint.hostname = None;
        endpoint.deprecated_topology = None;
        endpoint.zone = None;
    }
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
