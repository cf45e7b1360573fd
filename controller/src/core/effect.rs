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
    Synced {
        /// Services known when the listing completed.
        services: usize,
        /// Pools known when the listing completed.
        pools: usize,
    },
}

/// What to write on one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceWriteOrder {
    /// The Service to write.
    pub key: ServiceKey,
    /// What it should show afterwards.
    pub write: ServiceWrite,
    /// The object already shows the status part of `write`: only the
    /// annotation needs writing.
    pub status_current: bool,
    /// Identifies this order in the settled report.
    pub ticket: Ticket,
}

/// What to write on one pool's status.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolStatusOrder {
    /// Name of the IPAddressPool (in the controller's pool namespace).
    pub pool: String,
    /// The complete status to write, replacing the current one.
    pub status: IPAddressPoolStatus,
    /// Identifies this order in the write report.
    pub ticket: Ticket,
}

/// A metric update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricChange {
    /// One address of `family` assigned from `pool`.
    Allocated {
        /// The pool the address came from.
        pool: String,
        /// The address's family.
        family: Family,
    },
    /// A Service left without addresses; `reason` is a short snake_case word.
    Failed {
        /// The reason's metric label, e.g. `pool_full`.
        reason: &'static str,
    },
    /// A Service's addresses given back to `pool`.
    Released {
        /// The pool the addresses go back to.
        pool: String,
    },
    /// Services waiting for an address.
    Pending(usize),
    /// A pool's usage, both families.
    PoolUsage {
        /// The pool measured.
        pool: String,
        /// Its assigned and available counts.
        usage: PoolUsage,
    },
    /// A pool is gone: forget its usage.
    PoolRemoved {
        /// The pool removed.
        pool: String,
    },
}

/// The object an Event is about, kept small while it waits in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regarding {
    /// `apiVersion` of the object, e.g. `v1`.
    pub api_version: &'static str,
    /// `kind` of the object, e.g. `Service`.
    pub kind: &'static str,
    /// Namespace of the object; the Event is created there.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
    /// uid of the object, when known; without it `kubectl describe` may not show the Event.
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

    /// The object as the Events API refers to it.
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
    /// The object the Event is about.
    pub regarding: Regarding,
    /// A Warning Event when true, else Normal.
    pub warning: bool,
    /// CamelCase reason, e.g. `PoolFull`.
    pub reason: &'static str,
    /// What the controller did or failed to do, e.g. `Allocate`.
    pub action: &'static str,
    /// The human-readable message.
    pub note: String,
}
