//! The echo backend as the real-node tests deploy it: a Deployment and its
//! LoadBalancer Service asking for IPs of the test's own.

use std::net::IpAddr;

use anyhow::{Result, anyhow};
use serde_json::{Value, json};

use super::{Policy, RealCluster};

/// The namespace of the tests' workloads.
pub const NS: &str = "default";

/// Deploys the echo backend `name` and its LoadBalancer Service asking for
/// `ips` (one IPv4, or one of each family), waits until the pods are Ready
/// and the Service has its IPs, and returns them.
///
/// Each test asks for IPs of its own: an IP freed by one test and handed out
/// at once to the next could still meet the nodes' kube-proxy rules of the
/// deleted Service for a moment.
pub fn echo_app(
    site: &RealCluster,
    name: &str,
    replicas: u32,
    node: Option<&str>,
    pool: &str,
    policy: Policy,
    ips: &[&str],
) -> Result<Vec<IpAddr>> {
    let mut deployment = RealCluster::echo_deployment(name, NS, replicas, node);
    // One pod per node when there are as many pods as nodes.
    deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] =
        json!("DoNotSchedule");
    let service = echo_lb_service(name, name, pool, policy, ips);
    site.apply(&[deployment, service])?;
    site.rollout(&format!("deployment/{name}"), NS)?;
    site.wait_ingress(name, NS, ips.len())
}

/// A LoadBalancer Service `name` for the pods of the echo backend `app`,
/// asking for `ips` (one IPv4, or one of each family).
pub fn echo_lb_service(app: &str, name: &str, pool: &str, policy: Policy, ips: &[&str]) -> Value {
    let mut service = RealCluster::echo_service(name, NS, pool, policy);
    service["spec"]["selector"] = json!({"app": app});
    service["metadata"]["annotations"]["ferrolb.io/loadBalancerIPs"] = json!(ips.join(","));
    if ips.len() == 1 {
        service["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        service["spec"]["ipFamilies"] = json!(["IPv4"]);
    }
    service
}

pub fn delete_app(site: &RealCluster, name: &str) {
    let _ = site.api.kubectl_ok(&[
        "-n",
        NS,
        "delete",
        "service,deployment",
        name,
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// The IPv4 address among a Service's ingress IPs.
pub fn v4(ips: &[IpAddr]) -> Result<IpAddr> {
    ips.iter()
        .copied()
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| anyhow!("no IPv4 ingress among {ips:?}"))
}

/// The IPv6 address among a Service's ingress IPs.
pub fn v6(ips: &[IpAddr]) -> Result<IpAddr> {
    ips.iter()
        .copied()
        .find(IpAddr::is_ipv6)
        .ok_or_else(|| anyhow!("no IPv6 ingress among {ips:?}"))
}
