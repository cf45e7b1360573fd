//! The retry delay of the Kubernetes watches of both binaries.
//!
//! kube's `default_backoff()` doubles from 0.8 s up to 30 s: after an API
//! server outage of 20 s, a watch could wait another 13 s before it tries
//! again, and every change made meanwhile (a deleted Service that must be
//! withdrawn) waits with it. [`WatchBackoff`] doubles from 100 ms and stops
//! at [`WatchBackoff::CAP`] (1 s), with jitter so that the watches of many
//! nodes do not come back in step: a watch is re-established about a second
//! after the API server returns, however long it was away.
//!
//! The backoff restarts from its first step after every successful event
//! (kube's stream backoff calls [`Backoff::reset`]).

use std::time::Duration;

use kube::runtime::utils::Backoff;

/// Capped exponential backoff with jitter, for `WatchStreamExt::backoff`.
#[derive(Debug, Clone, Default)]
pub struct WatchBackoff {
    attempt: u32,
}

impl WatchBackoff {
    /// The first delay, before jitter.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// No delay is longer than this.
    pub const CAP: Duration = Duration::from_secs(1);

    /// The delay before retry number `attempt` (0 first), given `unit`, a
    /// random number in `[0, 1)`: `FIRST · 2^attempt`, capped at
    /// [`WatchBackoff::CAP`], of which the upper half is replaced by
    /// `unit` times that half ("equal jitter": never less than half the step).
    pub fn delay(attempt: u32, unit: f64) -> Duration {
        let step = Self::FIRST
            .saturating_mul(1u32 << attempt.min(16))
            .min(Self::CAP);
        let half = step / 2;
        // NaN falls to 0.
        let unit = if unit > 1.0 {
            1.0
        } else if unit >= 0.0 {
            unit
        } else {
            0.0
        };
        half + half.mul_f64(unit)
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = Self::delay(self.attempt, rand::random::<f64>());
        self.attempt = self.attempt.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_first_step_up_to_the_cap() {
        let top: Vec<u64> = (0..8)
            .map(|n| WatchBackoff::delay(n, 1.0).as_millis() as u64)
            .collect();
        assert_eq!(top, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        assert_eq!(WatchBackoff::delay(0, 0.0), Duration::from_millis(50));
        assert_eq!(
            WatchBackoff::delay(u32::MAX, 0.0),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn a_long_outage_never_waits_more_than_the_cap() {
        let mut backoff = WatchBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(200).collect();
        assert!(delays.iter().all(|d| *d <= WatchBackoff::CAP));
        assert!(delays[20..].iter().all(|d| *d >= WatchBackoff::CAP / 2));
        backoff.reset();
        assert!(backoff.next().is_some_and(|d| d <= WatchBackoff::FIRST));
    }

    #[test]
    fn out_of_range_jitter_is_clamped() {
        assert_eq!(WatchBackoff::delay(9, 7.0), WatchBackoff::CAP);
        assert_eq!(WatchBackoff::delay(9, -1.0), WatchBackoff::CAP / 2);
        assert_eq!(WatchBackoff::delay(9, f64::NAN), WatchBackoff::CAP / 2);
    }
}
