//! IPAddressPool objects in and out: conversion to the pure [`PoolConfig`],
//! and the status (counters and conditions) we write back.

use ferrolb_crds::pool::condition;
use ferrolb_crds::pool::{AddressCounts, IPAddressPool, IPAddressPoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::pools::withheld;
use super::{AllocationScope, Pool, PoolConfig, PoolUsage};
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
        withheld: withheld(&pool.spec.addresses),
        scope,
    })
}

/// What an invalid pool still in use does, for its status and Event.
pub fn frozen_note(in_use: u128) -> String {
    format!(
        "allocation from it is frozen: its {in_use} addresses in use stay with their Services and none is handed out"
    )
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// What a pool's status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts<'a> {
    /// Namespace of the pools (named in overlap messages).
    pub namespace: &'a str,
    /// `metadata.generation` of the pool, reported as the conditions' `observedGeneration`.
    pub generation: Option<i64>,
    /// The pool as allocation sees it; `None` when it is invalid.
    pub pool: Option<&'a Pool>,
    /// Why the pool is invalid, if it is.
    pub invalid: Option<&'a str>,
    /// The pool's current address counts.
    pub usage: PoolUsage,
}

/// The status a pool should carry. A condition keeps the
/// `lastTransitionTime` it has in `previous` unless its status flips: only
/// a flip (or a condition new to the pool) is stamped `now`.
pub fn pool_status(
    facts: PoolFacts<'_>,
    previous: Option<&IPAddressPoolStatus>,
    now: Timestamp,
) -> IPAddressPoolStatus {
    let PoolFacts {
        namespace,
        generation,
        pool,
        invalid,
        usage,
    } = facts;
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
    status.in_use = Some(usage.in_use() > 0);
    let (ready, reason, message) = match (invalid, pool.and_then(|p| p.conflict.as_ref())) {
        (Some(msg), _) if status.in_use == Some(true) => (
            false,
            condition::REASON_INVALID_ADDRESSES,
            format!("{msg}; {}", frozen_note(usage.in_use())),
        ),
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
        now,
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
        now,
    ));
    if let Some(previous) = previous {
        keep_transition_times(&mut status.conditions, &previous.conditions);
    }
    status
}

/// Copies each condition's `lastTransitionTime` from the condition of the
/// same type in `previous`, when that one has the same status.
fn keep_transition_times(conditions: &mut [Condition], previous: &[Condition]) {
    for condition in conditions {
        if let Some(before) = previous
            .iter()
            .find(|p| p.type_ == condition.type_ && p.status == condition.status)
        {
            condition.last_transition_time = before.last_transition_time.clone();
        }
    }
}

/// Whether two statuses differ in anything but condition timestamps.
pub fn status_differs(a: &IPAddressPoolStatus, b: &IPAddressPoolStatus) -> bool {
    let strip = |s: &IPAddressPoolStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) != strip(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn facts(invalid: Option<&str>, assigned_v4: u128) -> PoolFacts<'_> {
        PoolFacts {
            namespace: "ferrolb-system",
            generation: Some(1),
            pool: None,
            invalid,
            usage: PoolUsage {
                assigned_v4,
                available_v4: 8 - assigned_v4,
                ..Default::default()
            },
        }
    }

    fn transition_time(status: &IPAddressPoolStatus, type_: &str) -> Timestamp {
        let condition = status.conditions.iter().find(|c| c.type_ == type_);
        condition.unwrap().last_transition_time.0
    }

    #[test]
    fn a_count_change_keeps_the_transition_times() {
        let first = pool_status(facts(None, 0), None, at(100));
        assert_eq!(transition_time(&first, condition::TYPE_READY), at(100));
        let second = pool_status(facts(None, 3), Some(&first), at(200));
        assert!(status_differs(&first, &second), "the counts changed");
        assert_eq!(transition_time(&second, condition::TYPE_READY), at(100));
        assert_eq!(
            transition_time(&second, condition::TYPE_CONFLICTING),
            at(100)
        );
    }

    #[test]
    fn a_flip_stamps_only_the_condition_that_flipped() {
        let valid = pool_status(facts(None, 1), None, at(100));
        let invalid = pool_status(facts(Some("bad range"), 1), Some(&valid), at(200));
        assert_eq!(transition_time(&invalid, condition::TYPE_READY), at(200));
        assert_eq!(
            transition_time(&invalid, condition::TYPE_CONFLICTING),
            at(100),
            "Conflicting stayed False"
        );
        let valid_again = pool_status(facts(None, 1), Some(&invalid), at(300));
        assert_eq!(
            transition_time(&valid_again, condition::TYPE_READY),
            at(300)
        );
    }
}
