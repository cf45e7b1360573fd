//! The request bodies of our Service writes, built without I/O.
//!
//! Two ways to write the same decision ([`WriteMethod`]):
//!
//! - server-side apply: we send every field we want and the apiserver removes
//!   what our field manager owned and no longer sends;
//! - strategic merge patch: cheaper for the apiserver (no field-set
//!   computation over the applied object), so removals are spelled out:
//!   `status.loadBalancer.ingress` is an atomic list that a patch replaces
//!   as a whole (`null` clears it), `status.conditions` merge by `type` (our
//!   entry is replaced or deleted with `$patch: delete`, other writers'
//!   conditions stay), and our annotation is set or set to `null`.
//!
//! The status patch carries our annotation too: the apiserver's status
//! strategy for Services keeps the spec but takes metadata changes, so one
//! request writes the whole decision. Should a server drop them, the writer
//! sees the annotation missing in the response and writes it on its own.

use serde_json::{Value, json};

use crate::core::ServiceKey;
use crate::core::desired::{CONDITION_TYPE, ConditionState, ServiceWrite};
use crate::core::service::ANNOTATION_ALLOCATED_FROM_POOL;

/// How Service status and annotation are written (`--status-write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WriteMethod {
    /// Server-side apply with our field manager (forced).
    Apply,
    /// Strategic merge patch, recorded under our field manager.
    #[default]
    Patch,
}

fn ingress(write: &ServiceWrite) -> Vec<Value> {
    write
        .ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string(), "ipMode": "VIP" }))
        .collect()
}

/// Our condition; `now` (RFC 3339) is its lastTransitionTime.
fn condition(c: &ConditionState, now: &str) -> Value {
    json!({
        "type": CONDITION_TYPE,
        "status": if c.allocated { "True" } else { "False" },
        "reason": c.reason,
        "message": c.message,
        "lastTransitionTime": now,
    })
}

/// Server-side apply of the ingress and our condition: fields left out are
/// removed because our field manager owns them.
pub fn status_apply(key: &ServiceKey, write: &ServiceWrite, now: &str) -> Value {
    let mut status = json!({});
    let ingress = ingress(write);
    if !ingress.is_empty() {
        status["loadBalancer"] = json!({ "ingress": ingress });
    }
    if let Some(c) = &write.condition {
        status["conditions"] = json!([condition(c, now)]);
    }
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": key.name(), "namespace": key.namespace() },
        "status": status,
    })
}

/// Strategic merge patch of the status subresource: the ingress replaced as
/// a whole (cleared when empty), our condition set or deleted by its type,
/// and our annotation set or removed.
pub fn status_patch(write: &ServiceWrite, now: &str) -> Value {
    let ingress = ingress(write);
    let ingress = if ingress.is_empty() {
        Value::Null
    } else {
        Value::Array(ingress)
    };
    let ours = match &write.condition {
        Some(c) => condition(c, now),
        None => json!({ "type": CONDITION_TYPE, "$patch": "delete" }),
    };
    json!({
        "metadata": { "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: write.pool } },
        "status": {
            "loadBalancer": { "ingress": ingress },
            "conditions": [ours],
        },
    })
}

/// Server-side apply of the pool annotation (an empty set removes ours).
pub fn annotation_apply(key: &ServiceKey, write: &ServiceWrite) -> Value {
    let annotations = match &write.pool {
        Some(pool) => json!({ ANNOTATION_ALLOCATED_FROM_POOL: pool }),
        None => json!({}),
    };
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": key.name(), "namespace": key.namespace(), "annotations": annotations },
    })
}

/// Merge patch of our annotation alone (`null` removes it); other
/// annotations are untouched.
pub fn annotation_patch(write: &ServiceWrite) -> Value {
    json!({
        "metadata": { "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: write.pool } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-11-26T17:00:00Z";

    fn allocated() -> ServiceWrite {
        ServiceWrite {
            ips: vec![
                "2001:db8::1".parse().unwrap(),
                "198.51.100.7".parse().unwrap(),
            ],
            pool: Some("gold".into()),
            condition: Some(ConditionState {
                allocated: true,
                reason: "Allocated".into(),
                message: "2001:db8::1, 198.51.100.7 from pool gold".into(),
            }),
        }
    }

    fn failed() -> ServiceWrite {
        ServiceWrite {
            condition: Some(ConditionState {
                allocated: false,
                reason: "PoolFull".into(),
                message: "pool gold is full".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn patch_sets_the_whole_ingress_and_our_condition() {
        let body = status_patch(&allocated(), NOW);
        assert_eq!(
            body["status"]["loadBalancer"]["ingress"],
            json!([
                { "ip": "2001:db8::1", "ipMode": "VIP" },
                { "ip": "198.51.100.7", "ipMode": "VIP" },
            ])
        );
        assert_eq!(
            body["status"]["conditions"],
            json!([{
                "type": CONDITION_TYPE, "status": "True", "reason": "Allocated",
                "message": "2001:db8::1, 198.51.100.7 from pool gold",
                "lastTransitionTime": NOW,
            }])
        );
        assert_eq!(
            body["metadata"],
            json!({ "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: "gold" } })
        );
    }

    #[test]
    fn patch_of_a_failure_clears_the_ingress_and_keeps_the_condition() {
        let body = status_patch(&failed(), NOW);
        assert_eq!(body["status"]["loadBalancer"], json!({ "ingress": null }));
        assert_eq!(body["status"]["conditions"][0]["status"], "False");
        assert_eq!(body["status"]["conditions"][0]["reason"], "PoolFull");
    }

    #[test]
    fn patch_of_a_release_deletes_only_our_condition() {
        let body = status_patch(&ServiceWrite::default(), NOW);
        assert_eq!(body["status"]["loadBalancer"], json!({ "ingress": null }));
        assert_eq!(
            body["status"]["conditions"],
            json!([{ "type": CONDITION_TYPE, "$patch": "delete" }])
        );
        assert_eq!(
            body["metadata"]["annotations"][ANNOTATION_ALLOCATED_FROM_POOL],
            Value::Null
        );
    }

    #[test]
    fn apply_leaves_out_what_we_no_longer_want() {
        let key = ServiceKey::new("ns", "web");
        let body = status_apply(&key, &ServiceWrite::default(), NOW);
        assert_eq!(body["status"], json!({}));
        assert_eq!(
            body["metadata"],
            json!({ "name": "web", "namespace": "ns" })
        );
        let body = status_apply(&key, &allocated(), NOW);
        assert_eq!(
            body["status"]["loadBalancer"]["ingress"][1]["ip"],
            "198.51.100.7"
        );
        assert_eq!(body["status"]["conditions"][0]["type"], CONDITION_TYPE);
    }

    #[test]
    fn annotation_bodies_touch_only_our_key() {
        let key = ServiceKey::new("ns", "web");
        assert_eq!(
            annotation_patch(&allocated()),
            json!({ "metadata": { "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: "gold" } } })
        );
        assert_eq!(
            annotation_patch(&failed()),
            json!({ "metadata": { "annotations": { ANNOTATION_ALLOCATED_FROM_POOL: null } } })
        );
        assert_eq!(
            annotation_apply(&key, &failed())["metadata"]["annotations"],
            json!({})
        );
        assert_eq!(
            annotation_apply(&key, &allocated())["metadata"]["annotations"],
            json!({ ANNOTATION_ALLOCATED_FROM_POOL: "gold" })
        );
    }
}
