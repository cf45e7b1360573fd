//! BGP for an announce-only speaker: it opens sessions to routers and advertises
//! Service IPs with next-hop self. It keeps no RIB and ignores the routes it receives
//! (but still parses them: a malformed one resets the session only where RFC 7606 says so).
//!
//! Pure (no I/O):
//! - `message`: typed messages; `codec` (with `attributes` and `wire`): the wire format;
//!   `framing`: a TCP byte stream cut into messages.
//! - `update_errors`: RFC 7606, which errors in a received UPDATE the session survives.
//! - `update_builder`: a desired route set diff -> the fewest UPDATE messages.
//! - `fsm`: the session state machine, events in, actions out.
//! - `graceful_restart`: RFC 4724's capability and End-of-RIB marker.
//!
//! Shell: `session` drives one session over tokio TCP (`socket` sets MD5 and TTL), its
//! routes handed over by change through a `route_feed`.

#[deny(missing_docs)]
mod attributes;
#[deny(missing_docs)]
pub mod codec;
#[deny(missing_docs)]
pub mod framing;
#[deny(missing_docs)]
pub mod fsm;
#[deny(missing_docs)]
pub mod graceful_restart;
#[deny(missing_docs)]
pub mod message;
#[deny(missing_docs)]
pub mod route_feed;
pub mod session;
pub mod socket;
#[deny(missing_docs)]
pub mod update_builder;
#[deny(missing_docs)]
pub mod update_errors;
#[deny(missing_docs)]
mod wire;
