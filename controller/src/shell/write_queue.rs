//! The scheduling of Service writes, without I/O: which write goes next.
//!
//! A Service's write has two parts, sent as two requests: the status
//! (`status.loadBalancer.ingress` and our condition), which is what users and
//! speakers wait for, and the `ip-allocated-from-pool` annotation, which only
//! records where the IP came from. Status writes of all Services go before
//! any annotation write, so on a cold start with thousands of Services every
//! IP is visible before the bookkeeping starts. Events wait on
//! [`WriteQueue::status_outstanding`] for the same reason.
//!
//! Per Service the queue is latest-wins (a newer desired state replaces a
//! queued older one) and a Service is never written by two workers at once,
//! so an older write can never land after a newer one.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, VecDeque};

use crate::core::ServiceKey;
use crate::core::desired::ServiceWrite;
use crate::core::effect::Ticket;

/// Which part of a Service's write a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Ingress IPs and condition, on the status subresource.
    Status,
    /// The pool annotation, on the object.
    Annotation,
}

/// One request for a worker to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub key: ServiceKey,
    pub stage: Stage,
    pub write: ServiceWrite,
}

/// How a [`Job`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// The apiserver took it. `version` is the object's resourceVersion
    /// afterwards; `annotation_current` says whether the object returned by a
    /// status write already carries the annotation we want (then the
    /// annotation write is skipped).
    Written {
        version: Option<u64>,
        annotation_current: bool,
    },
    /// Dropped: the Service is gone, or a newer write replaced this one.
    Abandoned,
}

/// A Service's writes are done, up to the order `ticket`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    pub ticket: Ticket,
    /// The newest resourceVersion our writes produced since the last report.
    pub applied_version: Option<u64>,
}

#[derive(Debug, Default)]
struct Entry {
    /// What is still to be written, and which part goes first.
    next: Option<(Stage, ServiceWrite)>,
    in_flight: Option<Stage>,
    in_urgent: bool,
    in_background: bool,
    /// resourceVersion after our last completed write.
    applied: Option<u64>,
    /// The order the newest submitted write came with.
    ticket: Option<Ticket>,
    /// The Service was deleted while a request for it was in flight: that
    /// request's end is not followed by anything.
    forgotten: bool,
}

impl Entry {
    fn has_status_work(&self) -> bool {
        self.in_flight == Some(Stage::Status) || matches!(self.next, Some((Stage::Status, _)))
    }

    fn idle(&self) -> bool {
        self.next.is_none() && self.in_flight.is_none()
    }
}

/// The queue of Service writes. Pure: the async [`super::writer::Writer`]
/// drives it.
#[derive(Debug, Default)]
pub struct WriteQueue {
    entries: HashMap<ServiceKey, Entry>,
    /// Keys with a status write to send (may hold stale keys, skipped on take).
    urgent: VecDeque<ServiceKey>,
    /// Keys with only an annotation write to send (same).
    background: VecDeque<ServiceKey>,
    /// Services with a status write queued or in flight.
    status_outstanding: usize,
}

impl WriteQueue {
    pub fn new() -> WriteQueue {
        WriteQueue::default()
    }

    /// Queues `write` for `key`, replacing whatever was queued for it.
    /// `status_current` says that the object already shows the status part
    /// of `write`, so only the annotation needs writing. `ticket` names the
    /// order, for [`WriteQueue::finish`] to report.
    pub fn submit(
        &mut self,
        key: ServiceKey,
        write: ServiceWrite,
        status_current: bool,
        ticket: Ticket,
    ) {
        let stage = if status_current {
            Stage::Annotation
        } else {
            Stage::Status
        };
        self.update(&key, |entry| {
            entry.forgotten = false;
            entry.next = Some((stage, write));
            entry.ticket = Some(ticket);
        });
    }

