//! `BGPAdvertisement`: announce addresses of selected pools to BGP peers, and with which
//! path attributes.

use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::advertisement::{AdvertisementSelectors, describe_field};
use crate::community::{CommunityRef, MAX_COMMUNITIES, community_ref_schema};
use crate::schema::{MAX_OBJECT_REFS, object_names_schema, string_set};
use crate::validation::{
    Errors, FieldError, Problem, check_len, check_object_names, check_unique, item,
};

/// Default `aggregationLength`: announce each IPv4 address as a /32.
pub const DEFAULT_AGGREGATION_LENGTH: i32 = 32;
/// Default `aggregationLengthV6`: announce each IPv6 address as a /128.
pub const DEFAULT_AGGREGATION_LENGTH_V6: i32 = 128;

/// Desired state of a `BGPAdvertisement`: MetalLB's fields and defaults, all optional. An
/// empty spec announces every pool to every peer from every node.
// Clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPAdvertisement",
    plural = "bgpadvertisements",
    singular = "bgpadvertisement",
    category = "ferrolb",
    namespaced,
    derive = "PartialEq",
    doc = "BGPAdvertisement announces the addresses of the selected IPAddressPools to BGP peers, with the given path attributes.",
    printcolumn(
        name = "IPAddressPools",
        type_ = "string",
        json_path = ".spec.ipAddressPools"
    ),
    printcolumn(
        name = "IPAddressPool Selectors",
        type_ = "string",
        json_path = ".spec.ipAddressPoolSelectors"
    ),
    printcolumn(name = "Peers", type_ = "string", json_path = ".spec.peers"),
    printcolumn(
        name = "Node Selectors",
        type_ = "string",
        json_path = ".spec.nodeSelectors",
        priority = 10
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.serviceSelectors) || size(self.serviceSelectors) == 0 || ((!has(self.aggregationLength) || self.aggregationLength == 32) && (!has(self.aggregationLengthV6) || self.aggregationLengthV6 == 128))",
    "message": "serviceSelectors needs the default aggregationLength (32) and aggregationLengthV6 (128): an aggregated prefix covers other Services too",
    "fieldPath": ".serviceSelectors",
}]))]
#[schemars(transform = describe_bgp_selectors)]
pub struct BGPAdvertisementSpec {
    /// Prefix length to announce IPv4 addresses with, rolling them up into a larger prefix
    /// (e.g. 24 announces one /24 for all addresses of a pool in it). 0 to 32.
    #[serde(default = "default_aggregation_length")]
    #[schemars(range(min = 0, max = 32))]
    pub aggregation_length: i32,

    /// Prefix length to announce IPv6 addresses with. 0 to 128.
    #[serde(default = "default_aggregation_length_v6")]
    #[schemars(range(min = 0, max = 128))]
    pub aggregation_length_v6: i32,

    /// BGP LOCAL_PREF attribute of the announcements (for iBGP peers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = u32::MAX))]
    pub local_pref: Option<u32>,

    /// BGP communities of the announcements: standard `AA:NN`, large `large:A:B:C`, or the
    /// name of an alias defined in a `Community` object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "communities_schema")]
    pub communities: Vec<String>,

    /// The pools, nodes and Services this advertisement covers.
    #[serde(flatten)]
    pub selectors: AdvertisementSelectors,

    /// BGPPeers to announce to, by name. When empty, every peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "object_names_schema")]
    pub peers: Vec<String>,
}

impl Default for BGPAdvertisementSpec {
    fn default() -> Self {
        BGPAdvertisementSpec {
            aggregation_length: DEFAULT_AGGREGATION_LENGTH,
            aggregation_length_v6: DEFAULT_AGGREGATION_LENGTH_V6,
            local_pref: None,
            communities: Vec::new(),
            selectors: AdvertisementSelectors::default(),
            peers: Vec::new(),
        }
    }
}

fn default_aggregation_length() -> i32 {
    DEFAULT_AGGREGATION_LENGTH
}

fn default_aggregation_length_v6() -> i32 {
    DEFAULT_AGGREGATION_LENGTH_V6
}

/// BGP's wording of the shared `nodeSelectors` and `serviceSelectors`.
fn describe_bgp_selectors(schema: &mut Schema) {
    describe_field(
        schema,
        "nodeSelectors",
        "Nodes that announce (as next hops). When empty, every node does.",
    );
    describe_field(
        schema,
        "serviceSelectors",
        "Services to announce, selected by their labels. When empty, every Service with an\n\
         address from the selected pools. Needs the default aggregation lengths, since an\n\
         aggregated prefix would cover unselected Services too.\n\
         \n\
         An extension over MetalLB up to v0.15. MetalLB v0.16 added a field of the same name,\n\
         meaning and restriction, so manifests using it work with both.",
    );
}

fn communities_schema(_: &mut SchemaGenerator) -> Schema {
    string_set(MAX_COMMUNITIES, community_ref_schema())
}

