//! Writes Service status and annotation with bounded concurrency.
//!
//! Decisions come out of the single-threaded allocation loop much faster than
//! the apiserver can take them, so writes are queued per Service with
//! latest-wins semantics: a newer desired state replaces a queued older one,
//! and a Service is never written by two workers at once, so an older write
//! can never land after a newer one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::core::ServiceKey;
use crate::core::desired::{CONDITION_TYPE, ServiceWrite};
use crate::core::service::ANNOTATION_ALLOCATED_FROM_POOL;

pub const FIELD_MANAGER: &str = "ferrolb-controller";

#[derive(Default)]
struct Queue {
    order: VecDeque<ServiceKey>,
    desired: HashMap<ServiceKey, ServiceWrite>,
    in_flight: HashSet<ServiceKey>,
    /// resourceVersion of each Service after our last completed write: watch
    /// events older than that show a half-written state and are not repaired.
    applied: HashMap<ServiceKey, u64>,
}

/// A handle to the write queue; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    idle: Arc<Notify>,
}

impl Writer {
    /// Starts `workers` writer tasks.
    pub fn start(client: kube::Client, workers: usize) -> Writer {
        let writer = Writer {
            queue: Arc::default(),
            wake: Arc::new(Notify::new()),
            idle: Arc::new(Notify::new()),
        };
        for _ in 0..workers.max(1) {
            let w = writer.clone();
            let client = client.clone();
            tokio::spawn(async move { w.work(client).await });
        }
        writer
    }

    /// Queues `write` for `key`, replacing any queued write for it.
    pub fn submit(&self, key: ServiceKey, write: ServiceWrite) {
        let Ok(mut q) = self.queue.lock() else { return };
        if q.desired.insert(key.clone(), write).is_none() {
            q.order.push_back(key);
        }
        drop(q);
        self.wake.notify_one();
    }

    /// Whether a write for `key` is queued or in flight.
    pub fn busy(&self, key: &ServiceKey) -> bool {
        self.queue
            .lock()
            .map(|q| q.desired.contains_key(key) || q.in_flight.contains(key))
            .unwrap_or(false)
    }

    /// resourceVersion our last completed write produced.
    pub fn applied_version(&self, key: &ServiceKey) -> Option<u64> {
        self.queue.lock().ok()?.applied.get(key).copied()
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, key: &ServiceKey) {
        if let Ok(mut q) = self.queue.lock() {
            q.applied.remove(key);
        }
    }

    fn take(&self) -> Option<(ServiceKey, ServiceWrite)> {
        let mut q = self.queue.lock().ok()?;
        let len = q.order.len();
        for _ in 0..len {
            let key = q.order.pop_front()?;
            if q.in_flight.contains(&key) {
                q.order.push_back(key);
                continue;
            }
            if let Some(write) = q.desired.remove(&key) {
                q.in_flight.insert(key.clone());
                return Some((key, write));
            }
        }
        None
    }

    fn done(&self, key: &ServiceKey, version: Option<u64>) {
        if let Ok(mut q) = self.queue.lock() {
            q.in_flight.remove(key);
            if let Some(version) = version {
                q.applied.insert(key.clone(), version);
            }
            if q.desired.is_empty() && q.in_flight.is_empty() {
                self.idle.notify_waiters();
            }
        }
        self.wake.notify_one();
    }

    async fn work(self, client: kube::Client) {
        loop {
            let Some((key, write)) = self.take() else {
                self.wake.notified().await;
                continue;
            };
            let api: Api<Service> = Api::namespaced(client.clone(), &key.namespace);
            let mut attempt = 0u32;
            let mut version = None;
            loop {
                match apply(&api, &key, &write).await {
                    Ok(v) => {
                        version = v;
                        break;
                    }
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        debug!(service = %key, "service gone before its write");
                        break;
                    }
                    Err(e) => {
                        attempt += 1;
                        let superseded = self
                            .queue
                            .lock()
                            .map(|q| q.desired.contains_key(&key))
                            .unwrap_or(false);
                        if superseded || attempt >= 8 {
                            warn!(service = %key, error = %e, attempt, "giving up this write");
                            break;
                        }
                        warn!(service = %key, error = %e, attempt, "write failed, retrying");
                        tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(6))).await;
                    }
                }
            }
            self.done(&key, version);
        }
    }
}

/// Server-side apply of our fields: the ingress and condition on the status
/// subresource first (so the IP is visible after one round trip), then the
/// annotation on the object. Fields we no longer specify (a released IP, a
/// dropped annotation) are removed by SSA because our field manager owns them.
async fn apply(
    api: &Api<Service>,
    key: &ServiceKey,
    write: &ServiceWrite,
) -> Result<Option<u64>, kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let ingress: Vec<_> = write
        .ips
        .iter()
        .map(|ip| json!({ "ip": ip.to_string(), "ipMode": "VIP" }))
        .collect();
    let conditions: Vec<_> = write
        .condition
        .iter()
        .map(|c| {
            json!({
                "type": CONDITION_TYPE,
                "status": if c.allocated { "True" } else { "False" },
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            })
        })
        .collect();
    let mut status = json!({});
    if !ingress.is_empty() {
        status["loadBalancer"] = json!({ "ingress": ingress });
    }
    if !conditions.is_empty() {
        status["conditions"] = json!(conditions);
    }
    let body = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": key.name, "namespace": key.namespace },
        "status": status,
    });
    api.patch_status(&key.name, &params, &Patch::Apply(&body))
        .await?;

    let annotations = match &write.pool {
        Some(pool) => json!({ ANNOTATION_ALLOCATED_FROM_POOL: pool }),
        None => json!({}),
    };
    let meta = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": key.name, "namespace": key.namespace, "annotations": annotations },
    });
    let written = api.patch(&key.name, &params, &Patch::Apply(&meta)).await?;
    Ok(written
        .metadata
        .resource_version
        .and_then(|v| v.parse().ok()))
}
