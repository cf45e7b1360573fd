//! A tiny HTTP/1.1 backend for the real-node tests: every GET is answered with
//! the pod, the node and the client's address as this pod sees it.

// Raw libc socket and signal calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferrolb_testimages::{Identity, answer, block_signals, render, wait_signal};

const MAX_CONNECTIONS: usize = 256;
const MAX_HEAD: usize = 8192;

fn main() {
    if let Err(e) = run() {
        eprintln!("echo: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let listen = parse_args()?;
    // Block before any thread starts, so every thread inherits the mask.
    let set = block_signals(&[libc::SIGTERM, libc::SIGINT]).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let _ = wait_signal(&set);
        std::process::exit(0);
    });
    let identity = Arc::new(Identity {
        pod: std::env::var("POD_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(hostname),
        node: std::env::var("NODE_NAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into()),
    });
    let listener = bind(listen).map_err(|e| format!("listening on {listen}: {e}"))?;
    eprintln!("echo: listening on {listen}");
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: the client sees a reset
        }
        let (identity, done) = (identity.clone(), active.clone());
        let spawned = std::thread::Builder::new().spawn(move || {
            serve(stream, &identity);
            done.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
    Ok(())
}

fn parse_args() -> Result<SocketAddr, String> {
    let mut listen = "[::]:8080".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            listen = args.next().ok_or("--listen needs an address")?;
        } else if let Some(v) = arg.strip_prefix("--listen=") {
            listen = v.to_string();
        } else if arg == "--help" || arg == "-h" {
            println!("usage: ferrolb-echo [--listen ADDR:PORT]   (default [::]:8080, dual-stack)");
            std::process::exit(0);
        } else {
            return Err(format!("unknown argument {arg:?}"));
        }
    }
    listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))
}

/// Binds `addr`; an IPv6 wildcard also accepts IPv4 (IPV6_V6ONLY off),
/// whatever the net.ipv6.bindv6only sysctl says.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let SocketAddr::V6(v6) = addr else {
        return TcpListener::bind(addr);
    };
    // SAFETY: plain socket(2); the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns; the listener closes it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let zero: libc::c_int = 0;
    let int_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the option values point at live c_ints of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            int_len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&zero as *const libc::c_int).cast(),
            int_len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_in6 is plain data; every field used is set below.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = v6.port().to_be();
    sa.sin6_addr.s6_addr = v6.ip().octets();
    sa.sin6_flowinfo = v6.flowinfo();
    sa.sin6_scope_id = v6.scope_id();
    let sa_len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: `sa` is a valid sockaddr_in6 of `sa_len` bytes.
    if unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_in6).cast(), sa_len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: listen(2) on our bound socket.
    if unsafe { libc::listen(fd, 1024) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(listener)
}

/// Reads one request head (5 s timeout, at most 8 KiB), answers it, closes.
fn serve(mut stream: TcpStream, identity: &Identity) {
    let Ok(peer) = stream.peer_addr() else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.is_empty() {
        return;
    }
    let reply = answer(&head, identity, peer);
    let _ = stream.write_all(&render(&reply));
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // when the name fits, and we stop at the first NUL or the buffer's end.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
