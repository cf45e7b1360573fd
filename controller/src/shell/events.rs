//! Kubernetes Events (`events.k8s.io/v1`), sent off the allocation loop by a
//! few background tasks so that a slow apiserver never stalls decisions.
//!
//! Events explain; the status carries the truth. So they are the lowest
//! priority work: each waits until no Service status write is outstanding
//! (on a cold start, every IP is visible before the first Event goes out),
//! then for a token of the rate limit (`--events-per-second`, 20 by
//! default, shared by the senders), so that a burst of Events never slows
//! the apiserver for the Services created after it. While
//! [`DEFAULT_BACKLOG`] Events wait, routine (Normal) ones are folded into a
//! count, logged when the backlog drains: see [`crate::core::event_budget`]
//! for why each Service's story stays readable. Warnings are never folded;
//! when the queue is full, an Event is dropped and logged.
//!
//! We create Events ourselves rather than through kube's `Recorder`: it
//! caches every Event it sent for six minutes (thousands on a cold start)
//! to merge repeats into a series, and merging keys on the reason but not
//! the note, so a second, different failure of the same reason would show
//! the first one's note. Our loop only sends an Event when a decision
//! changes, so there are no repeats to merge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::{Mutex, mpsc, watch};
use tracing::{debug, info, warn};

use crate::leader::Fence;

pub use crate::core::effect::{EventRequest, Regarding};
pub use crate::core::event_budget::DEFAULT_BACKLOG;
use crate::core::event_budget::{Admission, TokenBucket, admit};

/// Longest note the apiserver accepts on an `events.k8s.io/v1` Event.
pub const MAX_NOTE_BYTES: usize = 1024;
/// Longest object name we keep in an Event's name (names may be 253 long).
const MAX_NAME_PREFIX: usize = 200;
/// Events waiting to be sent, at most.
const QUEUE_CAPACITY: usize = 20_000;

/// Who reports the Events.
#[derive(Debug, Clone)]
struct Reporter {
    controller: String,
    instance: String,
}

/// How many Events go out: per second (0: no limit, and nothing folded),
/// and the burst a quiet spell saves up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRate {
    /// Events per second, shared by every sender; 0 for no limit.
    pub per_second: u32,
    /// Events that may go out at once after a quiet spell.
    pub burst: u32,
}

/// Handle to the Event queue.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<EventRequest>,
    limited: bool,
    /// Routine Events folded since the backlog last drained.
    folded: Arc<AtomicU64>,
}

impl EventSink {
    /// Starts `workers` senders. Each waits for `hold` to read `false`
    /// before sending (a closed `hold` never holds anything back), then for
    /// a token of `rate`.
    pub fn start(
        client: kube::Client,
        instance: String,
        workers: usize,
        rate: EventRate,
        hold: watch::Receiver<bool>,
        fence: Fence,
    ) -> EventSink {
        let (tx, rx) = mpsc::channel::<EventRequest>(QUEUE_CAPACITY);
        let rx = Arc::new(Mutex::new(rx));
        let reporter = Reporter {
            controller: "ferrolb-controller".into(),
            instance,
        };
        let sequence = Arc::new(AtomicU64::new(0));
        let bucket = TokenBucket::new(rate.per_second, rate.burst);
        let limited = bucket.limited();
        let bucket = Arc::new(std::sync::Mutex::new(bucket));
        let folded = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        for _ in 0..workers.max(1) {
            let client = client.clone();
            let reporter = reporter.clone();
            let rx = rx.clone();
            let mut hold = hold.clone();
            let sequence = sequence.clone();
            let fence = fence.clone();
            let bucket = bucket.clone();
            let folded = folded.clone();
            tokio::spawn(async move {
                loop {
                    let (next, drained) = {
                        let mut rx = rx.lock().await;
                        let next = rx.recv().await;
                        (next, rx.is_empty())
                    };
                    let Some(request) = next else { break };
                    if drained {
                        let count = folded.swap(0, Ordering::Relaxed);
                        if count > 0 {
                            info!(
                                folded = count,
                                "event backlog drained; routine events folded meanwhile were not sent (each Service's status, condition and annotation show its IP)"
                            );
                        }
                    }
                    // Err: the writer is gone, nothing to wait for.
                    let _ = hold.wait_for(|busy| !*busy).await;
                    while let Some(wait) = take_token(&bucket, started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    // Last, right before the write: any wait above may have
                    // outlasted this replica's leadership (a frozen process
                    // wakes with its sleeps already over).
                    fence.wait_open().await;
                    let now = k8s_openapi::jiff::Timestamp::now();
                    let seq = sequence.fetch_add(1, Ordering::Relaxed);
                    let event = build_event(&request, &reporter, now, seq);
                    let api: Api<Event> =
                        Api::namespaced(client.clone(), &request.regarding.namespace);
                    debug!(object = %request.regarding.name, reason = request.reason, "publishing event");
                    if let Err(e) = api.create(&PostParams::default(), &event).await {
                        debug!(error = %e, object = %request.regarding.name, "could not publish event");
                    }
                }
            });
        }
        EventSink {
            tx,
            limited,
            folded,
        }
    }

    /// Queues an Event, or folds it into a count when it is routine and
    /// [`DEFAULT_BACKLOG`] wait already; drops it (with a log line) when the
    /// queue is full.
    pub fn send(&self, request: EventRequest) {
        let reason = request.reason;
        let backlog = self.tx.max_capacity() - self.tx.capacity();
        if admit(request.warning, backlog, DEFAULT_BACKLOG, self.limited) == Admission::Fold {
            if self.folded.fetch_add(1, Ordering::Relaxed) == 0 {
                info!(
                    backlog,
                    "event backlog full: routine events are counted, not sent, until it drains"
                );
            }
            return;
        }
        if self.tx.try_send(request).is_err() {
            warn!(reason, "event queue full, dropping an event");
        }
    }
}

/// A token from the shared bucket, or how long to wait for one.
fn take_token(bucket: &std::sync::Mutex<TokenBucket>, now: Duration) -> Option<Duration> {
    match bucket.lock() {
        Ok(mut bucket) => bucket.take(now),
        // A sender panicked holding it: send without a limit rather than never.
        Err(_) => None,
    }
}

/// A unique, valid name for an Event about `object`: the object's name
/// (shortened, without a trailing separator) and a hex stamp.
pub fn event_name(object: &str, now_nanos: i128, sequence: u64) -> String {
    let mut prefix: &str = object;
    if prefix.len() > MAX_NAME_PREFIX {
        let mut cut = MAX_NAME_PREFIX;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix = &prefix[..cut];
    }
    let prefix = match prefix.trim_end_matches(['.', '-']) {
        "" => "object",
        trimmed => trimmed,
    };
    // The sequence has a fixed width, so two stamps never read alike.
    format!("{prefix}.{:x}{:03x}", now_nanos.max(0), sequence & 0xfff)
}

/// `note` cut to what the apiserver accepts, at a character boundary.
pub fn bounded_note(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut cut = MAX_NOTE_BYTES - '…'.len_utf8();
    while !note.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &note[..cut])
}

