//! What the [`Reconciler`](super::reconcile::Reconciler) asks of the world,
//! as plain data. The shell carries each [`Effect`] out and feeds what came
//! of it back in as an input.

use ferrolb_crds::pool::IPAddressPoolStatus;
use k8s_openapi::api::core::v1::ObjectReference;

use super::allocator::PoolUsage;
use super::desired::ServiceWrite;
use super::service::ServiceKey;
use crate::ipam::Family;

/// Names one write order, so that the report of how it ended can be matched
/// with the newest order for the same object (an older order's report says
/// nothing about the newer one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

impl Ticket {
    /// This ticket, and the counter moved on to the next one.
    pub fn take(counter: &mut u64) -> Ticket {
        *counter += 1;
        Ticket(*counter)
    }
}

/// One thing for the shell to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Queue a Service's status and annotation write, replacing whatever is
    /// queued for it.
    WriteService(ServiceWriteOrder),
    /// The Service is gone: drop whatever is queued for it.
    ForgetService(ServiceKey),
    /// Write a pool's status.
    WritePoolStatus(PoolStatusOrder),
    /// Publish a Kubernetes Event.
    Event(EventRequest),
    /// Update a metric.
    Metric(MetricChange),
    /// The first full listing of every watched kind is in and decided on:
    /// the controller is ready.
    Synced { services: usize, pools: usize },
}

/// What to write on one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWriteOrder {
    pub key: ServiceKey,
    pub write: ServiceWrite,
    /// The object already shows the status part of `write`: only the
    /// annotation needs writing.
    pub status_current: bool,
    pub ticket: Ticket,
}

/// What to write on one pool's status.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatusOrder {
    pub pool: String,
    pub status: IPAddressPoolStatus,
    pub ticket: Ticket,
}

/// A metric update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricChange {
    /// One address of `family` assigned from `pool`.
    Allocated { pool: String, family: Family },
    /// A Service left without addresses; `reason` is a short snake_case word.
    Failed { reason: &'static str },
    /// A Service's addresses given back to `pool`.
    Released { pool: String },
    /// Services waiting for an address.
    Pending(usize),
    /// A pool's usage, both families.
    PoolUsage { pool: String, usage: PoolUsage },
    /// A pool is gone: forget its usage.
    PoolRemoved { pool: String },
}

/// The object an Event is about, kept small while it waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regarding {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
}

impl Regarding {
    /// A Service; `kubectl describe` matches Events on the uid.
    pub fn service(namespace: &str, name: &str, uid: Option<&str>) -> Regarding {
        Regarding {
            api_version: "v1",
            kind: "Service",
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.map(str::to_string),
        }
    }

    pub fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(self.api_version.into()),
            kind: Some(self.kind.into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            uid: self.uid.clone(),
            ..Default::default()
        }
    }
}

/// One Event to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRequest {
    pub regarding: Regarding,
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}
