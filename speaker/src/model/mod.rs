//! The speaker's pure core: watched cluster state in, desired announcements out.
//!
//! * [`view`]: the cluster reduced to what decisions read ([`ClusterView`]);
//!   [`convert`] builds it from Kubernetes objects, [`ClassFilter`] (the API's rule, shared
//!   with the controller) says which Services are ours.
//! * [`scope`] and [`eligibility`]: which nodes may announce an IP, shared by all modes.
//! * [`l2`]: L2 mode, one owner per IP by [`crate::election`], among the nodes whose
//!   [`reach`] covers the IP's interfaces.
//! * [`node_address`]: which of a Node's addresses gossip and BGP use.
//! * [`bgp_stop`]: whether a stopping speaker restarts gracefully or withdraws.
//! * [`bgp_incremental`]: the BGP plan kept up to date per change ([`BgpPlanner`]).
//!
//! BGP mode belongs in a sibling `bgp` module: its advertisement view implements
//! [`scope::AdvertisementScope`], it reuses [`eligibility::advertised`] and
//! [`eligibility::ip_candidates`] per peer, and every eligible node announces (no election).

pub mod bgp;
pub mod bgp_convert;
pub mod bgp_incremental;
pub mod bgp_stop;
#[deny(missing_docs)]
pub mod changes;
pub mod convert;
pub mod eligibility;
#[deny(missing_docs)]
pub mod few;
pub mod l2;
pub mod l2_incremental;
#[deny(missing_docs)]
pub mod name;
pub mod node_address;
#[deny(missing_docs)]
pub mod object_text;
#[deny(missing_docs)]
pub mod objects;
pub mod owned;
#[deny(missing_docs)]
pub mod reach;
pub mod regrow;
pub mod scope;
mod service_ips;
pub mod view;
pub mod view_cache;

#[cfg(test)]
mod fixtures;

pub use bgp::{BgpOptions, BgpPlan, BgpView, LocalNode, PeerPlan, bgp_plan};
pub use bgp_convert::BgpWarning;
pub use bgp_incremental::{BgpPlanner, ChangedPrefixes};
pub use bgp_stop::{BgpStop, LeaveReason, bgp_stop};
pub use changes::Changes;
pub use convert::ViewWarning;
pub use eligibility::{LABEL_EXCLUDE_FROM_LOAD_BALANCERS, Liveness};
pub use ferrolb_crds::class::ClassFilter;
pub use l2::{InterfaceSelection, L2Decision, l2_plan, l2_plan_within, owned_by, probe_first};
pub use l2_incremental::L2Planner;
pub use object_text::{Uid, Version};
pub use objects::{ByKey, EndpointObject, ObjectStore, ServiceObject, SliceObject};
pub use owned::{
    Announced, AnnouncedAt, InterfaceNames, ReportDiff, Reported, Touched, announced, announced_at,
    patch_owned,
};
pub use reach::{Reach, Reaches};
pub use regrow::{EachTree, Regrow};
pub use scope::AdvertisementScope;
pub use view::{
    ClusterView, L2AdvertisementView, NodeSet, NodeView, PoolView, ServiceEndpoints, ServiceKey,
    ServiceSet, ServiceView,
};
pub use view_cache::{Synced, ViewCache};