fn build_event(
    request: &EventRequest,
    reporter: &Reporter,
    now: k8s_openapi::jiff::Timestamp,
    sequence: u64,
) -> Event {
    Event {
        metadata: ObjectMeta {
            namespace: Some(request.regarding.namespace.clone()),
            name: Some(event_name(
                &request.regarding.name,
                now.as_nanosecond(),
                sequence,
            )),
            ..Default::default()
        },
        event_time: Some(MicroTime(now)),
        action: Some(request.action.into()),
        reason: Some(request.reason.into()),
        note: Some(bounded_note(&request.note)),
        regarding: Some(request.regarding.reference()),
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(reporter.instance.clone()),
        type_: Some(if request.warning { "Warning" } else { "Normal" }.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn is_dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    }

    #[test]
    fn names_differ_for_the_same_instant() {
        let a = event_name("web", 1_700_000_000_000_000_000, 1);
        let b = event_name("web", 1_700_000_000_000_000_000, 2);
        assert_ne!(a, b);
        assert!(a.starts_with("web."), "{a}");
    }

    #[test]
    fn long_names_are_cut_without_a_trailing_separator() {
        let object = format!("{}.-x", "a".repeat(MAX_NAME_PREFIX - 1));
        let name = event_name(&object, 5, 0);
        assert!(is_dns_subdomain(&name), "{name}");
        assert!(name.len() <= 253);
    }

    #[test]
    fn notes_are_bounded_at_a_char_boundary() {
        let short = "Assigned IP 198.51.100.1 from pool lan";
        assert_eq!(bounded_note(short), short);
        let long = "é".repeat(MAX_NOTE_BYTES);
        let cut = bounded_note(&long);
        assert!(cut.len() <= MAX_NOTE_BYTES);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn event_carries_the_request() {
        let request = EventRequest {
            regarding: Regarding::service("ns", "web", Some("u-1")),
            warning: true,
            reason: "AllocationFailed",
            action: "Allocate",
            note: "PoolFull: no free address".into(),
        };
        let reporter = Reporter {
            controller: "ferrolb-controller".into(),
            instance: "host-1".into(),
        };
        let event = build_event(
            &request,
            &reporter,
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            3,
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reason.as_deref(), Some("AllocationFailed"));
        assert_eq!(event.note.as_deref(), Some("PoolFull: no free address"));
        assert_eq!(event.metadata.namespace.as_deref(), Some("ns"));
        let regarding = event.regarding.unwrap();
        assert_eq!(
            (
                regarding.kind.as_deref(),
                regarding.name.as_deref(),
                regarding.uid.as_deref()
            ),
            (Some("Service"), Some("web"), Some("u-1"))
        );
        assert_eq!(event.reporting_instance.as_deref(), Some("host-1"));
    }

    proptest! {
        /// Any Service or pool name gives a valid Event name.
        #[test]
        fn event_names_are_valid(
            object in "[a-z0-9]([a-z0-9.-]{0,250}[a-z0-9])?",
            nanos in any::<i128>(),
            seq in any::<u64>(),
        ) {
            prop_assume!(is_dns_subdomain(&object));
            let name = event_name(&object, nanos, seq);
            prop_assert!(is_dns_subdomain(&name), "{}", name);
        }

        #[test]
        fn bounded_notes_fit(note in ".{0,1500}") {
            let cut = bounded_note(&note);
            prop_assert!(cut.len() <= MAX_NOTE_BYTES);
            if note.len() <= MAX_NOTE_BYTES {
                prop_assert_eq!(cut, note);
            }
        }
    }
}
