//! From watched Kubernetes objects to a [`ClusterView`]. Pure: the shell hands in what its
//! watchers hold. Anything malformed is skipped for that item alone and reported as a
//! [`ViewWarning`]; nothing here panics on what the API server sends.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrolb_crds::l2::L2Advertisement;
use ferrolb_crds::labels::Labels;
use ferrolb_crds::pool::{IPAddressPool, parse_address_entry};
use ferrolb_crds::validation::FieldError;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ClassFilter;
use super::few::Few;
use super::node_address::has_condition;
use super::objects::{EndpointObject, ServiceObject, SliceObject};
use super::view::{
    ClusterView, L2AdvertisementView, NodeView, PoolView, ServiceEndpoints, ServiceKey, ServiceView,
};

/// Label on an EndpointSlice naming its Service (in the slice's namespace).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Something in the watched objects that could not be used. The rest of the object is
/// used when it can be, so one typo does not take down every announcement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewWarning {
    /// An object without a name (or namespace), which cannot be keyed.
    #[error("a {kind} without metadata.name or metadata.namespace was skipped")]
    MissingName {
        /// The object's kind, e.g. `Service`.
        kind: &'static str,
    },
    /// A Service whose status shows an ingress IP that does not parse; that entry is not announced.
    #[error(
        "Service {service}: status.loadBalancer.ingress IP {value:?} is not an IP address; it is not announced"
    )]
    InvalidIngressIp {
        /// The Service.
        service: ServiceKey,
        /// The `ip` field as written.
        value: String,
    },
    /// An IPAddressPool entry that does not parse; the other entries are used.
    #[error("IPAddressPool {pool}: {error}; the entry is ignored")]
    InvalidPoolAddress {
        /// The pool's name.
        pool: String,
        /// What is wrong with the entry.
        error: FieldError,
    },
}

impl ClusterView {
    /// The view of the given objects. Pools and advertisements must already be limited to
    /// the speaker's namespace; Services outside `class` are left out, and so are the
    /// endpoints of Services not in the view.
    pub fn from_objects<'o>(
        services: impl IntoIterator<Item = &'o Service>,
        endpoint_slices: impl IntoIterator<Item = &'o EndpointSlice>,
        nodes: impl IntoIterator<Item = &'o Node>,
        pools: impl IntoIterator<Item = &'o IPAddressPool>,
        l2_advertisements: impl IntoIterator<Item = &'o L2Advertisement>,
        class: &ClassFilter,
    ) -> (ClusterView, Vec<ViewWarning>) {
        let mut warnings = Vec::new();
        let mut view = ClusterView::default();
        for service in services {
            let object = ServiceObject::of(service);
            if object.is_ours(class)
                && let Some(key) = namespaced_key(&service.metadata, "Service", &mut warnings)
            {
                view.insert_service(service_view(&key, &object, &mut warnings));
            }
        }
        for node in nodes {
            if let Some(node) = node_view(node, &mut warnings) {
                view.insert_node(node);
            }
        }
        let conditions_count = super::eligibility::readiness_counts(&view);
        view.endpoints = endpoints(&view, endpoint_slices, conditions_count, &mut warnings);
        for pool in pools {
            if let Some(pool) = pool_view(pool, &mut warnings) {
                view.insert_pool(pool);
            }
        }
        for advertisement in l2_advertisements {
            if let Some(advertisement) = l2_advertisement_view(advertisement, &mut warnings) {
                view.insert_l2_advertisement(advertisement);
            }
        }
        (view, warnings)
    }
}

fn name_of(
    meta: &ObjectMeta,
    kind: &'static str,
    warnings: &mut Vec<ViewWarning>,
) -> Option<String> {
    let name = meta.name.clone().filter(|name| !name.is_empty());
    if name.is_none() {
        warnings.push(ViewWarning::MissingName { kind });
    }
    name
}

fn namespaced_key(
    meta: &ObjectMeta,
    kind: &'static str,
    warnings: &mut Vec<ViewWarning>,
) -> Option<ServiceKey> {
    match (&meta.namespace, &meta.name) {
        (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
            Some(ServiceKey::new(namespace, name))
        }
        _ => {
            warnings.push(ViewWarning::MissingName { kind });
            None
        }
    }
}

