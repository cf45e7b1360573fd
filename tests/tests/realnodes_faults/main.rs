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

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// Runs its closure when dropped: puts the site back even when a test fails
/// part way.
pub struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Polls `probe` every `every` until it gives a value, for at most `within`;
/// the timeout names `what` and the probe's last error.
pub fn until<T>(
    what: &str,
    within: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        let last = match probe() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => String::from("not yet"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not within {within:?} (last: {last})");
        }
        std::thread::sleep(every);
    }
}
