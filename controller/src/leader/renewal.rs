//! The leader's background task: renews the lease every `renew_every` until
//! it is told to stop or the leadership is lost.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::decision::renewed_spec;
use super::elector::LeaderElector;
use super::leadership::{LostReason, Status};
use super::{Fence, LeaderError, LeaseState};

/// Renews until stopped (returns the last lease written, for release) or
/// lost (returns `None` after publishing the reason).
pub(super) async fn renew_loop(
    elector: LeaderElector,
    mut lease: Lease,
    last_ok: Instant,
    status: watch::Sender<Status>,
    stop: oneshot::Receiver<()>,
    fence: Fence,
) -> Option<Lease> {
    // A stop wins at any point: while waiting for the next renewal, during a
    // renewal (whose write is then abandoned), or while pausing to retry.
    let lost = tokio::select! {
        _ = stop => None,
        reason = renew_until_lost(&elector, &mut lease, last_ok, &fence) => Some(reason),
    };
    match lost {
        None => {
            let _ = status.send(Status::Lost(LostReason::Released));
            Some(lease)
        }
        Some(reason) => {
            warn!(%reason, "lost leadership");
            let _ = status.send(Status::Lost(reason));
            None
        }
    }
}

/// Keeps `lease` renewed, updating it after each successful write (so it is
/// the latest one we wrote whenever this future is dropped), and returns why
/// the leadership ended.
async fn renew_until_lost(
    elector: &LeaderElector,
    lease: &mut Lease,
    mut last_ok: Instant,
    fence: &Fence,
) -> LostReason {
    let timings = &elector.timings;
    loop {
        tokio::time::sleep_until(last_ok + timings.renew_every).await;
        let deadline = last_ok + timings.renew_deadline;
        let mut last_error = String::from("no attempt made");
        loop {
            let started = Instant::now();
            if started >= deadline {
                return LostReason::RenewDeadline { last_error };
            }
            match renew_once(elector, lease, deadline - started).await {
                Ok(RenewOutcome::Renewed(renewed)) => {
                    debug!("renewed the lease");
                    *lease = *renewed;
                    last_ok = started;
                    fence.extend(started + timings.renew_deadline);
                    break;
                }
                Ok(RenewOutcome::Lost(reason)) => return reason,
                Err(err) => {
                    warn!(error = %err, "lease renewal failed; retrying");
                    last_error = err.to_string();
                    let pause = timings
                        .retry_period
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
            }
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
    elector: &LeaderElector,
    lease: &Lease,
    limit: Duration,
) -> Result<RenewOutcome, LeaderError> {
    let mut lease = lease.clone();
    for _ in 0..2 {
        lease.spec = Some(renewed_spec(
            lease.spec.as_ref(),
            &elector.identity,
            Timestamp::now(),
            elector.timings.lease_duration,
        ));
        match elector.replace(limit, &lease).await {
            Ok(renewed) => return Ok(RenewOutcome::Renewed(Box::new(renewed))),
            Err(LeaderError::Conflict { .. }) => {}
            Err(err) if err.is_not_found() => return Ok(RenewOutcome::Lost(LostReason::Deleted)),
            Err(err) => return Err(err),
        }
        // Someone changed the object: maybe our own earlier write whose answer
        // was lost, maybe another holder. Look.
        let Some(fresh) = elector.get(limit).await? else {
            return Ok(RenewOutcome::Lost(LostReason::Deleted));
        };
        let state = LeaseState::from_lease(&fresh);
        if state.holder() != Some(elector.identity.as_str()) {
            return Ok(RenewOutcome::Lost(LostReason::Taken {
                holder: state.holder().map(str::to_owned),
            }));
        }
        lease = fresh;
    }
    Err(elector.conflict())
}

#[cfg(test)]
#[path = "renewal_tests.rs"]
mod tests;
