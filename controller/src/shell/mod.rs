//! The kube shell around the pure core: watch, decide (pure), diff, write.
//!
//! One task owns the [`Allocator`] and handles watch events one at a time, so
//! decisions never race. Writes and Events go to background queues.

pub mod events;
pub mod pools;
pub mod slim;
pub mod write_body;
pub mod write_queue;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use ferrolb_crds::pool::{IPAddressPool, IPAddressPoolStatus};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event as WatchEvent};
use serde_json::json;
use tracing::{debug, info, info_span, warn};

use crate::core::desired::{Outcome, ServiceWrite, carries_our_marks, failure_reason, observed};
use crate::core::labels::Labels;
use crate::core::{Allocator, ClassFilter, Interest, ServiceKey, ServiceRequest, read_request};
use crate::ipam::Family;
use crate::metrics::Metrics;
use events::{EventRequest, EventSink, Regarding};
use ferrolb_runtime::http::Health;
use slim::SlimService;
use writer::{FIELD_MANAGER, Writer};

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
}

// Events are handled one at a time and never stored, so the size difference
// between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum Input {
    Service(WatchEvent<Service>),
    Pool(WatchEvent<IPAddressPool>),
    Namespace(WatchEvent<Namespace>),
}

/// A Service as the loop remembers it: what it asks and what it shows.
struct Seen {
    uid: Option<String>,
    created: i64,
    interest: Interest,
    request: Option<Result<ServiceRequest, crate::core::RequestError>>,
    shown: ServiceWrite,
    marked: bool,
    /// resourceVersion of the object `shown` was read from.
    version: Option<u64>,
}

fn seen(service: &Service, class: &ClassFilter) -> Seen {
    let interest = class.interest(service);
    Seen {
        uid: service.metadata.uid.clone(),
        created: service
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())
            .unwrap_or(0),
        interest,
        request: (interest == Interest::Ours).then(|| read_request(service)),
        shown: observed(service),
        marked: carries_our_marks(service),
        version: service
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok()),
    }
}

struct State {
    config: LoopConfig,
    alloc: Allocator,
    services: HashMap<ServiceKey, Seen>,
    pending: BTreeSet<ServiceKey>,
    namespaces: HashMap<String, Labels>,
    pools: BTreeMap<String, IPAddressPool>,
    invalid_pools: HashMap<String, String>,
    pool_status: HashMap<String, IPAddressPoolStatus>,
    pools_dirty: bool,
    retry_needed: bool,
    /// The last write we decided on per Service: Events and logs mark
    /// changes of decision, not repairs.
    submitted: HashMap<ServiceKey, ServiceWrite>,
    legacy_warned: HashSet<ServiceKey>,
    writer: Writer,
    events: EventSink,
    metrics: Metrics,
    pool_writes: tokio::sync::mpsc::UnboundedSender<(String, IPAddressPoolStatus)>,
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
    let services = watcher(Api::<SlimService>::all(client.clone()))
        .map(|e| e.map(|event| Input::Service(full_event(event))));
    let pools = watcher(Api::<IPAddressPool>::namespaced(
        client.clone(),
        &config.pool_namespace,
    ))
    .map(|e| e.map(Input::Pool));
    let namespaces =
        watcher(Api::<Namespace>::all(client.clone())).map(|e| e.map(Input::Namespace));
    let mut inputs =
        futures::stream::select_all(vec![services.boxed(), pools.boxed(), namespaces.boxed()]);

    let writer = Writer::start(client.clone(), config.write_workers, config.write_method);
    let mut state = State {
        alloc: Allocator::new(),
        services: HashMap::new(),
        pending: BTreeSet::new(),
        namespaces: HashMap::new(),
        pools: BTreeMap::new(),
        invalid_pools: HashMap::new(),
        pool_status: HashMap::new(),
        pools_dirty: true,
        retry_needed: false,
        submitted: HashMap::new(),
        legacy_warned: HashSet::new(),
        writer: writer.clone(),
        events: EventSink::start(
            client.clone(),
            config.identity.clone(),
            EVENT_WORKERS,
            writer.status_busy(),
        ),
        metrics,
        pool_writes: start_pool_status_writer(Api::namespaced(
            client.clone(),
            &config.pool_namespace,
        )),
        config,
    };

