//! Tells operators what this node announces: an Event on the Service when an
//! announcement starts or stops here, and one `ServiceL2Status` object per
//! announced (Service, IP), deleted when the announcement ends.
//!
//! It reports what the announcer really does (its `applied` state), not what
//! the plan wished, so a missing interface shows as such. Writes that fail
//! (API server away) are retried on the next call; announcing never waits
//! for them.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ferrolb_crds::service_status::{
    InterfaceInfo, LABEL_NODE, LABEL_SERVICE_NAME, LABEL_SERVICE_NAMESPACE,
};
use ferrolb_crds::{ServiceL2Status, ServiceL2StatusStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Reporter as EventReporter};

use super::events::EventPublisher;
use super::stores::{Shared, read};
use kube::{Api, Client};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::l2::ConflictReport;
use crate::l2::arbiter::Outcome;
use crate::model::{AnnouncedAt, Reported, ServiceKey, ServiceObject, ServiceSet, Touched};

const FIELD_MANAGER: &str = "ferrolb-speaker";

pub struct Reporter {
    statuses: Api<ServiceL2Status>,
    recorder: EventPublisher,
    node: String,
    /// What was reported successfully, and the IPs to visit again.
    reported: Reported,
}

impl Reporter {
    pub fn new(client: Client, namespace: &str, node: &str) -> Reporter {
        let reporter = EventReporter {
            controller: "ferrolb-speaker".into(),
            instance: Some(node.to_string()),
        };
        Reporter {
            statuses: Api::namespaced(client.clone(), namespace),
            recorder: EventPublisher::new(client, reporter),
            node: node.to_string(),
            reported: Reported::default(),
        }
    }

