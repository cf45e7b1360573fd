//! What a Service's status and annotation should say, and whether what it
//! says now already matches: the "diff" step between decision and write.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::AllocationError;
use super::allocator::Assignment;
use super::service::{ANNOTATION_ALLOCATED_FROM_POOL, RequestError};

/// The condition we own on Service status.
pub const CONDITION_TYPE: &str = "ferrolb.io/IPAllocated";

/// Our condition, as we want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionState {
    /// True when the Service got its IPs (condition status `True`).
    pub allocated: bool,
    /// CamelCase reason, see [`failure_reason`].
    pub reason: String,
    /// The human-readable message: the IPs and pool, or why there are none.
    pub message: String,
}

/// Everything we write on one Service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceWrite {
    /// The IPs for `status.loadBalancer.ingress`, in the Service's family order; empty when it has none.
    pub ips: Vec<IpAddr>,
    /// Value of the allocated-from-pool annotation; `None` removes it.
    pub pool: Option<String>,
    /// Our status condition; `None` removes it.
    pub condition: Option<ConditionState>,
}

impl ServiceWrite {
    /// Whether `other` shows the same status part (IPs and condition): then
    /// only the annotation may need writing.
    pub fn same_status(&self, other: &ServiceWrite) -> bool {
        self.ips == other.ips && self.condition == other.condition
    }
}

/// The outcome of evaluating one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The Service holds these IPs.
    Allocated(Assignment),
    /// The request was understood but cannot be served (pool full, IP taken...).
    Failed(AllocationError),
    /// The request itself is malformed (bad annotation, wrong family...).
    Invalid(RequestError),
    /// Not ours (any more): remove everything we wrote.
    Released,
    /// The Service keeps the IPs it had, although `problem` stands in the way
    /// of deciding anew: a live Service is never cleared or renumbered by a
    /// typo, a request out of scope, or a pool that turned invalid or went.
    Kept {
        /// What it keeps.
        assignment: Assignment,
        /// Why it was not decided anew.
        problem: KeptBecause,
    },
}

/// Why a Service keeps its IPs instead of getting what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptBecause {
    /// Its request is malformed.
    Request(RequestError),
    /// Its request cannot be served.
    Allocation(AllocationError),
    /// Its pool is out of allocation: its IPs are frozen.
    PoolFrozen {
        /// The pool.
        pool: String,
        /// Why it is out: invalid (and why), or deleted.
        why: String,
    },
}

impl std::fmt::Display for KeptBecause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeptBecause::Request(e) => write!(f, "{e}"),
            KeptBecause::Allocation(e) => write!(f, "{e}"),
            KeptBecause::PoolFrozen { pool, why } => write!(
                f,
                "pool {pool} {why}: its IPs stay with their Services and no new one is handed out"
            ),
        }
    }
}

/// CamelCase reason for the condition and Event.
pub fn failure_reason(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Allocated(_) => "Allocated",
        Outcome::Released => "Released",
        Outcome::Invalid(_)
        | Outcome::Kept {
            problem: KeptBecause::Request(_),
            ..
        } => "InvalidRequest",
        Outcome::Kept {
            problem: KeptBecause::PoolFrozen { .. },
            ..
        } => "PoolFrozen",
        Outcome::Failed(e)
        | Outcome::Kept {
            problem: KeptBecause::Allocation(e),
            ..
        } => match e {
            AllocationError::UnknownPool { .. } => "UnknownPool",
            AllocationError::NoEligiblePool { .. } => "NoEligiblePool",
            AllocationError::PoolFull { .. } => "PoolFull",
            AllocationError::FamilyUnavailable { .. } => "FamilyUnavailable",
            AllocationError::RequestedIpInNoPool { .. }
            | AllocationError::RequestedIpNotInPool { .. } => "IPNotInPool",
            AllocationError::RequestedIpInOverlap { .. } => "IPInPoolOverlap",
            AllocationError::PoolOutOfScope { .. }
            | AllocationError::RequestedIpOutOfScope { .. } => "OutOfScope",
            AllocationError::IpTaken { .. } => "IPTaken",
            AllocationError::SharingConflict { .. } => "SharingConflict",
        },
    }
}

impl Outcome {
    /// For a Service left without IPs: the metrics label and the message.
    pub fn failure(&self) -> Option<(&'static str, String)> {
        match self {
            Outcome::Failed(e) => Some((e.reason(), e.to_string())),
            Outcome::Invalid(e) => Some((e.reason(), e.to_string())),
            Outcome::Allocated(_) | Outcome::Released | Outcome::Kept { .. } => None,
        }
    }

    /// The write that makes the Service show this outcome.
    pub fn desired(&self) -> ServiceWrite {
        match self {
            Outcome::Allocated(a) => ServiceWrite {
                ips: a.ips.clone(),
                pool: Some(a.pool.clone()),
                condition: Some(ConditionState {
                    allocated: true,
                    reason: "Allocated".into(),
                    message: a.to_string(),
                }),
            },
            Outcome::Kept {
                assignment: a,
                problem,
            } => ServiceWrite {
                ips: a.ips.clone(),
                pool: Some(a.pool.clone()),
                condition: Some(ConditionState {
                    allocated: true,
                    reason: failure_reason(self).into(),
                    message: format!("keeps {a}: {problem}"),
                }),
            },
            Outcome::Failed(_) | Outcome::Invalid(_) => ServiceWrite {
                condition: Some(ConditionState {
                    allocated: false,
                    reason: failure_reason(self).into(),
                    message: self
                        .failure()
                        .map(|(_, message)| message)
                        .unwrap_or_default(),
                }),
                ..Default::default()
            },
            Outcome::Released => ServiceWrite::default(),
        }
    }
}

/// What the Service says now, read the same way.
pub fn observed(service: &Service) -> ServiceWrite {
    let status = service.status.as_ref();
    let ips = super::service::ingress_ips(service);
    let pool = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ALLOCATED_FROM_POOL))
        .cloned();
    let condition = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|conditions| {
            conditions
                .iter()
                .find(|c| c.type_ == CONDITION_TYPE)
                .map(|c| ConditionState {
                    allocated: c.status == "True",
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                })
        });
    ServiceWrite {
        ips,
        pool,
        condition,
    }
}

/// Whether we ever wrote on this Service (so releasing it needs a write).
pub fn carries_our_marks(service: &Service) -> bool {
    let seen = observed(service);
    seen.pool.is_some() || seen.condition.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fixtures::{service, showing};

    #[test]
    fn failure_write_has_no_ips_and_a_reason() {
        let outcome = Outcome::Failed(AllocationError::UnknownPool {
            pool: "gold".into(),
        });
        let write = outcome.desired();
        assert!(write.ips.is_empty() && write.pool.is_none());
        let c = write.condition.unwrap();
        assert_eq!((c.allocated, c.reason.as_str()), (false, "UnknownPool"));
        assert!(c.message.contains("gold"));
    }

    #[test]
    fn observed_matches_desired_after_write() {
        let assignment = Assignment {
            pool: "p".into(),
            ips: vec!["198.51.100.1".parse().unwrap()],
        };
        let write = Outcome::Allocated(assignment).desired();
        let svc = showing(&service("web", 0, &[]), &write, 2);
        assert_eq!(observed(&svc), write);
        assert!(carries_our_marks(&svc));
        assert!(!carries_our_marks(&service("web", 0, &[])));
    }
}