fn labels_of(meta: &ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// The view of a Service of ours.
pub(super) fn service_view(
    key: &ServiceKey,
    service: &ServiceObject,
    warnings: &mut Vec<ViewWarning>,
) -> ServiceView {
    warnings.extend(
        service
            .invalid_ips
            .iter()
            .map(|value| ViewWarning::InvalidIngressIp {
                service: key.clone(),
                value: value.to_string(),
            }),
    );
    ServiceView {
        key: key.clone(),
        labels: service.labels.clone(),
        ips: Few::from(&service.ips[..]),
        local_traffic_policy: service.local_traffic_policy,
    }
}

/// Kubernetes' rule for an endpoint that may take traffic: `ready`, where unset means
/// ready, or serving and not terminating.
pub(super) fn is_usable(endpoint: &EndpointObject) -> bool {
    let Some(conditions) = &endpoint.conditions else {
        return true;
    };
    conditions.ready != Some(false)
        || (conditions.serving == Some(true) && conditions.terminating != Some(true))
}

/// Whether an endpoint is usable in a full disruption (see
/// [`eligibility`](super::eligibility)), when not one Node is `Ready`: then the node
/// lifecycle controller has marked every pod on those Nodes not ready, and the
/// conditions tell nothing about the pods. Every endpoint not terminating counts, as
/// kube-proxy, cut off from the API too, keeps sending traffic to it.
pub(super) fn is_usable_in_full_disruption(endpoint: &EndpointObject) -> bool {
    endpoint
        .conditions
        .as_ref()
        .is_none_or(|conditions| conditions.terminating != Some(true))
}

/// The nodes holding usable endpoints of each Service; `conditions_count` is
/// [`readiness_counts`](super::eligibility::readiness_counts) of the view.
fn endpoints<'o>(
    view: &ClusterView,
    slices: impl IntoIterator<Item = &'o EndpointSlice>,
    conditions_count: bool,
    warnings: &mut Vec<ViewWarning>,
) -> BTreeMap<ServiceKey, ServiceEndpoints> {
    let mut by_service: BTreeMap<ServiceKey, ServiceEndpoints> = BTreeMap::new();
    let usable = if conditions_count {
        is_usable
    } else {
        is_usable_in_full_disruption
    };
    for slice in slices {
        let object = SliceObject::of(slice);
        let Some(service_name) = object.service.as_deref() else {
            // Slices managed by someone else for their own purposes.
            continue;
        };
        let Some(slice_key) = namespaced_key(&slice.metadata, "EndpointSlice", warnings) else {
            continue;
        };
        let service = ServiceKey::new(slice_key.namespace(), service_name);
        let Some((service, _)) = view.services.get_key_value(&service) else {
            continue;
        };
        add_placements(
            &object,
            usable,
            by_service.entry(service.clone()).or_default(),
            &mut |node: &str| Arc::from(node),
        );
    }
    by_service
}

/// Adds to `merged` the nodes of a slice's endpoints that pass `usable` (their names
/// as `name` gives them), and how many usable ones have no node.
pub(super) fn add_placements(
    slice: &SliceObject,
    usable: fn(&EndpointObject) -> bool,
    merged: &mut ServiceEndpoints,
    name: &mut impl FnMut(&str) -> Arc<str>,
) {
    for endpoint in slice.endpoints.iter().filter(|e| usable(e)) {
        match endpoint.node.as_deref().filter(|node| !node.is_empty()) {
            Some(node) => {
                if !merged.nodes.contains(node) {
                    merged.nodes.insert(name(node));
                }
            }
            None => merged.unplaced = merged.unplaced.saturating_add(1),
        }
    }
}

pub(super) fn node_view(node: &Node, warnings: &mut Vec<ViewWarning>) -> Option<NodeView> {
    Some(NodeView {
        name: name_of(&node.metadata, "Node", warnings)?,
        labels: labels_of(&node.metadata),
        ready: has_condition(node, "Ready"),
        network_unavailable: has_condition(node, "NetworkUnavailable"),
    })
}

pub(super) fn pool_view(pool: &IPAddressPool, warnings: &mut Vec<ViewWarning>) -> Option<PoolView> {
    let name = name_of(&pool.metadata, "IPAddressPool", warnings)?;
    let mut ranges = Vec::new();
    for (i, entry) in pool.spec.addresses.iter().enumerate() {
        match parse_address_entry(entry) {
            Ok(range) => ranges.push(range),
            Err(problem) => warnings.push(ViewWarning::InvalidPoolAddress {
                pool: name.clone(),
                error: FieldError::new(format!("spec.addresses[{i}]"), problem),
            }),
        }
    }
    Some(PoolView {
        labels: labels_of(&pool.metadata),
        name,
        ranges,
    })
}

pub(super) fn l2_advertisement_view(
    advertisement: &L2Advertisement,
    warnings: &mut Vec<ViewWarning>,
) -> Option<L2AdvertisementView> {
    let spec = &advertisement.spec;
    Some(L2AdvertisementView {
        name: name_of(&advertisement.metadata, "L2Advertisement", warnings)?,
        selectors: spec.selectors.clone(),
        interfaces: spec.interfaces.clone(),
    })
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
