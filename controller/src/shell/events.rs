//! Kubernetes Events, sent off the allocation loop by a few background tasks
//! so that a slow apiserver never stalls decisions. When the queue is full an
//! Event is dropped (and logged): status and conditions still carry the truth.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Handle to the Event queue.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<(ObjectReference, Event)>,
}

impl EventSink {
    pub fn start(client: kube::Client, instance: String, workers: usize) -> EventSink {
        let (tx, rx) = mpsc::channel::<(ObjectReference, Event)>(20_000);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let reporter = Reporter {
            controller: "ferrolb-controller".into(),
            instance: Some(instance),
        };
        for _ in 0..workers.max(1) {
            let recorder = Recorder::new(client.clone(), reporter.clone());
            let rx = rx.clone();
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((reference, event)) = next else {
                        break;
                    };
                    if let Err(e) = recorder.publish(&event, &reference).await {
                        debug!(error = %e, object = ?reference.name, "could not publish event");
                    }
                }
            });
        }
        EventSink { tx }
    }

    pub fn send(
        &self,
        reference: ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if self.tx.try_send((reference, event)).is_err() {
            warn!(reason, "event queue full, dropping an event");
        }
    }
}

/// A reference to a Service for Events; `kubectl describe` matches on the uid.
pub fn service_reference(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    }
}
