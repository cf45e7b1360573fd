//! The accept loop: one HTTP/1 request per connection, with a deadline for
//! the request head, a deadline for the whole connection and a cap on the
//! connections served at once, so slow or many clients cannot tie up the
//! process (the speaker serves on the host network).

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{debug, info, warn};

use super::HttpError;

/// The limits of the server. The defaults suit probes and scrapes, which send
/// one small request at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time for a client to send its whole request head after connecting.
    pub header_read_timeout: Duration,
    /// Time after which a connection is closed, whatever it is doing.
    pub connection_timeout: Duration,
    /// Connections served at once; more are closed as soon as accepted.
    pub max_connections: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(20),
            max_connections: 32,
        }
    }
}

/// The largest request head read (hyper's minimum buffer); larger ones fail.
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// Pause after an accept error (for example out of file descriptors) before
/// accepting again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves; then lets the
/// connections in flight finish (each is bounded by the connection timeout).
pub(super) async fn serve_router(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    if let Ok(local) = listener.local_addr() {
        info!(addr = %local, ?limits, "serving /metrics, /healthz and /readyz");
    }
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // One request a connection: a body the handlers ignore is never read
        // and an idle client holds nothing.
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES);
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "accepting an HTTP connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, max = limits.max_connections, "too many HTTP connections: closing a new one");
            continue;
        };
        let builder = builder.clone();
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
            let served = tokio::time::timeout(limits.connection_timeout, async {
                let finished = tokio::select! {
                    result = conn.as_mut() => Some(result),
                    _ = stop.wait_for(|stopped| *stopped) => None,
                };
                match finished {
                    Some(result) => result,
                    None => {
                        conn.as_mut().graceful_shutdown();
                        conn.as_mut().await
                    }
                }
            })
            .await;
            match served {
                Ok(Ok(())) => {}
                Ok(Err(error)) => debug!(%peer, %error, "HTTP connection ended with an error"),
                Err(_) => {
                    debug!(%peer, timeout = ?limits.connection_timeout, "HTTP connection closed: open too long")
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    // Every permit back means every connection ended.
    permits
        .acquire_many(limits.max_connections)
        .await
        .map(drop)
        .map_err(|closed| HttpError::Serve(io::Error::other(closed)))
}
