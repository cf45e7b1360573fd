//! The faults users hit (issue 11), on real kubelet nodes: gossip cut or
//! keyed wrong on one node, the API out of reach, a node's link down, the
//! client kernel's own reachability probe, and BGP Graceful Restart through
//! a rolling update of the speakers.
//!
//! Every test takes the site exclusively (`site::exclusive`): they cut
//! links, block traffic and kill speakers on purpose.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

mod api_outage;
mod gossip;
mod second_lan;
mod wire;
