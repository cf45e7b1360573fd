//! What runs on the real-node cluster: FerroLB from `deploy/`, the echo
//! backend, and the pools and Services the tests and the lab use.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use super::RealCluster;
use crate::env::apply_deploy;

/// The echo backend's image (built by `cargo xtask image`).
pub const ECHO_IMAGE: &str = "ghcr.io/ferrolb/ferrolb-echo:0.1.0";

/// How a test Service is exposed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Policy {
    Cluster,
    Local,
}

impl RealCluster {
    /// Installs FerroLB as a user does (`kubectl apply -k deploy/`) and waits
    /// until the controller and every speaker are rolled out and Ready.
    pub fn install_ferrolb(&self) -> Result<()> {
        apply_deploy(&self.api)?;
        self.rollout("deployment/ferrolb-controller", "ferrolb-system")?;
        self.rollout("daemonset/ferrolb-speaker", "ferrolb-system")
    }

    /// `kubectl rollout status`, bounded.
    pub fn rollout(&self, what: &str, namespace: &str) -> Result<()> {
        if let Err(e) =
            self.api
                .kubectl_ok(&["-n", namespace, "rollout", "status", what, "--timeout=180s"])
        {
            let pods = self
                .api
                .kubectl_ok(&["-n", namespace, "get", "pods", "-o", "wide"])
                .unwrap_or_default();
            let events = self
                .api
                .kubectl_ok(&["-n", namespace, "get", "events", "--sort-by=.lastTimestamp"])
                .unwrap_or_default();
            let recent: Vec<&str> = events.lines().rev().take(25).collect();
            bail!(
                "{what} did not roll out: {e:#}\npods:\n{pods}\nlatest events:\n{}\nlogs in {}",
                recent.join("\n"),
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Applies `objects` (server-side, as the tests' field manager).
    pub fn apply(&self, objects: &[Value]) -> Result<()> {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        self.api.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=ferrolb-tests",
                "-f",
                "-",
            ],
            &list.to_string(),
        )?;
        Ok(())
    }

    /// The echo backend `name` in `namespace`: a Deployment of `replicas`
    /// pods (only on `node` when given) that answer with their pod and node
    /// names and the client address they see.
    pub fn echo_deployment(
        name: &str,
        namespace: &str,
        replicas: u32,
        node: Option<&str>,
    ) -> Value {
        let node_selector = match node {
            Some(node) => json!({"kubernetes.io/hostname": node}),
            None => json!({}),
        };
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "nodeSelector": node_selector,
                        "terminationGracePeriodSeconds": 1,
                        // Spread over the nodes, so Cluster and Local differ.
                        "topologySpreadConstraints": [{
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": {"app": name}},
                        }],
                        "containers": [{
                            "name": "echo",
                            "image": ECHO_IMAGE,
                            "imagePullPolicy": "IfNotPresent",
                            "env": [
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                            ],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/healthz", "port": 8080},
                                "periodSeconds": 1,
                            },
                            "securityContext": {
                                "runAsNonRoot": true,
                                "allowPrivilegeEscalation": false,
                                "readOnlyRootFilesystem": true,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }],
                    },
                },
            },
        })
    }

    /// A dual-stack LoadBalancer Service for the echo backend `name`, taking
    /// its IPs from `pool`.
    pub fn echo_service(name: &str, namespace: &str, pool: &str, policy: Policy) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "annotations": {"ferrolb.io/address-pool": pool},
            },
            "spec": {
                "type": "LoadBalancer",
                "ipFamilyPolicy": "PreferDualStack",
                "ipFamilies": ["IPv4", "IPv6"],
                "externalTrafficPolicy": match policy {
                    Policy::Cluster => "Cluster",
                    Policy::Local => "Local",
                },
                "selector": {"app": name},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
        })
    }

    /// Waits until Service `name` has its LoadBalancer IPs, and returns them.
    pub fn wait_ingress(&self, name: &str, namespace: &str, count: usize) -> Result<Vec<IpAddr>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            let shown = self.ingress_now(name, namespace)?;
            let ips: Vec<IpAddr> = shown.iter().filter_map(|l| l.trim().parse().ok()).collect();
            last = shown.join(",");
            if ips.len() >= count {
                return Ok(ips);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "Service {namespace}/{name} has no {count} ingress IPs after 60 s: {last:?}\n{}",
            self.controller_story(name, namespace)
        )
    }

    /// The leading controller's pod: the holder of its Lease.
    pub fn controller_leader(&self) -> Result<String> {
        let holder = self.api.kubectl_ok(&[
            "-n",
            "ferrolb-system",
            "get",
            "lease",
            "ferrolb-controller",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])?;
        Ok(holder.trim().to_string())
    }

    /// What a person would look at when a Service gets no IP: the
    /// controller's pods, who holds its Lease, the Service's Events and the
    /// end of each controller's log. Best effort: a part that cannot be read
    /// says why.
    pub fn controller_story(&self, name: &str, namespace: &str) -> String {
        let read = |args: &[&str]| {
            self.api
                .kubectl_ok(args)
                .unwrap_or_else(|e| format!("(unreadable: {e:#})"))
        };
        let pods = read(&["-n", "ferrolb-system", "get", "pods", "-o", "wide"]);
        let leases = read(&[
            "-n",
            "ferrolb-system",
            "get",
            "leases",
            "-o",
            "custom-columns=NAME:.metadata.name,HOLDER:.spec.holderIdentity,RENEWED:.spec.renewTime",
        ]);
        let events = read(&[
            "-n",
            namespace,
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
        ]);
        let mut story =
            format!("controller pods:\n{pods}\nleases:\n{leases}\nevents of {name}:\n{events}\n");
        let controllers = read(&[
            "-n",
            "ferrolb-system",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/component=controller",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ]);
        for pod in controllers.split_whitespace() {
            let log = read(&["-n", "ferrolb-system", "logs", pod, "--tail=40"]);
            story.push_str(&format!("log of {pod} (last 40 lines):\n{log}\n"));
        }
        story
    }

    /// The ingress IPs Service `name` shows now, in status order.
    pub fn ingress_now(&self, name: &str, namespace: &str) -> Result<Vec<String>> {
        let out = self.api.kubectl_ok(&[
            "-n",
            namespace,
            "get",
            "service",
            name,
            "-o",
            "jsonpath={range .status.loadBalancer.ingress[*]}{.ip}{\"\\n\"}{end}",
        ])?;
        Ok(out.lines().map(str::to_string).collect())
    }

    /// Names of the nodes that run a Ready pod with label app=`app`.
    pub fn pod_nodes(&self, app: &str, namespace: &str) -> Result<Vec<String>> {
        let out = self.api.kubectl_ok(&[
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.spec.nodeName} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])?;
        let mut nodes: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(_, ready)| *ready == "True")
            .map(|(node, _)| node.to_string())
            .collect();
        nodes.sort();
        nodes.dedup();
        Ok(nodes)
    }
}

/// The `key=value` fields of an echo answer
/// (`pod=... node=... client=...`).
pub fn echo_field<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}
