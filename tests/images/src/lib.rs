//! Shared pieces of the test-image binaries: signal masks and the echo server's
//! request handling, kept here so they can be unit-tested.

// Signal masks are libc calls; each unsafe block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;

/// Blocks `signals` in the calling thread (and every thread it spawns later),
/// so they can be taken synchronously with [`wait_signal`].
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in signals {
        // SAFETY: as above; an invalid signal number is reported by the return value.
        if unsafe { libc::sigaddset(&mut set, s) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: `set` is initialised; the old mask is not wanted.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(set)
}

/// Waits for one of the signals in `set` (which must be blocked) and returns it.
pub fn wait_signal(set: &libc::sigset_t) -> io::Result<libc::c_int> {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: both pointers are valid for the duration of the call.
        let rc = unsafe { libc::sigwait(set, &mut sig) };
        match rc {
            0 => return Ok(sig),
            libc::EINTR => continue,
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// What the echo server answers to one request.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: &'static str,
    pub body: String,
}

/// Identity the echo server reports in every answer.
#[derive(Debug, Clone)]
pub struct Identity {
    pub pod: String,
    pub node: String,
}

/// Answers one request head (everything up to the blank line).
pub fn answer(head: &[u8], identity: &Identity, peer: SocketAddr) -> Reply {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let version_ok = parts.next().is_some_and(|v| v.starts_with("HTTP/1."));
    if !version_ok || target.is_empty() {
        return Reply {
            status: "400 Bad Request",
            body: "bad request\n".into(),
        };
    }
    if method != "GET" {
        return Reply {
            status: "405 Method Not Allowed",
            body: "only GET\n".into(),
        };
    }
    let path = target.split('?').next().unwrap_or("");
    if path == "/healthz" {
        return Reply {
            status: "200 OK",
            body: "ok\n".into(),
        };
    }
    // An IPv4 client on the dual-stack socket shows up as ::ffff:a.b.c.d.
    let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
    Reply {
        status: "200 OK",
        body: format!(
            "pod={} node={} client={}\n",
            identity.pod, identity.node, peer
        ),
    }
}

/// The full HTTP/1.1 response for `reply`; the connection closes after it.
pub fn render(reply: &Reply) -> Vec<u8> {
    format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            pod: "echo-1".into(),
            node: "node-a".into(),
        }
    }

    #[test]
    fn get_reports_pod_node_and_canonical_client() {
        let peer: SocketAddr = "[::ffff:192.0.2.7]:40000".parse().unwrap();
        let r = answer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &id(), peer);
        assert_eq!(r.status, "200 OK");
        assert_eq!(r.body, "pod=echo-1 node=node-a client=192.0.2.7:40000\n");
        let peer6: SocketAddr = "[2001:db8::5]:80".parse().unwrap();
        let r = answer(b"GET /x?y HTTP/1.0\r\n\r\n", &id(), peer6);
        assert_eq!(r.body, "pod=echo-1 node=node-a client=[2001:db8::5]:80\n");
    }

    #[test]
    fn healthz_bad_and_other_methods() {
        let peer: SocketAddr = "192.0.2.1:1".parse().unwrap();
        assert_eq!(
            answer(b"GET /healthz HTTP/1.1\r\n\r\n", &id(), peer).body,
            "ok\n"
        );
        assert_eq!(
            answer(b"POST / HTTP/1.1\r\n\r\n", &id(), peer).status,
            "405 Method Not Allowed"
        );
        assert_eq!(answer(b"garbage", &id(), peer).status, "400 Bad Request");
        assert_eq!(answer(b"", &id(), peer).status, "400 Bad Request");
    }

    #[test]
    fn render_sets_content_length() {
        let out = render(&Reply {
            status: "200 OK",
            body: "ok\n".into(),
        });
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("\r\nContent-Length: 3\r\n"));
        assert!(text.ends_with("\r\n\r\nok\n"));
    }
}
