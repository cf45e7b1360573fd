//! Kubernetes objects for the core's tests: Services and pools as the
//! watches deliver them, built small.

use std::collections::BTreeMap;

use ferrolb_crds::pool::{IPAddressPool, IPAddressPoolSpec};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

use super::desired::{CONDITION_TYPE, ServiceWrite};
use super::service::ANNOTATION_ALLOCATED_FROM_POOL;

/// The namespace pools live in.
pub const POOL_NAMESPACE: &str = "ferrolb-system";

/// An IPv4 LoadBalancer Service `ns/name` carrying `annotations`, created
/// at second `created`, at resourceVersion 1.
pub fn service(name: &str, created: i64, annotations: &[(&str, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            creation_timestamp: Timestamp::from_second(created).ok().map(Time),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ip_families: Some(vec!["IPv4".into()]),
            ..Default::default()
        }),
        status: None,
    }
}

/// `service` at resourceVersion `version`, showing exactly `write` (what
/// the apiserver returns once our writes landed).
pub fn showing(service: &Service, write: &ServiceWrite, version: u64) -> Service {
    let mut service = service.clone();
    service.metadata.resource_version = Some(version.to_string());
    let annotations = service.metadata.annotations.get_or_insert_default();
    match &write.pool {
        Some(pool) => annotations.insert(ANNOTATION_ALLOCATED_FROM_POOL.into(), pool.clone()),
        None => annotations.remove(ANNOTATION_ALLOCATED_FROM_POOL),
    };
    let ingress = write
        .ips
        .iter()
        .map(|ip| LoadBalancerIngress {
            ip: Some(ip.to_string()),
            ..Default::default()
        })
        .collect();
    let conditions = write.condition.iter().map(|c| Condition {
        type_: CONDITION_TYPE.into(),
        status: if c.allocated { "True" } else { "False" }.into(),
        reason: c.reason.clone(),
        message: c.message.clone(),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
        observed_generation: None,
    });
    service.status = Some(ServiceStatus {
        load_balancer: Some(LoadBalancerStatus {
            ingress: Some(ingress),
        }),
        conditions: Some(conditions.collect()),
    });
    service
}

/// Pool `name` of generation `generation` declaring `addresses`, created
/// at second `created`.
pub fn pool(name: &str, created: i64, generation: i64, addresses: &[&str]) -> IPAddressPool {
    let mut pool = IPAddressPool::new(
        name,
        IPAddressPoolSpec {
            addresses: addresses.iter().map(ToString::to_string).collect(),
            auto_assign: true,
            avoid_buggy_ips: false,
            service_allocation: None,
        },
    );
    pool.metadata.namespace = Some(POOL_NAMESPACE.into());
    pool.metadata.uid = Some(format!("uid-{name}"));
    pool.metadata.generation = Some(generation);
    pool.metadata.creation_timestamp = Timestamp::from_second(created).ok().map(Time);
    pool
}
