//! The `ferrolb.io/v1beta1` API: MetalLB's kinds and field names under our group.
//!
//! A MetalLB manifest works here after changing only its `apiVersion`: the kinds, field
//! names and defaults are MetalLB's. Where we differ on purpose, the field's doc comment
//! says so, and `crds/README.md` lists all such differences.
//!
//! Every rule that can be checked inside one object exists twice, on purpose:
//!
//! * as OpenAPI bounds and CEL `x-kubernetes-validations` in the generated CRDs, so that
//!   `kubectl apply` rejects a bad object with a message naming the field, and
//! * as plain Rust (`validate()` on every spec, see [`validation`]), so that the controller
//!   and speakers can reject objects that reached the API server without that schema (an old
//!   or hand-edited CRD) and report why in an Event or status condition.
//!
//! The tests keep the two in step: the Rust side is unit- and property-tested, and the CEL
//! side was checked against a real kube-apiserver with the same good and bad examples.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod address;
pub mod advertisement;
pub mod bgp_advertisement;
pub mod bgp_peer;
pub mod class;
pub mod community;
pub mod duration;
pub mod generate;
pub mod l2;
pub mod labels;
pub mod pool;
mod schema;
pub mod selector;
pub mod service_key;
pub mod service_status;
pub mod session_status;
#[cfg(test)]
mod test_support;
pub mod validation;

/// The API group of every FerroLB kind.
pub const GROUP: &str = "ferrolb.io";
/// The one served and stored version.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` of every FerroLB object.
pub const API_VERSION: &str = "ferrolb.io/v1beta1";

pub use advertisement::AdvertisementSelectors;
pub use bgp_advertisement::{BGPAdvertisement, BGPAdvertisementSpec};
pub use bgp_peer::{BGPPeer, BGPPeerSpec, DynamicASNMode};
pub use class::{ClassFilter, DEFAULT_LOAD_BALANCER_CLASS, Interest};
pub use community::{Community, CommunityAlias, CommunitySpec};
pub use generate::{crds, render_crd_files};
pub use l2::{L2Advertisement, L2AdvertisementSpec};
pub use pool::{IPAddressPool, IPAddressPoolSpec, IPAddressPoolStatus, ServiceAllocation};
pub use service_status::{ServiceL2Status, ServiceL2StatusStatus};
pub use session_status::{BGPSessionState, BGPSessionStateStatus};
pub use validation::{FieldError, Problem};
