//! Services: deciding one, and ordering what brings the object there.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use tracing::{info, info_span, warn};

use super::{Reconciler, WriteSettled};
use crate::core::RequestError;
use crate::core::allocator::Assignment;
use crate::core::desired::{
    KeptBecause, Outcome, ServiceWrite, carries_our_marks, failure_reason, observed,
};
use crate::core::effect::{
    Effect, EventRequest, MetricChange, Regarding, ServiceWriteOrder, Ticket,
};
use crate::core::service::{ServiceKey, ServiceRequest, SharingTerms, read_request};
use crate::core::{ClassFilter, Interest};
use crate::ipam::Family;

/// A Service as the loop remembers it: what it asks, what it shows, what we
/// decided for it and where our writes to it stand. Kept in one entry (with
/// one key) rather than a map each: at 50,000 Services that saved 9 MiB of
/// keys and tables (dhat, `--bench memory`).
#[derive(Debug)]
pub(super) struct Seen {
    uid: Option<String>,
    pub(super) created: i64,
    interest: Interest,
    request: Option<Result<ServiceRequest, RequestError>>,
    pub(super) shown: ServiceWrite,
    marked: bool,
    /// resourceVersion of the object `shown` was read from.
    version: Option<u64>,
    /// Waits in the first listing's backlog for its decision.
    pub(super) queued: bool,
    /// The last write we decided on: Events and logs mark changes of
    /// decision, not repairs.
    decided: Decided,
    progress: WriteProgress,
}

/// The last write decided for a Service. Once our write landed the object
/// shows it, so it is most often the same as `shown` and not kept twice.
#[derive(Debug, Default)]
enum Decided {
    /// Nothing decided yet.
    #[default]
    Nothing,
    /// What the Service shows.
    Shown,
    /// Something the Service does not show (yet).
    Other(Box<ServiceWrite>),
}

/// Where our writes to one Service stand.
#[derive(Debug, Default)]
struct WriteProgress {
    /// The newest order not yet reported settled.
    outstanding: Option<Ticket>,
    /// resourceVersion after our newest completed write: a view older than
    /// that is an echo from before it.
    applied: Option<u64>,
}

impl Seen {
    fn read(service: &Service, class: &ClassFilter) -> Seen {
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
            queued: false,
            decided: Decided::Nothing,
            progress: WriteProgress::default(),
        }
    }

    /// The last write decided for this Service.
    fn submitted(&self) -> Option<&ServiceWrite> {
        match &self.decided {
            Decided::Nothing => None,
            Decided::Shown => Some(&self.shown),
            Decided::Other(write) => Some(write),
        }
    }

    /// Records `write` as decided.
    fn decide(&mut self, write: ServiceWrite) {
        self.decided = if write == self.shown {
            Decided::Shown
        } else {
            Decided::Other(Box::new(write))
        };
    }

    /// A newer view of the same Service replaces `old`: what we decided and
    /// where our writes stand carry over.
    fn succeed(&mut self, old: &mut Seen) {
        self.queued = old.queued;
        self.progress = std::mem::take(&mut old.progress);
        let decided = match std::mem::take(&mut old.decided) {
            Decided::Shown => std::mem::take(&mut old.shown),
            Decided::Other(write) => *write,
            Decided::Nothing => return,
        };
        self.decide(decided);
    }
}

impl Reconciler {
    /// Records a Service's view and decides on it, unless the first
    /// listing's backlog is still being decided and this Service waits in
    /// it (or, new, joins its end): then it is decided in its turn.
    pub(super) fn service_applied(&mut self, key: ServiceKey, service: &Service) {
        let mut seen = Seen::read(service, &self.config.class);
        let known = match self.services.get_mut(&key) {
            Some(old) => {
                seen.succeed(old);
                **old = seen;
                true
            }
            None => {
                seen.queued = self.synced && !self.backlog.is_empty();
                self.services.insert(key.clone(), Box::new(seen));
                false
            }
        };
        let queued = self.services.get(&key).is_some_and(|s| s.queued);
        if !known && queued {
            self.backlog.push_back(key);
        } else if self.synced && !queued {
            self.evaluate(&key);
        }
    }

