//! Lease-based leader election (`coordination.k8s.io/v1` Lease).
//!
//! Two controller replicas may run: one holds the Lease and acts, the other
//! waits in [`LeaderElector::acquire`] and takes over when the leader stops
//! renewing or gives the lease up with [`Leadership::release`].
//!
//! The decisions live in the pure [`decision`] module; this file only does
//! the API calls and the timing.
//!
//! # Safety
//!
//! * Every write carries the `resourceVersion` that was read (or is a
//!   create), so two candidates can never both succeed in taking the lease.
//! * Standbys measure a lease's freshness from the moment *they* first saw
//!   the record (see [`decision`]), so clock skew between nodes cannot make a
//!   standby take over early.
//! * The leader counts its own deadline from the moment it *sent* its last
//!   successful write, and gives up after `renew_deadline`, which is shorter
//!   than `lease_duration`; so the old leader stops believing it leads before
//!   any standby may take over.

pub mod decision;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use decision::{LeaseAction, LeaseState, decide};
use decision::{Observer, claimed_spec, released_spec, renewed_spec};

/// Field manager recorded on our Lease writes.
pub const FIELD_MANAGER: &str = "ferrolb-controller-leader";

/// Errors of leader election.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The timings are inconsistent (see [`LeaseTimings::validate`]).
    #[error("invalid leader election settings: {0}")]
    InvalidConfig(String),
    /// The API server answered with an error, or could not be reached.
    #[error("API call on Lease {namespace}/{name} failed: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    /// A write lost an optimistic-concurrency race.
    #[error("Lease {namespace}/{name} was changed concurrently")]
    Conflict { namespace: String, name: String },
    /// A Lease came back without `metadata.resourceVersion`; we refuse to
    /// write it back unconditionally.
    #[error("Lease {namespace}/{name} has no resourceVersion; refusing an unconditional write")]
    MissingResourceVersion { namespace: String, name: String },
    /// The API server did not answer in time.
    #[error("Lease {namespace}/{name}: API server did not answer within {after:?}")]
    Timeout {
        namespace: String,
        name: String,
        after: Duration,
    },
}

impl LeaderError {
    /// Errors that retrying will not fix: bad settings, missing RBAC,
    /// rejected objects. `acquire` returns these instead of retrying.
    pub fn is_permanent(&self) -> bool {
        match self {
            LeaderError::InvalidConfig(_) => true,
            LeaderError::Api {
                source: kube::Error::Api(status),
                ..
            } => status.is_forbidden() || status.code == 401 || status.is_invalid(),
            _ => false,
        }
    }
}

/// Timing of leader election. Defaults: lease 15 s, renew every 5 s, give up
/// renewing after 10 s, retry every 2 s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a lease stays valid after its last renewal, written as
    /// `leaseDurationSeconds` (rounded up to whole seconds).
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How long after its last successful renewal the leader keeps trying
    /// before it declares the leadership lost. Must be shorter than
    /// `lease_duration` so the old leader stops before a standby starts.
    pub renew_deadline: Duration,
    /// How often a standby looks at the lease, and how soon a failed
    /// renewal is retried. Standby polls get up to +25 % jitter.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        Self::new(
            Duration::from_secs(15),
            Duration::from_secs(5),
            Duration::from_secs(2),
        )
    }
}

impl LeaseTimings {
    /// Timings with `renew_deadline` halfway between `renew_every` and
    /// `lease_duration` (10 s for the defaults).
    pub fn new(lease_duration: Duration, renew_every: Duration, retry_period: Duration) -> Self {
        let renew_deadline = renew_every + lease_duration.saturating_sub(renew_every) / 2;
        Self {
            lease_duration,
            renew_every,
            renew_deadline,
            retry_period,
        }
    }

    /// Checks `0 < renew_every < renew_deadline < lease_duration`,
    /// `lease_duration >= 1 s` and `retry_period > 0`.
    pub fn validate(&self) -> Result<(), LeaderError> {
        let bad = |msg: String| Err(LeaderError::InvalidConfig(msg));
        if self.lease_duration < Duration::from_secs(1) {
            return bad(format!(
                "lease duration {:?} is below one second",
                self.lease_duration
            ));
        }
        if self.renew_every.is_zero() || self.retry_period.is_zero() {
            return bad("renew and retry periods must be positive".into());
        }
        if self.renew_every >= self.renew_deadline {
            return bad(format!(
                "renew period {:?} must be shorter than the renew deadline {:?}",
                self.renew_every, self.renew_deadline
            ));
        }
        if self.renew_deadline >= self.lease_duration {
            return bad(format!(
                "renew deadline {:?} must be shorter than the lease duration {:?}",
                self.renew_deadline, self.lease_duration
            ));
        }
        Ok(())
    }
}