    /// The next request to send: any status write before any annotation
    /// write, and never a Service that already has a request in flight.
    pub fn take(&mut self) -> Option<Job> {
        for stage in [Stage::Status, Stage::Annotation] {
            let rounds = self.lane(stage).len();
            for _ in 0..rounds {
                let Some(key) = self.lane(stage).pop_front() else {
                    break;
                };
                let Some(entry) = self.entries.get_mut(&key) else {
                    continue;
                };
                *entry.queued_flag(stage) = false;
                let ready = matches!(&entry.next, Some((s, _)) if *s == stage);
                if !ready {
                    // Stale: the write moved to the other lane or was sent.
                    self.prune(&key);
                    continue;
                }
                if entry.in_flight.is_some() {
                    // Wait for the request in flight; keep the place.
                    *entry.queued_flag(stage) = true;
                    self.lane(stage).push_back(key);
                    continue;
                }
                let job = self.update(&key, |entry| {
                    let (stage, write) = entry.next.take()?;
                    entry.in_flight = Some(stage);
                    Some((stage, write))
                });
                if let Some((stage, write)) = job {
                    return Some(Job { key, stage, write });
                }
            }
        }
        None
    }

    /// Records how `job` ended; a written status is followed by its
    /// annotation unless a newer write replaced it or the object shows it.
    /// Returns the report for the newest order when that leaves the Service
    /// with nothing queued or in flight (and it was not forgotten). The
    /// version goes out with the report, and the Service's entry with it: the
    /// loop keeps the newest version it was told, and an entry per written
    /// Service was some 300 bytes each, kept for good.
    pub fn finish(&mut self, job: Job, result: Finished) -> Option<Settled> {
        self.update(&job.key, |entry| {
            entry.in_flight = None;
            if entry.forgotten {
                return None;
            }
            if let Finished::Written {
                version,
                annotation_current,
            } = result
            {
                if let Some(version) = version {
                    entry.applied = Some(entry.applied.map_or(version, |a| a.max(version)));
                }
                if job.stage == Stage::Status && !annotation_current && entry.next.is_none() {
                    entry.next = Some((Stage::Annotation, job.write));
                }
            }
            if !entry.idle() {
                return None;
            }
            let ticket = entry.ticket?;
            Some(Settled {
                ticket,
                applied_version: entry.applied.take(),
            })
        })
    }

    /// Whether a write for `key` is queued or in flight.
    pub fn busy(&self, key: &ServiceKey) -> bool {
        self.entries.get(key).is_some_and(|e| !e.idle())
    }

    /// Whether a write for `key` waits in the queue (a newer one than any
    /// in flight).
    pub fn has_queued(&self, key: &ServiceKey) -> bool {
        self.entries.get(key).is_some_and(|e| e.next.is_some())
    }

    /// Whether the request in flight for `key` is no longer wanted: a newer
    /// write waits behind it, or the Service was deleted meanwhile.
    pub fn stale(&self, key: &ServiceKey) -> bool {
        self.entries
            .get(key)
            .is_none_or(|e| e.next.is_some() || e.forgotten)
    }

    /// Forgets a deleted Service: drops its queued write (it would end in a
    /// 404) and its version; a request in flight ends without a follow-up.
    pub fn forget(&mut self, key: &ServiceKey) {
        if !self.entries.contains_key(key) {
            return;
        }
        self.update(key, |entry| {
            entry.next = None;
            entry.applied = None;
            entry.forgotten = entry.in_flight.is_some();
        });
    }

    /// Services with a status write queued or in flight.
    pub fn status_outstanding(&self) -> usize {
        self.status_outstanding
    }

