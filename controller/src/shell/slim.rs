//! A Service as the controller reads it from the API: spec, status and the
//! few metadata fields the core uses, without `managedFields`.
//!
//! `managedFields` is most of a Service's metadata once a few managers have
//! written it, and `k8s-openapi` parses it into a tree of JSON values. The
//! controller never reads it, yet with the full type every watched Service,
//! every page of the initial listing and every write response allocates it.
//! Reading the API into this type instead skips those bytes at parse time.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Deserializer};

/// A Service without the metadata the controller never reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlimService {
    #[serde(default, deserialize_with = "needed_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<ServiceSpec>,
    #[serde(default)]
    pub status: Option<ServiceStatus>,
}

/// The metadata fields the controller uses; serde skips the rest unparsed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NeededMetadata {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

fn needed_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let m = NeededMetadata::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        labels: m.labels,
        annotations: m.annotations,
        ..Default::default()
    })
}

impl From<SlimService> for Service {
    fn from(slim: SlimService) -> Service {
        Service {
            metadata: slim.metadata,
            spec: slim.spec,
            status: slim.status,
        }
    }
}

impl kube::Resource for SlimService {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Service".into()
    }

    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }

    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }

    fn plural(_: &()) -> Cow<'_, str> {
        "services".into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"app": "web"},
                "annotations": {"ferrolb.io/ip-allocated-from-pool": "lan"},
                "finalizers": ["x"],
                "managedFields": [{
                    "manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {"f:ports": {}, "f:selector": {}}},
                }],
            },
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}},
        })
    }

    #[test]
    fn keeps_what_the_core_reads_and_drops_managed_fields() {
        let slim: SlimService = serde_json::from_value(service_json()).unwrap();
        let full: Service = serde_json::from_value(service_json()).unwrap();
        let converted = Service::from(slim);
        assert!(full.metadata.managed_fields.is_some());
        assert_eq!(converted.metadata.managed_fields, None);
        assert_eq!(converted.metadata.finalizers, None);
        assert_eq!(converted.spec, full.spec);
        assert_eq!(converted.status, full.status);
        for (a, b) in [
            (&converted.metadata.name, &full.metadata.name),
            (&converted.metadata.namespace, &full.metadata.namespace),
            (&converted.metadata.uid, &full.metadata.uid),
            (
                &converted.metadata.resource_version,
                &full.metadata.resource_version,
            ),
        ] {
            assert_eq!(a, b);
        }
        assert_eq!(converted.metadata.labels, full.metadata.labels);
        assert_eq!(converted.metadata.annotations, full.metadata.annotations);
        assert_eq!(
            converted.metadata.creation_timestamp,
            full.metadata.creation_timestamp
        );
    }

    #[test]
    fn reads_what_the_core_reads_the_same_way() {
        let slim: Service = serde_json::from_value::<SlimService>(service_json())
            .unwrap()
            .into();
        let full: Service = serde_json::from_value(service_json()).unwrap();
        assert_eq!(
            crate::core::desired::observed(&slim),
            crate::core::desired::observed(&full)
        );
        assert_eq!(
            crate::core::read_request(&slim),
            crate::core::read_request(&full)
        );
    }

    #[test]
    fn addresses_the_services_api() {
        use kube::Resource;
        assert_eq!(
            SlimService::url_path(&(), Some("shop")),
            Service::url_path(&(), Some("shop"))
        );
        assert_eq!(SlimService::api_version(&()), "v1");
    }

    #[test]
    fn rejects_malformed_metadata_with_an_error() {
        let bad = json!({"metadata": {"name": 5}});
        assert!(serde_json::from_value::<SlimService>(bad).is_err());
    }
}
