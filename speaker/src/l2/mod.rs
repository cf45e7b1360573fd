//! L2 mode: make Service IPs reachable on the local link by answering ARP
//! (IPv4) and Neighbor Solicitations (IPv6) with this node's MAC address.
//!
//! Pure parts (no I/O, unit- and property-tested):
//! - [`arp`], [`ndp`] and [`ndp_frame`]: the wire codecs (and the packet
//!   filter that lets only Neighbor Discovery frames reach us);
//! - [`interfaces`]: which interfaces are fit to announce on;
//! - [`plan`]: which IPs each interface announces, and whether a packet deserves an answer;
//! - [`reach`]: which of the interfaces this node may be asked to announce on it cannot use;
//! - [`schedule`]: when the gratuitous announcements go out;
//! - [`arbiter`] and [`claim`]: one MAC per IP on the wire (probe before
//!   claiming, conflicts settled by election rank).
//!
//! Thin shells: [`socket`] (raw sockets registered with tokio), `groups`
//! (the solicited-node memberships, and all-multicast past the kernel's limit) and
//! [`announcer`] (the per-interface tasks that tie everything together).
//!
//! The codecs are our own rather than `pnet`'s packet types: ARP over Ethernet
//! is one fixed 42-byte layout and a Neighbor Solicitation is 24 bytes plus
//! options, so a few dozen lines with named errors are easier to audit (and to
//! prove panic-free with proptest) than a generic packet framework.

pub mod announcer;
#[deny(missing_docs)]
pub mod arbiter;
#[deny(missing_docs)]
pub mod arp;
#[deny(missing_docs)]
pub mod claim;
pub mod desired;
mod groups;
pub mod interfaces;
#[deny(missing_docs)]
mod mac;
pub mod metrics;
#[deny(missing_docs)]
pub mod ndp;
#[deny(missing_docs)]
pub mod ndp_frame;
#[deny(missing_docs)]
pub mod plan;
#[deny(missing_docs)]
pub mod reach;
#[deny(missing_docs)]
pub mod schedule;
#[deny(missing_docs)]
pub mod serving;
pub mod socket;
mod task;

pub use announcer::{
    AnnouncerConfig, ConflictReport, DesiredReceiver, DesiredSender, GroupView, InterfaceFilter,
    L2Announcer, desired_channel,
};
pub use mac::MacAddr;
pub use metrics::L2Metrics;
