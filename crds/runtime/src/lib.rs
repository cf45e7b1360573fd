//! What the `ferrolb-controller` and `ferrolb-speaker` binaries share, so that
//! neither depends on the other:
//!
//! * [`http`]: the `/metrics`, `/healthz` and `/readyz` endpoint; each binary
//!   implements [`http::MetricsText`] for its own metrics.
//! * [`process`]: log setup ([`process::LogFormat`]) and the stop signal.
//! * [`args`]: the flags both take ([`args::CommonArgs`]).
//! * [`backoff`]: the retry delay of their watches ([`backoff::WatchBackoff`]).
//! * [`watch`]: how long one watch request stays open ([`watch::watch_config`]).
//!
//! The pure cores do not depend on this crate: it brings tokio and axum.

#![forbid(unsafe_code)]

pub mod args;
pub mod backoff;
pub mod http;
pub mod process;
pub mod watch;

pub use args::CommonArgs;
pub use process::{LogFormat, init_tracing, shutdown_signal};
