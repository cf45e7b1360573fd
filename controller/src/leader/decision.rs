//! The pure core of leader election: what a candidate should do with the Lease
//! it observed. No I/O, no clocks: the shell passes `now` in.
//!
//! # Freshness and clock skew
//!
//! A lease is fresh until `base + duration`, where `duration` is the holder's
//! declared `leaseDurationSeconds` (or ours, if the lease does not declare a
//! valid one) and `base` is:
//!
//! * [`LeaseState::observed_at`] when set: the *local* time at which this
//!   process first saw this exact record. This is what client-go does. The
//!   holder's write happened before we saw it, so the holder's own deadline
//!   (measured on its clock from before its write) always ends before ours,
//!   whatever the skew between the two clocks. The price is that a candidate
//!   which meets a lease left behind by a dead holder waits one full lease
//!   duration before taking it, even if `renewTime` is old.
//! * otherwise `renewTime`, then `acquireTime` (trusting the holder's clock).
//!
//! A lease with a holder but no time at all is treated as expired.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

/// What a candidate knows about a Lease object that exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseState {
    /// `spec.holderIdentity`. `None` and `Some("")` both mean "released".
    pub holder: Option<String>,
    /// `spec.acquireTime`.
    pub acquire_time: Option<Timestamp>,
    /// `spec.renewTime`.
    pub renew_time: Option<Timestamp>,
    /// `spec.leaseDurationSeconds`, if present and positive.
    pub lease_duration: Option<Duration>,
    /// `spec.leaseTransitions` (0 when absent).
    pub transitions: i32,
    /// Local time at which this process first saw this record unchanged.
    /// When set, freshness is measured from here (see the module docs).
    pub observed_at: Option<Timestamp>,
}

impl LeaseState {
    /// Reads the spec of a Lease. `observed_at` is left unset.
    pub fn from_spec(spec: Option<&LeaseSpec>) -> Self {
        let Some(spec) = spec else {
            return Self::default();
        };
        Self {
            holder: spec.holder_identity.clone(),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            lease_duration: spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            transitions: spec.lease_transitions.unwrap_or(0).max(0),
            observed_at: None,
        }
    }

    /// Reads a Lease object. `observed_at` is left unset.
    pub fn from_lease(lease: &Lease) -> Self {
        Self::from_spec(lease.spec.as_ref())
    }

    /// The same state, with freshness measured from the local time `at`.
    pub fn observed_at(mut self, at: Timestamp) -> Self {
        self.observed_at = Some(at);
        self
    }

    /// The holder, if there is a non-empty one.
    pub fn holder(&self) -> Option<&str> {
        self.holder.as_deref().filter(|h| !h.is_empty())
    }

    /// When the lease stops being fresh. `None` when the lease carries no time
    /// at all (it is then treated as expired). `default_duration` is used when
    /// the lease does not declare a positive `leaseDurationSeconds`.
    pub fn expires_at(&self, default_duration: Duration) -> Option<Timestamp> {
        let base = self.observed_at.or(self.renew_time).or(self.acquire_time)?;
        let duration = self.lease_duration.unwrap_or(default_duration);
        Some(base.checked_add(duration).unwrap_or(Timestamp::MAX))
    }
}

/// What a candidate should do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// There is no Lease object: create one naming me as holder.
    Create,
    /// The lease is free (released or expired): take it over with an
    /// optimistic write, setting `leaseTransitions` to `transitions`.
    Acquire {
        /// Who held it before (`None` if it was released).
        previous_holder: Option<String>,
        /// The new value of `leaseTransitions`.
        transitions: i32,
    },
    /// I hold it: refresh `renewTime`.
    Renew,
    /// Someone else holds a fresh lease: look again, at the latest at `until`.
    Wait {
        /// The current holder.
        holder: String,
        /// When the lease expires unless renewed.
        until: Timestamp,
    },
}

/// Decides what `me` should do, given the Lease as observed at `now`.
///
/// `lease_duration` is our configured duration, used for leases that do not
/// declare their own.
pub fn decide(
    observed: Option<&LeaseState>,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> LeaseAction {
    let Some(state) = observed else {
        return LeaseAction::Create;
    };
    let next_transitions = state.transitions.saturating_add(1);
    let Some(holder) = state.holder() else {
        return LeaseAction::Acquire {
            previous_holder: None,
            transitions: next_transitions,
        };
    };
    if holder == me {
        return LeaseAction::Renew;
    }
    match state.expires_at(lease_duration) {
        Some(until) if now < until => LeaseAction::Wait {
            holder: holder.to_owned(),
            until,
        },
        _ => LeaseAction::Acquire {
            previous_holder: Some(holder.to_owned()),
            transitions: next_transitions,
        },
    }
}

/// Tracks when this process first saw each version of the Lease, so that
/// freshness can be measured on the local clock (see the module docs).
#[derive(Clone, Debug, Default)]
pub struct Observer {
    last: Option<(RecordKey, Timestamp)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RecordKey {
    resource_version: Option<String>,
    holder: Option<String>,
    renew_time: Option<Timestamp>,
}

impl Observer {
    /// Records the Lease seen at `now` and returns its state with
    /// `observed_at` set to when this exact record was first seen.
    pub fn observe(&mut self, lease: &Lease, now: Timestamp) -> LeaseState {
        let state = LeaseState::from_lease(lease);
        let key = RecordKey {
            resource_version: lease.metadata.resource_version.clone(),
            holder: state.holder.clone(),
            renew_time: state.renew_time,
        };
        let first_seen = match &self.last {
            Some((last_key, at)) if *last_key == key => *at,
            _ => now,
        };
        self.last = Some((key, first_seen));
        state.observed_at(first_seen)
    }
}

/// `leaseDurationSeconds` for a duration: rounded up, at least 1.
pub fn duration_seconds(d: Duration) -> i32 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i32::try_from(secs).unwrap_or(i32::MAX).max(1)
}

/// The spec for `me` taking the lease at `now` (create or takeover). Fields
/// we do not manage (`strategy`, `preferredHolder`) are kept from `base`.
pub fn claimed_spec(
    base: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
    transitions: i32,
) -> LeaseSpec {
    let base = base.cloned().unwrap_or_default();
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(duration_seconds(lease_duration)),
        lease_transitions: Some(transitions),
        ..base
    }
}

/// The spec for `me` renewing a lease it already holds: only `renewTime` and
/// `leaseDurationSeconds` change. `acquireTime` is filled in if missing.
pub fn renewed_spec(
    base: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    lease_duration: Duration,
) -> LeaseSpec {
    let base = base.cloned().unwrap_or_default();
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        acquire_time: base.acquire_time.clone().or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(duration_seconds(lease_duration)),
        lease_transitions: Some(base.lease_transitions.unwrap_or(0).max(0)),
        ..base
    }
}

/// The spec of a lease given up at `now`: no holder, so any candidate takes
/// it over at once. Transitions are kept.
pub fn released_spec(base: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let base = base.cloned().unwrap_or_default();
    LeaseSpec {
        holder_identity: None,
        acquire_time: None,
        renew_time: Some(MicroTime(now)),
        ..base
    }
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
