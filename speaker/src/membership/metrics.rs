//! Prometheus metrics of the gossip membership.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ferrolb_speaker_members_alive` | gauge | |
//! | `ferrolb_speaker_gossip_rejected_total` | counter | `reason`: `bad_key`, `malformed` |
//! | `ferrolb_speaker_gossip_messages_total` | counter | `direction`: `in`, `out` |
//!
//! `members_alive` counts nodes with a live speaker, ours included.
//! `messages_total{direction="in"}` counts authentic datagrams handed to the
//! protocol; refused ones are only in `rejected_total`.

use std::fmt;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a received datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Full-size, but the tag does not match our key.
    BadKey,
    /// Too short for the envelope, of an unknown envelope version, or
    /// authentic but not a protocol message foca could decode.
    Malformed,
}

impl RejectReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadKey => "bad_key",
            RejectReason::Malformed => "malformed",
        }
    }
}

impl EncodeLabelValue for RejectReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

/// Which way a datagram went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received and authentic.
    In,
    /// Sent.
    Out,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl EncodeLabelValue for Direction {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: RejectReason,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabels {
    direction: Direction,
}

/// The membership's metrics. Cheap to clone; clones share the same values.
#[derive(Clone, Debug, Default)]
pub struct MembershipMetrics {
    members_alive: Gauge,
    rejected: Family<ReasonLabels, Counter>,
    messages: Family<DirectionLabels, Counter>,
}

impl MembershipMetrics {
    /// Fresh metrics, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the metrics to `registry`, whose prefix ([`crate::metrics::PREFIX`])
    /// starts their names (as in the module docs).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "members_alive",
            "Nodes whose speaker the gossip group considers alive, this one included",
            self.members_alive.clone(),
        );
        registry.register(
            "gossip_rejected",
            "Gossip datagrams dropped, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "gossip_messages",
            "Gossip datagrams sent and authentic ones received",
            self.messages.clone(),
        );
    }

    pub(crate) fn set_members_alive(&self, count: usize) {
        self.members_alive
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    pub(crate) fn count_rejected(&self, reason: RejectReason) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn count_message(&self, direction: Direction) {
        self.messages
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    /// The current value of `ferrolb_speaker_members_alive`.
    pub fn members_alive(&self) -> i64 {
        self.members_alive.get()
    }

    /// The current value of `ferrolb_speaker_gossip_rejected_total{reason}`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected.get_or_create(&ReasonLabels { reason }).get()
    }

    /// The current value of `ferrolb_speaker_gossip_messages_total{direction}`.
    pub fn messages(&self, direction: Direction) -> u64 {
        self.messages
            .get_or_create(&DirectionLabels { direction })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_show_up_with_their_labels() {
        let metrics = MembershipMetrics::new();
        let mut registry = Registry::with_prefix(crate::metrics::PREFIX);
        metrics.register(&mut registry);
        metrics.set_members_alive(3);
        metrics.count_rejected(RejectReason::BadKey);
        metrics.count_rejected(RejectReason::Malformed);
        metrics.count_rejected(RejectReason::Malformed);
        metrics.count_message(Direction::Out);

        let mut text = String::new();
        assert!(prometheus_client::encoding::text::encode(&mut text, &registry).is_ok());
        assert!(text.contains("ferrolb_speaker_members_alive 3"), "{text}");
        assert!(
            text.contains("ferrolb_speaker_gossip_rejected_total{reason=\"bad_key\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_gossip_rejected_total{reason=\"malformed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("ferrolb_speaker_gossip_messages_total{direction=\"out\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn clones_share_values() {
        let metrics = MembershipMetrics::new();
        let clone = metrics.clone();
        clone.count_message(Direction::In);
        assert_eq!(metrics.messages(Direction::In), 1);
        assert_eq!(metrics.rejected(RejectReason::BadKey), 0);
    }
}
