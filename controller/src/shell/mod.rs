//! The kube shell around the pure core: watch, feed the [`Reconciler`],
//! carry out the effects it returns, feed their results back.
//!
//! Tasks and channels (`─▶` is a channel, `⇢` a request to the apiserver;
//! `settled`, `pool_reports` and `pool_orders` are unbounded mpsc):
//!
//! ```text
//!  watch Services (slim) ──────────┐
//!  watch IPAddressPools ───────────┤
//!  watch Namespaces ───────────────┤
//!  interval 500 ms: Tick ──────────┤
//!  DecideBacklog, while the first ─┼─▶ loop task (`run`): owns the Reconciler,
//!   listing is decided and fewer   │   one Input at a time, carries out its Effects
//!   than SYNC_BATCH status writes  │
//!   are outstanding (watch)        │
//!  settled: WriteSettled ──────────┤
//!  pool_reports: PoolStatusWritten ┘     │
//!    ┌───────────────────────────────────┘
//!    ├─ WriteService, ForgetService ─▶ WriteQueue (Mutex + Notify)
//!    │     ─▶ `write_workers` writer tasks ⇢ Service status, then annotation
//!    │     ─▶ `settled`, once a Service has nothing left to write
//!    ├─ WritePoolStatus ─▶ pool_orders ─▶ one pool status writer
//!    │     ⇢ IPAddressPool status ─▶ `pool_reports`, every result
//!    ├─ Event ─▶ events (bounded, folds routine ones past a backlog, drops
//!    │     when full) ─▶ EVENT_WORKERS senders, each waiting for
//!    │     `status_busy` (watch) to read false, then for a token ⇢ Event
//!    └─ Metric ─▶ Metrics, set in the loop task
//! ```
//!
//! Who writes: only the writer tasks touch Services, only the pool status
//! writer touches pools, only the Event senders create Events. Decisions
//! are all made in the loop task, so they never race.

pub mod events;
pub mod slim;
pub mod write_body;
pub mod write_queue;
pub mod writer;

use std::future::Future;
use std::time::Duration;

use ferrolb_crds::pool::IPAddressPool;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::core::effect::{Effect, MetricChange, PoolStatusOrder};
use crate::core::pool_writes::{PoolStatusWritten, PoolWriteOutcome};
use crate::core::{ClassFilter, Input, Kind, Reconciler, ReconcilerConfig, ServiceKey};
use crate::ipam::Family;
use crate::leader::Fence;
use crate::metrics::Metrics;
use events::EventSink;
use ferrolb_runtime::http::Health;
use slim::SlimService;
use writer::{FIELD_MANAGER, Writer};

/// The first listing's Services that show no IP are decided this many at a
/// time, the next batch once fewer status writes than this are outstanding:
/// the write queue never runs dry during a cold start (statuses still all
/// go before any annotation, and Events after them), and neither the loop's
/// effects nor the queue hold a write per Service of a 50,000-Service
/// listing at once.
const SYNC_BATCH: usize = 1_000;

/// Concurrent Event senders. Events wait for status writes anyway, so a few
/// suffice.
const EVENT_WORKERS: usize = 4;

/// What the allocation loop needs to know.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Namespace whose IPAddressPools we serve.
    pub pool_namespace: String,
    pub class: ClassFilter,
    pub write_workers: usize,
    /// How Service status and annotation are written.
    pub write_method: write_body::WriteMethod,
    pub identity: String,
    /// Writes wait on it: open while this replica leads by its own clock.
    pub fence: Fence,
    /// How many Events go out.
    pub event_rate: events::EventRate,
}

/// Where effects go.
struct Executor {
    writer: Writer,
    events: EventSink,
    metrics: Metrics,
    pool_orders: mpsc::UnboundedSender<PoolStatusOrder>,
    health: Health,
}

