//! What an advertisement selects: pools, Services and nodes. `L2Advertisement` and
//! `BGPAdvertisement` share these four fields, their checks and their meaning, so they live
//! here once, in [`AdvertisementSelectors`], which both specs embed flattened: the fields
//! stay at `spec.ipAddressPools` and so on, as in MetalLB.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::labels::{Labels, any_selector_matches};
use crate::schema::{MAX_OBJECT_REFS, object_names_schema};
use crate::selector::{check_label_selectors, selectors_schema};
use crate::validation::{Errors, check_object_names};

/// The selecting fields of an advertisement, with MetalLB's meaning of "empty".
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdvertisementSelectors {
    /// Pools to announce, by name. When neither this nor `ipAddressPoolSelectors` selects a
    /// pool, every pool is announced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "object_names_schema")]
    pub ip_address_pools: Vec<String>,

    /// Pools to announce, selected by their labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "selectors_schema")]
    pub ip_address_pool_selectors: Vec<LabelSelector>,

    /// Nodes that may announce. When empty, every node may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "selectors_schema")]
    pub node_selectors: Vec<LabelSelector>,

    /// Services to announce, selected by their labels. When empty, every Service with an
    /// address from the selected pools is announced.
    ///
    /// An extension over MetalLB up to v0.15. MetalLB v0.16 added a field of the same name
    /// and meaning, so manifests using it work with both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "selectors_schema")]
    pub service_selectors: Vec<LabelSelector>,
}

impl AdvertisementSelectors {
    /// The same rules as the CRD schema, for the four fields under `spec.`.
    pub(crate) fn check(&self, errors: &mut Errors) {
        check_object_names(
            errors,
            "spec.ipAddressPools",
            &self.ip_address_pools,
            MAX_OBJECT_REFS,
        );
        check_label_selectors(
            errors,
            "spec.ipAddressPoolSelectors",
            &self.ip_address_pool_selectors,
        );
        check_label_selectors(errors, "spec.nodeSelectors", &self.node_selectors);
        check_label_selectors(errors, "spec.serviceSelectors", &self.service_selectors);
    }

    /// Named in `ipAddressPools`, or matched by one of `ipAddressPoolSelectors`; when both
    /// are empty, every pool.
    pub fn selects_pool(&self, pool_name: &str, pool_labels: &Labels) -> bool {
        let names = &self.ip_address_pools;
        let selectors = &self.ip_address_pool_selectors;
        if names.is_empty() && selectors.is_empty() {
            return true;
        }
        names.iter().any(|name| name == pool_name)
            || (!selectors.is_empty() && any_selector_matches(selectors, pool_labels))
    }

    /// Matched by one of `serviceSelectors`; when empty, every Service.
    pub fn selects_service(&self, service_labels: &Labels) -> bool {
        any_selector_matches(&self.service_selectors, service_labels)
    }

    /// Matched by one of `nodeSelectors`; when empty, every node.
    pub fn selects_node(&self, node_labels: &Labels) -> bool {
        any_selector_matches(&self.node_selectors, node_labels)
    }
}

/// Replaces the description of `field` in a spec's schema: for a shared field whose
/// meaning one mode words more precisely (BGP's next hops, its aggregation restriction).
pub(crate) fn describe_field(schema: &mut Schema, field: &str, description: &str) {
    if let Some(property) = schema
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .and_then(|properties| properties.get_mut(field))
        .and_then(Value::as_object_mut)
    {
        property.insert("description".into(), description.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{labels, messages, selector};

    #[test]
    fn empty_pool_fields_select_every_pool() {
        assert!(AdvertisementSelectors::default().selects_pool("any", &labels(&[])));
    }

    #[test]
    fn pools_by_name_or_by_selector() {
        let mut selectors = AdvertisementSelectors {
            ip_address_pools: vec!["named".into()],
            ..Default::default()
        };
        let gold = labels(&[("tier", "gold")]);
        assert!(selectors.selects_pool("named", &labels(&[])));
        assert!(!selectors.selects_pool("other", &gold));
        selectors.ip_address_pool_selectors = vec![selector(&[("tier", "gold")])];
        assert!(selectors.selects_pool("other", &gold));
        assert!(!selectors.selects_pool("other", &labels(&[("tier", "iron")])));
        selectors.ip_address_pools.clear();
        assert!(!selectors.selects_pool("named", &labels(&[])));
    }

    #[test]
    fn services_and_nodes_by_selector() {
        let mut selectors = AdvertisementSelectors::default();
        assert!(selectors.selects_service(&labels(&[])));
        assert!(selectors.selects_node(&labels(&[])));
        selectors.service_selectors = vec![selector(&[("app", "web")])];
        selectors.node_selectors = vec![selector(&[("zone", "a")]), selector(&[("zone", "b")])];
        assert!(selectors.selects_service(&labels(&[("app", "web")])));
        assert!(!selectors.selects_service(&labels(&[("app", "db")])));
        assert!(selectors.selects_node(&labels(&[("zone", "b")])));
        assert!(!selectors.selects_node(&labels(&[("zone", "c")])));
    }

    #[test]
    fn checks_every_selecting_field() {
        let bad = || selector(&[("bad key", "v")]);
        let selectors = AdvertisementSelectors {
            ip_address_pools: vec!["Pool_B".into()],
            ip_address_pool_selectors: vec![bad()],
            node_selectors: vec![bad()],
            service_selectors: vec![bad()],
        };
        let mut errors = Errors::default();
        selectors.check(&mut errors);
        let fields: Vec<String> = messages(errors.finish())
            .iter()
            .map(|message| message.split(':').next().unwrap_or_default().to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "spec.ipAddressPools[0]",
                "spec.ipAddressPoolSelectors[0].matchLabels",
                "spec.nodeSelectors[0].matchLabels",
                "spec.serviceSelectors[0].matchLabels",
            ]
        );
    }
}
