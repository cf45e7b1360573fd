//! Events on Services (`events.k8s.io/v1`), created one by one without
//! kube's `Recorder`.
//!
//! The `Recorder` keeps every Event it sent, as the apiserver returned it,
//! for six minutes (to merge repeats into a series) and scans that cache on
//! every publish: with 10,000 IPs announced at start, tens of MiB and
//! O(n²) work. The speaker sends an Event only when an announcement
//! changes, so there are no repeats to merge (the controller dropped the
//! `Recorder` for the same reason, see its `shell/events.rs`).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};

/// Creates Events as `reporter`, keeping nothing once sent.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
}

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter) -> EventPublisher {
        EventPublisher { client, reporter }
    }

    /// Creates `event` about `reference`, in its namespace.
    pub async fn publish(&self, event: &Event, reference: &ObjectReference) -> kube::Result<()> {
        let now = k8s_openapi::jiff::Timestamp::now();
        let namespace = reference.namespace.as_deref().unwrap_or("default");
        let prefix = reference
            .name
            .as_deref()
            .unwrap_or(&self.reporter.controller);
        let object = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(reference.clone()),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: Some(namespace.to_owned()),
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            type_: Some(
                match event.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_owned(),
            ),
            related: event.secondary.clone(),
            ..K8sEvent::default()
        };
        Api::<K8sEvent>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &object)
            .await?;
        Ok(())
    }
}
