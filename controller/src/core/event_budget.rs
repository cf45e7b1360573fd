//! How many Events the controller may send, and which it folds: a token
//! bucket for the rate, and a backlog bound past which routine (Normal)
//! Events are counted instead of sent. Pure: the shell passes the time.
//!
//! Why: every Event is a write the apiserver pays for like a status write.
//! After a cold start of 5,000 Services, one `IPAllocated` Event each went
//! out in a burst once the statuses were written, and the Services created
//! during it waited behind them (create round trip p50 19 to 72 ms). So
//! Events go out at a bounded rate, always behind the status writes, and
//! when more routine Events wait than a person would read, the rest are
//! folded into a count: each such Service still shows its IP (status), its
//! pool (the `ferrolb.io/ip-allocated-from-pool` annotation) and when
//! (its `ferrolb.io/IPAllocated` condition), so `kubectl describe svc`
//! still tells its story. Warnings are never folded.

use std::time::Duration;

/// A token bucket: `per_second` tokens a second, holding at most `burst`.
/// Zero per second means no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    per_second: u32,
    burst: u32,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time zero.
    pub fn new(per_second: u32, burst: u32) -> TokenBucket {
        let burst = burst.max(1);
        TokenBucket {
            per_second,
            burst,
            tokens: f64::from(burst),
            last: Duration::ZERO,
        }
    }

    /// Whether the bucket limits anything.
    pub fn limited(&self) -> bool {
        self.per_second > 0
    }

    /// Takes a token at `now` (time since any fixed start, never going
    /// back): `None` when one was taken, else how long to wait before
    /// asking again.
    pub fn take(&mut self, now: Duration) -> Option<Duration> {
        if !self.limited() {
            return None;
        }
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        self.last = self.last.max(now);
        let rate = f64::from(self.per_second);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.burst));
        // A hair under one counts: a wait computed below lands there after
        // rounding to nanoseconds.
        if self.tokens >= 1.0 - 1e-6 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return None;
        }
        Some(Duration::from_secs_f64((1.0 - self.tokens) / rate))
    }
}

/// What to do with an Event that is about to be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Queue it to be sent.
    Send,
    /// Count it instead: routine, and the backlog is already long.
    Fold,
}

/// Routine Events waiting, at most, before the next are folded.
pub const DEFAULT_BACKLOG: usize = 1_000;

/// Whether an Event goes out, with `backlog` Events already waiting: a
/// Warning always does, a Normal one while fewer than `limit` wait. An
/// unlimited rate folds nothing (`limited` false).
pub fn admit(warning: bool, backlog: usize, limit: usize, limited: bool) -> Admission {
    if warning || !limited || backlog < limit {
        Admission::Send
    } else {
        Admission::Fold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_gives_its_burst_then_waits() {
        let mut bucket = TokenBucket::new(10, 3);
        for _ in 0..3 {
            assert_eq!(bucket.take(ms(0)), None);
        }
        let wait = bucket.take(ms(0)).expect("empty after the burst");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // Half a token later, still waiting, for the other half.
        let wait = bucket.take(ms(50)).expect("half a token");
        assert!((wait.as_secs_f64() - 0.05).abs() < 1e-9, "{wait:?}");
        assert_eq!(bucket.take(ms(100)), None);
    }

    #[test]
    fn refill_stops_at_the_burst() {
        let mut bucket = TokenBucket::new(10, 2);
        assert_eq!(bucket.take(ms(0)), None);
        assert_eq!(bucket.take(ms(0)), None);
        // A long quiet spell refills two tokens, not a hundred.
        assert_eq!(bucket.take(ms(10_000)), None);
        assert_eq!(bucket.take(ms(10_000)), None);
        assert!(bucket.take(ms(10_000)).is_some());
    }

    #[test]
    fn zero_per_second_never_limits() {
        let mut bucket = TokenBucket::new(0, 1);
        assert!(!bucket.limited());
        for _ in 0..10_000 {
            assert_eq!(bucket.take(ms(0)), None);
        }
    }

    #[test]
    fn time_going_back_gives_no_tokens() {
        let mut bucket = TokenBucket::new(10, 1);
        assert_eq!(bucket.take(ms(1_000)), None);
        assert!(bucket.take(ms(500)).is_some());
        assert!(bucket.take(ms(1_000)).is_some());
        assert_eq!(bucket.take(ms(1_100)), None);
    }

    #[test]
    fn warnings_are_never_folded() {
        assert_eq!(admit(true, 1_000_000, 10, true), Admission::Send);
        assert_eq!(admit(false, 9, 10, true), Admission::Send);
        assert_eq!(admit(false, 10, 10, true), Admission::Fold);
        assert_eq!(admit(false, 1_000_000, 10, false), Admission::Send);
    }

    proptest! {
        /// Over any span, at most burst + rate × span tokens are taken,
        /// however the requests fall.
        #[test]
        fn never_more_than_the_rate_allows(
            per_second in 1u32..200,
            burst in 1u32..50,
            steps in proptest::collection::vec(0u64..50, 1..500),
        ) {
            let mut bucket = TokenBucket::new(per_second, burst);
            let mut now = Duration::ZERO;
            let mut taken = 0u64;
            for step in steps {
                now += ms(step);
                if bucket.take(now).is_none() {
                    taken += 1;
                }
            }
            let allowed = f64::from(burst) + now.as_secs_f64() * f64::from(per_second);
            prop_assert!(taken as f64 <= allowed + 1e-6, "{} > {}", taken, allowed);
        }

        /// Waiting as long as told always yields a token.
        #[test]
        fn the_wait_is_enough(per_second in 1u32..1_000, burst in 1u32..20, drain in 0u32..40) {
            let mut bucket = TokenBucket::new(per_second, burst);
            let mut now = Duration::ZERO;
            for _ in 0..drain {
                if let Some(wait) = bucket.take(now) {
                    now += wait;
                    prop_assert_eq!(bucket.take(now), None);
                }
            }
        }
    }
}