    /// Whether nothing is queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.entries.values().all(Entry::idle)
    }

    fn lane(&mut self, stage: Stage) -> &mut VecDeque<ServiceKey> {
        match stage {
            Stage::Status => &mut self.urgent,
            Stage::Annotation => &mut self.background,
        }
    }

    /// Changes one entry and keeps the lanes, the status counter and the
    /// map itself (entries that hold nothing are dropped) in step with it.
    fn update<T>(&mut self, key: &ServiceKey, change: impl FnOnce(&mut Entry) -> T) -> T {
        let entry = match self.entries.entry(key.clone()) {
            MapEntry::Occupied(o) => o.into_mut(),
            MapEntry::Vacant(v) => v.insert(Entry::default()),
        };
        let had_status_work = entry.has_status_work();
        let out = change(entry);
        let next_stage = entry.next.as_ref().map(|(stage, _)| *stage);
        let enqueue = match next_stage {
            Some(stage) if !*entry.queued_flag(stage) => {
                *entry.queued_flag(stage) = true;
                Some(stage)
            }
            _ => None,
        };
        match (had_status_work, entry.has_status_work()) {
            (false, true) => self.status_outstanding += 1,
            (true, false) => self.status_outstanding = self.status_outstanding.saturating_sub(1),
            _ => {}
        }
        if let Some(stage) = enqueue {
            self.lane(stage).push_back(key.clone());
        }
        self.prune(key);
        out
    }

    /// Drops an entry that holds nothing and sits in no lane.
    fn prune(&mut self, key: &ServiceKey) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.idle() && e.applied.is_none() && !e.in_urgent && !e.in_background)
        {
            self.entries.remove(key);
        }
    }
}

impl Entry {
    fn queued_flag(&mut self, stage: Stage) -> &mut bool {
        match stage {
            Stage::Status => &mut self.in_urgent,
            Stage::Annotation => &mut self.in_background,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::desired::ConditionState;
    use proptest::prelude::*;

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("ns", name)
    }

    fn write(ip: &str) -> ServiceWrite {
        ServiceWrite {
            ips: vec![ip.parse().unwrap()],
            pool: Some("p".into()),
            condition: Some(ConditionState {
                allocated: true,
                reason: "Allocated".into(),
                message: format!("{ip} from pool p"),
            }),
        }
    }

    fn written(version: u64) -> Finished {
        Finished::Written {
            version: Some(version),
            annotation_current: false,
        }
    }

    #[test]
    fn a_write_in_flight_turns_stale_when_replaced_or_forgotten() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        q.submit(key("b"), write("198.51.100.2"), false, Ticket(1));
        let a = q.take().unwrap();
        let b = q.take().unwrap();
        assert!(!q.stale(&a.key) && !q.stale(&b.key), "still wanted");
        q.submit(key("a"), write("198.51.100.3"), false, Ticket(2));
        q.forget(&key("b"));
        assert!(q.stale(&a.key), "replaced by a newer write");
        assert!(q.stale(&b.key), "the Service was deleted");
    }

