//! What a real-node cluster changes on the host, recorded before it is
//! changed, so that teardown can put everything back even from another
//! process (`cargo xtask cluster down`) or after a crashed run.
//!
//! The record lives in `<cluster dir>/host-state.json` and is rewritten after
//! every change. Teardown is idempotent: every step tolerates "already gone".

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::netns::run;
use crate::process::kill_pid;

/// Host sysctls that the kubelet sets on start (not per network namespace).
pub const KUBELET_SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];

/// The cgroup v1 hierarchies a kubelet's `cgroupRoot` must exist in.
const CGROUP_BASE: &str = "/sys/fs/cgroup";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HostState {
    /// The cluster's own directory: every file, socket and mount is under it.
    pub dir: PathBuf,
    /// Network namespaces, by name.
    pub netns: Vec<String>,
    /// Processes we started (kubelets, containerds, control plane, routers).
    pub pids: Vec<u32>,
    /// cgroup roots (one per kubelet), as paths under each hierarchy.
    pub cgroup_roots: Vec<String>,
    /// `/proc/sys` paths and the value each had before we started.
    pub sysctls: Vec<(String, String)>,
    /// Directories outside `dir` that did not exist before and that the
    /// kubelet creates anyway.
    pub created_dirs: Vec<PathBuf>,
}

impl HostState {
    fn path(dir: &Path) -> PathBuf {
        dir.join("host-state.json")
    }

    pub fn new(dir: &Path) -> HostState {
        HostState {
            dir: dir.to_path_buf(),
            ..HostState::default()
        }
    }

    pub fn load(dir: &Path) -> Result<Option<HostState>> {
        match std::fs::read(HostState::path(dir)) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn save(&self) -> Result<()> {
        let path = HostState::path(&self.dir);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Records the current values of `sysctls` (once: the first value seen
    /// is the host's own).
    pub fn remember_sysctls(&mut self, sysctls: &[&str]) -> Result<()> {
        for key in sysctls {
            if self.sysctls.iter().any(|(k, _)| k == key) {
                continue;
            }
            let path = Path::new("/proc/sys").join(key);
            if let Ok(value) = std::fs::read_to_string(&path) {
                self.sysctls
                    .push((key.to_string(), value.trim().to_string()));
            }
        }
        self.save()
    }

    /// Records `dir` for removal if it does not exist yet.
    pub fn remember_new_dir(&mut self, dir: &Path) -> Result<()> {
        if !dir.exists() && !self.created_dirs.iter().any(|d| d == dir) {
            self.created_dirs.push(dir.to_path_buf());
            self.save()?;
        }
        Ok(())
    }

    /// Creates `root` in every cgroup v1 hierarchy, with the cpuset copied
    /// from the top (a new cpuset cgroup starts empty and takes no task).
    pub fn create_cgroup_root(&mut self, root: &str) -> Result<()> {
        self.cgroup_roots.push(root.to_string());
        self.save()?;
        for hierarchy in cgroup_hierarchies(false)? {
            let path = hierarchy.join(root.trim_start_matches('/'));
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating cgroup {}", path.display()))?;
            if hierarchy.ends_with("cpuset") {
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(hierarchy.join(file))?;
                    std::fs::write(path.join(file), value.trim())
                        .with_context(|| format!("writing {}", path.join(file).display()))?;
                }
            }
        }
        Ok(())
    }

    /// Every live process of the cluster: those in its namespaces and in the
    /// kubelets' cgroups (pods), without duplicates.
    pub fn lab_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .cgroup_roots
            .iter()
            .flat_map(|r| cgroup_pids(r))
            .chain(self.netns.iter().flat_map(|n| netns_pids(n)))
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs everything in the recorded cgroup roots and network
    /// namespaces (containers, shims, hostNetwork pods) until none is left.
    pub fn kill_processes(&self) -> std::result::Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pids = self.lab_pids();
            let left = pids.len();
            for pid in pids {
                kill_pid(pid, libc::SIGKILL);
            }
            if left == 0 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{left} processes still alive after 20 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Undoes everything recorded, in an order that works: processes, then
    /// mounts, cgroups, namespaces, sysctls and files.
    pub fn teardown(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Our own processes first, so nothing restarts what we kill next.
        for pid in &self.pids {
            kill_pid(*pid, libc::SIGKILL);
        }
        if let Err(e) = self.kill_processes() {
            problems.push(e);
        }
        for mount in mounts_under(&self.dir) {
            if let Err(e) = unmount(&mount) {
                problems.push(format!("unmounting {}: {e}", mount.display()));
            }
        }
        for root in &self.cgroup_roots {
            if let Err(e) = remove_cgroup_tree(root) {
                problems.push(format!("removing cgroup {root}: {e:#}"));
            }
        }
        for netns in &self.netns {
            let _ = run(std::process::Command::new("ip").args(["netns", "del", netns]));
        }
        for (key, value) in &self.sysctls {
            let path = Path::new("/proc/sys").join(key);
            if let Err(e) = std::fs::write(&path, value) {
                problems.push(format!("restoring {key}={value}: {e}"));
            }
        }
        for dir in &self.created_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        problems
    }
}

/// The mounted cgroup hierarchies: the v1 controllers the kubelet's
/// `cgroupRoot` must be created in, and with `with_unified`, the v2 tree of
/// the hybrid layout too, where runc makes cgroups of its own (teardown must
/// find and remove those as well).
fn cgroup_hierarchies(with_unified: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(CGROUP_BASE)? {
        let path = entry?.path();
        if path.join("cgroup.procs").exists() && (with_unified || !path.ends_with("unified")) {
            out.push(path);
        }
    }
    Ok(out)
}

/// `root` and every cgroup below it, in every hierarchy, parents first.
fn cgroup_dirs(root: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for hierarchy in cgroup_hierarchies(true).unwrap_or_default() {
        let mut stack = vec![hierarchy.join(root.trim_start_matches('/'))];
        while let Some(dir) = stack.pop() {
            if !dir.is_dir() {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|p| p.is_dir()),
                );
            }
            dirs.push(dir);
        }
    }
    dirs
}

/// Every pid in `root` and below, over all hierarchies.
fn cgroup_pids(root: &str) -> Vec<u32> {
    let mut pids: Vec<u32> = cgroup_dirs(root)
        .iter()
        .filter_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Every pid in network namespace `name`.
fn netns_pids(name: &str) -> Vec<u32> {
    run(std::process::Command::new("ip").args(["netns", "pids", name]))
        .map(|out| {
            out.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes `root` and its children, deepest first, in every hierarchy.
fn remove_cgroup_tree(root: &str) -> Result<()> {
    for dir in cgroup_dirs(root).iter().rev() {
        // A cgroup whose last task just died may need a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = std::fs::remove_dir(dir) {
            if e.kind() == std::io::ErrorKind::NotFound {
                break;
            }
            if Instant::now() > deadline {
                return Err(e).with_context(|| format!("rmdir {}", dir.display()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// Mount points at or under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(raw: &str) -> PathBuf {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let code: String = chars.by_ref().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&code, 8) {
                out.push(byte as char);
                continue;
            }
            out.push('\\');
            out.push_str(&code);
        } else {
            out.push(c);
        }
    }
    PathBuf::from(out)
}

fn unmount(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: umount2 with a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // Already gone (a parent's lazy unmount took it along).
    if matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
        return Ok(());
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(
            unescape_mount_path(r"/var/tmp/a\040b/c"),
            PathBuf::from("/var/tmp/a b/c")
        );
        assert_eq!(unescape_mount_path("/plain"), PathBuf::from("/plain"));
    }
}
