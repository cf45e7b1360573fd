//! The speaker's Prometheus registry: the L2 announcer's, the gossip
//! membership's and the BGP sessions' metrics, plus the speaker's own, served
//! on `/metrics`. Every name starts with [`PREFIX`]`_`; the parts register
//! theirs without it.

use std::sync::{Arc, Mutex, PoisonError};

use ferrolb_runtime::http::{MetricsText, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::l2::L2Metrics;
use crate::membership::MembershipMetrics;
use crate::shell::BgpMetrics;

/// The prefix of every metric the speaker exposes.
pub const PREFIX: &str = "ferrolb_speaker";

/// The speaker's own figures (the announcer and membership register theirs).
#[derive(Clone)]
pub struct SpeakerMetrics {
    /// IPs this node should announce, by the last plan.
    pub owned_ips: Gauge,
    /// Times the plan was recomputed.
    pub plans: Counter,
    /// Objects skipped because they were malformed (see the logs for which).
    pub invalid_objects: Gauge,
    /// Seconds one pass of the plan loop took (view, L2 and BGP plans, hand-over).
    pub plan_duration: Histogram,
}

impl Default for SpeakerMetrics {
    fn default() -> Self {
        SpeakerMetrics {
            owned_ips: Gauge::default(),
            plans: Counter::default(),
            invalid_objects: Gauge::default(),
            // 100 µs to about 3.3 s.
            plan_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }
}

impl SpeakerMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "owned_ips",
            "IPs this node announces according to the last plan",
            self.owned_ips.clone(),
        );
        registry.register(
            "plans",
            "Times the announcement plan was recomputed",
            self.plans.clone(),
        );
        registry.register(
            "invalid_objects",
            "Objects skipped by the last plan because they are malformed",
            self.invalid_objects.clone(),
        );
        registry.register(
            "plan_duration_seconds",
            "Time one pass of the plan loop took, from its start to the plans handed over",
            self.plan_duration.clone(),
        );
    }
}

/// The whole registry, cheap to clone.
#[derive(Clone)]
pub struct Registered {
    registry: Arc<Mutex<Registry>>,
}

impl Registered {
    /// Registers the metrics of every part under [`PREFIX`].
    pub fn new(
        speaker: &SpeakerMetrics,
        l2: &L2Metrics,
        membership: &MembershipMetrics,
        bgp: &BgpMetrics,
    ) -> Registered {
        let mut registry = Registry::with_prefix(PREFIX);
        speaker.register(&mut registry);
        l2.register(&mut registry);
        membership.register(&mut registry);
        bgp.register(&mut registry);
        Registered {
            registry: Arc::new(Mutex::new(registry)),
        }
    }
}

/// Served on `/metrics`.
impl MetricsText for Registered {
    fn encode_text(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        encode_registry(&registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::metrics::AddressFamily;
    use crate::l2::plan::IgnoreReason;
    use crate::membership::{Direction, RejectReason};
    use crate::shell::{PeerLabels, StateLabels, UpdateErrorLabels};

    /// The names of the samples in an exposition, in order.
    fn sample_names(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .collect()
    }

    /// Dashboards, alerts and the end-to-end tests query these names: a
    /// renaming must be a deliberate change of this list.
    #[test]
    fn exposes_exactly_the_documented_names() {
        let speaker = SpeakerMetrics::default();
        let l2 = L2Metrics::default();
        let membership = MembershipMetrics::default();
        let bgp = BgpMetrics::default();
        let registered = Registered::new(&speaker, &l2, &membership, &bgp);
        // Labelled families show only once they have a sample.
        l2.request_answered(AddressFamily::ipv4);
        l2.gratuitous_sent(AddressFamily::ipv6);
        l2.packet_ignored(IgnoreReason::NotOurs);
        l2.set_all_multicast("eth0", false);
        membership.count_rejected(RejectReason::BadKey);
        membership.count_message(Direction::In);
        let peer = PeerLabels { peer: "p".into() };
        let idle = StateLabels {
            state: "Idle".into(),
        };
        bgp.sessions.get_or_create(&idle).set(1);
        bgp.updates_sent.get_or_create(&peer).inc();
        bgp.prefixes_advertised.get_or_create(&peer).set(1);
        let discard = UpdateErrorLabels {
            peer: "p".into(),
            action: "attribute-discard".into(),
        };
        bgp.update_errors.get_or_create(&discard).inc();

        let text = registered.encode_text();
        assert!(text.ends_with("# EOF\n"), "{text}");
        // A histogram's buckets, one line each, count as one name here.
        let mut names = sample_names(&text);
        names.dedup();
        assert_eq!(
            names,
            [
                "ferrolb_speaker_owned_ips",
                "ferrolb_speaker_plans_total",
                "ferrolb_speaker_invalid_objects",
                "ferrolb_speaker_plan_duration_seconds_sum",
                "ferrolb_speaker_plan_duration_seconds_count",
                "ferrolb_speaker_plan_duration_seconds_bucket",
                "ferrolb_speaker_l2_requests_answered_total",
                "ferrolb_speaker_l2_gratuitous_sent_total",
                "ferrolb_speaker_l2_ignored_packets_total",
                "ferrolb_speaker_l2_unreachable_interfaces",
                "ferrolb_speaker_l2_ndp_group_join_failures_total",
                "ferrolb_speaker_l2_ndp_all_multicast",
                "ferrolb_speaker_l2_announced_ips",
                "ferrolb_speaker_members_alive",
                "ferrolb_speaker_gossip_rejected_total",
                "ferrolb_speaker_gossip_messages_total",
                "ferrolb_speaker_bgp_sessions",
                "ferrolb_speaker_bgp_updates_sent_total",
                "ferrolb_speaker_bgp_prefixes_advertised",
                "ferrolb_speaker_bgp_update_errors_total",
            ],
            "{text}"
        );
    }
}
