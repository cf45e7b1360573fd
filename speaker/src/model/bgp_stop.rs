//! What a stopping speaker does with its BGP routes: keep them at the router
//! through a Graceful Restart (RFC 4724), or withdraw them.
//!
//! A speaker cannot see why it gets SIGTERM. A rolling update or a deleted pod
//! comes back on the same node within seconds, and the router should keep the
//! node's next hop meanwhile. A node that leaves (deleted, cordoned for a drain,
//! shutting down, which the kubelet shows as Ready=False) does not come back soon,
//! and the router must drop it at once rather than after the restart time. So the
//! Node object decides: a healthy, schedulable Node means a restart.

use k8s_openapi::api::core::v1::Node;

use super::eligibility::LABEL_EXCLUDE_FROM_LOAD_BALANCERS;
use super::node_address::has_condition;

/// What the BGP sessions do when the speaker stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BgpStop {
    /// Close without a NOTIFICATION: the router keeps the routes for the restart time.
    Restart,
    /// Withdraw (after the GRACEFUL_SHUTDOWN drain, if any) and send a Cease; the
    /// default until the Node is known.
    Leave(LeaveReason),
}

/// Why a stopping speaker withdraws instead of restarting gracefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaveReason {
    /// Graceful Restart is turned off (restart time 0).
    GracefulRestartOff,
    /// This node's Node object is unknown (deleted, or not read yet).
    #[default]
    NodeGone,
    /// The Node is being deleted.
    NodeDeleting,
    /// The Node is cordoned (`spec.unschedulable`), as for a drain.
    Cordoned,
    /// The Node is not Ready (the kubelet reports this when the node shuts down).
    NotReady,
    /// The Node carries the label that excludes it from load balancers.
    Excluded,
}

impl Default for BgpStop {
    fn default() -> Self {
        BgpStop::Leave(LeaveReason::default())
    }
}

/// The stop for this node, from its Node object and whether Graceful Restart is on.
pub fn bgp_stop(node: Option<&Node>, graceful_restart: bool) -> BgpStop {
    let reason =
        match node {
            _ if !graceful_restart => LeaveReason::GracefulRestartOff,
            None => LeaveReason::NodeGone,
            Some(node) if node.metadata.deletion_timestamp.is_some() => LeaveReason::NodeDeleting,
            Some(node) if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) => {
                LeaveReason::Cordoned
            }
            Some(node) if !has_condition(node, "Ready") => LeaveReason::NotReady,
            Some(node)
                if node.metadata.labels.as_ref().is_some_and(|labels| {
                    labels.contains_key(LABEL_EXCLUDE_FROM_LOAD_BALANCERS)
                }) =>
            {
                LeaveReason::Excluded
            }
            Some(_) => return BgpStop::Restart,
        };
    BgpStop::Leave(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(extra: serde_json::Value) -> Node {
        let mut node = json!({
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        });
        if let (Some(node), Some(extra)) = (node.as_object_mut(), extra.as_object()) {
            for (key, value) in extra {
                node.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(node).unwrap()
    }

    #[test]
    fn a_healthy_schedulable_node_restarts_gracefully() {
        assert_eq!(bgp_stop(Some(&node(json!({}))), true), BgpStop::Restart);
    }

    #[test]
    fn a_node_that_leaves_withdraws_and_says_why() {
        let cases = [
            (None, LeaveReason::NodeGone),
            (
                Some(node(
                    json!({"metadata": {"name": "n1", "deletionTimestamp": "2026-01-01T00:00:00Z"}}),
                )),
                LeaveReason::NodeDeleting,
            ),
            (
                Some(node(json!({"spec": {"unschedulable": true}}))),
                LeaveReason::Cordoned,
            ),
            (
                Some(node(
                    json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                )),
                LeaveReason::NotReady,
            ),
            (Some(node(json!({"status": {}}))), LeaveReason::NotReady),
            (
                Some(node(
                    json!({"metadata": {"name": "n1", "labels": {LABEL_EXCLUDE_FROM_LOAD_BALANCERS: ""}}}),
                )),
                LeaveReason::Excluded,
            ),
        ];
        for (node, reason) in cases {
            assert_eq!(
                bgp_stop(node.as_ref(), true),
                BgpStop::Leave(reason),
                "{node:?}"
            );
        }
    }

    #[test]
    fn without_graceful_restart_every_stop_withdraws() {
        assert_eq!(
            bgp_stop(Some(&node(json!({}))), false),
            BgpStop::Leave(LeaveReason::GracefulRestartOff)
        );
    }
}
