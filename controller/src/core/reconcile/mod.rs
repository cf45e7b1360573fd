//! The controller's loop as a state machine, without I/O.
//!
//! The shell feeds a [`Reconciler`] one [`Input`] at a time (a watched
//! object applied or deleted, a relist starting or done, how a write ended,
//! a timer tick) and carries out the [`Effect`]s it returns. Data flows one
//! way: watched objects → decision (the [`Allocator`]) → diff against what
//! the object shows or what we already ordered → write orders, Events and
//! metric updates.
//!
//! Two phases. Until every watched kind has been listed once, inputs are
//! only recorded; then the allocation table is rebuilt from the IPs
//! Services already show (oldest claim first) before any new IP is handed
//! out. After that, every input is decided on at once.
//!
//! The listing's other Services (those that show no IP) are decided in
//! batches of [`ReconcilerConfig::sync_batch`], the next one on
//! [`Input::DecideBacklog`], which the shell sends as its write queue
//! drains: at 50,000 Services, deciding them all at once held 150,000
//! effects (a write, an Event and a metric each) and the write queue's
//! 50,000 entries at the same moment. A Service that changes before its
//! turn is decided in its turn, on its newest view; one created meanwhile
//! goes to the back of the line; the others are decided on at once as
//! before. Fed nothing in between, batches decide exactly what one pass
//! does.

mod pools;
mod services;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;

use ferrolb_crds::pool::IPAddressPool;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::ClassFilter;
use super::allocator::Allocator;
use super::effect::{Effect, MetricChange, Ticket};
use super::labels::Labels;
use super::pool_writes::{PoolStatusWrites, PoolStatusWritten};
use super::service::ServiceKey;
use services::Seen;

/// A watched kind of object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Services (all namespaces).
    Services,
    /// IPAddressPools in the pool namespace.
    Pools,
    /// Namespaces, for their labels.
    Namespaces,
}

/// Everything the loop reacts to.
// Inputs are handled one at a time and never stored, so the size difference
// between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    /// A Service was created or changed (or shown by a listing).
    ServiceApplied(Service),
    /// A Service was deleted.
    ServiceDeleted(ServiceKey),
    /// A pool was created or changed (or shown by a listing).
    PoolApplied(IPAddressPool),
    /// The pool of this name was deleted.
    PoolDeleted(String),
    /// A namespace was created or its labels changed (or shown by a listing).
    NamespaceApplied {
        /// The namespace's name.
        name: String,
        /// Its labels, matched by pools' namespace selectors.
        labels: Labels,
    },
    /// The namespace of this name was deleted.
    NamespaceDeleted(String),
    /// A full listing of `Kind` begins (at start, or after the watch lost
    /// its place): the objects that follow are all there is.
    RelistStarted(Kind),
    /// The listing is complete: objects it did not show are gone.
    RelistDone(Kind),
    /// A Service has nothing queued or in flight any more.
    ServiceWriteSettled(WriteSettled),
    /// Decide the next batch of the first listing's Services (see
    /// [`Reconciler::deciding`]); nothing when none waits.
    DecideBacklog,
    /// A pool status write ended.
    PoolStatusWritten(PoolStatusWritten),
    /// Time passes: pool statuses are flushed and due retries sent.
    Tick(Timestamp),
}

/// The report that a Service's writes are done, up to order `ticket`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSettled {
    /// The Service.
    pub key: ServiceKey,
    /// The newest order the report covers.
    pub ticket: Ticket,
    /// resourceVersion our newest completed write for it produced.
    pub applied_version: Option<u64>,
    /// False when the last request was given up on.
    pub written: bool,
}

/// What the loop needs to know.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// Namespace whose IPAddressPools we serve.
    pub pool_namespace: String,
    /// Which `loadBalancerClass` values are ours.
    pub class: ClassFilter,
    /// How many of the first listing's Services that show no IP are
    /// decided per [`Input::DecideBacklog`] (at least one; `usize::MAX`: all
    /// at once). Those that show IPs are always adopted in one pass.
    pub sync_batch: usize,
}

/// The names seen since a relist began.
#[derive(Debug)]
struct Relist<K> {
    seen: Option<HashSet<K>>,
}