    // Phase 1: list everything before deciding anything, so that the table is
    // rebuilt from the IPs Services already show before any new IP is handed out.
    let mut synced = [false; 3];
    tokio::pin!(shutdown);
    while !synced.iter().all(|s| *s) {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            input = inputs.next() => match input {
                Some(Ok(input)) => {
                    if let Some(index) = state.initial(input) {
                        synced[index] = true;
                    }
                }
                Some(Err(e)) => warn!(error = %e, "watch error during initial sync"),
                None => anyhow::bail!("watch streams ended"),
            },
        }
    }
    state.rebuild();
    health.set_ready(true);
    info!(
        services = state.services.len(),
        pools = state.pools.len(),
        "initial sync done"
    );

    // Phase 2: react to changes.
    let mut flush = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = flush.tick() => state.flush_pool_status(),
            input = inputs.next() => match input {
                Some(Ok(input)) => state.handle(input),
                Some(Err(e)) => warn!(error = %e, "watch error"),
                None => anyhow::bail!("watch streams ended"),
            },
        }
    }
    Ok(())
}

/// The same watch event, with the Service in the type the core reads.
fn full_event(event: WatchEvent<SlimService>) -> WatchEvent<Service> {
    match event {
        WatchEvent::Apply(s) => WatchEvent::Apply(s.into()),
        WatchEvent::Delete(s) => WatchEvent::Delete(s.into()),
        WatchEvent::InitApply(s) => WatchEvent::InitApply(s.into()),
        WatchEvent::Init => WatchEvent::Init,
        WatchEvent::InitDone => WatchEvent::InitDone,
    }
}

fn watcher<K>(
    api: Api<K>,
) -> impl Stream<Item = Result<WatchEvent<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default()).default_backoff()
}

impl State {
    /// Absorbs one event of the initial listing. Returns which stream finished.
    fn initial(&mut self, input: Input) -> Option<usize> {
        match input {
            Input::Service(WatchEvent::InitApply(s)) | Input::Service(WatchEvent::Apply(s)) => {
                self.services
                    .insert(ServiceKey::of(&s), seen(&s, &self.config.class));
            }
            Input::Service(WatchEvent::InitDone) => return Some(0),
            Input::Pool(WatchEvent::InitApply(p)) | Input::Pool(WatchEvent::Apply(p)) => {
                self.pools.insert(p.name_any(), p);
            }
            Input::Pool(WatchEvent::InitDone) => return Some(1),
            Input::Namespace(WatchEvent::InitApply(n)) | Input::Namespace(WatchEvent::Apply(n)) => {
                self.namespaces.insert(n.name_any(), n.labels().clone());
            }
            Input::Namespace(WatchEvent::InitDone) => return Some(2),
            Input::Service(WatchEvent::Delete(s)) => {
                self.services.remove(&ServiceKey::of(&s));
            }
            Input::Pool(WatchEvent::Delete(p)) => {
                self.pools.remove(&p.name_any());
            }
            _ => {}
        }
        None
    }

