//! HTTP requests from inside a client namespace, as a user's `curl` makes
//! them: one-shot, or in a bounded loop that records every outcome so that a
//! failover's client-visible gap can be read off afterwards.
//!
//! The loop runs on a thread that has entered the client's namespace, and
//! opens a fresh TCP connection per request (as curl does), so every request
//! is routed, resolved (ARP/NDP) and load-balanced anew.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::{enter_named_netns, in_named_netns};

/// One request of a probe loop.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the request started, from the start of the loop.
    pub at: Duration,
    /// How long it took to answer or fail.
    pub took: Duration,
    /// The client's source port (None only when no socket got one): a
    /// port reused within two minutes meets the conntrack entry its last
    /// use left on the node, with the NAT decided back then.
    pub local_port: Option<u16>,
    /// The response body, or the error.
    pub outcome: std::result::Result<String, String>,
}

impl Sample {
    pub fn ok(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// `GET /` on `target`, with `timeout` for connecting and for the answer.
pub fn get(target: SocketAddr, timeout: Duration) -> Result<String> {
    let (_, answer) = get_noting_port(target, timeout);
    answer
}

/// [`get`], also telling the source port the kernel chose (when a socket
/// got one), whether or not the request succeeded.
pub fn get_noting_port(target: SocketAddr, timeout: Duration) -> (Option<u16>, Result<String>) {
    let (port, stream) = connect_noting_port(target, timeout);
    let answer = stream
        .with_context(|| format!("connecting to {target}"))
        .and_then(|stream| request(stream, target, timeout));
    (port, answer)
}

/// Connects as `TcpStream::connect_timeout` does (the kernel picks the
/// source port), but reads the port as soon as the SYN is out: a failed
/// connect may already have released it when the error comes back.
fn connect_noting_port(
    target: SocketAddr,
    timeout: Duration,
) -> (Option<u16>, io::Result<TcpStream>) {
    let socket = match Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    ) {
        Ok(socket) => socket,
        Err(error) => return (None, Err(error)),
    };
    if let Err(error) = socket.set_nonblocking(true) {
        return (None, Err(error));
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return (None, Err(error)),
    }
    let port = socket
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .map(|address| address.port())
        .filter(|&port| port != 0);
    let connected = wait_writable(&socket, timeout)
        .and_then(|()| match socket.take_error()? {
            Some(error) => Err(error),
            None => Ok(()),
        })
        .and_then(|()| socket.set_nonblocking(false));
    (port, connected.map(|()| socket.into()))
}

/// Waits until a connecting socket is writable (connected or failed), or
/// fails with `TimedOut` after `timeout`.
#[allow(unsafe_code)]
fn wait_writable(socket: &Socket, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection timed out",
            ));
        }
        let mut poll = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        let millis = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for a socket this function borrows, for the
        // length of the call.
        match unsafe { libc::poll(&mut poll, 1, millis) } {
            n if n > 0 => return Ok(()),
            0 => {}
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// Sends `GET /` on a connected `stream` and reads the whole answer.
fn request(mut stream: TcpStream, target: SocketAddr, timeout: Duration) -> Result<String> {
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let host = match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: ferrolb-tests\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .with_context(|| format!("reading the answer of {target}"))?;
    let response = String::from_utf8_lossy(&response);
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        bail!("{target} answered no HTTP: {response:?}");
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("{target} answered {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// `GET /` from inside namespace `netns`.
pub fn get_from(netns: &str, target: SocketAddr, timeout: Duration) -> Result<String> {
    in_named_netns(netns, move || get(target, timeout))
}

/// Waits up to `limit` until `run` GETs in a row to `ip` port 80 from
/// `netns` are answered. One answer shows the IP reachable; a longer run
/// shows every path to it answers, where flows spread over several (ECMP).
pub fn wait_answering(netns: &str, ip: IpAddr, run: usize, limit: Duration) -> Result<()> {
    let target = SocketAddr::new(ip, 80);
    let deadline = Instant::now() + limit;
    let mut in_a_row = 0;
    while in_a_row < run {
        match get_from(netns, target, Duration::from_secs(2)) {
            Ok(_) => in_a_row += 1,
            Err(error) if Instant::now() < deadline => {
                in_a_row = 0;
                if run > 1 {
                    eprintln!("{target} not yet answered on every path: {error:#}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => {
                return Err(error.context(format!(
                    "{target}: {run} answer(s) in a row within {limit:?}"
                )));
            }
        }
    }
    Ok(())
}

/// A request loop in the background.
pub struct ProbeLoop {
    started: Instant,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Result<Vec<Sample>>>,
}

impl ProbeLoop {
    /// Starts one request every `interval` (each with `timeout`) from `netns`
    /// to `target`, for at most `limit` (the loop always ends by itself).
    pub fn start(
        netns: &str,
        target: SocketAddr,
        interval: Duration,
        timeout: Duration,
        limit: Duration,
    ) -> Result<ProbeLoop> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let netns = netns.to_string();
        let started = Instant::now();
        let handle = std::thread::Builder::new()
            .name(format!("probe-{target}"))
            .spawn(move || -> Result<Vec<Sample>> {
                enter_named_netns(&netns)?;
                let start = started;
                let mut samples = Vec::new();
                let mut next = start;
                while !stop_flag.load(Ordering::SeqCst) && start.elapsed() < limit {
                    let at = Instant::now();
                    let (local_port, outcome) = get_noting_port(target, timeout);
                    samples.push(Sample {
                        at: at - start,
                        took: at.elapsed(),
                        local_port,
                        outcome: outcome.map_err(|e| format!("{e:#}")),
                    });
                    next += interval;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
                Ok(samples)
            })?;
        Ok(ProbeLoop {
            started,
            stop,
            handle,
        })
    }

    /// The instant every [`Sample::at`] counts from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Stops the loop and returns every sample.
    pub fn finish(self) -> Result<Vec<Sample>> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("probe thread panicked"))?
    }
}

/// What a client saw over a probe loop.
#[derive(Clone, Debug, PartialEq)]
pub struct Outage {
    /// Failed requests.
    pub failed: usize,
    pub total: usize,
    /// The longest time without a successful answer: from the start of the
    /// first failed request of a run to the start of the next request that
    /// succeeded (zero when nothing failed).
    pub longest_gap: Duration,
}

/// Reads the outage off `samples` (in order).
pub fn outage(samples: &[Sample]) -> Outage {
    let mut longest = Duration::ZERO;
    let mut first_failure: Option<Duration> = None;
    for sample in samples {
        match (sample.ok(), first_failure) {
            (false, None) => first_failure = Some(sample.at),
            (true, Some(since)) => {
                longest = longest.max(sample.at - since);
                first_failure = None;
            }
            _ => {}
        }
    }
    // A failure run that never recovered lasts to the end of the loop.
    if let (Some(since), Some(last)) = (first_failure, samples.last()) {
        longest = longest.max(last.at + last.took - since);
    }
    Outage {
        failed: samples.iter().filter(|s| !s.ok()).count(),
        total: samples.len(),
        longest_gap: longest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, ok: bool) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            took: Duration::from_millis(1),
            local_port: None,
            outcome: if ok { Ok("x".into()) } else { Err("e".into()) },
        }
    }

    #[test]
    fn gap_runs_from_first_failure_to_next_success() {
        let samples = [
            sample(0, true),
            sample(50, false),
            sample(100, false),
            sample(150, true),
            sample(200, false),
            sample(250, true),
        ];
        let o = outage(&samples);
        assert_eq!(o.failed, 3);
        assert_eq!(o.total, 6);
        assert_eq!(o.longest_gap, Duration::from_millis(100));
    }

    #[test]
    fn no_failure_no_gap_and_unrecovered_runs_to_the_end() {
        assert_eq!(
            outage(&[sample(0, true), sample(50, true)]).longest_gap,
            Duration::ZERO
        );
        let o = outage(&[sample(0, true), sample(50, false), sample(100, false)]);
        assert_eq!(o.longest_gap, Duration::from_millis(51));
    }
}
