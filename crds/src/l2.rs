//! `L2Advertisement`: announce addresses of selected pools with ARP (IPv4) and NDP (IPv6).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::advertisement::AdvertisementSelectors;
use crate::schema::{MAX_INTERFACES, interfaces_schema};
use crate::validation::{Errors, FieldError, check_interface_names};

/// Desired state of an `L2Advertisement`: MetalLB's fields, all optional. An empty spec
/// (or none at all) announces every pool from every node.
// Clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "L2Advertisement",
    plural = "l2advertisements",
    singular = "l2advertisement",
    category = "ferrolb",
    namespaced,
    derive = "PartialEq",
    doc = "L2Advertisement announces the addresses of the selected IPAddressPools on the local network, with ARP (IPv4) and NDP (IPv6).",
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
    printcolumn(name = "Interfaces", type_ = "string", json_path = ".spec.interfaces"),
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
pub struct L2AdvertisementSpec {
    /// The pools, nodes and Services this advertisement covers.
    #[serde(flatten)]
    pub selectors: AdvertisementSelectors,

    /// Interfaces to announce from. When empty, every interface of the node is used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "interfaces_schema")]
    pub interfaces: Vec<String>,
}

impl L2AdvertisementSpec {
    /// The same rules as the CRD schema. Paths in the errors start at `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        self.selectors.check(&mut errors);
        check_interface_names(
            &mut errors,
            "spec.interfaces",
            &self.interfaces,
            MAX_INTERFACES,
        );
        errors.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::messages;

    #[test]
    fn empty_spec_is_valid() {
        assert_eq!(L2AdvertisementSpec::default().validate(), Ok(()));
    }

    #[test]
    fn checks_names_and_interfaces() {
        let spec = L2AdvertisementSpec {
            selectors: AdvertisementSelectors {
                ip_address_pools: vec!["pool-a".into(), "Pool_B".into(), "pool-a".into()],
                ..Default::default()
            },
            interfaces: vec![
                "eth0".into(),
                "eth/1".into(),
                "a-very-long-interface".into(),
            ],
        };
        assert_eq!(
            messages(spec.validate()),
            vec![
                "spec.ipAddressPools[2]: duplicate value \"pool-a\"",
                "spec.ipAddressPools[1]: invalid name \"Pool_B\": use lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters",
                "spec.interfaces[1]: invalid interface name \"eth/1\": use 1 to 15 printable ASCII characters without '/', ':' or spaces, not '.' or '..'",
                "spec.interfaces[2]: invalid interface name \"a-very-long-interface\": use 1 to 15 printable ASCII characters without '/', ':' or spaces, not '.' or '..'",
            ]
        );
    }
}
