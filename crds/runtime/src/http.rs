//! The health and metrics endpoint both binaries serve.
//!
//! * `GET /metrics`: [`MetricsText::encode_text`] as OpenMetrics text.
//! * `GET /healthz`: `200 ok` as long as the process serves requests.
//! * `GET /readyz`: `200 ok` once [`Health::set_ready`]`(true)` was called,
//!   else `503` with the reason given to [`Health::set_not_ready`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::info;

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Anything that renders metrics as OpenMetrics text: each binary implements it
/// for its own metrics.
pub trait MetricsText: Clone + Send + Sync + 'static {
    /// The whole exposition, ending with `# EOF`.
    fn encode_text(&self) -> String;
}

/// `registry` in the OpenMetrics text format (ends with `# EOF`).
pub fn encode_registry(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; the encoder only fails when its
    // writer does. Anything written so far is still returned.
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.push_str("# EOF\n");
    }
    out
}

const DEFAULT_NOT_READY: &str = "starting";

/// Errors of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Debug)]
struct HealthInner {
    ready: AtomicBool,
    reason: Mutex<String>,
}

/// Readiness of the process, shared between the code that knows and the
/// endpoint. Cheap to clone; clones share the state. Starts not ready
/// ("starting").
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Not ready, reason "starting".
    pub fn new() -> Self {
        Self {
            inner: Arc::new(HealthInner {
                ready: AtomicBool::new(false),
                reason: Mutex::new(DEFAULT_NOT_READY.to_owned()),
            }),
        }
    }

    /// Ready or not. Not ready keeps the last reason given (or "not ready").
    pub fn set_ready(&self, ready: bool) {
        if !ready {
            let mut reason = self.lock_reason();
            if reason.is_empty() {
                reason.push_str("not ready");
            }
        }
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Not ready, because of `reason` (shown in the `/readyz` answer).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.lock_reason() = reason.into();
        self.inner.ready.store(false, Ordering::Release);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// `None` when ready, else the reason.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_ready() {
            None
        } else {
            Some(self.lock_reason().clone())
        }
    }

    fn lock_reason(&self) -> std::sync::MutexGuard<'_, String> {
        // The guarded String is valid even if a holder panicked.
        self.inner
            .reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone)]
struct AppState<M> {
    metrics: M,
    health: Health,
}

/// The router with the three endpoints, for callers that serve it
/// themselves.
pub fn router<M: MetricsText>(metrics: M, health: Health) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler::<M>))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler::<M>))
        .with_state(AppState { metrics, health })
}

async fn metrics_handler<M: MetricsText>(State(state): State<AppState<M>>) -> Response {
    (
        [(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)],
        state.metrics.encode_text(),
    )
        .into_response()
}

async fn healthz_handler() -> Response {
    text(StatusCode::OK, "ok\n".to_owned())
}

