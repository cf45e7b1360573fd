//! IPAddressPool objects in and out: conversion to the pure [`PoolConfig`],
//! and the status (counters and conditions) we write back.

use ferrolb_crds::pool::condition;
use ferrolb_crds::pool::{AddressCounts, IPAddressPool, IPAddressPoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::core::{AllocationScope, Pool, PoolConfig, PoolUsage};
use crate::ipam::AddressSet;

/// Converts a pool object. An invalid one (it bypassed admission) yields the
/// message for its status instead: it is then left out of allocation.
pub fn pool_config(pool: &IPAddressPool) -> Result<PoolConfig, String> {
    if let Err(errors) = pool.spec.validate() {
        return Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "));
    }
    let ranges = pool.spec.ranges().map_err(|e| e.to_string())?;
    let scope = pool
        .spec
        .service_allocation
        .as_ref()
        .map(|sa| AllocationScope {
            priority: sa.priority,
            namespaces: sa.namespaces.clone(),
            namespace_selectors: sa.namespace_selectors.clone(),
            service_selectors: sa.service_selectors.clone(),
        });
    Ok(PoolConfig {
        name: pool.name_any(),
        created: pool
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(i64::MAX),
        declared: AddressSet::new(ranges),
        auto_assign: pool.spec.auto_assign,
        avoid_buggy: pool.spec.avoid_buggy_ips,
        scope,
    })
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
    }
}

/// The status a pool should carry.
pub fn pool_status(
    namespace: &str,
    generation: Option<i64>,
    pool: Option<&Pool>,
    invalid: Option<&str>,
    usage: PoolUsage,
) -> IPAddressPoolStatus {
    let mut status = IPAddressPoolStatus {
        observed_generation: generation,
        ..Default::default()
    };
    status.set_counts(AddressCounts {
        assigned_ipv4: usage.assigned_v4,
        available_ipv4: usage.available_v4,
        assigned_ipv6: usage.assigned_v6,
        available_ipv6: usage.available_v6,
    });
    status.in_use = Some(usage.assigned_v4 + usage.assigned_v6 > 0);
    let (ready, reason, message) = match (invalid, pool.and_then(|p| p.conflict.as_ref())) {
        (Some(msg), _) => (false, condition::REASON_INVALID_ADDRESSES, msg.to_string()),
        (None, Some(conflict)) => (
            false,
            condition::REASON_CONFLICTING,
            condition::overlap_message(namespace, &conflict.other_pool, &conflict.overlap),
        ),
        (None, None) => (
            true,
            condition::REASON_ADDRESSES_VALID,
            "addresses are valid and overlap no other pool".into(),
        ),
    };
    status.conditions.push(condition(
        condition::TYPE_READY,
        ready,
        reason,
        message,
        generation,
    ));
    let conflict = pool.and_then(|p| p.conflict.as_ref());
    status.conditions.push(condition(
        condition::TYPE_CONFLICTING,
        conflict.is_some(),
        if conflict.is_some() {
            condition::REASON_OVERLAP
        } else {
            "NoOverlap"
        },
        conflict
            .map(|c| format!("{c}"))
            .unwrap_or_else(|| "no other pool declares these addresses".into()),
        generation,
    ));
    status
}

/// Whether two statuses differ in anything but condition timestamps.
pub fn status_differs(a: &IPAddressPoolStatus, b: &IPAddressPoolStatus) -> bool {
    let strip = |s: &IPAddressPoolStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) != strip(b)
}