    /// Deletes status objects this node left behind in an earlier life: on
    /// start it announces nothing yet.
    pub async fn remove_leftovers(&self) {
        let selector = format!("{LABEL_NODE}={}", self.node);
        match self
            .statuses
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => {
                for object in list.items {
                    if let Some(name) = object.metadata.name {
                        self.delete(&name).await;
                    }
                }
            }
            Err(e) => debug!(error = %e, "could not list old status objects"),
        }
    }

    /// The IPs the next [`Reporter::sync`] has to visit after `touched`:
    /// those, and the ones a write failed for.
    pub fn to_visit(
        &self,
        touched: &Touched,
        applied: &crate::l2::announcer::Applied,
    ) -> BTreeSet<IpAddr> {
        self.reported.to_visit(touched, applied)
    }

    /// Brings Events and status objects in line with `now` for the IPs it
    /// holds ([`crate::model::announced_at`]). Returns whether every IP is
    /// settled, those of earlier calls included (else call again later: the
    /// IPs that failed are visited again), so the last of a run of calls on
    /// batches answers for all of them.
    pub async fn sync(&mut self, now: &AnnouncedAt, services: &Shared<ServiceObject>) -> bool {
        let diff = self.reported.diff(now);
        let mut failed = BTreeSet::new();
        for (service, ip) in diff.gone {
            self.event(
                services,
                &service,
                format!("stopped announcing {ip} from node {}", self.node),
                "AnnouncementStopped",
                EventType::Normal,
            )
            .await;
            if self.delete(&self.object_name(&service, ip)).await {
                self.reported.withdrawn(&service, ip);
            } else {
                failed.insert(ip);
            }
        }
        for ((service, ip), interfaces) in diff.write {
            let list = interfaces.iter().cloned().collect::<Vec<_>>().join(", ");
            info!(service = %service, ip = %ip, node = %self.node, interfaces = %list, "announcing");
            self.event(
                services,
                &service,
                format!(
                    "announcing {ip} from node {} on interface {list} (L2)",
                    self.node
                ),
                "Announcing",
                EventType::Normal,
            )
            .await;
            if self.write(&service, ip, &interfaces).await {
                self.remove_other_nodes(&service, ip).await;
                self.reported.written(service, ip, interfaces);
            } else {
                failed.insert(ip);
            }
        }
        self.reported.settle(now.keys().copied(), &failed);
        self.reported.settled()
    }

    /// Deletes everything reported (graceful stop), within the caller's time bound.
    pub async fn withdraw_all(&mut self, services: &Shared<ServiceObject>) {
        let nothing: AnnouncedAt = self
            .reported
            .ips()
            .into_iter()
            .map(|ip| (ip, BTreeMap::new()))
            .collect();
        self.sync(&nothing, services).await;
    }

    fn object_name(&self, service: &ServiceKey, ip: IpAddr) -> String {
        format!(
            "{}.{}.{}.{}",
            self.node,
            service.namespace(),
            service.name(),
            ip_label(ip)
        )
    }

    async fn write(&self, service: &ServiceKey, ip: IpAddr, interfaces: &BTreeSet<String>) -> bool {
        let name = self.object_name(service, ip);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let object = json!({
            "apiVersion": ferrolb_crds::API_VERSION,
            "kind": "ServiceL2Status",
            "metadata": {
                "name": name,
                "labels": {
                    LABEL_NODE: self.node,
                    LABEL_SERVICE_NAMESPACE: service.namespace(),
                    LABEL_SERVICE_NAME: service.name(),
                },
            },
            "spec": {},
        });
        let status = ServiceL2StatusStatus {
            node: self.node.clone(),
            service_name: service.name().to_string(),
            service_namespace: service.namespace().to_string(),
            ip: ip.to_string(),
            interfaces: interfaces
                .iter()
                .map(|name| InterfaceInfo { name: name.clone() })
                .collect(),
        };
        let status_patch = json!({
            "apiVersion": ferrolb_crds::API_VERSION,
            "kind": "ServiceL2Status",
            "status": status,
        });
        let result = async {
            self.statuses
                .patch(&name, &params, &Patch::Apply(&object))
                .await?;
            self.statuses
                .patch_status(&name, &params, &Patch::Apply(&status_patch))
                .await
        }
        .await;
        match result {
            Ok(_) => true,
            Err(e) => {
                warn!(service = %service, ip = %ip, error = %e, "could not write ServiceL2Status; will retry");
                false
            }
        }
    }

    /// After a failover the old owner may be dead and unable to delete its
    /// object: the new owner removes it.
    async fn remove_other_nodes(&self, service: &ServiceKey, ip: IpAddr) {
        let selector = format!(
            "{LABEL_SERVICE_NAMESPACE}={},{LABEL_SERVICE_NAME}={}",
            service.namespace(),
            service.name()
        );
        let Ok(list) = self
            .statuses
            .list(&ListParams::default().labels(&selector))
            .await
        else {
            return;
        };
        for object in list.items {
            let stale = object
                .status
                .as_ref()
                .is_some_and(|s| s.node != self.node && s.ip == ip.to_string());
            if stale && let Some(name) = object.metadata.name.as_deref() {
                self.delete(name).await;
            }
        }
    }

    async fn delete(&self, name: &str) -> bool {
        match self.statuses.delete(name, &DeleteParams::default()).await {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(e) => {
                debug!(name, error = %e, "could not delete ServiceL2Status");
                false
            }
        }
    }

    /// A Warning Event on each Service of the IP a conflict was about.
    pub async fn conflict(
        &self,
        report: &ConflictReport,
        services: &ServiceSet,
        store: &Shared<ServiceObject>,
    ) {
        let conflict = &report.conflict;
        let (reason, what) = match conflict.outcome {
            Outcome::Won => ("L2ConflictWon", "kept it (higher election rank)"),
            _ => ("L2ConflictYielded", "stopped answering for it"),
        };
        let other = if conflict.other_ranked {
            "another FerroLB speaker"
        } else {
            "a host that is not a FerroLB speaker"
        };
        let note = format!(
            "{other} (MAC {}) claimed {} on {} of node {}; this node {what}",
            conflict.other, conflict.ip, report.interface, self.node
        );
        for service in services {
            self.event(store, service, note.clone(), reason, EventType::Warning)
                .await;
        }
    }

    async fn event(
        &self,
        services: &Shared<ServiceObject>,
        service: &ServiceKey,
        note: String,
        reason: &str,
        type_: EventType,
    ) {
        let uid = read(services)
            .get(service)
            .and_then(|s| s.uid.as_ref().map(ToString::to_string));
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(service.namespace().to_string()),
            name: Some(service.name().to_string()),
            uid,
            ..Default::default()
        };
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Announce".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            debug!(service = %service, error = %e, "could not publish event");
        }
    }
}

/// An IP as a DNS-label-safe string: dots become dashes for IPv4, and IPv6 is
/// written as its 32 hex digits (colons and `::` cannot appear in names).
fn ip_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::ip_label;

    #[test]
    fn ip_labels_are_valid_name_parts() {
        assert_eq!(ip_label("198.51.100.7".parse().unwrap()), "198-51-100-7");
        assert_eq!(
            ip_label("2001:db8::".parse().unwrap()),
            "20010db8000000000000000000000000"
        );
    }
}