    /// After the initial listing: pools first, then Services that already
    /// show IPs (oldest first, so the older of two claims wins), then the rest.
    fn rebuild(&mut self) {
        self.apply_pools();
        let mut keys: Vec<(bool, i64, ServiceKey)> = self
            .services
            .iter()
            .map(|(k, s)| (s.shown.ips.is_empty(), s.created, k.clone()))
            .collect();
        keys.sort();
        for (_, _, key) in keys {
            self.evaluate(&key);
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Service(WatchEvent::Apply(s)) | Input::Service(WatchEvent::InitApply(s)) => {
                let key = ServiceKey::of(&s);
                self.services
                    .insert(key.clone(), seen(&s, &self.config.class));
                self.evaluate(&key);
            }
            Input::Service(WatchEvent::Delete(s)) => {
                let key = ServiceKey::of(&s);
                self.services.remove(&key);
                self.pending.remove(&key);
                self.legacy_warned.remove(&key);
                self.submitted.remove(&key);
                self.writer.forget(&key);
                if let Some((assignment, freed)) = self.alloc.release(&key) {
                    info!(service = %key, pool = %assignment.pool, "service deleted, IPs released");
                    self.metrics.record_release(&assignment.pool);
                    self.pools_dirty = true;
                    self.retry_needed |= freed;
                }
            }
            Input::Pool(WatchEvent::Apply(p)) | Input::Pool(WatchEvent::InitApply(p)) => {
                // Our own status writes come back as events: only a new
                // generation (a spec change) changes allocation.
                let same_spec = self
                    .pools
                    .get(&p.name_any())
                    .is_some_and(|old| old.metadata.generation == p.metadata.generation);
                self.pools.insert(p.name_any(), p);
                if !same_spec {
                    self.pools_changed();
                }
            }
            Input::Pool(WatchEvent::Delete(p)) => {
                self.pools.remove(&p.name_any());
                self.pool_status.remove(&p.name_any());
                self.metrics.remove_pool(&p.name_any());
                self.pools_changed();
            }
            Input::Namespace(WatchEvent::Apply(n)) | Input::Namespace(WatchEvent::InitApply(n)) => {
                let labels = n.labels().clone();
                if self
                    .namespaces
                    .insert(n.name_any(), labels.clone())
                    .as_ref()
                    != Some(&labels)
                {
                    self.retry_pending();
                }
            }
            Input::Namespace(WatchEvent::Delete(n)) => {
                self.namespaces.remove(&n.name_any());
            }
            Input::Service(WatchEvent::Init)
            | Input::Service(WatchEvent::InitDone)
            | Input::Pool(WatchEvent::Init)
            | Input::Pool(WatchEvent::InitDone)
            | Input::Namespace(WatchEvent::Init)
            | Input::Namespace(WatchEvent::InitDone) => {}
        }
        // A freed IP may help a pending Service. A retry can free more only
        // through a Service that held IPs, so a few rounds settle it.
        let mut rounds = 0;
        while self.retry_needed && rounds < 4 {
            self.retry_needed = false;
            self.retry_pending();
            rounds += 1;
        }
        self.metrics.set_pending(self.pending.len());
    }

    fn apply_pools(&mut self) -> Vec<ServiceKey> {
        let mut configs = Vec::new();
        self.invalid_pools.clear();
        for (name, pool) in &self.pools {
            match pools::pool_config(pool) {
                Ok(config) => configs.push(config),
                Err(message) => {
                    self.invalid_pools.insert(name.clone(), message);
                }
            }
        }
        let orphans = self.alloc.set_pools(configs);
        self.pools_dirty = true;
        orphans
    }

    fn pools_changed(&mut self) {
        let orphans = self.apply_pools();
        info!(
            pools = self.pools.len(),
            invalid = self.invalid_pools.len(),
            conflicting = self
                .alloc
                .pools()
                .values()
                .filter(|p| p.conflict.is_some())
                .count(),
            orphans = orphans.len(),
            "pools changed"
        );
        for key in orphans {
            self.evaluate(&key);
        }
        self.retry_pending();
    }

    fn retry_pending(&mut self) {
        let keys: Vec<ServiceKey> = self.pending.iter().cloned().collect();
        for key in keys {
            self.evaluate(&key);
        }
    }

