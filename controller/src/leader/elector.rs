//! The candidate's side of the Lease: reads it, takes it when
//! [`decide`](super::decide) says so, and makes every API call of the
//! election with a time limit and a `resourceVersion`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{Instrument, Span, debug, info, warn};

use super::decision::{Observer, claimed_spec, released_spec, renewed_spec};
use super::leadership::{Leadership, Status};
use super::renewal::renew_loop;
use super::timings::jittered;
use super::{FIELD_MANAGER, Fence, LeaderError, LeaseAction, LeaseState, LeaseTimings, decide};

/// A candidate for one Lease.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    pub(super) identity: String,
    pub(super) timings: LeaseTimings,
    /// Carries the lease, identity and namespace for every log line of the
    /// election, including those of the renewal task.
    pub(super) span: Span,
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

enum Attempt {
    Won { lease: Box<Lease>, sent_at: Instant },
    Wait { holder: String, until: Timestamp },
    Lost,
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
        let lease_name = lease_name.into();
        let identity = identity.into();
        // ERROR level so that a filter never disables the span while it lets
        // one of its warnings through: the warning would lose these fields.
        let span = tracing::error_span!(
            "leader_election",
            lease = %lease_name,
            identity = %identity,
            namespace = %namespace,
        );
        Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            lease_name,
            identity,
            timings: LeaseTimings::default(),
            span,
        }
    }

    /// Replaces the timings. They are validated by [`Self::acquire`].
    pub fn with_timings(mut self, timings: LeaseTimings) -> Self {
        self.timings = timings;
        self
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
        self.acquire_validated().instrument(self.span.clone()).await
    }

    async fn acquire_validated(&self) -> Result<Leadership, LeaderError> {
        let mut observer = Observer::default();
        let mut last_holder: Option<String> = None;
        info!("waiting for leadership");
        loop {
            match self.try_acquire(&mut observer).await {
                Ok(Attempt::Won { lease, sent_at }) => {
                    return Ok(self.start_leadership(*lease, sent_at));
                }
                Ok(Attempt::Wait { holder, until }) => {
                    if last_holder.as_deref() != Some(holder.as_str()) {
                        info!(%holder, "lease is held by another candidate; standing by");
                        last_holder = Some(holder);
                    }
                    let to_expiry = Duration::try_from(until.duration_since(Timestamp::now()))
                        .unwrap_or(Duration::ZERO)
                        + Duration::from_millis(10);
                    tokio::time::sleep(jittered(self.timings.retry_period).min(to_expiry)).await;
                }
                Ok(Attempt::Lost) => {
                    debug!("lost a race for the lease; looking again");
                    tokio::time::sleep(jittered(Duration::from_millis(50))).await;
                }
                Err(err) if err.is_permanent() => return Err(err),
                Err(err) => {
                    warn!(error = %err, "leader election attempt failed; retrying");
                    tokio::time::sleep(jittered(self.timings.retry_period)).await;
                }
            }
        }
    }

    /// One look at the lease and, if `decide` says so, one write.
    async fn try_acquire(&self, observer: &mut Observer) -> Result<Attempt, LeaderError> {
        let call_timeout = self.timings.renew_deadline;
        let current = self.get(call_timeout).await?;
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
                info!("no lease exists; creating it");
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
                    previous_holder = previous_holder.as_deref().unwrap_or(""),
                    transitions, "lease is free; taking it over"
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
                info!("lease already names us; renewing it");
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
            transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0),
            "became leader"
        );
        let (status_tx, status_rx) = watch::channel(Status::Held);
        let (stop_tx, stop_rx) = oneshot::channel();
        let fence = Fence::until(sent_at + self.timings.renew_deadline);
        let renewal = renew_loop(
            self.clone(),
            lease,
            sent_at,
            status_tx,
            stop_rx,
            fence.clone(),
        );
        let task = tokio::spawn(renewal.instrument(self.span.clone()));
        Leadership::new(self.clone(), status_rx, stop_tx, task, fence)
    }

    /// Clears the holder if it is still us, retrying on conflicts, all
    /// within `renew_deadline`.
    pub(super) async fn release(&self, lease: Lease) -> Result<(), LeaderError> {
        self.within(self.timings.renew_deadline, self.clear_holder(lease))
            .await
    }

    async fn clear_holder(&self, mut lease: Lease) -> Result<(), LeaderError> {
        let limit = self.timings.renew_deadline;
        loop {
            if LeaseState::from_lease(&lease).holder() != Some(self.identity.as_str()) {
                debug!("lease no longer names us; nothing to release");
                return Ok(());
            }
            lease.spec = Some(released_spec(lease.spec.as_ref(), Timestamp::now()));
            match self.replace(limit, &lease).await {
                Ok(_) => {
                    info!("released the lease");
                    return Ok(());
                }
                Err(LeaderError::Conflict { .. }) => match self.get(limit).await? {
                    Some(fresh) => lease = fresh,
                    None => return Ok(()),
                },
                Err(err) if err.is_not_found() => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    }

    fn post_params(&self) -> PostParams {
        PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        }
    }

    /// Reads the lease; `None` when it does not exist.
    pub(super) async fn get(&self, limit: Duration) -> Result<Option<Lease>, LeaderError> {
        self.call(limit, self.api.get_opt(&self.lease_name)).await
    }

    /// A conditional replace: refuses to write without a resourceVersion.
    pub(super) async fn replace(
        &self,
        limit: Duration,
        lease: &Lease,
    ) -> Result<Lease, LeaderError> {
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
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaderError> {
        let mapped = async { request.await.map_err(|source| self.api_error(source)) };
        self.within(limit, mapped).await
    }

    /// Runs `work` with a time limit.
    async fn within<T>(
        &self,
        limit: Duration,
        work: impl Future<Output = Result<T, LeaderError>>,
    ) -> Result<T, LeaderError> {
        tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(LeaderError::Timeout {
                namespace: self.namespace.clone(),
                name: self.lease_name.clone(),
                after: limit,
            })
        })
    }

    fn api_error(&self, source: kube::Error) -> LeaderError {
        match source {
            kube::Error::Api(status) if status.is_conflict() || status.is_already_exists() => {
                self.conflict()
            }
            source => LeaderError::Api {
                namespace: self.namespace.clone(),
                name: self.lease_name.clone(),
                source,
            },
        }
    }

    pub(super) fn conflict(&self) -> LeaderError {
        LeaderError::Conflict {
            namespace: self.namespace.clone(),
            name: self.lease_name.clone(),
        }
    }
}
