//! The pod sandbox's process: PID 1 of the pod's PID namespace. It sleeps
//! until SIGTERM or SIGINT (then exits 0) and reaps orphans on SIGCHLD.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use ferrolb_testimages::{block_signals, wait_signal};

fn main() {
    let set = match block_signals(&[libc::SIGTERM, libc::SIGINT, libc::SIGCHLD]) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("pause: blocking signals: {e}");
            std::process::exit(1);
        }
    };
    loop {
        match wait_signal(&set) {
            Ok(libc::SIGCHLD) => reap(),
            Ok(_) => std::process::exit(0),
            Err(e) => {
                eprintln!("pause: sigwait: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// Collects every child that has exited (signals coalesce, so loop).
fn reap() {
    loop {
        // SAFETY: a null status pointer is allowed.
        let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}