    /// Decides one Service and queues whatever write brings it there.
    fn evaluate(&mut self, key: &ServiceKey) {
        let Some(entry) = self.services.get(key) else {
            return;
        };
        let span = info_span!("service", service = %key);
        let _guard = span.enter();
        // `request` is read only for Services of ours.
        let outcome = match &entry.request {
            Some(Ok(request)) => {
                let request = request.clone();
                if !request.legacy_annotations.is_empty() && self.legacy_warned.insert(key.clone())
                {
                    let names = request.legacy_annotations.join(", ");
                    self.events.send(EventRequest {
                        regarding: Regarding::service(&key.namespace, &key.name, entry.uid.as_deref()),
                        warning: true,
                        reason: "DeprecatedAnnotation",
                        action: "Allocate",
                        note: format!("{names}: read for MetalLB compatibility; use the ferrolb.io/ prefix instead"),
                    });
                }
                let namespace_labels = self
                    .namespaces
                    .get(&key.namespace)
                    .cloned()
                    .unwrap_or_default();
                let before = self.alloc.assignment(key).cloned();
                match self.alloc.assign(&request, &namespace_labels) {
                    Ok(assignment) => {
                        if before.as_ref() != Some(&assignment) {
                            for ip in &assignment.ips {
                                self.metrics
                                    .record_allocation(&assignment.pool, Family::of(ip));
                            }
                            self.pools_dirty = true;
                        }
                        Outcome::Allocated(assignment)
                    }
                    Err(e) => {
                        if before.is_some() {
                            self.pools_dirty = true;
                        }
                        Outcome::Failed(e)
                    }
                }
            }
            Some(Err(e)) => {
                let e = e.clone();
                self.release_quietly(key);
                Outcome::Invalid(e)
            }
            None => {
                let marked = entry.marked && entry.interest.may_clear_marks();
                let freed = self.release_quietly(key);
                if !marked && !freed {
                    self.pending.remove(key);
                    return;
                }
                Outcome::Released
            }
        };
        match &outcome {
            Outcome::Failed(_) => {
                self.pending.insert(key.clone());
            }
            _ => {
                self.pending.remove(key);
            }
        }
        self.write(key, &outcome);
    }

    /// Frees what a Service holds; true when it held anything.
    fn release_quietly(&mut self, key: &ServiceKey) -> bool {
        match self.alloc.release(key) {
            Some((assignment, freed)) => {
                self.metrics.record_release(&assignment.pool);
                self.pools_dirty = true;
                // Pending Services are retried once this event is handled;
                // retrying here would recurse.
                self.retry_needed |= freed;
                true
            }
            None => false,
        }
    }

    fn write(&mut self, key: &ServiceKey, outcome: &Outcome) {
        let Some(entry) = self.services.get_mut(key) else {
            return;
        };
        let desired = outcome.desired();
        if self.submitted.get(key) == Some(&desired) {
            // Same decision as before. Repair the object only if it shows
            // something else and that is not just a view from before our
            // write completed (the annotation and the status are two writes).
            let stale = match (entry.version, self.writer.applied_version(key)) {
                (Some(seen), Some(applied)) => seen < applied,
                _ => false,
            };
            if desired != entry.shown && !stale && !self.writer.busy(key) {
                info!("status differs from our decision, rewriting it");
                let status_current = desired.same_status(&entry.shown);
                self.writer.submit(key.clone(), desired, status_current);
            }
            return;
        }
        self.submitted.insert(key.clone(), desired.clone());
        if desired == entry.shown {
            return;
        }
        let regarding = Regarding::service(&key.namespace, &key.name, entry.uid.as_deref());
        match outcome {
            Outcome::Allocated(a) => {
                let ips = a
                    .ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                info!(ips = %ips, pool = %a.pool, "IP allocated");
                self.events.send(EventRequest {
                    regarding,
                    warning: false,
                    reason: "IPAllocated",
                    action: "Allocate",
                    note: format!("Assigned IP {ips} from pool {}", a.pool),
                });
            }
            Outcome::Failed(_) | Outcome::Invalid(_) => {
                let (metric_reason, message) = outcome.failure().unwrap_or_default();
                let reason = failure_reason(outcome);
                warn!(%reason, error = %message, "no IP for this Service");
                self.metrics.record_failure(metric_reason);
                self.events.send(EventRequest {
                    regarding,
                    warning: true,
                    reason: "AllocationFailed",
                    action: "Allocate",
                    note: format!("{reason}: {message}"),
                });
            }
            Outcome::Released => {
                info!("no longer a LoadBalancer of ours, IPs released");
                self.events.send(EventRequest {
                    regarding,
                    warning: false,
                    reason: "IPReleased",
                    action: "Release",
                    note: "Released its IPs: the Service is no longer a LoadBalancer of this controller's class".into(),
                });
            }
        }
        let status_current = desired.same_status(&entry.shown);
        entry.shown = desired.clone();
        entry.marked = desired.pool.is_some() || desired.condition.is_some();
        self.writer.submit(key.clone(), desired, status_current);
    }

