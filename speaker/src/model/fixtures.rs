//! Builders for tests: views directly, and the Kubernetes objects they come from.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ferrolb_crds::address::IpRange;
use ferrolb_crds::l2::{L2Advertisement, L2AdvertisementSpec};
use ferrolb_crds::labels::Labels;
use ferrolb_crds::pool::{IPAddressPool, IPAddressPoolSpec};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, NodeCondition, NodeStatus, Service, ServiceSpec,
    ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::convert::LABEL_SERVICE_NAME;
use super::scope::AdvertisementSelectors;
use super::view::{
    ClusterView, L2AdvertisementView, NodeView, PoolView, ServiceEndpoints, ServiceKey, ServiceView,
};

pub const NAMESPACE: &str = "apps";

pub fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IPs are valid")
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels(pairs)),
        match_expressions: None,
    }
}

pub fn key(name: &str) -> ServiceKey {
    ServiceKey::new(NAMESPACE, name)
}

pub fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

// --- views ----------------------------------------------------------------------------

pub fn node(name: &str) -> NodeView {
    NodeView {
        name: name.into(),
        labels: Labels::new(),
        ready: true,
        network_unavailable: false,
    }
}

pub fn pool(name: &str, entries: &[&str]) -> PoolView {
    PoolView {
        name: name.into(),
        labels: Labels::new(),
        ranges: entries
            .iter()
            .map(|e| IpRange::parse(e).expect("test ranges are valid"))
            .collect(),
    }
}

pub fn advertisement(name: &str) -> L2AdvertisementView {
    L2AdvertisementView {
        name: name.into(),
        selectors: AdvertisementSelectors::default(),
        interfaces: Vec::new(),
    }
}

pub fn service(name: &str, ips: &[&str]) -> ServiceView {
    ServiceView {
        key: key(name),
        labels: Labels::new(),
        ips: ips.iter().map(|i| ip(i)).collect(),
        local_traffic_policy: false,
    }
}

pub fn endpoints_on(nodes: &[&str]) -> ServiceEndpoints {
    ServiceEndpoints {
        nodes: names(nodes).into(),
        unplaced: 0,
    }
}

/// Ready nodes, one pool `default` (203.0.113.0/24 and 2001:db8::/64) and one
/// L2Advertisement `all` with an empty spec.
pub fn cluster(nodes: &[&str]) -> ClusterView {
    let mut view = ClusterView::default();
    for name in nodes {
        view.insert_node(node(name));
    }
    view.insert_pool(pool("default", &["203.0.113.0/24", "2001:db8::/64"]));
    view.insert_l2_advertisement(advertisement("all"));
    view
}

/// Adds a Service with endpoints on `endpoint_nodes`.
pub fn add_service(view: &mut ClusterView, service: ServiceView, endpoint_nodes: &[&str]) {
    view.insert_endpoints(service.key.clone(), endpoints_on(endpoint_nodes));
    view.insert_service(service);
}

// --- Kubernetes objects -----------------------------------------------------------------

fn meta(namespace: Option<&str>, name: &str, labels: Labels) -> ObjectMeta {
    ObjectMeta {
        namespace: namespace.map(Into::into),
        name: Some(name.into()),
        labels: (!labels.is_empty()).then_some(labels),
        ..Default::default()
    }
}

pub fn k8s_service(name: &str, class: Option<&str>, ips: &[&str], local: bool) -> Service {
    Service {
        metadata: meta(Some(NAMESPACE), name, Labels::new()),
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: class.map(Into::into),
            external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
            ..Default::default()
        }),
        status: Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some(ip.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
    }
}

/// An endpoint's `(ready, serving, terminating)` conditions.
pub type Conditions = (Option<bool>, Option<bool>, Option<bool>);

/// An endpoint on `node` with the given conditions.
pub fn k8s_endpoint(node: Option<&str>, conditions: Option<Conditions>) -> Endpoint {
    Endpoint {
        addresses: vec!["10.0.0.1".into()],
        node_name: node.map(Into::into),
        conditions: conditions.map(|(ready, serving, terminating)| EndpointConditions {
            ready,
            serving,
            terminating,
        }),
        ..Default::default()
    }
}

pub fn k8s_slice(name: &str, service: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: meta(
            Some(NAMESPACE),
            name,
            labels(&[(LABEL_SERVICE_NAME, service)]),
        ),
        address_type: "IPv4".into(),
        endpoints,
        ports: None,
    }
}

/// A Node with the given labels and `(type, status)` conditions.
pub fn k8s_node(name: &str, node_labels: Labels, conditions: &[(&str, &str)]) -> Node {
    Node {
        metadata: meta(None, name, node_labels),
        spec: None,
        status: Some(NodeStatus {
            conditions: Some(
                conditions
                    .iter()
                    .map(|(type_, status)| NodeCondition {
                        type_: type_.to_string(),
                        status: status.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

pub fn k8s_pool(name: &str, pool_labels: Labels, addresses: &[&str]) -> IPAddressPool {
    let mut pool = IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(|a| a.to_string()).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
        },
    );
    pool.metadata.namespace = Some("ferrolb-system".into());
    pool.metadata.labels = (!pool_labels.is_empty()).then_some(pool_labels);
    pool
}

pub fn k8s_l2_advertisement(name: &str, spec: L2AdvertisementSpec) -> L2Advertisement {
    let mut advertisement = L2Advertisement::new(name, spec);
    advertisement.metadata.namespace = Some("ferrolb-system".into());
    advertisement
}