impl<K: Eq + Hash + Clone> Relist<K> {
    fn new() -> Self {
        Relist { seen: None }
    }

    fn start(&mut self) {
        self.seen = Some(HashSet::new());
    }

    fn saw(&mut self, key: &K) {
        if let Some(seen) = &mut self.seen {
            seen.insert(key.clone());
        }
    }

    /// The keys of `known` the finished relist did not show.
    fn missing<'a>(&mut self, known: impl Iterator<Item = &'a K>) -> Vec<K>
    where
        K: 'a,
    {
        let Some(seen) = self.seen.take() else {
            return Vec::new();
        };
        known.filter(|k| !seen.contains(k)).cloned().collect()
    }
}

/// The allocation loop's whole state.
pub struct Reconciler {
    config: ReconcilerConfig,
    alloc: Allocator,
    /// Boxed: the table has room for up to 30 % more entries than it
    /// holds (65,536 slots for 50,200 Services), and an entry is over 400
    /// bytes.
    services: HashMap<ServiceKey, Box<Seen>>,
    /// Services of ours left without IPs, retried when something frees room.
    pending: BTreeSet<ServiceKey>,
    /// Services keeping their IPs while their request or pool stands in the
    /// way: retried, like pending ones, when something changes.
    held: BTreeSet<ServiceKey>,
    namespaces: HashMap<String, Labels>,
    pools: BTreeMap<String, IPAddressPool>,
    /// Why each invalid pool is left out of allocation.
    invalid_pools: HashMap<String, String>,
    pool_writes: PoolStatusWrites,
    pools_dirty: bool,
    /// An IP was freed: pending Services get another chance.
    retry_needed: bool,
    legacy_warned: HashSet<ServiceKey>,
    service_relist: Relist<ServiceKey>,
    pool_relist: Relist<String>,
    namespace_relist: Relist<String>,
    /// Kinds listed in full at least once.
    listed: BTreeSet<Kind>,
    synced: bool,
    /// The first listing's Services not decided yet, in their order; a key
    /// whose entry is no longer `queued` (decided, or deleted) is skipped.
    backlog: VecDeque<ServiceKey>,
    /// `Effect::Synced` went out: the backlog was empty once.
    announced: bool,
    tickets: u64,
    published_pending: usize,
    effects: Vec<Effect>,
}

impl Reconciler {
    /// A loop that knows nothing yet: it decides nothing until every kind has been listed once.
    pub fn new(config: ReconcilerConfig) -> Reconciler {
        Reconciler {
            config,
            alloc: Allocator::new(),
            services: HashMap::new(),
            pending: BTreeSet::new(),
            held: BTreeSet::new(),
            namespaces: HashMap::new(),
            pools: BTreeMap::new(),
            invalid_pools: HashMap::new(),
            pool_writes: PoolStatusWrites::default(),
            pools_dirty: true,
            retry_needed: false,
            legacy_warned: HashSet::new(),
            service_relist: Relist::new(),
            pool_relist: Relist::new(),
            namespace_relist: Relist::new(),
            listed: BTreeSet::new(),
            synced: false,
            backlog: VecDeque::new(),
            announced: false,
            tickets: 0,
            published_pending: 0,
            effects: Vec::new(),
        }
    }

    /// Whether the first full listing is in and its decisions begun.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Whether Services of the first listing wait for their decision:
    /// then [`Input::DecideBacklog`] decides the next batch.
    pub fn deciding(&self) -> bool {
        self.synced && !self.backlog.is_empty()
    }

