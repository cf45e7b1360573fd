//! Building blocks for controller scenarios: a namespace with its own class
//! and pools, a controller serving it, and typed helpers to create and watch
//! Services and pools.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use ferrolb_crds::IPAddressPool;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::env::{Controller, TestNamespace, shared_cluster, wait_for};

pub const WAIT: Duration = Duration::from_secs(30);

/// One test's world.
pub struct Scenario {
    pub cluster: &'static Cluster,
    pub client: kube::Client,
    pub ns: TestNamespace,
    pub controller: Option<Controller>,
}

impl Scenario {
    /// A fresh namespace and a controller (no leader election) serving it.
    pub async fn start(prefix: &str) -> Result<Scenario> {
        Scenario::start_on(shared_cluster(), prefix).await
    }

    /// [`Scenario::start`] on `cluster` (one with `deploy/` applied).
    pub async fn start_on(cluster: &'static Cluster, prefix: &str) -> Result<Scenario> {
        let mut scenario = Scenario::on(cluster, prefix).await?;
        scenario.controller = Some(Controller::start(
            cluster,
            &scenario.ns,
            &["--no-leader-election"],
        )?);
        Ok(scenario)
    }

    pub async fn without_controller(prefix: &str) -> Result<Scenario> {
        Scenario::on(shared_cluster(), prefix).await
    }

    /// A fresh namespace on `cluster`, no controller.
    pub async fn on(cluster: &'static Cluster, prefix: &str) -> Result<Scenario> {
        let client = cluster.admin_client().await?;
        let ns = TestNamespace::create(&client, prefix).await?;
        Ok(Scenario {
            cluster,
            client,
            ns,
            controller: None,
        })
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn pools(&self) -> Api<IPAddressPool> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// Creates (or replaces, by server-side apply) a pool from its spec.
    pub async fn pool(&self, name: &str, spec: Value) -> Result<()> {
        let body = json!({"apiVersion": "ferrolb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": name}, "spec": spec});
        self.pools()
            .patch(
                name,
                &PatchParams::apply("ferrolb-tests").force(),
                &Patch::Apply(&body),
            )
            .await?;
        Ok(())
    }

    pub async fn delete_pool(&self, name: &str) -> Result<()> {
        self.pools().delete(name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// Creates a LoadBalancer Service of this scenario's class. `extra` is
    /// merged into the body (use it for annotations and spec fields).
    pub async fn service(&self, name: &str, extra: Value) -> Result<Service> {
        let mut body = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name},
            "spec": {
                "type": "LoadBalancer",
                "loadBalancerClass": self.ns.class,
                "allocateLoadBalancerNodePorts": false,
                "ipFamilies": ["IPv4"],
                "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": name},
            },
        });
        merge(&mut body, extra);
        let service: Service = serde_json::from_value(body)?;
        Ok(self
            .services()
            .create(&PostParams::default(), &service)
            .await?)
    }

    pub async fn delete_service(&self, name: &str) -> Result<()> {
        self.services()
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// Merge-patches a Service.
    pub async fn patch_service(&self, name: &str, patch: Value) -> Result<()> {
        self.services()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// The ingress IPs of a Service now.
    pub async fn ips(&self, name: &str) -> Result<Vec<String>> {
        Ok(ingress(&self.services().get(name).await?))
    }

    /// Waits until the Service shows exactly `count` ingress IPs.
    pub async fn wait_ips(&self, name: &str, count: usize) -> Result<Vec<String>> {
        let api = self.services();
        wait_for(&format!("{count} IPs on {name}"), WAIT, || {
            let api = api.clone();
            async move {
                let ips = ingress(&api.get(name).await?);
                if ips.len() == count {
                    Ok(ips)
                } else {
                    Err(anyhow!("{} IPs: {ips:?}", ips.len()))
                }
            }
        })
        .await
    }

    /// Waits for an Event on a Service (or pool) with `reason`, returning its note.
    pub async fn wait_event(&self, object: &str, reason: &str) -> Result<String> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        wait_for(&format!("event {reason} on {object}"), WAIT, || {
            let events = events.clone();
            async move {
                let list = events.list(&ListParams::default()).await?;
                let on_object: Vec<Event> = list
                    .items
                    .into_iter()
                    .filter(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(object)
                    })
                    .collect();
                let seen: Vec<String> = on_object.iter().filter_map(|e| e.reason.clone()).collect();
                on_object
                    .into_iter()
                    .find(|e| e.reason.as_deref() == Some(reason))
                    .map(|e| e.note.unwrap_or_default())
                    .ok_or_else(|| anyhow!("Events on {object} so far: {seen:?}"))
            }
        })
        .await
    }

    /// The annotations of a Service.
    pub async fn annotations(&self, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(self
            .services()
            .get(name)
            .await?
            .metadata
            .annotations
            .unwrap_or_default())
    }

    /// Our condition on a Service: (status, reason, message).
    pub async fn condition(&self, name: &str) -> Result<Option<(String, String, String)>> {
        let svc = self.services().get(name).await?;
        Ok(svc
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "ferrolb.io/IPAllocated")
            .map(|c| (c.status, c.reason, c.message)))
    }

    /// Waits until our condition is on the Service.
    pub async fn wait_condition(&self, name: &str) -> Result<(String, String, String)> {
        wait_for(&format!("condition on {name}"), WAIT, || async {
            self.condition(name).await?.context("no condition yet")
        })
        .await
    }

    pub fn controller(&mut self) -> Result<&mut Controller> {
        self.controller
            .as_mut()
            .context("no controller in this scenario")
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if let Some(mut c) = self.controller.take() {
            c.stop();
        }
        if std::thread::panicking() {
            eprintln!(
                "scenario {} failed; cluster logs in {}",
                self.ns.name,
                self.cluster.dir.display()
            );
        } else {
            let _ =
                self.cluster
                    .kubectl_ok(&["delete", "namespace", &self.ns.name, "--wait=false"]);
        }
    }
}

pub fn ingress(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
        .unwrap_or_default()
}

/// JSON merge (objects merge recursively, everything else replaces).
pub fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        (b, e) => *b = e,
    }
}
