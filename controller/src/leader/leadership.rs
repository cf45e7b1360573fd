//! The handle the rest of the controller holds while it leads: it says when
//! the leadership is lost, and gives the lease up on a clean stop.

use std::fmt;
use std::future::Future;

use k8s_openapi::api::coordination::v1::Lease;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, warn};

use super::elector::LeaderElector;
use super::{Fence, LeaderError};

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

/// What the renewal task publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Status {
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
    /// The renewal task; it returns the last lease it wrote when stopped,
    /// `None` when the leadership was lost.
    task: Option<JoinHandle<Option<Lease>>>,
    fence: Fence,
}

impl Leadership {
    pub(super) fn new(
        elector: LeaderElector,
        status: watch::Receiver<Status>,
        stop: oneshot::Sender<()>,
        task: JoinHandle<Option<Lease>>,
        fence: Fence,
    ) -> Self {
        Self {
            elector,
            status,
            stop: Some(stop),
            task: Some(task),
            fence,
        }
    }

    /// The guard every write waits on while this leadership lasts.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

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

    /// Stops renewing and clears `holderIdentity` so a standby takes over at
    /// once. Stop acting as leader *before* calling this. Does nothing if
    /// the lease was already lost. The write is conditional, so a lease that
    /// someone else took meanwhile is left alone.
    pub async fn release(mut self) -> Result<(), LeaderError> {
        let span = self.elector.span.clone();
        async move {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let Some(task) = self.task.take() else {
                return Ok(());
            };
            let elector = &self.elector;
            let last = match task.await {
                Ok(Some(lease)) => lease,
                // Already lost: nothing to release.
                Ok(None) => return Ok(()),
                Err(join) => {
                    warn!(error = %join, "lease renewal task failed; releasing from a fresh read");
                    match elector.get(elector.timings.renew_deadline).await? {
                        Some(lease) => lease,
                        None => return Ok(()),
                    }
                }
            };
            elector.release(last).await
        }
        .instrument(span)
        .await
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