    /// Handles one input; returns what to do about it, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        match input {
            Input::ServiceApplied(service) => {
                let key = ServiceKey::of(&service);
                self.service_relist.saw(&key);
                self.service_applied(key, &service);
            }
            Input::ServiceDeleted(key) => self.service_deleted(&key),
            Input::PoolApplied(pool) => {
                self.pool_relist.saw(&pool.name_any());
                self.pool_applied(pool);
            }
            Input::PoolDeleted(name) => self.pool_deleted(&name),
            Input::NamespaceApplied { name, labels } => {
                self.namespace_relist.saw(&name);
                self.namespace_applied(name, labels);
            }
            Input::NamespaceDeleted(name) => {
                self.namespaces.remove(&name);
            }
            Input::RelistStarted(kind) => match kind {
                Kind::Services => self.service_relist.start(),
                Kind::Pools => self.pool_relist.start(),
                Kind::Namespaces => self.namespace_relist.start(),
            },
            Input::RelistDone(kind) => self.relist_done(kind),
            Input::ServiceWriteSettled(report) => self.write_settled(report),
            Input::DecideBacklog => self.decide_backlog(self.config.sync_batch),
            Input::PoolStatusWritten(report) => self.pool_writes.report(&report),
            Input::Tick(now) => self.tick(now),
        }
        if self.synced {
            self.retry_freed();
            if self.pending.len() != self.published_pending {
                self.published_pending = self.pending.len();
                self.metric(MetricChange::Pending(self.pending.len()));
            }
        }
        std::mem::take(&mut self.effects)
    }

    /// Objects the relist did not show were deleted while we were not
    /// watching: they go as if we had seen the deletion.
    fn relist_done(&mut self, kind: Kind) {
        match kind {
            Kind::Services => {
                for key in self.service_relist.missing(self.services.keys()) {
                    self.service_deleted(&key);
                }
            }
            Kind::Pools => {
                for name in self.pool_relist.missing(self.pools.keys()) {
                    self.pool_deleted(&name);
                }
            }
            Kind::Namespaces => {
                for name in self.namespace_relist.missing(self.namespaces.keys()) {
                    self.namespaces.remove(&name);
                }
            }
        }
        self.listed.insert(kind);
        if !self.synced && self.listed.len() == 3 {
            let adopt = self.rebuild();
            self.synced = true;
            self.decide_backlog(adopt.saturating_add(self.config.sync_batch));
        }
    }

    /// After the first listing: pools first, then Services that already
    /// show IPs (oldest first, so the older of two claims wins), then the
    /// rest. Puts them all in the backlog, in that order; returns how many
    /// show IPs (adopted in one pass, before anything new is handed out).
    fn rebuild(&mut self) -> usize {
        self.apply_pools();
        let mut keys: Vec<(bool, i64, ServiceKey)> = self
            .services
            .iter_mut()
            .map(|(k, s)| {
                s.queued = true;
                (s.shown.ips.is_empty(), s.created, k.clone())
            })
            .collect();
        keys.sort();
        let adopt = keys.partition_point(|(no_ips, _, _)| !no_ips);
        self.backlog = keys.into_iter().map(|(_, _, key)| key).collect();
        adopt
    }

    /// Decides the next `count` Services of the backlog; announces the
    /// sync once none is left.
    fn decide_backlog(&mut self, count: usize) {
        if !self.synced {
            return;
        }
        for _ in 0..count.max(1) {
            let Some(key) = self.backlog.pop_front() else {
                break;
            };
            if let Some(seen) = self.services.get_mut(&key)
                && std::mem::take(&mut seen.queued)
            {
                self.evaluate(&key);
            }
        }
        if self.backlog.is_empty() && !self.announced {
            self.announced = true;
            // An empty VecDeque keeps the capacity it grew to (50,000 keys
            // after a large cold start); a new one gives that memory back.
            self.backlog = VecDeque::new();
            self.effects.push(Effect::Synced {
                services: self.services.len(),
                pools: self.pools.len(),
            });
        }
    }

    fn namespace_applied(&mut self, name: String, labels: Labels) {
        let changed = self.namespaces.insert(name, labels.clone()).as_ref() != Some(&labels);
        if changed && self.synced {
            self.retry_pending();
        }
    }

    /// A freed IP may help a pending Service. A retry can free more only
    /// through a Service that held IPs, so a few rounds settle it.
    fn retry_freed(&mut self) {
        let mut rounds = 0;
        while self.retry_needed && rounds < 4 {
            self.retry_needed = false;
            self.retry_pending();
            rounds += 1;
        }
    }

    fn retry_pending(&mut self) {
        let keys: Vec<ServiceKey> = self.pending.union(&self.held).cloned().collect();
        for key in keys {
            self.evaluate(&key);
        }
    }

    fn next_ticket(&mut self) -> Ticket {
        Ticket::take(&mut self.tickets)
    }

    fn metric(&mut self, change: MetricChange) {
        self.effects.push(Effect::Metric(change));
    }
}

#[cfg(test)]
mod tests;