    /// Writes changed pool statuses and refreshes usage metrics.
    fn flush_pool_status(&mut self) {
        if !self.pools_dirty {
            return;
        }
        self.pools_dirty = false;
        let namespace = self.config.pool_namespace.clone();
        for (name, object) in &self.pools {
            let usage = self.alloc.usage(name);
            self.metrics
                .set_pool_usage(name, Family::V4, usage.assigned_v4, usage.available_v4);
            self.metrics
                .set_pool_usage(name, Family::V6, usage.assigned_v6, usage.available_v6);
            let status = pools::pool_status(
                &namespace,
                object.metadata.generation,
                self.alloc.pools().get(name),
                self.invalid_pools.get(name).map(String::as_str),
                usage,
            );
            let previous = self.pool_status.get(name).or(object.status.as_ref());
            if previous.is_some_and(|p| !pools::status_differs(p, &status)) {
                continue;
            }
            if let Some(pool) = self
                .alloc
                .pools()
                .get(name)
                .filter(|p| p.conflict.is_some())
            {
                let newly = self
                    .pool_status
                    .get(name)
                    .is_none_or(|p| !p.conditions.iter().any(|c| c.reason == "Conflicting"));
                if newly {
                    self.events.send(EventRequest {
                        regarding: pool_reference(object),
                        warning: true,
                        reason: "PoolConflict",
                        action: "Validate",
                        note: pool
                            .conflict
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    });
                }
            }
            if let Some(message) = self.invalid_pools.get(name)
                && self
                    .pool_status
                    .get(name)
                    .is_none_or(|p| p.conditions.iter().all(|c| c.reason != "InvalidAddresses"))
            {
                self.events.send(EventRequest {
                    regarding: pool_reference(object),
                    warning: true,
                    reason: "InvalidPool",
                    action: "Validate",
                    note: message.clone(),
                });
            }
            self.pool_status.insert(name.clone(), status.clone());
            if self.pool_writes.send((name.clone(), status)).is_err() {
                warn!(pool = %name, "pool status writer is gone");
            }
        }
    }
}

/// Writes pool statuses one at a time, in order, so an older status can never
/// land after a newer one.
fn start_pool_status_writer(
    api: Api<IPAddressPool>,
) -> tokio::sync::mpsc::UnboundedSender<(String, IPAddressPoolStatus)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, IPAddressPoolStatus)>();
    tokio::spawn(async move {
        while let Some((name, status)) = rx.recv().await {
            let body = json!({
                "apiVersion": ferrolb_crds::API_VERSION, "kind": "IPAddressPool",
                "metadata": { "name": name }, "status": status,
            });
            if let Err(e) = api
                .patch_status(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&body),
                )
                .await
            {
                warn!(pool = %name, error = %e, "could not write pool status");
            } else {
                debug!(pool = %name, "pool status written");
            }
        }
    });
    tx
}

fn pool_reference(pool: &IPAddressPool) -> Regarding {
    Regarding {
        api_version: ferrolb_crds::API_VERSION,
        kind: "IPAddressPool",
        namespace: pool.namespace().unwrap_or_default(),
        name: pool.name_any(),
        uid: pool.uid(),
    }
}

impl From<Family> for crate::metrics::IpFamily {
    fn from(family: Family) -> Self {
        match family {
            Family::V4 => crate::metrics::IpFamily::V4,
            Family::V6 => crate::metrics::IpFamily::V6,
        }
    }
}
