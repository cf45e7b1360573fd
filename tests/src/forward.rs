//! Reaching the test apiserver from inside a node namespace over loopback only.
//!
//! The apiserver listens on 127.0.0.1 of the test's own namespace. A speaker in
//! a node namespace reaches it at 127.0.0.1:<port> of *its* namespace: this
//! forwarder owns a listening socket made inside the node namespace, and
//! connects each accepted connection to the apiserver from the test's
//! namespace. All traffic stays on loopback interfaces, and no address outside
//! the test's namespaces is ever used. Pausing the forwarder cuts every
//! connection and refuses new ones: an API server outage, as one node sees it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::netns::{Netns, in_named_netns, in_netns};

/// Forwards 127.0.0.1:`port` inside a namespace to `target` outside it.
pub struct Forwarder {
    pub port: u16,
    state: Arc<State>,
}

struct State {
    paused: AtomicBool,
    stopped: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

impl State {
    fn cut_all(&self) {
        if let Ok(mut open) = self.open.lock() {
            for stream in open.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Forwarder {
    /// Listens on 127.0.0.1:`port` in `netns` (use the apiserver's port, so
    /// the same kubeconfig works inside and outside).
    pub fn start(netns: &Netns, port: u16, target: SocketAddr) -> Result<Forwarder> {
        let listener = in_netns(netns, move || {
            TcpListener::bind(("127.0.0.1", port)).context("binding the forwarder")
        })?;
        Forwarder::spawn(
            listener,
            Dial::Here(target),
            format!("forward-{}", netns.name),
        )
    }

    /// The other way round: listens on 127.0.0.1:`port` of the caller's
    /// namespace and connects to `target` from inside `netns`. This is how the
    /// harness reaches an apiserver that lives in a namespace of its own (the
    /// real-node cluster), still over loopback on its side.
    pub fn start_reverse(port: u16, netns: &Netns, target: SocketAddr) -> Result<Forwarder> {
        let listener =
            TcpListener::bind(("127.0.0.1", port)).context("binding the reverse forwarder")?;
        let dial = Dial::Inside {
            netns: netns.name.clone(),
            target,
        };
        Forwarder::spawn(listener, dial, format!("rforward-{}", netns.name))
    }

    /// Listens on a free port of 127.0.0.1 in the caller's namespace and
    /// connects to `target` from there: a cable between one client (a
    /// controller given a kubeconfig naming this port) and the apiserver
    /// that the test can pull.
    pub fn start_local(target: SocketAddr) -> Result<Forwarder> {
        let listener =
            TcpListener::bind(("127.0.0.1", 0)).context("binding the local forwarder")?;
        Forwarder::spawn(listener, Dial::Here(target), "lforward".into())
    }

    fn spawn(listener: TcpListener, dial: Dial, thread: String) -> Result<Forwarder> {
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            paused: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
        });
        let accept_state = state.clone();
        std::thread::Builder::new()
            .name(thread)
            .spawn(move || accept_loop(listener, dial, accept_state))?;
        Ok(Forwarder { port, state })
    }

    /// Cuts every connection and refuses new ones until [`Forwarder::resume`].
    pub fn pause(&self) {
        self.state.paused.store(true, Ordering::SeqCst);
        self.state.cut_all();
    }

    pub fn resume(&self) {
        self.state.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.state.cut_all();
    }
}

/// Where the forwarder's outbound connections are made from.
#[derive(Clone)]
enum Dial {
    /// From the forwarder's own namespace.
    Here(SocketAddr),
    /// From inside the named namespace.
    Inside { netns: String, target: SocketAddr },
}

impl Dial {
    fn connect(&self) -> Result<TcpStream> {
        match self {
            Dial::Here(target) => Ok(TcpStream::connect_timeout(target, Duration::from_secs(5))?),
            Dial::Inside { netns, target } => {
                let target = *target;
                in_named_netns(netns, move || {
                    Ok(TcpStream::connect_timeout(&target, Duration::from_secs(5))?)
                })
            }
        }
    }
}

fn accept_loop(listener: TcpListener, target: Dial, state: Arc<State>) {
    while !state.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((inbound, _)) => {
                if state.paused.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                if let Err(e) = splice(inbound, &target, &state) {
                    tracing::debug!("forwarder: {e:#}");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                tracing::debug!("forwarder accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Connects to `target` and copies bytes both ways on two threads.
fn splice(inbound: TcpStream, target: &Dial, state: &State) -> Result<()> {
    inbound.set_nonblocking(false)?;
    let outbound = target.connect()?;
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    if let Ok(mut open) = state.open.lock() {
        open.retain(|s| s.peer_addr().is_ok());
        open.push(inbound.try_clone()?);
        open.push(outbound.try_clone()?);
    }
    let (in_read, out_write) = (inbound.try_clone()?, outbound.try_clone()?);
    std::thread::spawn(move || copy(in_read, out_write));
    std::thread::spawn(move || copy(outbound, inbound));
    Ok(())
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
