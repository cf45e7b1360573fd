//! Lease-based leader election (`coordination.k8s.io/v1` Lease).
//!
//! Two controller replicas may run: one holds the Lease and acts, the other
//! waits in [`LeaderElector::acquire`] and takes over when the leader stops
//! renewing or gives the lease up with [`Leadership::release`].
//!
//! * [`decision`]: what to do with the Lease as observed; pure.
//! * `timings`: how long the lease lasts and how often it is renewed
//!   ([`LeaseTimings`]).
//! * `elector`: a candidate's API calls, up to winning the lease
//!   ([`LeaderElector`]), and giving it up.
//! * `renewal`: the leader's background task that keeps the lease.
//! * `leadership`: the handle the leader holds ([`Leadership`]), told when
//!   the lease is lost.
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
mod elector;
mod fence;
mod leadership;
mod renewal;
mod timings;

use std::time::Duration;

pub use decision::{LeaseAction, LeaseState, decide};
pub use elector::LeaderElector;
pub use fence::Fence;
pub use leadership::{Leadership, LostReason};
pub use timings::LeaseTimings;

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

    /// The Lease (or its namespace) is gone.
    fn is_not_found(&self) -> bool {
        matches!(
            self,
            LeaderError::Api {
                source: kube::Error::Api(status),
                ..
            } if status.is_not_found()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