/// Runs the allocation loop until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    config: LoopConfig,
    metrics: Metrics,
    health: Health,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    // Services are read without managedFields (see `slim`) and converted
    // once, so the core keeps taking plain `Service`s.
    let services = watcher(Api::<SlimService>::all(client.clone())).map(|e| {
        e.map(|event| {
            input(
                event,
                Kind::Services,
                |s| Input::ServiceApplied(s.into()),
                |s| Input::ServiceDeleted(ServiceKey::of(&Service::from(s))),
            )
        })
    });
    let pools = watcher(Api::<IPAddressPool>::namespaced(
        client.clone(),
        &config.pool_namespace,
    ))
    .map(|e| {
        e.map(|event| {
            input(event, Kind::Pools, Input::PoolApplied, |p| {
                Input::PoolDeleted(p.name_any())
            })
        })
    });
    let namespaces = watcher(Api::<Namespace>::all(client.clone())).map(|e| {
        e.map(|event| {
            input(
                event,
                Kind::Namespaces,
                |n| Input::NamespaceApplied {
                    labels: n.labels().clone(),
                    name: n.name_any(),
                },
                |n| Input::NamespaceDeleted(n.name_any()),
            )
        })
    });
    let mut watches =
        futures::stream::select_all(vec![services.boxed(), pools.boxed(), namespaces.boxed()]);

    let (settled_tx, mut settled) = mpsc::unbounded_channel();
    let writer = Writer::start(
        client.clone(),
        config.write_workers,
        config.write_method,
        settled_tx,
        config.fence.clone(),
    );
    let (pool_reports_tx, mut pool_reports) = mpsc::unbounded_channel();
    let (pool_orders, pool_writer) = start_pool_status_writer(
        Api::namespaced(client.clone(), &config.pool_namespace),
        pool_reports_tx,
        config.fence.clone(),
    );
    let executor = Executor {
        events: EventSink::start(
            client.clone(),
            config.identity.clone(),
            EVENT_WORKERS,
            config.event_rate,
            writer.status_busy(),
            config.fence.clone(),
        ),
        writer,
        metrics,
        pool_orders,
        health,
    };
    let mut reconciler = Reconciler::new(ReconcilerConfig {
        pool_namespace: config.pool_namespace,
        class: config.class,
        sync_batch: SYNC_BATCH,
    });
    let mut status_outstanding = executor.writer.status_outstanding();

    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tokio::pin!(shutdown);
    loop {
        let input = tokio::select! {
            _ = &mut shutdown => {
                write_final_pool_statuses(&mut reconciler, executor, pool_writer).await;
                return Ok(());
            }
            _ = tick.tick() => Input::Tick(Timestamp::now()),
            _ = status_outstanding.wait_for(|n| *n < SYNC_BATCH), if reconciler.deciding() => {
                Input::DecideBacklog
            }
            Some(report) = settled.recv() => Input::ServiceWriteSettled(report),
            Some(report) = pool_reports.recv() => Input::PoolStatusWritten(report),
            next = watches.next() => match next {
                Some(Ok(input)) => input,
                Some(Err(e)) if reconciler.synced() => {
                    warn!(error = %e, "watch error");
                    continue;
                }
                Some(Err(e)) => {
                    warn!(error = %e, "watch error during initial sync");
                    continue;
                }
                None => anyhow::bail!("watch streams ended"),
            },
        };
        for effect in reconciler.handle(input) {
            if matches!(effect, Effect::Synced { .. }) {
                // Publish pool statuses right away rather than a tick later.
                tick.reset_immediately();
            }
            executor.execute(effect);
        }
    }
}

/// How long a stopping controller waits for its last pool status writes.
const FINAL_POOL_WRITE_LIMIT: Duration = Duration::from_secs(5);

/// Pool statuses are published every 500 ms: at a stop, the last ones may not
/// count the latest assignments yet, and stay so until the next controller
/// runs. So the statuses are decided once more from the allocator and written
/// (after whatever is queued already), while this replica still leads, within
/// [`FINAL_POOL_WRITE_LIMIT`].
async fn write_final_pool_statuses(
    reconciler: &mut Reconciler,
    executor: Executor,
    pool_writer: tokio::task::JoinHandle<()>,
) {
    for order in reconciler.final_pool_statuses(Timestamp::now()) {
        executor.execute(Effect::WritePoolStatus(order));
    }
    // The writer ends once it has written what is queued and its orders close.
    drop(executor);
    match tokio::time::timeout(FINAL_POOL_WRITE_LIMIT, pool_writer).await {
        Ok(_) => info!("final pool statuses written"),
        Err(_) => warn!(
            limit = ?FINAL_POOL_WRITE_LIMIT,
            "stopping before every pool status was written"
        ),
    }
}

