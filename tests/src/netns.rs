//! Network namespaces made by a test, and removed when it ends.
//!
//! Every namespace name carries a per-run prefix (`flb<pid hex><counter>`), so
//! concurrent runs never collide, and a [`Netns`] deletes its namespace on drop,
//! which also destroys every interface inside it. Addresses come only from the
//! documentation ranges (see DESIGN.md); traffic never leaves namespaces the
//! test created.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// A network namespace that lives as long as this value.
pub struct Netns {
    pub name: String,
}

/// A fresh, short name (interface-name sized) that no other run uses.
pub fn unique_name(role: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("flb{:x}{n}-{role}", std::process::id())
}

/// Runs a command, failing with its output when it exits non-zero.
pub fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

impl Netns {
    /// A namespace with a name unique to this run (see [`Netns::create_named`]).
    pub fn create(role: &str) -> Result<Netns> {
        Netns::create_named(&unique_name(role))
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// A command that runs inside the namespace (`ip netns exec`, which also
    /// mounts the namespace's own /sys).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref());
        command
    }

    /// Runs `args` inside the namespace and returns its stdout.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        let (program, rest) = args.split_first().context("empty command")?;
        run(self.command(program).args(rest))
    }

    /// MAC address of an interface in this namespace.
    pub fn mac(&self, interface: &str) -> Result<String> {
        let out = self.ip(&["-o", "link", "show", "dev", interface])?;
        out.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_string)
            .with_context(|| format!("no MAC for {interface} in {}: {out}", self.name))
    }

    /// A namespace named `name` (an old one of that name is replaced), with
    /// its loopback up and IPv6 duplicate address detection off (a test LAN
    /// has no duplicates, and DAD would hold new addresses back for a second
    /// or more).
    pub fn create_named(name: &str) -> Result<Netns> {
        let _ = run(Command::new("ip").args(["netns", "del", name]));
        run(Command::new("ip").args(["netns", "add", name]))?;
        let netns = Netns {
            name: name.to_string(),
        };
        netns.ip(&["link", "set", "lo", "up"])?;
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            netns.exec_ok(&["sysctl", "-qw", key])?;
        }
        Ok(netns)
    }

    /// Keeps the namespace after this value is gone; returns its name.
    pub fn persist(self) -> String {
        let name = self.name.clone();
        std::mem::forget(self);
        name
    }

    /// Path of the namespace handle, for `setns`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, or the namespace lingers.
        if let Ok(out) = run(Command::new("ip").args(["netns", "pids", &self.name])) {
            for pid in out.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: plain syscall on pids inside our own namespace.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        let _ = run(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// Connects `a`/`a_if` to `b`/`b_if` with a veth pair.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<()> {
    // Create both ends in `a` under temporary unique names, then move one.
    let tmp = unique_name("v");
    a.ip(&["link", "add", a_if, "type", "veth", "peer", "name", &tmp])?;
    a.ip(&["link", "set", &tmp, "netns", &b.name])?;
    b.ip(&["link", "set", &tmp, "name", b_if])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Runs `f` on a thread whose network namespace is `netns`. Sockets made there
/// stay in that namespace for their whole life, wherever they are used later.
pub fn in_netns<T: Send + 'static>(
    netns: &Netns,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    in_named_netns(&netns.name, f)
}

/// [`in_netns`] for a namespace known by name only (one this value does not own).
pub fn in_named_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let name = name.to_string();
    std::thread::spawn(move || -> Result<T> {
        enter_named_netns(&name)?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))?
}

/// Moves the calling thread (only it) into the namespace `name`: for a thread
/// spawned to work there, as [`in_named_netns`] does for one call.
pub fn enter_named_netns(name: &str) -> Result<()> {
    let path = format!("/run/netns/{name}");
    let handle = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd only changes this thread.
    if unsafe { libc::setns(handle.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}
