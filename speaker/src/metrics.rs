//! The speaker's Prometheus registry: the L2 announcer's and the gossip
//! membership's metrics, plus the speaker's own, served on `/metrics`.

use std::sync::{Arc, Mutex, PoisonError};

use ferrolb_controller::http::MetricsText;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The speaker's own figures (the announcer and membership register theirs).
#[derive(Clone, Default)]
pub struct SpeakerMetrics {
    /// IPs this node should announce, by the last plan.
    pub owned_ips: Gauge,
    /// Times the plan was recomputed.
    pub plans: Counter,
    /// Objects skipped because they were malformed (see the logs for which).
    pub invalid_objects: Gauge,
}

/// The whole registry, cheap to clone.
#[derive(Clone)]
pub struct Registered {
    registry: Arc<Mutex<Registry>>,
}

impl Registered {
    /// Registers `speaker` and whatever `extra` adds under the `ferrolb_speaker` names.
    pub fn new(speaker: &SpeakerMetrics, extra: impl FnOnce(&mut Registry)) -> Registered {
        let mut registry = Registry::default();
        registry.register(
            "ferrolb_speaker_owned_ips",
            "IPs this node announces according to the last plan",
            speaker.owned_ips.clone(),
        );
        registry.register(
            "ferrolb_speaker_plans",
            "Times the announcement plan was recomputed",
            speaker.plans.clone(),
        );
        registry.register(
            "ferrolb_speaker_invalid_objects",
            "Objects skipped by the last plan because they are malformed",
            speaker.invalid_objects.clone(),
        );
        extra(&mut registry);
        Registered {
            registry: Arc::new(Mutex::new(registry)),
        }
    }
}

impl MetricsText for Registered {
    fn encode_text(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}
