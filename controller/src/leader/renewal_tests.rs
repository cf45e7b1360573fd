//! The renewal task against a scripted API server (an axum router standing in
//! for the Lease endpoint), in real time with short timings.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::get;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::ObjectMeta;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::*;
use crate::leader::LeaseTimings;

const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lease";
const ME: &str = "me";

type Reply = (StatusCode, Vec<u8>);

/// Answers PUTs from a queue (an empty queue answers 500) and GETs with one
/// fixed reply; hands every PUT's lease to the test.
struct ScriptedApi {
    puts: Mutex<VecDeque<Reply>>,
    get: Reply,
    written: mpsc::UnboundedSender<Lease>,
}

fn lease(resource_version: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("lease".into()),
            namespace: Some("ns".into()),
            resource_version: Some(resource_version.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..Default::default()
        }),
    }
}

fn ok(lease: &Lease) -> Reply {
    let body = serde_json::to_vec(lease).expect("a Lease serializes");
    (StatusCode::OK, body)
}

/// A failed call as the API server reports it; kube classifies a Status by
/// its `reason`.
fn failure(code: u16, reason: &str) -> Reply {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "scripted failure", "reason": reason, "code": code,
    });
    let code = StatusCode::from_u16(code).expect("a valid status code");
    (code, status.to_string().into_bytes())
}

fn internal_error() -> Reply {
    failure(500, "InternalError")
}

/// An elector for `ns/lease` as `me` whose API server follows the script.
/// It renews every 10 ms, gives up after 5 s, and pauses 30 s after a
/// failure (cut short by the deadline).
fn elector(puts: Vec<Reply>, get_reply: Reply) -> (LeaderElector, mpsc::UnboundedReceiver<Lease>) {
    let (written, written_rx) = mpsc::unbounded_channel();
    let api = Arc::new(ScriptedApi {
        puts: Mutex::new(puts.into()),
        get: get_reply,
        written,
    });
    let put_api = api.clone();
    let router = Router::new().route(
        LEASE_PATH,
        get(move || async move { api.get.clone() }).put(move |body: Bytes| async move {
            if let Ok(lease) = serde_json::from_slice::<Lease>(&body) {
                let _ = put_api.written.send(lease);
            }
            let next = put_api.puts.lock().ok().and_then(|mut q| q.pop_front());
            next.unwrap_or_else(internal_error)
        }),
    );
    let client = kube::Client::new(router, "ns");
    let timings = LeaseTimings {
        lease_duration: Duration::from_secs(10),
        renew_every: Duration::from_millis(10),
        renew_deadline: Duration::from_secs(5),
        retry_period: Duration::from_secs(30),
    };
    let elector = LeaderElector::new(client, "ns", "lease", ME).with_timings(timings);
    (elector, written_rx)
}

struct Running {
    task: tokio::task::JoinHandle<Option<Lease>>,
    status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    written: mpsc::UnboundedReceiver<Lease>,
}

fn start(puts: Vec<Reply>, get_reply: Reply, held: Lease) -> Running {
    let (elector, written) = elector(puts, get_reply);
    let (status_tx, status) = watch::channel(Status::Held);
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(renew_loop(
        elector,
        held,
        Instant::now(),
        status_tx,
        stop_rx,
        crate::leader::Fence::open(),
    ));
    Running {
        task,
        status,
        stop: Some(stop),
        written,
    }
}

impl Running {
    async fn next_write(&mut self) -> Lease {
        tokio::time::timeout(Duration::from_secs(5), self.written.recv())
            .await
            .ok()
            .flatten()
            .expect("the renewal task writes the lease")
    }

    /// Asks the task to stop, then waits for it to end.
    async fn stop(mut self) -> (Option<Lease>, Status) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.end().await
    }

    /// Waits for the task to end, within 2 s: well within the 5 s renew
    /// deadline, so the deadline cannot be what ends it.
    async fn end(self) -> (Option<Lease>, Status) {
        // `self.stop` lives on meanwhile: dropping it would stop the task.
        let result = tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .expect("the task ends soon")
            .expect("the task does not panic");
        let status = self.status.borrow().clone();
        (result, status)
    }
}

fn version(lease: &Lease) -> Option<&str> {
    lease.metadata.resource_version.as_deref()
}

#[tokio::test]
async fn a_stop_during_the_pause_after_a_failed_renewal_releases_at_once() {
    let mut running = start(vec![internal_error()], internal_error(), lease("1", ME));
    running.next_write().await;
    let (result, status) = running.stop().await;
    assert_eq!(result.as_ref().and_then(version), Some("1"));
    assert_eq!(status, Status::Lost(LostReason::Released));
}

#[tokio::test]
async fn a_stop_after_a_renewal_hands_back_the_renewed_lease() {
    let renewed = lease("2", ME);
    // The second write (failing) shows the first one's answer was taken in.
    let mut running = start(vec![ok(&renewed)], internal_error(), lease("1", ME));
    assert_eq!(version(&running.next_write().await), Some("1"));
    assert_eq!(version(&running.next_write().await), Some("2"));
    let (result, status) = running.stop().await;
    assert_eq!(result.as_ref().and_then(version), Some("2"));
    assert_eq!(status, Status::Lost(LostReason::Released));
}

#[tokio::test]
async fn a_lease_found_taken_after_a_conflict_is_lost() {
    let running = start(
        vec![failure(409, "Conflict")],
        ok(&lease("3", "other")),
        lease("1", ME),
    );
    let (result, status) = running.end().await;
    assert_eq!(result, None);
    assert_eq!(
        status,
        Status::Lost(LostReason::Taken {
            holder: Some("other".into())
        })
    );
}
