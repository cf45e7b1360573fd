//! A real-node cluster's teardown leaves the host as it was: no process,
//! namespace, mount, cgroup, changed sysctl or netfilter rule of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "an integration test fails by panicking"
)]

use std::time::Duration;

use anyhow::Result;
use ferrolb_tests::netns::run;
use ferrolb_tests::realnodes::host::KUBELET_SYSCTLS;
use ferrolb_tests::realnodes::{RealCluster, RealClusterShape, built_images, host::mounts_under};

fn sysctls() -> Vec<(String, String)> {
    KUBELET_SYSCTLS
        .iter()
        .map(|k| {
            let value = std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default();
            (k.to_string(), value.trim().to_string())
        })
        .collect()
}

#[test]
fn teardown_leaves_nothing_behind() -> Result<()> {
    let before = sysctls();
    let root_rules_before =
        run(std::process::Command::new("nft").args(["list", "ruleset"])).unwrap_or_default();
    let mut cluster = RealCluster::start(&RealClusterShape {
        nodes: 1,
        images: built_images()?,
        detached: false,
        router: true,
        second_lan: false,
    })?;
    // Something to clean up: FerroLB's pods with their mounts and sandboxes.
    cluster.install_ferrolb()?;
    let dir = cluster.dir.clone();
    let netns: Vec<String> = [&cluster.lan, &cluster.control_plane, &cluster.client]
        .into_iter()
        .cloned()
        .chain(cluster.router.clone())
        .chain(cluster.outside_client.clone())
        .chain(cluster.nodes.iter().map(|n| n.netns.clone()))
        .collect();
    let cgroup_root = cluster.nodes[0].cgroup_root.clone();
    assert!(!mounts_under(&dir).is_empty(), "the pods mounted something");
    assert!(
        std::path::Path::new("/sys/fs/cgroup/pids")
            .join(cgroup_root.trim_start_matches('/'))
            .exists()
    );
    let running =
        run(std::process::Command::new("ip").args(["netns", "pids", &cluster.nodes[0].netns]))?;
    assert!(!running.trim().is_empty(), "the node runs processes");

    cluster.teardown()?;
    std::thread::sleep(Duration::from_millis(500));

    let listed = run(std::process::Command::new("ip").args(["netns", "list"]))?;
    for name in &netns {
        assert!(
            !listed.contains(name.as_str()),
            "namespace {name} is left: {listed}"
        );
    }
    assert!(
        mounts_under(&dir).is_empty(),
        "mounts left under {}",
        dir.display()
    );
    assert!(!dir.exists(), "{} is left", dir.display());
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")? {
        let path = hierarchy?.path().join(cgroup_root.trim_start_matches('/'));
        assert!(!path.exists(), "cgroup {} is left", path.display());
    }
    assert_eq!(sysctls(), before, "host sysctls restored");
    let root_rules_after =
        run(std::process::Command::new("nft").args(["list", "ruleset"])).unwrap_or_default();
    assert_eq!(
        root_rules_after, root_rules_before,
        "no netfilter rule in the host namespace"
    );
    for comm in [
        "kubelet",
        "kube-proxy",
        "containerd",
        "ferrolb-speaker",
        "ferrolb-control",
    ] {
        let left = std::fs::read_dir("/proc")?
            .flatten()
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm)
                    && std::fs::read_to_string(e.path().join("stat"))
                        .is_ok_and(|s| !s.contains(") Z "))
            })
            .count();
        assert_eq!(left, 0, "{left} {comm} processes are left");
    }
    Ok(())
}
