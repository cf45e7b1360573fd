//! `ferrolb-speaker`: makes FerroLB Service IPs reachable from the node it runs on.
//!
//! Pure cores (no I/O): `model` (cluster state -> desired announcements), `election`,
//! the packet codecs in `l2`, and the BGP codec and session state machine in `bgp`.
//! Thin shells around them: raw sockets, the gossip membership, the kube watchers.

pub mod bgp;
pub mod election;
pub mod l2;
pub mod membership;
pub mod metrics;
pub mod model;
pub mod shell;
