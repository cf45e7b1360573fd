//! `BGPSessionState`: one object per (node, BGPPeer) pair, written by that node's speaker
//! when the session changes state and deleted when the peer no longer applies to the node.
//!
//! It lives in the speaker's namespace and carries labels naming the node and the peer, so
//! `kubectl get bgpsessionstates -l ferrolb.io/peer=tor-a` lists a router's sessions.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label with the speaker's node name.
pub const LABEL_NODE: &str = "ferrolb.io/node";
/// Label with the BGPPeer's name.
pub const LABEL_PEER: &str = "ferrolb.io/peer";

/// Written by the speaker only; the spec is empty and everything is in the status.
// Clippy reads kube's repeated `printcolumn(type_ = ...)` arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BGPSessionState",
    plural = "bgpsessionstates",
    singular = "bgpsessionstate",
    category = "ferrolb",
    namespaced,
    status = "BGPSessionStateStatus",
    derive = "PartialEq",
    doc = "BGPSessionState shows one speaker's BGP session with one BGPPeer. Written by the speaker; deleted when the peer no longer applies to its node.",
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(name = "Peer", type_ = "string", json_path = ".status.peer"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Established",
        type_ = "date",
        json_path = ".status.establishedSince"
    ),
    printcolumn(
        name = "Prefixes",
        type_ = "integer",
        json_path = ".status.prefixesSent"
    ),
    printcolumn(
        name = "Last Error",
        type_ = "string",
        json_path = ".status.lastError",
        priority = 10
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct BGPSessionStateSpec {}

/// The session as its speaker last saw it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPSessionStateStatus {
    /// The node whose speaker holds this session.
    #[serde(default)]
    pub node: String,
    /// The BGPPeer's name.
    #[serde(default)]
    pub peer: String,
    /// The peer's address and port.
    #[serde(default)]
    pub peer_address: String,
    /// RFC 4271 state: Idle, Connect, Active, OpenSent, OpenConfirm or Established.
    #[serde(default)]
    pub state: String,
    /// When the session last became Established (RFC 3339); unset while it is not. The
    /// uptime is now minus this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub established_since: Option<String>,
    /// Prefixes the peer currently has from this speaker.
    #[serde(default)]
    pub prefixes_sent: u32,
    /// Why the session last went down, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
