//! Prometheus metrics of L2 mode.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::arbiter::Outcome;
use super::plan::IgnoreReason;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the variant names are the label values
pub enum AddressFamily {
    ipv4,
    ipv6,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FamilyLabel {
    family: AddressFamily,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ConflictLabels {
    family: AddressFamily,
    outcome: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct InterfaceLabel {
    interface: String,
}

#[derive(Debug, Default)]
struct Inner {
    group_join_failures: Counter,
    all_multicast: Family<InterfaceLabel, Gauge>,
    conflicts: Family<ConflictLabels, Counter>,
    requests_answered: Family<FamilyLabel, Counter>,
    gratuitous_sent: Family<FamilyLabel, Counter>,
    ignored_packets: Family<ReasonLabel, Counter>,
    announced_ips: Gauge,
    unreachable_interfaces: Gauge,
}

/// The counters of L2 mode; cheap to clone, all clones count together.
#[derive(Clone, Debug, Default)]
pub struct L2Metrics(Arc<Inner>);

impl L2Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the metrics in `registry`, whose prefix
    /// ([`crate::metrics::PREFIX`]) starts their names; prometheus-client
    /// appends `_total` to counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "l2_requests_answered",
            "ARP requests and Neighbor Solicitations answered",
            self.0.requests_answered.clone(),
        );
        registry.register(
            "l2_gratuitous_sent",
            "Gratuitous ARPs and unsolicited Neighbor Advertisements sent",
            self.0.gratuitous_sent.clone(),
        );
        registry.register(
            "l2_ignored_packets",
            "ARP and Neighbor Solicitation packets received and not answered, by reason",
            self.0.ignored_packets.clone(),
        );
        registry.register(
            "l2_conflicts",
            "Other MACs seen claiming an IP this speaker wanted: held_off (a probe was answered, so the IP was not claimed), yielded (we stopped answering), won (we kept it)",
            self.0.conflicts.clone(),
        );
        registry.register(
            "l2_unreachable_interfaces",
            "Interfaces named by the L2Advertisements selecting this node that it cannot announce on (down, no carrier, missing), plus one when no interface is suitable for advertisements naming none; the node leaves the election for the IPs it cannot serve",
            self.0.unreachable_interfaces.clone(),
        );
        registry.register(
            "l2_ndp_group_join_failures",
            "Solicited-node multicast group joins the kernel refused (past net.core.optmem_max, say)",
            self.0.group_join_failures.clone(),
        );
        registry.register(
            "l2_ndp_all_multicast",
            "1 for an interface receiving all multicast for NDP because the kernel refused a solicited-node group, 0 once every group is joined again",
            self.0.all_multicast.clone(),
        );
        registry.register(
            "l2_announced_ips",
            "Service IPs this speaker currently announces on at least one interface",
            self.0.announced_ips.clone(),
        );
    }

    pub fn request_answered(&self, family: AddressFamily) {
        self.0
            .requests_answered
            .get_or_create(&FamilyLabel { family })
            .inc();
    }

    pub fn gratuitous_sent(&self, family: AddressFamily) {
        self.0
            .gratuitous_sent
            .get_or_create(&FamilyLabel { family })
            .inc();
    }

    pub fn packet_ignored(&self, reason: IgnoreReason) {
        self.0
            .ignored_packets
            .get_or_create(&ReasonLabel {
                reason: reason.label(),
            })
            .inc();
    }

    pub fn conflict(&self, family: AddressFamily, outcome: Outcome) {
        self.0
            .conflicts
            .get_or_create(&ConflictLabels {
                family,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// See `l2_unreachable_interfaces`.
    pub fn set_unreachable_interfaces(&self, count: usize) {
        self.0
            .unreachable_interfaces
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// See `l2_ndp_group_join_failures`.
    pub fn group_join_failed(&self) {
        self.0.group_join_failures.inc();
    }

    /// See `l2_ndp_all_multicast`.
    pub fn set_all_multicast(&self, interface: &str, on: bool) {
        self.0
            .all_multicast
            .get_or_create(&InterfaceLabel {
                interface: interface.to_owned(),
            })
            .set(i64::from(on));
    }

    pub fn set_announced_ips(&self, count: usize) {
        self.0
            .announced_ips
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn exposes_the_documented_names_and_labels() {
        let metrics = L2Metrics::new();
        let mut registry = Registry::with_prefix(crate::metrics::PREFIX);
        metrics.register(&mut registry);
        let clone = metrics.clone();
        clone.request_answered(AddressFamily::ipv4);
        metrics.request_answered(AddressFamily::ipv4);
        metrics.gratuitous_sent(AddressFamily::ipv6);
        metrics.packet_ignored(IgnoreReason::BadHopLimit);
        metrics.set_announced_ips(2);
        metrics.set_unreachable_interfaces(1);
        metrics.conflict(AddressFamily::ipv4, Outcome::Yielded);
        metrics.group_join_failed();
        metrics.set_all_multicast("eth0", true);

        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        for line in [
            "ferrolb_speaker_l2_requests_answered_total{family=\"ipv4\"} 2",
            "ferrolb_speaker_l2_gratuitous_sent_total{family=\"ipv6\"} 1",
            "ferrolb_speaker_l2_ignored_packets_total{reason=\"bad_hop_limit\"} 1",
            "ferrolb_speaker_l2_announced_ips 2",
            "ferrolb_speaker_l2_ndp_group_join_failures_total 1",
            "ferrolb_speaker_l2_ndp_all_multicast{interface=\"eth0\"} 1",
            "ferrolb_speaker_l2_unreachable_interfaces 1",
            "ferrolb_speaker_l2_conflicts_total{family=\"ipv4\",outcome=\"yielded\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }
}
