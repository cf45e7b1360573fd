//! Why a Service got no IP: the allocator's errors, each one user-facing reason.

use std::net::IpAddr;

use super::service::ServiceKey;
use crate::ipam::Family;

/// Why a Service got no IP. Each variant is one precise, user-facing reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The Service names a pool (address-pool annotation) that does not exist.
    #[error("pool {pool:?} requested by annotation does not exist")]
    UnknownPool {
        /// The pool name as written in the annotation.
        pool: String,
    },
    /// No pool may serve the Service: none has `autoAssign` and a `serviceAllocation` that admits it.
    #[error(
        "no pool may serve this Service: of {pools} pools, none has autoAssign and a serviceAllocation that admits it"
    )]
    NoEligiblePool {
        /// How many pools were considered.
        pools: usize,
    },
    /// The chosen pool declares addresses of the family, but none is free to hand out: all are taken, in an overlap, or skipped by `avoidBuggyIPs`.
    #[error("pool {pool} has no free {family} address")]
    PoolFull {
        /// The pool that is full.
        pool: String,
        /// The family the Service needed.
        family: Family,
    },
    /// The chosen pool declares no address of a family the Service requires.
    #[error("no {family} addresses in pool {pool}")]
    FamilyUnavailable {
        /// The pool lacking the family.
        pool: String,
        /// The family it lacks.
        family: Family,
    },
    /// A requested IP (annotation or `spec.loadBalancerIP`) lies in no pool.
    #[error("requested IP {ip} is in no pool")]
    RequestedIpInNoPool {
        /// The requested IP.
        ip: IpAddr,
    },
    /// A requested IP lies outside the pool the Service also requests.
    #[error("requested IP {ip} is not in the requested pool {pool}")]
    RequestedIpNotInPool {
        /// The requested IP.
        ip: IpAddr,
        /// The requested pool.
        pool: String,
    },
    /// A requested IP lies where two pools overlap, so neither hands it out.
    #[error("requested IP {ip} is in pool {pool} but also in another pool, so it is not allocated")]
    RequestedIpInOverlap {
        /// The requested IP.
        ip: IpAddr,
        /// The pool that contains it (one of the overlapping ones).
        pool: String,
    },
    /// The requested pool's `serviceAllocation` does not admit the Service.
    #[error("pool {pool} does not admit this Service: its serviceAllocation excludes it")]
    PoolOutOfScope {
        /// The requested pool.
        pool: String,
    },
    /// Every pool holding a requested IP has a `serviceAllocation` that excludes the Service.
    #[error(
        "requested IP {ip} is in pool {pool}, whose serviceAllocation does not admit this Service"
    )]
    RequestedIpOutOfScope {
        /// The requested IP.
        ip: IpAddr,
        /// A pool that holds it.
        pool: String,
    },
    /// A requested IP is held by another Service that does not share it.
    #[error("IP {ip} is already used by Service {by}")]
    IpTaken {
        /// The requested IP.
        ip: IpAddr,
        /// The Service holding it.
        by: ServiceKey,
    },
    /// A requested IP is shared by Services whose sharing terms (key, ports, traffic policy, selector) clash with this one's.
    #[error("IP {ip} cannot be shared with Service {with}: {reason}")]
    SharingConflict {
        /// The requested IP.
        ip: IpAddr,
        /// A Service already on the IP whose terms clash.
        with: ServiceKey,
        /// Which term clashes, in words for the user.
        reason: String,
    },
}

impl AllocationError {
    /// Short snake_case reason for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            AllocationError::UnknownPool { .. } => "unknown_pool",
            AllocationError::NoEligiblePool { .. } => "no_eligible_pool",
            AllocationError::PoolFull { .. } => "pool_full",
            AllocationError::FamilyUnavailable { .. } => "family_unavailable",
            AllocationError::RequestedIpInNoPool { .. }
            | AllocationError::RequestedIpNotInPool { .. } => "ip_in_no_pool",
            AllocationError::RequestedIpInOverlap { .. } => "ip_in_pool_overlap",
            AllocationError::PoolOutOfScope { .. }
            | AllocationError::RequestedIpOutOfScope { .. } => "out_of_scope",
            AllocationError::IpTaken { .. } => "ip_taken",
            AllocationError::SharingConflict { .. } => "sharing_conflict",
        }
    }
}
