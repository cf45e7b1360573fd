//! Writes Service status and annotation with bounded concurrency, in the
//! order [`WriteQueue`] decides: every status before any annotation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use tokio::sync::{Notify, mpsc, watch};
use tracing::{debug, info, warn};

use super::slim::SlimService;
use super::write_body::{self, WriteMethod};
use super::write_queue::{Finished, Job, Stage, WriteQueue};
use crate::core::desired::ServiceWrite;
use crate::core::effect::ServiceWriteOrder;
use crate::core::service::ANNOTATION_ALLOCATED_FROM_POOL;
use crate::core::{ServiceKey, WriteSettled};
use crate::leader::Fence;

pub const FIELD_MANAGER: &str = "ferrolb-controller";

/// The longest pause between two attempts of a failing write: 100 ms,
/// doubling, up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The pause after `attempt` failed attempts.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.min(10)).min(MAX_BACKOFF)
}

/// A handle to the write queue; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: Arc<Mutex<WriteQueue>>,
    wake: Arc<Notify>,
    /// True while status writes are queued or in flight.
    status_busy: Arc<watch::Sender<bool>>,
    /// How many Services have a status write queued or in flight.
    status_outstanding: Arc<watch::Sender<usize>>,
    method: WriteMethod,
    /// Where to report that a Service has nothing left to write.
    settled: mpsc::UnboundedSender<WriteSettled>,
    /// Every request waits until it is open.
    fence: Fence,
}

impl Writer {
    /// Starts `workers` writer tasks that write with `method`, reporting
    /// each Service whose writes are all done on `settled`.
    pub fn start(
        client: kube::Client,
        workers: usize,
        method: WriteMethod,
        settled: mpsc::UnboundedSender<WriteSettled>,
        fence: Fence,
    ) -> Writer {
        let writer = Writer {
            queue: Arc::default(),
            wake: Arc::new(Notify::new()),
            status_busy: Arc::new(watch::Sender::new(false)),
            status_outstanding: Arc::new(watch::Sender::new(0)),
            method,
            settled,
            fence,
        };
        for _ in 0..workers.max(1) {
            let w = writer.clone();
            let client = client.clone();
            tokio::spawn(async move { w.work(client).await });
        }
        writer
    }

    /// Queues an order, replacing any queued write for its Service.
    pub fn submit(&self, order: ServiceWriteOrder) {
        self.with_queue(|q| q.submit(order.key, order.write, order.status_current, order.ticket));
        self.wake.notify_one();
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, key: &ServiceKey) {
        self.with_queue(|q| q.forget(key));
    }

    /// Watches whether status writes are outstanding: lower-priority work
    /// (Events) waits for `false`.
    pub fn status_busy(&self) -> watch::Receiver<bool> {
        self.status_busy.subscribe()
    }

    /// Watches how many Services have a status write queued or in flight:
    /// the loop decides the first listing's next batch when few do.
    pub fn status_outstanding(&self) -> watch::Receiver<usize> {
        self.status_outstanding.subscribe()
    }

    /// Runs `f` on the queue and publishes how much status work is left.
    /// `None` only if a worker panicked while holding the lock.
    fn with_queue<T>(&self, f: impl FnOnce(&mut WriteQueue) -> T) -> Option<T> {
        let mut q = self.queue.lock().ok()?;
        let out = f(&mut q);
        let outstanding = q.status_outstanding();
        let busy = outstanding > 0;
        self.status_busy
            .send_if_modified(|b| std::mem::replace(b, busy) != busy);
        self.status_outstanding
            .send_if_modified(|n| std::mem::replace(n, outstanding) != outstanding);
        Some(out)
    }

    async fn work(self, client: kube::Client) {
        loop {
            let Some(job) = self.with_queue(WriteQueue::take).flatten() else {
                self.wake.notified().await;
                continue;
            };
            // Responses are read without managedFields: we need only the
            // version and the annotation.
            let api: Api<SlimService> = Api::namespaced(client.clone(), job.key.namespace());
            let result = self.send(&api, &job).await;
            let key = job.key.clone();
            self.with_queue(|q| {
                if let Some(settled) = q.finish(job, result) {
                    // Sent under the lock, so reports leave in the order
                    // the queue settled. Err: the loop is gone.
                    let _ = self.settled.send(WriteSettled {
                        applied_version: settled.applied_version,
                        key,
                        ticket: settled.ticket,
                        written: result != Finished::Abandoned,
                    });
                }
            });
            // The Service's next write (or its annotation) may be ready now.
            self.wake.notify_one();
        }
    }

