//! Pools: their changes, and the status and Events we publish for them.

use ferrolb_crds::pool::{IPAddressPool, IPAddressPoolStatus, condition};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tracing::{info, warn};

use super::{Input, Reconciler};
use crate::core::allocator::PoolUsage;
use crate::core::effect::{Effect, EventRequest, MetricChange, PoolStatusOrder, Regarding};
use crate::core::pool_object::{PoolFacts, frozen_note, pool_config, pool_status, status_differs};
use crate::core::service::ServiceKey;

impl Reconciler {
    pub(super) fn pool_applied(&mut self, pool: IPAddressPool) {
        // Our own status writes come back as events: only a new generation
        // (a spec change) changes allocation.
        let same_spec = self
            .pools
            .get(&pool.name_any())
            .is_some_and(|old| old.metadata.generation == pool.metadata.generation);
        self.pools.insert(pool.name_any(), pool);
        if !same_spec && self.synced {
            self.pools_changed();
        }
    }

    pub(super) fn pool_deleted(&mut self, name: &str) {
        let removed = self.pools.remove(name);
        if !self.synced {
            return;
        }
        let usage = self.alloc.usage(name);
        let in_use = usage.in_use();
        if let Some(pool) = removed
            && in_use > 0
        {
            warn!(pool = %name, addresses = in_use, "pool deleted while in use, its IPs stay frozen");
            self.effects.push(Effect::Event(pool_event(
                &pool,
                "PoolDeletedInUse",
                format!(
                    "deleted while {in_use} of its addresses are in use: they stay with their Services (frozen) until those let go of them; no new address is handed out from it"
                ),
            )));
        }
        self.pool_writes.forget(name);
        self.metric(MetricChange::PoolRemoved {
            pool: name.to_string(),
        });
        self.pools_changed();
    }

    /// Hands the valid pools to the allocator. Returns the Services whose
    /// IPs no pool declares any more.
    pub(super) fn apply_pools(&mut self) -> Vec<ServiceKey> {
        let mut configs = Vec::new();
        self.invalid_pools.clear();
        for (name, pool) in &self.pools {
            match pool_config(pool) {
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

    /// At a stop: the pool status writes a last tick orders (statuses that
    /// do not count the latest assignments yet, retries that are due), and
    /// nothing else of that tick (no Service write, Event or metric: this
    /// replica is going away).
    pub fn final_pool_statuses(&mut self, now: Timestamp) -> Vec<PoolStatusOrder> {
        self.handle(Input::Tick(now))
            .into_iter()
            .filter_map(|effect| match effect {
                Effect::WritePoolStatus(order) => Some(order),
                _ => None,
            })
            .collect()
    }

    /// Publishes changed pool statuses and usage, and sends the retries
    /// of failed status writes that are due.
    pub(super) fn tick(&mut self, now: Timestamp) {
        if !self.synced {
            return;
        }
        if self.pools_dirty {
            self.pools_dirty = false;
            let names: Vec<String> = self.pools.keys().cloned().collect();
            for name in names {
                self.publish_pool(&name, now);
            }
        }
        for order in self.pool_writes.due(now) {
            self.effects.push(Effect::WritePoolStatus(order));
        }
    }

    /// Usage metrics for one pool, and its status (with an Event when it
    /// turns conflicting or invalid) if that changed.
    fn publish_pool(&mut self, name: &str, now: Timestamp) {
        let usage = self.alloc.usage(name);
        self.metric(MetricChange::PoolUsage {
            pool: name.to_string(),
            usage,
        });
        let Some((status, events)) = self.pool_update(name, usage, now) else {
            return;
        };
        self.effects.extend(events.into_iter().map(Effect::Event));
        let order = self.pool_writes.order(name, status);
        self.effects.push(Effect::WritePoolStatus(order));
    }

    /// The status pool `name` should show, and the Events that go with it,
    /// unless it already shows that (or we already ordered it).
    fn pool_update(
        &self,
        name: &str,
        usage: PoolUsage,
        now: Timestamp,
    ) -> Option<(IPAddressPoolStatus, Vec<EventRequest>)> {
        let object = self.pools.get(name)?;
        let pool = self.alloc.pools().get(name);
        let invalid = self.invalid_pools.get(name);
        let decided = self.pool_writes.decided(name);
        let previous = decided.or(object.status.as_ref());
        let facts = PoolFacts {
            namespace: &self.config.pool_namespace,
            generation: object.metadata.generation,
            pool,
            invalid: invalid.map(String::as_str),
            usage,
        };
        let status = pool_status(facts, previous, now);
        if previous.is_some_and(|p| !status_differs(p, &status)) {
            return None;
        }
        // An Event when the pool turns conflicting or invalid, not on every
        // count change while it stays so.
        let newly =
            |reason: &str| decided.is_none_or(|d| d.conditions.iter().all(|c| c.reason != reason));
        let mut events = Vec::new();
        if let Some(conflict) = pool.and_then(|p| p.conflict.as_ref())
            && newly(condition::REASON_CONFLICTING)
        {
            events.push(pool_event(object, "PoolConflict", conflict.to_string()));
        }
        if let Some(message) = invalid
            && newly(condition::REASON_INVALID_ADDRESSES)
        {
            let in_use = usage.in_use();
            let note = if in_use > 0 {
                format!("{message}; {}", frozen_note(in_use))
            } else {
                message.clone()
            };
            events.push(pool_event(object, "InvalidPool", note));
        }
        Some((status, events))
    }
}

fn pool_event(pool: &IPAddressPool, reason: &'static str, note: String) -> EventRequest {
    EventRequest {
        regarding: Regarding {
            api_version: ferrolb_crds::API_VERSION,
            kind: "IPAddressPool",
            namespace: pool.namespace().unwrap_or_default(),
            name: pool.name_any(),
            uid: pool.uid(),
        },
        warning: true,
        reason,
        action: "Validate",
        note,
    }
}