async fn readyz_handler<M>(State(state): State<AppState<M>>) -> Response {
    match state.health.not_ready_reason() {
        None => text(StatusCode::OK, "ok\n".to_owned()),
        Some(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Binds `addr` and serves the endpoints until `shutdown` resolves; then
/// finishes the requests in flight and returns.
pub async fn serve<M: MetricsText>(
    addr: SocketAddr,
    metrics: M,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    serve_listener(listener, metrics, health, shutdown).await
}

/// Like [`serve`] on a listener bound already (for example to port 0).
pub async fn serve_listener<M: MetricsText>(
    listener: TcpListener,
    metrics: M,
    health: Health,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    if let Ok(local) = listener.local_addr() {
        info!(addr = %local, "serving /metrics, /healthz and /readyz");
    }
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HttpError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::gauge::Gauge;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect to the test server");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .expect("write the request");
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
            .await
            .expect("the reply within 10 s")
            .expect("read the reply");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end in {raw:?}"));
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }

    /// `GET path`, asserting the status and the body.
    async fn get_expecting(addr: SocketAddr, path: &str, status: u16, body: &str) -> Reply {
        let reply = request(addr, "GET", path).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (status, body),
            "{path}"
        );
        reply
    }

    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<Result<(), HttpError>>,
    }

    /// One gauge under a prefix, like the binaries' registries.
    #[derive(Clone)]
    struct TestMetrics(Arc<Registry>);

    impl TestMetrics {
        fn new() -> TestMetrics {
            let mut registry = Registry::with_prefix("ferrolb_test");
            let leader = Gauge::<i64>::default();
            leader.set(1);
            registry.register("is_leader", "1 if leading", leader);
            TestMetrics(Arc::new(registry))
        }
    }

    impl MetricsText for TestMetrics {
        fn encode_text(&self) -> String {
            encode_registry(&self.0)
        }
    }

    /// A listener on a free loopback port, and its address.
    async fn bind_any_port() -> (TcpListener, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        (listener, addr)
    }

    async fn start(metrics: TestMetrics, health: Health) -> Server {
        let (listener, addr) = bind_any_port().await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_listener(listener, metrics, health, async {
            let _ = stopped.await;
        }));
        Server { addr, stop, task }
    }

    async fn stop(server: Server) {
        let _ = server.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), server.task)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task does not panic")
            .expect("the server ends without error");
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let server = start(TestMetrics::new(), Health::new()).await;
        let reply = request(server.addr, "GET", "/metrics").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
        assert!(
            reply.body.contains("# TYPE ferrolb_test_is_leader gauge\n"),
            "{}",
            reply.body
        );
        assert!(
            reply.body.contains("\nferrolb_test_is_leader 1\n"),
            "{}",
            reply.body
        );
        assert!(reply.body.ends_with("# EOF\n"));
        stop(server).await;
    }

    #[tokio::test]
    async fn healthz_is_ok_even_when_not_ready() {
        let server = start(TestMetrics::new(), Health::new()).await;
        get_expecting(server.addr, "/healthz", 200, "ok\n").await;
        stop(server).await;
    }

    #[tokio::test]
    async fn readyz_follows_health() {
        let health = Health::new();
        let server = start(TestMetrics::new(), health.clone()).await;

        get_expecting(server.addr, "/readyz", 503, "not ready: starting\n").await;

        health.set_ready(true);
        get_expecting(server.addr, "/readyz", 200, "ok\n").await;

        health.set_not_ready("caches not synced");
        let not_ready = "not ready: caches not synced\n";
        let reply = get_expecting(server.addr, "/readyz", 503, not_ready).await;
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );

        health.set_ready(true);
        health.set_ready(false);
        get_expecting(server.addr, "/readyz", 503, not_ready).await;
        stop(server).await;
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_rejected() {
        let server = start(TestMetrics::new(), Health::new()).await;
        assert_eq!(request(server.addr, "GET", "/nope").await.status, 404);
        assert_eq!(request(server.addr, "POST", "/metrics").await.status, 405);
        stop(server).await;
    }

    #[tokio::test]
    async fn serve_binds_and_stops_on_shutdown() {
        let (tx, rx) = oneshot::channel::<()>();
        let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
        let task = tokio::spawn(serve(addr, TestMetrics::new(), Health::new(), async {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tx.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("serve stops within 10 s")
            .expect("the serve task does not panic")
            .expect("serve ends without error");
    }

    #[tokio::test]
    async fn serve_reports_bind_errors() {
        let (_taken, addr) = bind_any_port().await;
        let result = serve(addr, TestMetrics::new(), Health::new(), async {}).await;
        assert!(matches!(result, Err(HttpError::Bind { .. })), "{result:?}");
    }

    #[test]
    fn health_state_transitions() {
        let h = Health::new();
        assert_eq!(h.not_ready_reason().as_deref(), Some("starting"));
        h.set_ready(true);
        assert!(h.is_ready());
        assert_eq!(h.not_ready_reason(), None);
        h.set_not_ready("");
        h.set_ready(false);
        assert_eq!(h.not_ready_reason().as_deref(), Some("not ready"));
    }
}
