//! How often the lease is renewed and looked at, and how long it lasts.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::LeaderError;

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

/// `base` plus a random 0–25 %, so that standbys started together do not
/// poll the API server in lockstep.
pub(super) fn jittered(base: Duration) -> Duration {
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
}
