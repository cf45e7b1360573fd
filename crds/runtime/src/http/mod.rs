//! The health and metrics endpoint both binaries serve.
//!
//! * `GET /metrics`: [`MetricsText::encode_text`] as OpenMetrics text.
//! * `GET /healthz`: `200 ok` while every loop that took a [`Heartbeat`]
//!   beat within the maximum age; else `503` naming the stale ones.
//! * `GET /readyz`: `200 ok` once [`Health::set_ready`]`(true)` was called,
//!   else `503` with the reason given to [`Health::set_not_ready`].
//!
//! The server reads one request a connection, within the limits of
//! [`ServeLimits`] (header deadline, connection deadline, connection cap).

mod health;
pub mod heartbeats;
mod server;
#[cfg(test)]
mod tests;

pub use health::{DEFAULT_MAX_BEAT_AGE, Health, Heartbeat};
pub use server::ServeLimits;

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

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
    /// The server failed while stopping.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
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
        .route("/healthz", get(healthz_handler::<M>))
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

async fn healthz_handler<M>(State(state): State<AppState<M>>) -> Response {
    let stale = state.health.stale_parts();
    if stale.is_empty() {
        text(StatusCode::OK, "ok\n".to_owned())
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "unhealthy: no heartbeat within {:?} from: {}\n",
                state.health.max_beat_age(),
                stale.join(", ")
            ),
        )
    }
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
    serve_listener(listener, metrics, health, ServeLimits::default(), shutdown).await
}

/// Like [`serve`] on a listener bound already (for example to port 0), with
/// other limits.
pub async fn serve_listener<M: MetricsText>(
    listener: TcpListener,
    metrics: M,
    health: Health,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    server::serve_router(listener, router(metrics, health), limits, shutdown).await
}
