//! The real-node test site: one cluster per test process (3 nodes, a LAN
//! client, a BIRD router with a client behind it), FerroLB installed from
//! `deploy/` as pods, and one L2 pool and one BGP pool for the tests;
//! optionally a second LAN with a pool announced only there.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::json;

use super::second_lan::SECOND_LAN_POOL_V4;
use super::{
    HostState, NODE_ASN, ROUTER_ASN, ROUTER_IP, RealCluster, RealClusterShape, built_images,
};

pub const SITE_NODES: usize = 3;
/// The L2 pool: on the LAN, so the client resolves its IPs by ARP and NDP.
pub const L2_POOL: &str = "l2";
pub const L2_POOL_V4: &str = "198.51.100.200-198.51.100.230";
pub const L2_POOL_V6: &str = "2001:db8:100::200-2001:db8:100::2ff";
/// The BGP pool: off the LAN, reached through the router's ECMP route.
pub const BGP_POOL: &str = "bgp";
pub const BGP_POOL_V4: &str = "203.0.113.240/28";
/// With the second LAN: a pool announced on eth1 only.
pub const SECOND_LAN_POOL: &str = "l2-eth1";

/// The site of this test process, started on first use. Real-node tests
/// disturb each other (they kill speakers and nodes), so each takes
/// [`exclusive`] for its whole run.
pub fn shared_site() -> &'static RealCluster {
    static SITE: OnceLock<RealCluster> = OnceLock::new();
    shared(&SITE, SiteOptions::default())
}

/// [`shared_site`] with the second LAN and its pool [`SECOND_LAN_POOL`]: the
/// site of the fault tests. A test process uses one of the two accessors.
pub fn shared_site_with_second_lan() -> &'static RealCluster {
    static SITE: OnceLock<RealCluster> = OnceLock::new();
    shared(&SITE, SiteOptions { second_lan: true })
}

fn shared(site: &'static OnceLock<RealCluster>, options: SiteOptions) -> &'static RealCluster {
    site.get_or_init(|| {
        let site = start_site_with(options)
            .unwrap_or_else(|e| panic!("starting the real-node site: {e:#}"));
        teardown_at_exit(site.dir.clone());
        site
    })
}

/// One real-node test at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a site has beyond the cluster, FerroLB and the L2 and BGP pools.
#[derive(Clone, Copy, Debug, Default)]
pub struct SiteOptions {
    /// The second LAN (an `eth1` on every node and the client), with the
    /// pool [`SECOND_LAN_POOL`] announced only on eth1.
    pub second_lan: bool,
}

/// Starts a site (tied to this process, torn down on drop): the cluster,
/// FerroLB from `deploy/`, the L2 and BGP pools.
pub fn start_site() -> anyhow::Result<RealCluster> {
    start_site_with(SiteOptions::default())
}

/// [`start_site`] with `options`.
pub fn start_site_with(options: SiteOptions) -> anyhow::Result<RealCluster> {
    let site = RealCluster::start(&RealClusterShape {
        nodes: SITE_NODES,
        images: built_images()?,
        detached: false,
        router: true,
        second_lan: options.second_lan,
    })?;
    site.install_ferrolb()?;
    site.apply(&[
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": L2_POOL, "namespace": "ferrolb-system"},
            "spec": {"addresses": [L2_POOL_V4, L2_POOL_V6], "autoAssign": false},
        }),
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
            "metadata": {"name": L2_POOL, "namespace": "ferrolb-system"},
            "spec": {"ipAddressPools": [L2_POOL]},
        }),
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": BGP_POOL, "namespace": "ferrolb-system"},
            "spec": {"addresses": [BGP_POOL_V4], "autoAssign": false},
        }),
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "BGPPeer",
            "metadata": {"name": "router", "namespace": "ferrolb-system"},
            "spec": {"peerAddress": ROUTER_IP, "peerASN": ROUTER_ASN, "myASN": NODE_ASN, "holdTime": "9s"},
        }),
        json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "BGPAdvertisement",
            "metadata": {"name": BGP_POOL, "namespace": "ferrolb-system"},
            "spec": {"ipAddressPools": [BGP_POOL]},
        }),
    ])?;
    if options.second_lan {
        site.apply(&[
            json!({
                "apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool",
                "metadata": {"name": SECOND_LAN_POOL, "namespace": "ferrolb-system"},
                "spec": {"addresses": [SECOND_LAN_POOL_V4], "autoAssign": false},
            }),
            json!({
                "apiVersion": "ferrolb.io/v1beta1", "kind": "L2Advertisement",
                "metadata": {"name": SECOND_LAN_POOL, "namespace": "ferrolb-system"},
                "spec": {"ipAddressPools": [SECOND_LAN_POOL], "interfaces": ["eth1"]},
            }),
        ])?;
    }
    Ok(site)
}

/// A static is never dropped: tear the site down when the process exits
/// (processes, pods, mounts, cgroups, namespaces, sysctls).
fn teardown_at_exit(dir: PathBuf) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn teardown() {
        if let Some(dir) = DIR.get() {
            match HostState::load(dir) {
                Ok(Some(host)) => {
                    for problem in host.teardown() {
                        eprintln!("real-node site teardown: {problem}");
                    }
                    if std::env::var_os("FERROLB_KEEP_CLUSTER").is_none() {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                }
                Ok(None) => {}
                Err(e) => eprintln!("real-node site teardown: {e:#}"),
            }
        }
    }
    if DIR.set(dir).is_ok() {
        // SAFETY: registers a plain function; it only touches a static.
        unsafe {
            libc::atexit(teardown);
        }
    }
}