    /// Sends one request, retrying failures with capped backoff until it is
    /// taken or becomes stale: the Service is gone (404, or its deletion was
    /// seen) or a newer write for it waits in the queue. A write is never
    /// given up for failing: nothing else would send it again (a webhook
    /// refusing status writes for a minute must not leave Services without
    /// their IPs).
    async fn send(&self, api: &Api<SlimService>, job: &Job) -> Finished {
        let mut attempt = 0u32;
        loop {
            self.fence.wait_open().await;
            debug!(service = %job.key, stage = ?job.stage, attempt, "writing service");
            let result = match job.stage {
                Stage::Status => write_status(api, self.method, &job.key, &job.write).await,
                Stage::Annotation => write_annotation(api, self.method, &job.key, &job.write).await,
            };
            match result {
                Ok(written) => return written,
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    debug!(service = %job.key, "service gone before its write");
                    return Finished::Abandoned;
                }
                Err(e) => {
                    attempt += 1;
                    let pause = backoff(attempt);
                    warn!(service = %job.key, error = %e, attempt, retry_in = ?pause, "write failed");
                    tokio::time::sleep(pause).await;
                    if self.with_queue(|q| q.stale(&job.key)).unwrap_or(true) {
                        info!(service = %job.key, attempt, "write is stale, dropped");
                        return Finished::Abandoned;
                    }
                }
            }
        }
    }
}

fn version_of(service: &SlimService) -> Option<u64> {
    service
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
}

/// Whether the object carries exactly the pool annotation `write` wants.
fn annotation_current(service: &SlimService, write: &ServiceWrite) -> bool {
    let shown = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_ALLOCATED_FROM_POOL));
    shown == write.pool.as_ref()
}

/// Writes the ingress and our condition on the status subresource.
///
/// No resourceVersion precondition, with either method, and none is needed:
/// one task of the single leader decides, and the write queue keeps one
/// request per Service in flight and sends only the newest decision after
/// it, so the last write to land is the last decision. A precondition would
/// instead fail on every unrelated change (a spec edit, another writer's
/// condition) and need a re-read. What others write is not in our body, so
/// it is kept.
async fn write_status(
    api: &Api<SlimService>,
    method: WriteMethod,
    key: &ServiceKey,
    write: &ServiceWrite,
) -> Result<Finished, kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let written = match method {
        WriteMethod::Apply => {
            let body = write_body::status_apply(key, write, &now);
            api.patch_status(key.name(), &apply_params(), &Patch::Apply(&body))
                .await?
        }
        WriteMethod::Patch => {
            let body = write_body::status_patch(write, &now);
            api.patch_status(key.name(), &patch_params(), &Patch::Strategic(&body))
                .await?
        }
    };
    Ok(Finished::Written {
        version: version_of(&written),
        annotation_current: annotation_current(&written, write),
    })
}

/// Writes the pool annotation (or removes ours).
async fn write_annotation(
    api: &Api<SlimService>,
    method: WriteMethod,
    key: &ServiceKey,
    write: &ServiceWrite,
) -> Result<Finished, kube::Error> {
    let written = match method {
        WriteMethod::Apply => {
            let body = write_body::annotation_apply(key, write);
            api.patch(key.name(), &apply_params(), &Patch::Apply(&body))
                .await?
        }
        WriteMethod::Patch => {
            let body = write_body::annotation_patch(write);
            api.patch(key.name(), &patch_params(), &Patch::Merge(&body))
                .await?
        }
    };
    Ok(Finished::Written {
        version: version_of(&written),
        annotation_current: true,
    })
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Patches are recorded in managedFields under our manager too (as an
/// Update), so `kubectl get -o yaml --show-managed-fields` still names us.
fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(6), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
