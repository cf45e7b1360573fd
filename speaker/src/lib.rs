//! `ferrolb-speaker`: makes FerroLB Service IPs reachable from the node it runs on.
//!
//! Pure cores (no I/O): `model` (cluster state -> desired announcements), `election`,
//! the packet codecs in `l2`, and the BGP codec and session state machine in `bgp`.
//! Thin shells around them: raw sockets, the gossip membership, the kube watchers.
//! The pure modules (here and inside `bgp`, `l2` and `membership`) are
//! `#[deny(missing_docs)]`: every public item there says what it means.

pub mod bgp;
#[deny(missing_docs)]
pub mod election;
pub mod l2;
#[deny(missing_docs)]
pub mod mailbox;
pub mod membership;
pub mod metrics;
#[deny(missing_docs)]
pub mod model;
pub mod shell;
