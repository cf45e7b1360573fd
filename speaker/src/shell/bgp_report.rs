//! What the BGP sessions show to operators: one `BGPSessionState` object per (node, peer),
//! Prometheus metrics, and an Event on a Service when this node starts or stops
//! advertising it. Writes that fail are retried by the caller; sessions never wait on them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferrolb_crds::session_status::{LABEL_NODE, LABEL_PEER};
use ferrolb_crds::{BGPSessionState, BGPSessionStateStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Reporter as EventReporter};

use super::events::EventPublisher;
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tracing::{debug, info};

use crate::bgp::fsm::State;
use crate::bgp::session::SessionStatus;
use crate::model::ServiceKey;

const FIELD_MANAGER: &str = "ferrolb-speaker";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpdateErrorLabels {
    pub peer: String,
    /// `treat-as-withdraw` or `attribute-discard` (RFC 7606).
    pub action: String,
}

/// The BGP figures of one speaker.
#[derive(Clone, Default)]
pub struct BgpMetrics {
    /// Sessions by RFC 4271 state.
    pub sessions: Family<StateLabels, Gauge>,
    /// UPDATE messages sent, by peer.
    pub updates_sent: Family<PeerLabels, Counter>,
    /// Prefixes the peer has from us, by peer.
    pub prefixes_advertised: Family<PeerLabels, Gauge>,
    /// Malformed UPDATEs received that the session survived, by peer and RFC 7606 action.
    pub update_errors: Family<UpdateErrorLabels, Counter>,
}

pub const STATES: [State; 6] = [
    State::Idle,
    State::Connect,
    State::Active,
    State::OpenSent,
    State::OpenConfirm,
    State::Established,
];

impl BgpMetrics {
    /// Adds the metrics to `registry`, whose prefix ([`crate::metrics::PREFIX`])
    /// starts their names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "bgp_sessions",
            "BGP sessions of this speaker, by state",
            self.sessions.clone(),
        );
        registry.register(
            "bgp_updates_sent",
            "BGP UPDATE messages sent, by peer",
            self.updates_sent.clone(),
        );
        registry.register(
            "bgp_prefixes_advertised",
            "Prefixes a peer currently has from this speaker",
            self.prefixes_advertised.clone(),
        );
        registry.register(
            "bgp_update_errors",
            "Errors in received BGP UPDATEs that the session survived (RFC 7606), by peer and action",
            self.update_errors.clone(),
        );
    }

    /// Sets the by-state gauges from the states of all sessions.
    pub fn set_states<'a>(&self, states: impl Iterator<Item = &'a State>) {
        let mut counts: BTreeMap<String, i64> =
            STATES.iter().map(|state| (state_name(*state), 0)).collect();
        for state in states {
            *counts.entry(state_name(*state)).or_default() += 1;
        }
        for (state, count) in counts {
            self.sessions
                .get_or_create(&StateLabels { state })
                .set(count);
        }
    }
}

pub fn state_name(state: State) -> String {
    format!("{state:?}")
}

/// Writes `BGPSessionState` objects and Service Events.
pub struct SessionReporter {
    states: Api<BGPSessionState>,
    recorder: EventPublisher,
    node: String,
    /// What each object holds, by peer, and when it was written.
    written: BTreeMap<String, (BGPSessionStateStatus, Instant)>,
    /// Services this node advertises, as last reported by Events.
    advertising: BTreeMap<ServiceKey, BTreeSet<IpAddr>>,
}

/// Least time between two writes of one session's object: a flapping session must not
/// flood the API server.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// The object name for (node, peer): both are DNS labels or subdomains, joined with a dot.
pub fn object_name(node: &str, peer: &str) -> String {
    format!("{node}.{peer}")
}

impl SessionReporter {
    pub fn new(client: Client, namespace: &str, node: &str) -> SessionReporter {
        let reporter = EventReporter {
            controller: "ferrolb-speaker".into(),
            instance: Some(node.to_string()),
        };
        SessionReporter {
            states: Api::namespaced(client.clone(), namespace),
            recorder: EventPublisher::new(client, reporter),
            node: node.to_string(),
            written: BTreeMap::new(),
            advertising: BTreeMap::new(),
        }
    }

