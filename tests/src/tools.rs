//! The real Kubernetes binaries the tests run against.
//!
//! They are built from the Go module proxy by `tests/k8s/build-tools.sh` (and
//! helm by `tests/k8s/build-helm.sh`) at pinned versions and cached by
//! version, so only the first run pays.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Where etcd, the control plane, kubectl, kubelet and kube-proxy live.
#[derive(Debug, Clone)]
pub struct Tools {
    pub bin_dir: PathBuf,
}

impl Tools {
    /// Builds the tools when they are not cached yet (printing the build's
    /// progress on stderr), then returns their location.
    pub fn ensure() -> Result<Tools> {
        Ok(Tools {
            bin_dir: run_build_script("tests/k8s/build-tools.sh", &[], &[])?,
        })
    }

    pub fn etcd(&self) -> PathBuf {
        self.bin_dir.join("etcd")
    }

    pub fn kube_apiserver(&self) -> PathBuf {
        self.bin_dir.join("kube-apiserver")
    }

    pub fn kubectl(&self) -> PathBuf {
        self.bin_dir.join("kubectl")
    }
}

/// The helm CLI, built from the Go module proxy by `tests/k8s/build-helm.sh`
/// at a pinned version and cached by version, like the Kubernetes tools.
/// Returns the path of the `helm` binary.
pub fn ensure_helm() -> Result<PathBuf> {
    let bin_dir = run_build_script("tests/k8s/build-helm.sh", &[], &[])?;
    let helm = bin_dir.join("helm");
    if !helm.exists() {
        bail!("{} does not exist after the build", helm.display());
    }
    Ok(helm)
}

/// Runs one of our caching build scripts with `args` and `envs` (its progress
/// goes to stderr) and returns the directory it prints on its last line.
pub(crate) fn run_build_script(
    relative: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<PathBuf> {
    let script = repo_root().join(relative);
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}); see its output above",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().map(str::trim).unwrap_or_default();
    if dir.is_empty() {
        bail!("{} printed no directory", script.display());
    }
    Ok(PathBuf::from(dir))
}

/// The workspace root, found from this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// Debian packages the network tests and the lab use: namespaces (iproute2),
/// the L2 clients (arping, ndisc6, tcpdump), the BGP routers (bird2, gobgpd)
/// and nft, which the fault tests cut gossip and API paths with.
pub const NETWORK_PACKAGES: &[&str] = &[
    "iproute2", "arping", "ndisc6", "tcpdump", "bird2", "gobgpd", "python3", "nftables",
];

/// Debian packages the real-node tier runs on (REAL-NODES.md): containerd with
/// runc (crun fails on this cgroup v1 hybrid host), the CNI plugins, the
/// netfilter tools kube-proxy drives, nsenter (util-linux) and curl.
pub const REAL_NODE_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "util-linux",
    "curl",
];

/// Installs the missing ones of `packages` with apt-get (needs root), so a new
/// machine needs nothing installed by hand.
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg")
                .args(["-s", p])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing Debian packages: {}", missing.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("running apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed ({update})");
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !install.success() {
        bail!("apt-get install {} failed ({install})", missing.join(" "));
    }
    Ok(())
}