    #[test]
    fn every_status_goes_before_any_annotation() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        q.submit(key("b"), write("198.51.100.2"), false, Ticket(1));
        let a = q.take().unwrap();
        assert_eq!((a.key.name(), a.stage), ("a", Stage::Status));
        q.finish(a, written(10));
        // a's annotation is now queued, but b's status goes first.
        let b = q.take().unwrap();
        assert_eq!((b.key.name(), b.stage), ("b", Stage::Status));
        assert_eq!(q.status_outstanding(), 1);
        q.submit(key("c"), write("198.51.100.3"), false, Ticket(1));
        let c = q.take().unwrap();
        assert_eq!((c.key.name(), c.stage), ("c", Stage::Status));
        let next = q.take().unwrap();
        assert_eq!((next.key.name(), next.stage), ("a", Stage::Annotation));
        assert_eq!(q.status_outstanding(), 2, "b and c are in flight");
        q.finish(b, written(11));
        q.finish(c, written(12));
        assert_eq!(q.status_outstanding(), 0);
    }

    #[test]
    fn annotation_is_skipped_when_the_object_already_shows_it() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        let job = q.take().unwrap();
        let settled = q.finish(
            job,
            Finished::Written {
                version: Some(5),
                annotation_current: true,
            },
        );
        assert_eq!(q.take(), None);
        assert!(!q.busy(&key("a")));
        assert_eq!(settled.and_then(|s| s.applied_version), Some(5));
        assert!(q.entries.is_empty(), "reported: nothing kept");
    }

    #[test]
    fn status_current_starts_with_the_annotation() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), true, Ticket(1));
        assert_eq!(q.status_outstanding(), 0);
        let job = q.take().unwrap();
        assert_eq!(job.stage, Stage::Annotation);
        q.finish(job, written(3));
        assert_eq!(q.take(), None);
        assert!(q.is_idle());
    }

    #[test]
    fn a_newer_write_replaces_the_queued_one_and_waits_for_the_one_in_flight() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        let first = q.take().unwrap();
        q.submit(key("a"), write("198.51.100.2"), false, Ticket(1));
        q.submit(key("a"), write("198.51.100.3"), false, Ticket(1));
        assert_eq!(q.take(), None, "a is in flight");
        assert!(q.busy(&key("a")));
        q.finish(first, written(7));
        let second = q.take().unwrap();
        assert_eq!(second.write, write("198.51.100.3"));
        assert_eq!(second.stage, Stage::Status);
        q.finish(second, written(9));
        let annotation = q.take().unwrap();
        assert_eq!(
            (annotation.stage, &annotation.write),
            (Stage::Annotation, &write("198.51.100.3"))
        );
        let settled = q.finish(annotation, written(10));
        assert_eq!(settled.and_then(|s| s.applied_version), Some(10));
        assert!(q.is_idle());
    }

    #[test]
    fn a_new_decision_during_the_annotation_phase_goes_back_to_status() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        let job = q.take().unwrap();
        q.finish(job, written(1));
        q.submit(key("a"), write("198.51.100.2"), false, Ticket(1));
        let job = q.take().unwrap();
        assert_eq!(
            (job.stage, job.write),
            (Stage::Status, write("198.51.100.2"))
        );
        assert_eq!(q.take(), None, "the stale annotation entry is dropped");
    }

    #[test]
    fn finish_reports_the_newest_ticket_once_nothing_is_left() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        let first = q.take().unwrap();
        q.submit(key("a"), write("198.51.100.2"), false, Ticket(2));
        assert_eq!(q.finish(first, written(5)), None, "a newer write waits");
        let status = q.take().unwrap();
        assert_eq!(q.finish(status, written(6)), None, "its annotation follows");
        let annotation = q.take().unwrap();
        let settled = |ticket, version| {
            Some(Settled {
                ticket: Ticket(ticket),
                applied_version: version,
            })
        };
        assert_eq!(q.finish(annotation, written(7)), settled(2, Some(7)));
        q.submit(key("a"), write("198.51.100.3"), false, Ticket(3));
        let given_up = q.take().unwrap();
        assert_eq!(q.finish(given_up, Finished::Abandoned), settled(3, None));
        q.submit(key("a"), write("198.51.100.4"), false, Ticket(4));
        let deleted = q.take().unwrap();
        q.forget(&key("a"));
        assert_eq!(q.finish(deleted, written(9)), None, "forgotten");
    }

    #[test]
    fn abandoned_writes_free_the_service() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        let job = q.take().unwrap();
        q.finish(job, Finished::Abandoned);
        assert!(!q.busy(&key("a")));
        assert_eq!(q.status_outstanding(), 0);
        assert_eq!(q.take(), None);
    }

    #[test]
    fn forget_drops_queued_work_and_the_version() {
        let mut q = WriteQueue::new();
        q.submit(key("a"), write("198.51.100.1"), false, Ticket(1));
        let job = q.take().unwrap();
        q.finish(job, written(4));
        q.forget(&key("a"));
        assert_eq!(q.take(), None);
        assert!(q.entries.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Submit(u8, u8, bool),
        Take,
        Finish(usize, bool, bool),
        Forget(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..4, 0u8..4, any::<bool>()).prop_map(|(k, ip, c)| Op::Submit(k, ip, c)),
            Just(Op::Take),
            (0usize..8, any::<bool>(), any::<bool>())
                .prop_map(|(i, ok, cur)| Op::Finish(i, ok, cur)),
            (0u8..4).prop_map(Op::Forget),
        ]
    }

    proptest! {
        /// Whatever happens: one request per Service at a time, the status
        /// counter matches the entries, statuses go first, and once the
        /// workers drain the queue the last decision of every Service that
        /// was not forgotten has been sent in full.
        #[test]
        fn queue_invariants(ops in proptest::collection::vec(op(), 0..60)) {
            let mut q = WriteQueue::new();
            let mut in_flight: Vec<Job> = Vec::new();
            let mut last: HashMap<ServiceKey, ServiceWrite> = HashMap::new();
            // The last write each Service completed, whatever its stage.
            let mut completed: HashMap<ServiceKey, ServiceWrite> = HashMap::new();
            let mut version = 0u64;
            let mut apply = |q: &mut WriteQueue, job: Job, ok: bool, current: bool,
                             last: &mut HashMap<ServiceKey, ServiceWrite>,
                             completed: &mut HashMap<ServiceKey, ServiceWrite>| {
                version += 1;
                let key = job.key.clone();
                let write = job.write.clone();
                let result = if ok {
                    Finished::Written { version: Some(version), annotation_current: current }
                } else {
                    Finished::Abandoned
                };
                q.finish(job, result);
                if ok {
                    completed.insert(key, write);
                } else if !q.busy(&key) && last.get(&key) == Some(&write) {
                    // The last decision was given up on: nothing more comes.
                    last.remove(&key);
                }
            };
            for op in ops {
                match op {
                    Op::Submit(k, ip, current) => {
                        let w = write(&format!("198.51.100.{ip}"));
                        last.insert(key(&k.to_string()), w.clone());
                        q.submit(key(&k.to_string()), w, current, Ticket(1));
                    }
                    Op::Take => {
                        if let Some(job) = q.take() {
                            prop_assert!(in_flight.iter().all(|j| j.key != job.key));
                            if job.stage == Stage::Annotation {
                                prop_assert!(!q.urgent.iter().any(|k| {
                                    q.entries.get(k).is_some_and(|e| {
                                        e.in_flight.is_none()
                                            && matches!(e.next, Some((Stage::Status, _)))
                                    })
                                }), "an annotation went before a ready status");
                            }
                            in_flight.push(job);
                        }
                    }
                    Op::Finish(i, ok, current) => {
                        if !in_flight.is_empty() {
                            let job = in_flight.remove(i % in_flight.len());
                            apply(&mut q, job, ok, current, &mut last, &mut completed);
                        }
                    }
                    Op::Forget(k) => {
                        q.forget(&key(&k.to_string()));
                        last.remove(&key(&k.to_string()));
                    }
                }
                let counted = q.entries.values().filter(|e| e.has_status_work()).count();
                prop_assert_eq!(q.status_outstanding(), counted);
            }
            // Drain: finish everything in flight, then send the rest.
            for job in std::mem::take(&mut in_flight) {
                apply(&mut q, job, true, false, &mut last, &mut completed);
            }
            let mut rounds = 0;
            while let Some(job) = q.take() {
                apply(&mut q, job, true, false, &mut last, &mut completed);
                rounds += 1;
                prop_assert!(rounds < 100);
            }
            prop_assert!(q.is_idle());
            prop_assert_eq!(q.status_outstanding(), 0);
            for (k, w) in &last {
                prop_assert_eq!(completed.get(k), Some(w), "{} ends with its last decision", k);
            }
            // Reported and forgotten Services leave nothing behind.
            prop_assert!(q.entries.is_empty(), "{:?}", q.entries);
        }
    }
}
