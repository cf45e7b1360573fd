//! Child processes that die with the test process.
//!
//! `cargo test` runs tests on threads that come and go, and a shared cluster
//! lives in a static that is never dropped. So children are spawned from one
//! long-lived thread with `PR_SET_PDEATHSIG`: when the test process exits, the
//! kernel kills them, and nothing is left behind even after a panic.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, anyhow};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("ferrolb-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // Keep the thread (the children's "parent") alive until exit.
                loop {
                    std::thread::park();
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| panic!("cannot start the spawner thread: {e}"));
        Mutex::new(tx)
    })
}

/// No input; stdout and stderr appended to `log`.
fn redirect_to_log(command: &mut Command, log: &Path) -> Result<()> {
    let log_file = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    Ok(())
}

/// Spawns `command` with its output appended to `log`, killed with SIGKILL when
/// the current process dies.
pub fn spawn_tied(mut command: Command, log: &Path) -> Result<Child> {
    redirect_to_log(&mut command, log)?;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = format!("{:?}", command.get_program());
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner()
        .lock()
        .map_err(|_| anyhow!("spawner lock poisoned"))?
        .send((command, reply_tx))
        .map_err(|_| anyhow!("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| anyhow!("spawner thread is gone"))?
        .with_context(|| format!("spawning {program}"))
}

/// Spawns `command` in its own process group, detached from this process, so
/// it outlives it (`cargo xtask cluster up`). Returns its pid.
pub fn spawn_detached(mut command: Command, log: &Path) -> Result<u32> {
    redirect_to_log(&mut command, log)?;
    command.process_group(0);
    let child = command
        .spawn()
        .with_context(|| format!("spawning {:?}", command.get_program()))?;
    Ok(child.id())
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILLs.
pub fn terminate(child: &mut Child, grace: std::time::Duration) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain syscall on a pid we own.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// SIGKILL by pid (for processes started detached).
pub fn kill_pid(pid: u32, signal: i32) -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}