impl BGPAdvertisementSpec {
    /// The same rules as the CRD schema. Paths in the errors start at `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        check_range(
            &mut errors,
            "spec.aggregationLength",
            self.aggregation_length,
            32,
        );
        check_range(
            &mut errors,
            "spec.aggregationLengthV6",
            self.aggregation_length_v6,
            128,
        );
        let field = "spec.communities";
        check_len(&mut errors, field, &self.communities, MAX_COMMUNITIES);
        check_unique(&mut errors, field, &self.communities);
        for (i, community) in self.communities.iter().enumerate() {
            errors.check(
                item(field, i),
                community.parse::<CommunityRef>().map_err(Problem::from),
            );
        }
        self.selectors.check(&mut errors);
        check_object_names(&mut errors, "spec.peers", &self.peers, MAX_OBJECT_REFS);
        let aggregated = self.aggregation_length != DEFAULT_AGGREGATION_LENGTH
            || self.aggregation_length_v6 != DEFAULT_AGGREGATION_LENGTH_V6;
        if !self.selectors.service_selectors.is_empty() && aggregated {
            errors.push(
                "spec.serviceSelectors",
                Problem::AggregationWithServiceSelectors,
            );
        }
        errors.finish()
    }

    /// The communities, parsed; the first invalid one is an error.
    pub fn community_refs(&self) -> Result<Vec<CommunityRef>, FieldError> {
        self.communities
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse().map_err(|e| {
                    FieldError::new(item("spec.communities", i), Problem::Community(e))
                })
            })
            .collect()
    }
}

fn check_range(errors: &mut Errors, field: &str, value: i32, max: i32) {
    if !(0..=max).contains(&value) {
        errors.push(
            field,
            Problem::OutOfRange {
                value: value.into(),
                min: 0,
                max: max.into(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::community::CommunityValue;
    use crate::test_support;

    fn messages(spec: &BGPAdvertisementSpec) -> Vec<String> {
        test_support::messages(spec.validate())
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(BGPAdvertisementSpec::default().validate(), Ok(()));
    }

    #[test]
    fn aggregation_bounds() {
        for (v4, v6) in [(0, 0), (32, 128), (24, 64)] {
            let spec = BGPAdvertisementSpec {
                aggregation_length: v4,
                aggregation_length_v6: v6,
                ..Default::default()
            };
            assert_eq!(spec.validate(), Ok(()));
        }
        let spec = BGPAdvertisementSpec {
            aggregation_length: 33,
            aggregation_length_v6: -1,
            ..Default::default()
        };
        assert_eq!(
            messages(&spec),
            vec![
                "spec.aggregationLength: must be between 0 and 32, got 33",
                "spec.aggregationLengthV6: must be between 0 and 128, got -1"
            ]
        );
        let spec = BGPAdvertisementSpec {
            aggregation_length_v6: 129,
            ..Default::default()
        };
        assert_eq!(
            messages(&spec),
            vec!["spec.aggregationLengthV6: must be between 0 and 128, got 129"]
        );
    }

    #[test]
    fn communities() {
        let spec = BGPAdvertisementSpec {
            communities: vec![
                "65535:65281".into(),
                "large:1:2:3".into(),
                "NO_ADVERTISE".into(),
            ],
            ..Default::default()
        };
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(
            spec.community_refs(),
            Ok(vec![
                CommunityRef::Value(CommunityValue::Standard(65535, 65281)),
                CommunityRef::Value(CommunityValue::Large(1, 2, 3)),
                CommunityRef::Alias("NO_ADVERTISE".into()),
            ])
        );
        let spec = BGPAdvertisementSpec {
            communities: vec![
                "1:2".into(),
                "1:2".into(),
                "70000:1".into(),
                "large:1:2".into(),
                "no way".into(),
            ],
            ..Default::default()
        };
        assert_eq!(messages(&spec).len(), 4);
        assert_eq!(
            messages(&spec)[0],
            "spec.communities[1]: duplicate value \"1:2\""
        );
        assert!(
            spec.community_refs()
                .unwrap_err()
                .to_string()
                .starts_with("spec.communities[2]: \"70000:1\"")
        );
    }

    #[test]
    fn service_selectors_need_default_aggregation() {
        let spec = BGPAdvertisementSpec {
            selectors: AdvertisementSelectors {
                service_selectors: vec![Default::default()],
                ..Default::default()
            },
            aggregation_length: 24,
            ..Default::default()
        };
        assert_eq!(
            messages(&spec),
            vec![
                "spec.serviceSelectors: must stay at the default (aggregationLength 32, aggregationLengthV6 128) when serviceSelectors is set"
            ]
        );
    }

    #[test]
    fn names() {
        let spec = BGPAdvertisementSpec {
            selectors: AdvertisementSelectors {
                ip_address_pools: vec!["ok".into()],
                ..Default::default()
            },
            peers: vec!["router_1".into()],
            ..Default::default()
        };
        assert_eq!(messages(&spec).len(), 1);
        assert!(messages(&spec)[0].starts_with("spec.peers[0]: invalid name \"router_1\""));
    }
}