/// A watch event as the reconciler's input.
fn input<K>(
    event: WatchEvent<K>,
    kind: Kind,
    applied: impl FnOnce(K) -> Input,
    deleted: impl FnOnce(K) -> Input,
) -> Input {
    match event {
        WatchEvent::Apply(object) | WatchEvent::InitApply(object) => applied(object),
        WatchEvent::Delete(object) => deleted(object),
        WatchEvent::Init => Input::RelistStarted(kind),
        WatchEvent::InitDone => Input::RelistDone(kind),
    }
}

fn watcher<K>(
    api: Api<K>,
) -> impl Stream<Item = Result<WatchEvent<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, ferrolb_runtime::watch::watch_config())
        .backoff(ferrolb_runtime::backoff::WatchBackoff::default())
}

impl Executor {
    fn execute(&self, effect: Effect) {
        match effect {
            Effect::WriteService(order) => self.writer.submit(order),
            Effect::ForgetService(key) => self.writer.forget(&key),
            Effect::WritePoolStatus(order) => {
                let pool = order.pool.clone();
                if self.pool_orders.send(order).is_err() {
                    warn!(%pool, "pool status writer is gone");
                }
            }
            Effect::Event(request) => self.events.send(request),
            Effect::Metric(change) => self.record(change),
            Effect::Synced { services, pools } => {
                self.health.set_ready(true);
                info!(services, pools, "initial sync done");
            }
        }
    }

    fn record(&self, change: MetricChange) {
        let metrics = &self.metrics;
        match change {
            MetricChange::Allocated { pool, family } => metrics.record_allocation(&pool, family),
            MetricChange::Failed { reason } => metrics.record_failure(reason),
            MetricChange::Released { pool } => metrics.record_release(&pool),
            MetricChange::Pending(count) => metrics.set_pending(count),
            MetricChange::PoolUsage { pool, usage } => {
                metrics.set_pool_usage(&pool, Family::V4, usage.assigned_v4, usage.available_v4);
                metrics.set_pool_usage(&pool, Family::V6, usage.assigned_v6, usage.available_v6);
            }
            MetricChange::PoolRemoved { pool } => metrics.remove_pool(&pool),
        }
    }
}

/// Writes pool statuses one at a time, in order, so an older status can never
/// land after a newer one. Each result goes to `reports`: the reconciler
/// decides what to retry. The task ends once every order sender is gone and
/// the queued orders are written.
fn start_pool_status_writer(
    api: Api<IPAddressPool>,
    reports: mpsc::UnboundedSender<PoolStatusWritten>,
    fence: Fence,
) -> (
    mpsc::UnboundedSender<PoolStatusOrder>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<PoolStatusOrder>();
    let task = tokio::spawn(async move {
        while let Some(order) = rx.recv().await {
            let name = &order.pool;
            let body = json!({
                "apiVersion": ferrolb_crds::API_VERSION, "kind": "IPAddressPool",
                "metadata": { "name": name }, "status": order.status,
            });
            fence.wait_open().await;
            debug!(pool = %name, "writing pool status");
            let outcome = match api
                .patch_status(
                    name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                Ok(_) => {
                    debug!(pool = %name, "pool status written");
                    PoolWriteOutcome::Written
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    debug!(pool = %name, "pool gone before its status write");
                    PoolWriteOutcome::Gone
                }
                Err(e) => {
                    warn!(pool = %name, error = %e, "could not write pool status");
                    PoolWriteOutcome::Failed
                }
            };
            let report = PoolStatusWritten {
                pool: order.pool,
                ticket: order.ticket,
                outcome,
                at: Timestamp::now(),
            };
            if reports.send(report).is_err() {
                break;
            }
        }
    });
    (tx, task)
}

impl From<Family> for crate::metrics::IpFamily {
    fn from(family: Family) -> Self {
        match family {
            Family::V4 => crate::metrics::IpFamily::V4,
            Family::V6 => crate::metrics::IpFamily::V6,
        }
    }
}
