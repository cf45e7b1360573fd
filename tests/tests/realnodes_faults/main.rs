//! The faults users hit (issue 11), on real kubelet nodes: gossip cut or
//! keyed wrong on one node, the API out of reach, a node's link down, the
//! client kernel's own reachability probe, and BGP Graceful Restart through
//! a rolling update of the speakers.
//!
//! Every test takes the site exclusively (`site::exclusive`): they cut
//! links, block traffic and kill speakers on purpose. They all use
//! `site::shared_site_with_second_lan()` (the site with an eth1 LAN as well):
//! a module calling `shared_site()` would bring up a second site.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

mod api_outage;
mod gossip;
mod second_lan;
mod wire;

/// Runs its closure when dropped: puts the site back even when a test fails
/// part way.
pub struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

pub use ferrolb_tests::realnodes::until;