    pub(super) fn service_deleted(&mut self, key: &ServiceKey) {
        self.services.remove(key);
        if !self.synced {
            return;
        }
        self.pending.remove(key);
        self.legacy_warned.remove(key);
        self.held.remove(key);
        self.effects.push(Effect::ForgetService(key.clone()));
        if let Some((assignment, freed)) = self.alloc.release(key) {
            info!(service = %key, pool = %assignment.pool, "service deleted, IPs released");
            self.metric(MetricChange::Released {
                pool: assignment.pool,
            });
            self.pools_dirty = true;
            self.retry_needed |= freed;
        }
    }

    /// Decides one Service and orders whatever write brings it there.
    pub(super) fn evaluate(&mut self, key: &ServiceKey) {
        let Some(entry) = self.services.get(key) else {
            return;
        };
        let span = info_span!("service", service = %key);
        let _guard = span.enter();
        // `request` is read only for Services of ours.
        let outcome = match &entry.request {
            Some(Ok(request)) => {
                let request = request.clone();
                let uid = entry.uid.clone();
                self.warn_legacy_annotations(key, uid.as_deref(), &request);
                self.decide(key, &request)
            }
            Some(Err(e)) => {
                let e = e.clone();
                let problem = KeptBecause::Request(e.clone());
                let kept = self
                    .standing(key)
                    .and_then(|standing| self.keep(key, standing, None, problem));
                kept.unwrap_or_else(|| {
                    self.release_quietly(key);
                    Outcome::Invalid(e)
                })
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
        if matches!(outcome, Outcome::Failed(_)) {
            self.pending.insert(key.clone());
        } else {
            self.pending.remove(key);
        }
        if matches!(outcome, Outcome::Kept { .. }) {
            self.held.insert(key.clone());
        } else {
            self.held.remove(key);
        }
        self.order_write(key, &outcome);
    }

    fn warn_legacy_annotations(
        &mut self,
        key: &ServiceKey,
        uid: Option<&str>,
        request: &ServiceRequest,
    ) {
        if request.legacy_annotations.is_empty() || !self.legacy_warned.insert(key.clone()) {
            return;
        }
        let names = request.legacy_annotations.join(", ");
        self.effects.push(Effect::Event(EventRequest {
            regarding: Regarding::service(key.namespace(), key.name(), uid),
            warning: true,
            reason: "DeprecatedAnnotation",
            action: "Allocate",
            note: format!(
                "{names}: read for MetalLB compatibility; use the ferrolb.io/ prefix instead"
            ),
        }));
    }

    /// A live Service is never cleared or renumbered by accident: while
    /// its pool is frozen it keeps its IPs (unless it asks for others), and
    /// a request that cannot be served leaves it what it had.
    fn decide(&mut self, key: &ServiceKey, request: &ServiceRequest) -> Outcome {
        let standing = self.standing(key);
        if let Some(standing) = &standing
            && self.alloc.frozen(&standing.assignment)
            && !asks_elsewhere(request, &standing.assignment)
        {
            let pool = &standing.assignment.pool;
            let problem = KeptBecause::PoolFrozen {
                pool: pool.clone(),
                why: match self.invalid_pools.get(pool) {
                    Some(message) => format!("is invalid ({message})"),
                    None => "was deleted".into(),
                },
            };
            if let Some(kept) =
                self.keep(key, standing.clone(), request.sharing.as_deref(), problem)
            {
                return kept;
            }
        }
        match self.assign(key, request) {
            Outcome::Failed(e) => {
                let problem = KeptBecause::Allocation(e.clone());
                standing
                    .and_then(|s| self.keep(key, s, request.sharing.as_deref(), problem))
                    .unwrap_or(Outcome::Failed(e))
            }
            outcome => outcome,
        }
    }

    /// The IPs a Service holds, or else (after a restart) shows, with the
    /// pool recorded on it.
    fn standing(&self, key: &ServiceKey) -> Option<Standing> {
        if let Some(held) = self.alloc.assignment(key) {
            return Some(Standing {
                assignment: held.clone(),
                held: true,
            });
        }
        let shown = &self.services.get(key)?.shown;
        let pool = shown.pool.clone()?;
        (!shown.ips.is_empty()).then(|| Standing {
            assignment: Assignment {
                pool,
                ips: shown.ips.clone(),
            },
            held: false,
        })
    }

    /// Keeps `standing` for `key` despite `problem`, if the allocator can.
    fn keep(
        &mut self,
        key: &ServiceKey,
        standing: Standing,
        sharing: Option<&SharingTerms>,
        problem: KeptBecause,
    ) -> Option<Outcome> {
        let Standing {
            assignment: standing,
            held,
        } = standing;
        if !self.alloc.hold(key, &standing, sharing) {
            return None;
        }
        if !held {
            self.count_allocated(&standing);
        }
        Some(Outcome::Kept {
            assignment: standing,
            problem,
        })
    }

    fn count_allocated(&mut self, assignment: &Assignment) {
        for ip in &assignment.ips {
            self.metric(MetricChange::Allocated {
                pool: assignment.pool.clone(),
                family: Family::of(ip),
            });
        }
        self.pools_dirty = true;
    }

    fn assign(&mut self, key: &ServiceKey, request: &ServiceRequest) -> Outcome {
        let namespace_labels = self
            .namespaces
            .get(key.namespace())
            .cloned()
            .unwrap_or_default();
        let before = self.alloc.assignment(key).cloned();
        match self.alloc.assign(request, &namespace_labels) {
            Ok(assignment) => {
                if before.as_ref() != Some(&assignment) {
                    self.count_allocated(&assignment);
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

    /// Frees what a Service holds; true when it held anything.
    fn release_quietly(&mut self, key: &ServiceKey) -> bool {
        match self.alloc.release(key) {
            Some((assignment, freed)) => {
                self.metric(MetricChange::Released {
                    pool: assignment.pool,
                });
                self.pools_dirty = true;
                // Pending Services are retried once this input is handled;
                // retrying here would recurse.
                self.retry_needed |= freed;
                true
            }
            None => false,
        }
    }

    /// Orders the write `outcome` asks for, with an Event when the decision
    /// changed; an unchanged decision is only repaired.
    fn order_write(&mut self, key: &ServiceKey, outcome: &Outcome) {
        let desired = outcome.desired();
        let Some(entry) = self.services.get_mut(key) else {
            return;
        };
        if entry.submitted() == Some(&desired) {
            self.repair(key);
            return;
        }
        if desired == entry.shown {
            entry.decided = Decided::Shown;
            return;
        }
        let regarding = Regarding::service(key.namespace(), key.name(), entry.uid.as_deref());
        let status_current = desired.same_status(&entry.shown);
        // Shown from now on, until a view says otherwise.
        entry.shown = desired.clone();
        entry.decided = Decided::Shown;
        entry.marked = desired.pool.is_some() || desired.condition.is_some();
        self.announce(regarding, outcome);
        self.send_write(key, desired, status_current);
    }

    /// Rewrites the decision we already made if the object shows something
    /// else, unless that is only a view from before our write completed
    /// (the annotation and the status are two writes) or a write is still
    /// on its way.
    fn repair(&mut self, key: &ServiceKey) {
        let Some(entry) = self.services.get(key) else {
            return;
        };
        let Some(desired) = entry.submitted() else {
            return;
        };
        let progress = &entry.progress;
        let stale = match (entry.version, progress.applied) {
            (Some(seen), Some(applied)) => seen < applied,
            _ => false,
        };
        let busy = progress.outstanding.is_some();
        if *desired == entry.shown || stale || busy {
            return;
        }
        info!("status differs from our decision, rewriting it");
        let status_current = desired.same_status(&entry.shown);
        let desired = desired.clone();
        self.send_write(key, desired, status_current);
    }

    fn send_write(&mut self, key: &ServiceKey, write: ServiceWrite, status_current: bool) {
        let ticket = self.next_ticket();
        if let Some(entry) = self.services.get_mut(key) {
            entry.progress.outstanding = Some(ticket);
        }
        self.effects.push(Effect::WriteService(ServiceWriteOrder {
            key: key.clone(),
            write,
            status_current,
            ticket,
        }));
    }

    /// The log line, metric and Event for a changed decision.
    fn announce(&mut self, regarding: Regarding, outcome: &Outcome) {
        let event = match outcome {
            Outcome::Allocated(a) => {
                let ips = a
                    .ips
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                info!(ips = %ips, pool = %a.pool, "IP allocated");
                EventRequest {
                    regarding,
                    warning: false,
                    reason: "IPAllocated",
                    action: "Allocate",
                    note: format!("Assigned IP {ips} from pool {}", a.pool),
                }
            }
            Outcome::Failed(_) | Outcome::Invalid(_) => {
                let (metric_reason, message) = outcome.failure().unwrap_or_default();
                let reason = failure_reason(outcome);
                warn!(%reason, error = %message, "no IP for this Service");
                self.metric(MetricChange::Failed {
                    reason: metric_reason,
                });
                EventRequest {
                    regarding,
                    warning: true,
                    reason: "AllocationFailed",
                    action: "Allocate",
                    note: format!("{reason}: {message}"),
                }
            }
            Outcome::Kept {
                assignment,
                problem,
            } => {
                let reason = failure_reason(outcome);
                warn!(%reason, error = %problem, ips = ?assignment.ips, pool = %assignment.pool, "Service keeps its IPs");
                match problem {
                    KeptBecause::Request(e) => {
                        self.metric(MetricChange::Failed { reason: e.reason() })
                    }
                    KeptBecause::Allocation(e) => {
                        self.metric(MetricChange::Failed { reason: e.reason() })
                    }
                    KeptBecause::PoolFrozen { .. } => {}
                }
                EventRequest {
                    regarding,
                    warning: true,
                    reason: if let KeptBecause::PoolFrozen { .. } = problem {
                        "PoolFrozen"
                    } else {
                        "RequestNotApplied"
                    },
                    action: "Allocate",
                    note: format!("{reason}: keeps {assignment}: {problem}"),
                }
            }
            Outcome::Released => {
                info!("no longer a LoadBalancer of ours, IPs released");
                EventRequest {
                    regarding,
                    warning: false,
                    reason: "IPReleased",
                    action: "Release",
                    note: "Released its IPs: the Service is no longer a LoadBalancer of this controller's class".into(),
                }
            }
        };
        self.effects.push(Effect::Event(event));
    }

    /// A Service's writes are done up to `report.ticket`. If that is our
    /// newest order, views of the object that arrived meanwhile were not
    /// repaired (a write was on its way): check the newest one now.
    pub(super) fn write_settled(&mut self, report: WriteSettled) {
        let Some(entry) = self.services.get_mut(&report.key) else {
            return;
        };
        let progress = &mut entry.progress;
        if progress.outstanding.is_none() && progress.applied.is_none() {
            // Nothing written to this Service (it was deleted and created
            // anew since, or never written): the report is for another.
            return;
        }
        if let Some(version) = report.applied_version {
            progress.applied = Some(progress.applied.map_or(version, |a| a.max(version)));
        }
        if progress.outstanding != Some(report.ticket) {
            return;
        }
        progress.outstanding = None;
        if report.written && self.synced {
            let span = info_span!("service", service = %report.key);
            let _guard = span.enter();
            self.repair(&report.key);
        }
    }
}

/// The IPs a Service stands on: held in the table, or only shown.
#[derive(Clone)]
struct Standing {
    assignment: Assignment,
    held: bool,
}

/// Whether `request` names a pool or IPs other than those of `standing`:
/// then it is decided anew even when `standing` is frozen.
fn asks_elsewhere(request: &ServiceRequest, standing: &Assignment) -> bool {
    let other_pool = request
        .requested_pool
        .as_ref()
        .is_some_and(|p| *p != standing.pool);
    let other_ips = !request.requested_ips.is_empty()
        && request.requested_ips.iter().collect::<BTreeSet<_>>()
            != standing.ips.iter().collect::<BTreeSet<_>>();
    other_pool || other_ips
}
