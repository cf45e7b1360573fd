//! Tests of the endpoint, over real loopback connections.

use super::*;
use prometheus_client::metrics::gauge::Gauge;
use std::sync::Arc;
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
    start_with(metrics, health, ServeLimits::default()).await
}

async fn start_with(metrics: TestMetrics, health: Health, limits: ServeLimits) -> Server {
    let (listener, addr) = bind_any_port().await;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_listener(listener, metrics, health, limits, async {
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

/// How long until the server closes `stream` (reads end or fail), waiting
/// at most `bound`; `None` if it stayed open that long.
async fn closed_after(stream: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(bound, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| started.elapsed())
}

const SHORT_HEAD_DEADLINE: ServeLimits = ServeLimits {
    header_read_timeout: Duration::from_millis(300),
    connection_timeout: Duration::from_secs(30),
    max_connections: 8,
};

#[tokio::test]
async fn a_client_that_sends_nothing_is_cut_off_and_others_are_served() {
    let server = start_with(TestMetrics::new(), Health::new(), SHORT_HEAD_DEADLINE).await;
    let connected = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    let mut partial = TcpStream::connect(server.addr).await.expect("connect");
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write half a head");
    // Served while both slow clients are connected.
    get_expecting(server.addr, "/healthz", 200, "ok\n").await;
    for (name, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        if closed_after(stream, Duration::from_secs(5)).await.is_none() {
            panic!("{name}: still open 5 s after the last read");
        }
        let after = connected.elapsed();
        assert!(
            after >= Duration::from_millis(200),
            "{name}: closed after {after:?}, before the deadline"
        );
    }
    get_expecting(server.addr, "/healthz", 200, "ok\n").await;
    stop(server).await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let limits = ServeLimits {
        header_read_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(30),
        max_connections: 2,
    };
    let server = start_with(TestMetrics::new(), Health::new(), limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    let mut extra = TcpStream::connect(server.addr).await.expect("connect");
    assert!(
        closed_after(&mut extra, Duration::from_secs(5))
            .await
            .is_some(),
        "a third connection stayed open past the cap of 2"
    );
    for stream in &mut held {
        assert_eq!(
            closed_after(stream, Duration::from_millis(50)).await,
            None,
            "a held connection was closed"
        );
    }
    drop(held);
    // The server notices the closed ones and takes new connections again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(server.addr).await.expect("connect");
        let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
        let _ = stream.write_all(req).await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw)).await;
        if raw.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never served again after the held connections closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(server).await;
}

/// Sends `head` and reads the reply until the server closes, within 5 s.
async fn reply_and_close(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("no reply and close within 5 s for {head:?}"))
        .expect("read");
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test]
async fn one_request_a_connection_and_bodies_are_not_waited_for() {
    let server = start(TestMetrics::new(), Health::new()).await;
    // A keep-alive request: answered, then closed rather than kept idle.
    let kept = reply_and_close(server.addr, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(kept.starts_with("HTTP/1.1 200"), "{kept}");
    // A large body announced and never sent: answered without waiting for it.
    let head = "GET /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n";
    let body = reply_and_close(server.addr, head).await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    stop(server).await;
}

#[tokio::test]
async fn healthz_names_the_loops_that_stopped_beating() {
    let health = Health::with_max_beat_age(Duration::from_millis(100));
    let server = start(TestMetrics::new(), health.clone()).await;
    let plan = health.heartbeat("plan");
    let l2 = health.heartbeat("l2");
    get_expecting(server.addr, "/healthz", 200, "ok\n").await;
    // l2 keeps beating, plan does not: wait for the failure, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let reply = loop {
        l2.beat();
        let reply = request(server.addr, "GET", "/healthz").await;
        if reply.status != 200 {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "plan never went stale"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (503, "unhealthy: no heartbeat within 100ms from: plan\n")
    );
    plan.beat();
    l2.beat();
    get_expecting(server.addr, "/healthz", 200, "ok\n").await;
    drop(plan);
    drop(l2);
    stop(server).await;
}