/// A candidate for one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    identity: String,
    timings: LeaseTimings,
}

impl fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderElector")
            .field("namespace", &self.namespace)
            .field("lease_name", &self.lease_name)
            .field("identity", &self.identity)
            .field("timings", &self.timings)
            .finish()
    }
}

impl LeaderElector {
    /// A candidate `identity` for the Lease `namespace/lease_name`, with the
    /// default timings. The identity must be unique among candidates (the
    /// pod name is the usual choice).
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        lease_name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        let namespace = namespace.into();
        Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            lease_name: lease_name.into(),
            identity: identity.into(),
            timings: LeaseTimings::default(),
        }
    }

    /// Replaces the timings. They are validated by [`Self::acquire`].
    pub fn with_timings(mut self, timings: LeaseTimings) -> Self {
        self.timings = timings;
        self
    }

    /// Our identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The Lease's name.
    pub fn lease_name(&self) -> &str {
        &self.lease_name
    }

    /// The Lease's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The timings in use.
    pub fn timings(&self) -> &LeaseTimings {
        &self.timings
    }

    /// Waits until this candidate holds the lease, then returns the
    /// [`Leadership`], which keeps renewing it in the background.
    ///
    /// Transient API errors are logged and retried; permanent ones (see
    /// [`LeaderError::is_permanent`]) are returned. Dropping the future is
    /// safe: a lease won by a dropped call is simply never renewed and
    /// expires.
    pub async fn acquire(&self) -> Result<Leadership, LeaderError> {
        self.timings.validate()?;
        let mut observer = Observer::default();
        let mut last_holder: Option<String> = None;
        info!(
            identity = %self.identity,
            lease = %self.lease_name,
            namespace = %self.namespace,
            "waiting for leadership"
        );
        loop {
            match self.try_acquire(&mut observer).await {
                Ok(Attempt::Won { lease, sent_at }) => {
                    return Ok(self.start_leadership(*lease, sent_at));
                }
                Ok(Attempt::Wait { holder, until }) => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        info!(
                            identity = %self.identity,
                            lease = %self.lease_name,
                            %holder,
                            "lease is held by another candidate; standing by"
                        );
                        last_holder = Some(holder);
                    }
                    let to_expiry = Duration::try_from(until.duration_since(Timestamp::now()))
                        .unwrap_or(Duration::ZERO)
                        + Duration::from_millis(10);
                    tokio::time::sleep(jittered(self.timings.retry_period).min(to_expiry)).await;
                }
                Ok(Attempt::Lost) => {
                    debug!(
                        identity = %self.identity,
                        lease = %self.lease_name,
                        "lost a race for the lease; looking again"
                    );
                    tokio::time::sleep(jittered(Duration::from_millis(50))).await;
                }
                Err(err) if err.is_permanent() => return Err(err),
                Err(err) => {
                    warn!(
                        identity = %self.identity,
                        lease = %self.lease_name,
                        error = %err,
                        "leader election attempt failed; retrying"
                    );
                    tokio::time::sleep(jittered(self.timings.retry_period)).await;
                }
            }
        }
    }

    /// One look at the lease and, if `decide` says so, one write.
    async fn try_acquire(&self, observer: &mut Observer) -> Result<Attempt, LeaderError> {
        let call_timeout = self.timings.renew_deadline;
        let current = self
            .call(call_timeout, self.api.get_opt(&self.lease_name))
            .await?;
        let now = Timestamp::now();
        let state = current.as_ref().map(|lease| observer.observe(lease, now));
        let duration = self.timings.lease_duration;
        let sent_at = Instant::now();
        let write = match (
            decide(state.as_ref(), &self.identity, now, duration),
            current,
        ) {
            (LeaseAction::Wait { holder, until }, _) => {
                return Ok(Attempt::Wait { holder, until });
            }
            (LeaseAction::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.lease_name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(claimed_spec(None, &self.identity, now, duration, 0)),
                };
                info!(
                    identity = %self.identity,
                    lease = %self.lease_name,
                    "no lease exists; creating it"
                );
                self.call(call_timeout, self.api.create(&self.post_params(), &lease))
                    .await
            }
            (
                LeaseAction::Acquire {
                    previous_holder,
                    transitions,
                },
                Some(mut lease),
            ) => {
                info!(
                    identity = %self.identity,
                    lease = %self.lease_name,
                    previous_holder = previous_holder.as_deref().unwrap_or(""),
                    transitions,
                    "lease is free; taking it over"
                );
                lease.spec = Some(claimed_spec(
                    lease.spec.as_ref(),
                    &self.identity,
                    now,
                    duration,
                    transitions,
                ));
                self.replace(call_timeout, &lease).await
            }
            (LeaseAction::Renew, Some(mut lease)) => {
                info!(
                    identity = %self.identity,
                    lease = %self.lease_name,
                    "lease already names us; renewing it"
                );
                lease.spec = Some(renewed_spec(
                    lease.spec.as_ref(),
                    &self.identity,
                    now,
                    duration,
                ));
                self.replace(call_timeout, &lease).await
            }
            // decide() only answers Acquire or Renew for a lease that exists.
            (LeaseAction::Acquire { .. } | LeaseAction::Renew, None) => return Ok(Attempt::Lost),
        };
        match write {
            Ok(lease) => Ok(Attempt::Won {
                lease: Box::new(lease),
                sent_at,
            }),
            Err(LeaderError::Conflict { .. }) => Ok(Attempt::Lost),
            Err(err) => Err(err),
        }
    }

    fn start_leadership(&self, lease: Lease, sent_at: Instant) -> Leadership {
        info!(
            identity = %self.identity,
            lease = %self.lease_name,
            transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0),
            "became leader"
        );
        let (status_tx, status_rx) = watch::channel(Status::Held);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(renew_loop(self.clone(), lease, sent_at, status_tx, stop_rx));
        Leadership {
            elector: self.clone(),
            status: status_rx,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        }
    }

    /// A conditional replace: refuses to write without a resourceVersion.
    async fn replace(&self, limit: Duration, lease: &Lease) -> Result<Lease, LeaderError> {
        if lease.metadata.resource_version.is_none() {
            return Err(LeaderError::MissingResourceVersion {
                namespace: self.namespace.clone(),
                name: self.lease_name.clone(),
            });
        }
        self.call(
            limit,
            self.api
                .replace(&self.lease_name, &self.post_params(), lease),
        )
        .await
    }

    /// Runs one API call with a time limit, mapping errors.
    async fn call<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaderError> {
        match tokio::time::timeout(limit, fut).await {
            Err(_) => Err(LeaderError::Timeout {
                namespace: self.namespace.clone(),
                name: self.lease_name.clone(),
                after: limit,
            }),
            Ok(Err(kube::Error::Api(status)))
                if status.is_conflict() || status.is_already_exists() =>
            {
                Err(LeaderError::Conflict {
                    namespace: self.namespace.clone(),
                    name: self.lease_name.clone(),
                })
            }
            Ok(Err(source)) => Err(LeaderError::Api {
                namespace: self.namespace.clone(),
                name: self.lease_name.clone(),
                source,
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

enum Attempt {
    Won { lease: Box<Lease>, sent_at: Instant },
    Wait { holder: String, until: Timestamp },
    Lost,
}

/// Why a [`Leadership`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Another candidate holds the lease, or the holder was cleared by
    /// someone else (`holder` is then `None`).
    Taken { holder: Option<String> },
    /// The Lease object was deleted.
    Deleted,
    /// No renewal succeeded within `renew_deadline`.
    RenewDeadline { last_error: String },
    /// [`Leadership::release`] was called.
    Released,
    /// The renewal task ended without a reason (the `Leadership` was dropped,
    /// or the task panicked).
    Stopped,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LostReason::Taken { holder: Some(h) } => write!(f, "lease taken by {h}"),
            LostReason::Taken { holder: None } => write!(f, "lease holder was cleared"),
            LostReason::Deleted => write!(f, "lease was deleted"),
            LostReason::RenewDeadline { last_error } => {
                write!(f, "could not renew the lease in time: {last_error}")
            }
            LostReason::Released => write!(f, "lease was released"),
            LostReason::Stopped => write!(f, "lease renewal stopped"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Held,
    Lost(LostReason),
}

/// Proof of holding the lease. A background task renews it every
/// `renew_every`; watch [`Self::lost`] and stop acting when it resolves.
///
/// Dropping a `Leadership` stops the renewals without releasing: the lease
/// then expires after `lease_duration`. Prefer [`Self::release`].
#[derive(Debug)]
pub struct Leadership {
    elector: LeaderElector,
    status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Option<Lease>>>,
}

impl Leadership {
    /// Resolves when the leadership is lost: another holder is seen, the
    /// lease is deleted, no renewal succeeded within `renew_deadline`, or
    /// the renewal task stopped. The future does not borrow `self`, so it
    /// can be spawned or kept across a `release`.
    pub fn lost(&self) -> impl Future<Output = LostReason> + Send + 'static {
        let mut status = self.status.clone();
        async move {
            match status.wait_for(|s| matches!(s, Status::Lost(_))).await {
                Ok(s) => match &*s {
                    Status::Lost(reason) => reason.clone(),
                    Status::Held => LostReason::Stopped,
                },
                Err(_) => LostReason::Stopped,
            }
        }
    }

    /// Whether the lease is still held, as far as the renewal task knows.
    pub fn is_held(&self) -> bool {
        matches!(*self.status.borrow(), Status::Held) && self.status.has_changed().is_ok()
    }

    /// Our identity.
    pub fn identity(&self) -> &str {
        &self.elector.identity
    }

    /// Stops renewing and clears `holderIdentity` so a standby takes over at
    /// once. Stop acting as leader *before* calling this. Does nothing if
    /// the lease was already lost. The write is conditional, so a lease that
    /// someone else took meanwhile is left alone.
    pub async fn release(mut self) -> Result<(), LeaderError> {
        let e = self.elector.clone();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let last = match self.task.take() {
            Some(task) => match task.await {
                Ok(Some(lease)) => lease,
                // Already lost: nothing to release.
                Ok(None) => return Ok(()),
                Err(join) => {
                    warn!(
                        identity = %e.identity,
                        lease = %e.lease_name,
                        error = %join,
                        "lease renewal task failed; releasing from a fresh read"
                    );
                    match e
                        .call(e.timings.renew_deadline, e.api.get_opt(&e.lease_name))
                        .await?
                    {
                        Some(lease) => lease,
                        None => return Ok(()),
                    }
                }
            },
            None => return Ok(()),
        };
        let limit = e.timings.renew_deadline;
        match tokio::time::timeout(limit, release_lease(&e, last)).await {
            Ok(result) => result,
            Err(_) => Err(LeaderError::Timeout {
                namespace: e.namespace.clone(),
                name: e.lease_name.clone(),
                after: limit,
            }),
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Clears the holder if it is still us. Retries on conflicts.
async fn release_lease(e: &LeaderElector, mut lease: Lease) -> Result<(), LeaderError> {
    loop {
        let state = LeaseState::from_lease(&lease);
        if state.holder() != Some(e.identity.as_str()) {
            debug!(
                identity = %e.identity,
                lease = %e.lease_name,
                "lease no longer names us; nothing to release"
            );
            return Ok(());
        }
        lease.spec = Some(released_spec(lease.spec.as_ref(), Timestamp::now()));
        match e.replace(e.timings.renew_deadline, &lease).await {
            Ok(_) => {
                info!(identity = %e.identity, lease = %e.lease_name, "released the lease");
                return Ok(());
            }
            Err(LeaderError::Conflict { .. }) => {
                match e
                    .call(e.timings.renew_deadline, e.api.get_opt(&e.lease_name))
                    .await?
                {
                    Some(fresh) => lease = fresh,
                    None => return Ok(()),
                }
            }
            Err(LeaderError::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.is_not_found() => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

enum RenewOutcome {
    Renewed(Box<Lease>),
    Lost(LostReason),
}

/// One renewal: a conditional write of our last lease; on conflict, a read
/// to see who holds it now.
async fn renew_once(
    e: &LeaderElector,
    lease: &Lease,
    limit: Duration,
) -> Result<RenewOutcome, LeaderError> {
    let mut lease = lease.clone();
    for _ in 0..2 {
        let now = Timestamp::now();
        lease.spec = Some(renewed_spec(
            lease.spec.as_ref(),
            &e.identity,
            now,
            e.timings.lease_duration,
        ));
        match e.replace(limit, &lease).await {
            Ok(renewed) => return Ok(RenewOutcome::Renewed(Box::new(renewed))),
            Err(LeaderError::Conflict { .. }) => {}
            Err(LeaderError::Api {
                source: kube::Error::Api(status),
                ..
            }) if status.is_not_found() => return Ok(RenewOutcome::Lost(LostReason::Deleted)),
            Err(err) => return Err(err),
        }
        // Someone changed the object: maybe our own earlier write whose answer
        // was lost, maybe another holder. Look.
        let Some(fresh) = e.call(limit, e.api.get_opt(&e.lease_name)).await? else {
            return Ok(RenewOutcome::Lost(LostReason::Deleted));
        };
        let state = LeaseState::from_lease(&fresh);
        if state.holder() != Some(e.identity.as_str()) {
            return Ok(RenewOutcome::Lost(LostReason::Taken {
                holder: state.holder().map(str::to_owned),
            }));
        }
        lease = fresh;
    }
    Err(LeaderError::Conflict {
        namespace: e.namespace.clone(),
        name: e.lease_name.clone(),
    })
}

/// Renews until stopped (returns the last lease written, for release) or
/// lost (returns `None` after publishing the reason).
async fn renew_loop(
    e: LeaderElector,
    mut lease: Lease,
    mut last_ok: Instant,
    status: watch::Sender<Status>,
    mut stop: oneshot::Receiver<()>,
) -> Option<Lease> {
    let lost = |reason: LostReason| {
        warn!(identity = %e.identity, lease = %e.lease_name, %reason, "lost leadership");
        let _ = status.send(Status::Lost(reason));
        None
    };
    loop {
        tokio::select! {
            _ = &mut stop => {
                let _ = status.send(Status::Lost(LostReason::Released));
                return Some(lease);
            }
            _ = tokio::time::sleep_until(last_ok + e.timings.renew_every) => {}
        }
        let deadline = last_ok + e.timings.renew_deadline;
        let mut last_error = String::from("no attempt made");
        loop {
            let started = Instant::now();
            if started >= deadline {
                return lost(LostReason::RenewDeadline { last_error });
            }
            let attempt = tokio::select! {
                _ = &mut stop => {
                    let _ = status.send(Status::Lost(LostReason::Released));
                    return Some(lease);
                }
                r = renew_once(&e, &lease, deadline - started) => r,
            };
            match attempt {
                Ok(RenewOutcome::Renewed(renewed)) => {
                    debug!(identity = %e.identity, lease = %e.lease_name, "renewed the lease");
                    lease = *renewed;
                    last_ok = started;
                    break;
                }
                Ok(RenewOutcome::Lost(reason)) => return lost(reason),
                Err(err) => {
                    warn!(
                        identity = %e.identity,
                        lease = %e.lease_name,
                        error = %err,
                        "lease renewal failed; retrying"
                    );
                    last_error = err.to_string();
                    let pause = e
                        .timings
                        .retry_period
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::select! {
                        _ = &mut stop => {
                            let _ = status.send(Status::Lost(LostReason::Released));
                            return Some(lease);
                        }
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

/// `base` plus a random 0–25 %.
fn jittered(base: Duration) -> Duration {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = RandomState::new().hash_one(n);
    // r / 2^64 in [0, 1), scaled to [0, 0.25).
    let frac = (r >> 11) as f64 / (1u64 << 53) as f64 * 0.25;
    base.mul_f64(1.0 + frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timings_are_15_5_10_2_and_valid() {
        let t = LeaseTimings::default();
        assert_eq!(t.lease_duration, Duration::from_secs(15));
        assert_eq!(t.renew_every, Duration::from_secs(5));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_period, Duration::from_secs(2));
        assert!(t.validate().is_ok());
    }

    #[test]
    fn inconsistent_timings_are_rejected() {
        let ok = LeaseTimings::default();
        let cases = [
            LeaseTimings {
                lease_duration: Duration::from_millis(500),
                renew_every: Duration::from_millis(100),
                renew_deadline: Duration::from_millis(200),
                ..ok.clone()
            },
            LeaseTimings {
                renew_every: Duration::ZERO,
                ..ok.clone()
            },
            LeaseTimings {
                retry_period: Duration::ZERO,
                ..ok.clone()
            },
            LeaseTimings {
                renew_every: Duration::from_secs(10),
                ..ok.clone()
            },
            LeaseTimings {
                renew_deadline: Duration::from_secs(15),
                ..ok.clone()
            },
        ];
        for t in cases {
            assert!(
                matches!(t.validate(), Err(LeaderError::InvalidConfig(_))),
                "{t:?} should be invalid"
            );
        }
        assert!(
            LeaseTimings::new(
                Duration::from_secs(4),
                Duration::from_secs(1),
                Duration::from_secs(1)
            )
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let base = Duration::from_secs(2);
        for _ in 0..1000 {
            let j = jittered(base);
            assert!(j >= base && j < base.mul_f64(1.25), "{j:?}");
        }
    }

    #[test]
    fn permanent_errors() {
        assert!(LeaderError::InvalidConfig("x".into()).is_permanent());
        assert!(
            !LeaderError::Timeout {
                namespace: "n".into(),
                name: "l".into(),
                after: Duration::from_secs(1)
            }
            .is_permanent()
        );
        assert!(
            !LeaderError::Conflict {
                namespace: "n".into(),
                name: "l".into()
            }
            .is_permanent()
        );
    }

    #[test]
    fn lost_reasons_read_well() {
        assert_eq!(
            LostReason::Taken {
                holder: Some("b".into())
            }
            .to_string(),
            "lease taken by b"
        );
        assert_eq!(LostReason::Deleted.to_string(), "lease was deleted");
    }
}