    /// The status object content of a session.
    pub fn status_of(
        &self,
        peer: &str,
        peer_address: &str,
        status: &SessionStatus,
    ) -> BGPSessionStateStatus {
        let established_since = status.established_since.map(|since| {
            let now = std::time::SystemTime::now();
            let at = now.checked_sub(since.elapsed()).unwrap_or(now);
            // Whole seconds: the object must not change with every rounding.
            let seconds = at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let time = k8s_openapi::jiff::Timestamp::from_second(
                i64::try_from(seconds).unwrap_or_default(),
            )
            .unwrap_or_default();
            time.to_string()
        });
        BGPSessionStateStatus {
            node: self.node.clone(),
            peer: peer.to_string(),
            peer_address: peer_address.to_string(),
            state: state_name(status.state),
            established_since,
            prefixes_sent: u32::try_from(status.prefixes_sent).unwrap_or(u32::MAX),
            last_error: status.last_error.clone(),
        }
    }

    /// Writes the object of `peer` unless it already holds `status`. `Err(wait)` when the
    /// write must wait for the rate limit; `Ok(false)` when it failed.
    pub async fn write(
        &mut self,
        peer: &str,
        status: BGPSessionStateStatus,
    ) -> Result<bool, Duration> {
        if let Some((written, at)) = self.written.get(peer) {
            // The timestamp moves by a second with rounding alone: compare without it
            // unless the session came up or went down.
            if *written == status {
                return Ok(true);
            }
            let since = at.elapsed();
            if since < MIN_WRITE_INTERVAL {
                return Err(MIN_WRITE_INTERVAL - since);
            }
        }
        let name = object_name(&self.node, peer);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let object = json!({
            "apiVersion": "ferrolb.io/v1beta1", "kind": "BGPSessionState",
            "metadata": {"name": name, "labels": {LABEL_NODE: self.node, LABEL_PEER: peer}},
            "spec": {},
        });
        let result = async {
            self.states
                .patch(&name, &params, &Patch::Apply(&object))
                .await?;
            let mut with_status = object.clone();
            with_status["status"] = serde_json::to_value(&status)?;
            self.states
                .patch_status(&name, &params, &Patch::Apply(&with_status))
                .await?;
            anyhow::Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                debug!(peer, state = %status.state, "session state written");
                self.written
                    .insert(peer.to_string(), (status, Instant::now()));
                Ok(true)
            }
            Err(error) => {
                debug!(peer, %error, "could not write the session state; will retry");
                Ok(false)
            }
        }
    }

    /// Deletes the object of `peer`; false when that failed.
    pub async fn remove(&mut self, peer: &str) -> bool {
        let name = object_name(&self.node, peer);
        match self.states.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                debug!(peer, %error, "could not delete the session state; will retry");
                return false;
            }
        }
        self.written.remove(peer);
        true
    }

    /// Objects of this node for peers not in `keep` (left from an earlier life or a
    /// removed peer).
    pub async fn remove_others(&mut self, keep: &BTreeSet<String>) -> bool {
        let selector = format!("{LABEL_NODE}={}", self.node);
        let Ok(list) = self
            .states
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        else {
            return false;
        };
        let mut complete = true;
        for object in list.items {
            let peer = object
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(LABEL_PEER))
                .cloned()
                .unwrap_or_default();
            if !keep.contains(&peer) {
                complete &= self.remove(&peer).await;
            }
        }
        complete
    }

    /// The Event for `service` when this node started or stopped advertising it, or
    /// advertises it at other IPs `now` (`None`: not advertised).
    pub async fn service(&mut self, service: ServiceKey, now: Option<BTreeSet<IpAddr>>) {
        let Some(ips) = now else {
            if self.advertising.remove(&service).is_some() {
                info!(%service, node = %self.node, "no longer advertised over BGP from here");
                self.event(
                    &service,
                    "BGPAdvertisementStopped",
                    format!("node {} stopped advertising over BGP", self.node),
                )
                .await;
            }
            return;
        };
        if self.advertising.get(&service) == Some(&ips) {
            return;
        }
        let list = ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        info!(%service, node = %self.node, ips = %list, "advertising over BGP");
        self.event(
            &service,
            "BGPAdvertising",
            format!("node {} advertises {list} over BGP", self.node),
        )
        .await;
        self.advertising.insert(service, ips);
    }

    async fn event(&self, service: &ServiceKey, reason: &str, note: String) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(service.namespace().to_string()),
            name: Some(service.name().to_string()),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "Advertise".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &reference).await {
            debug!(%service, %error, "could not publish an Event");
        }
    }
}
