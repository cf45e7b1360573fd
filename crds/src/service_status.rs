//! `ServiceL2Status`: one object per IP a speaker announces in L2 mode, written by that
//! speaker and deleted when the announcement ends, as MetalLB's kind of the same name.
//!
//! It lives in the speaker's namespace (a speaker may not write into every namespace) and
//! carries labels naming the Service and the node, so an operator can ask
//! `kubectl get servicel2statuses -l ferrolb.io/service-name=web`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label with the announced Service's namespace.
pub const LABEL_SERVICE_NAMESPACE: &str = "ferrolb.io/service-namespace";
/// Label with the announced Service's name.
pub const LABEL_SERVICE_NAME: &str = "ferrolb.io/service-name";
/// Label with the announcing node's name.
pub const LABEL_NODE: &str = "ferrolb.io/node";

/// Written by the speaker only; the spec is empty and everything is in the status.
// Clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "ServiceL2Status",
    plural = "servicel2statuses",
    singular = "servicel2status",
    category = "ferrolb",
    namespaced,
    status = "ServiceL2StatusStatus",
    derive = "PartialEq",
    doc = "ServiceL2Status tells which node announces a Service IP in L2 mode, and on which interfaces. Written by the announcing speaker; deleted when it stops.",
    printcolumn(
        name = "Service Namespace",
        type_ = "string",
        json_path = ".status.serviceNamespace"
    ),
    printcolumn(name = "Service", type_ = "string", json_path = ".status.serviceName"),
    printcolumn(name = "IP", type_ = "string", json_path = ".status.ip"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(
        name = "Interfaces",
        type_ = "string",
        json_path = ".status.interfaces[*].name"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct ServiceL2StatusSpec {}

/// What is announced, from where.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceL2StatusStatus {
    /// The node whose speaker answers ARP/NDP for the IP.
    #[serde(default)]
    pub node: String,
    /// Name of the Service whose IP is announced.
    #[serde(default)]
    pub service_name: String,
    /// Namespace of the Service whose IP is announced.
    #[serde(default)]
    pub service_namespace: String,
    /// The announced IP (an extension over MetalLB, which has one object per Service).
    #[serde(default)]
    pub ip: String,
    /// Interfaces the IP is announced on.
    #[serde(default)]
    pub interfaces: Vec<InterfaceInfo>,
}

/// One network interface an IP is announced on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct InterfaceInfo {
    /// The interface's name on the node, e.g. `eth0`.
    pub name: String,
}
