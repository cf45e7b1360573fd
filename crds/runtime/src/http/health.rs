//! [`Health`]: readiness and liveness of the process, shared between the code
//! that knows and the endpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::heartbeats::Heartbeats;

const DEFAULT_NOT_READY: &str = "starting";

/// How long a part may go without a beat before `/healthz` fails, unless
/// [`Health::with_max_beat_age`] says otherwise.
pub const DEFAULT_MAX_BEAT_AGE: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct HealthInner {
    ready: AtomicBool,
    reason: Mutex<String>,
    beats: Mutex<Heartbeats>,
    max_beat_age: Duration,
}

/// Readiness and liveness of the process. Cheap to clone; clones share the
/// state. Starts not ready ("starting") and alive (no part beats yet).
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<HealthInner>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks `mutex`; the guarded state stays valid even if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Health {
    /// Not ready, reason "starting"; parts stale after [`DEFAULT_MAX_BEAT_AGE`].
    pub fn new() -> Self {
        Self::with_max_beat_age(DEFAULT_MAX_BEAT_AGE)
    }

    /// Like [`Health::new`], with parts stale after `max_beat_age`.
    pub fn with_max_beat_age(max_beat_age: Duration) -> Self {
        Self {
            inner: Arc::new(HealthInner {
                ready: AtomicBool::new(false),
                reason: Mutex::new(DEFAULT_NOT_READY.to_owned()),
                beats: Mutex::new(Heartbeats::new()),
                max_beat_age,
            }),
        }
    }

    /// Ready or not. Not ready keeps the last reason given (or "not ready").
    pub fn set_ready(&self, ready: bool) {
        if !ready {
            let mut reason = lock(&self.inner.reason);
            if reason.is_empty() {
                reason.push_str("not ready");
            }
        }
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Not ready, because of `reason` (shown in the `/readyz` answer).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *lock(&self.inner.reason) = reason.into();
        self.inner.ready.store(false, Ordering::Release);
    }

    /// Whether ready.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// `None` when ready, else the reason.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.is_ready() {
            None
        } else {
            Some(lock(&self.inner.reason).clone())
        }
    }

    /// A beat for the loop called `part`: it must call [`Heartbeat::beat`]
    /// more often than the maximum beat age, or `/healthz` fails naming it.
    /// Beats once now. Dropping the handle ends the duty, except while
    /// panicking: a loop that died of a panic goes stale.
    pub fn heartbeat(&self, part: impl Into<String>) -> Heartbeat {
        let beat = Heartbeat {
            health: self.clone(),
            part: part.into(),
        };
        beat.beat();
        beat
    }

    /// The parts that did not beat within the maximum age, by name.
    pub fn stale_parts(&self) -> Vec<String> {
        lock(&self.inner.beats).stale(Instant::now(), self.inner.max_beat_age)
    }

    /// The maximum beat age.
    pub fn max_beat_age(&self) -> Duration {
        self.inner.max_beat_age
    }
}

/// The duty of one loop to beat; see [`Health::heartbeat`].
#[derive(Debug)]
pub struct Heartbeat {
    health: Health,
    part: String,
}

impl Heartbeat {
    /// The loop is alive now.
    pub fn beat(&self) {
        lock(&self.health.inner.beats).touch(&self.part, Instant::now());
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            lock(&self.health.inner.beats).forget(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_state_transitions() {
        let h = Health::new();
        assert_eq!(h.not_ready_reason().as_deref(), Some("starting"));
        h.set_ready(true);
        assert!(h.is_ready());
        assert_eq!(h.not_ready_reason(), None);
        h.set_not_ready("");
        h.set_ready(false);
        assert_eq!(h.not_ready_reason().as_deref(), Some("not ready"));
    }

    #[test]
    fn a_silent_heartbeat_goes_stale_and_a_beat_revives_it() {
        let h = Health::with_max_beat_age(Duration::ZERO);
        let plan = h.heartbeat("plan");
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.stale_parts().is_empty() {
            assert!(Instant::now() < deadline, "never went stale");
            std::thread::yield_now();
        }
        assert_eq!(h.stale_parts(), ["plan"]);
        let h = Health::with_max_beat_age(Duration::from_secs(60));
        let l2 = h.heartbeat("l2");
        l2.beat();
        assert!(h.stale_parts().is_empty());
        drop(plan);
    }

    #[test]
    fn a_dropped_heartbeat_is_forgotten_but_not_after_a_panic() {
        let h = Health::with_max_beat_age(Duration::ZERO);
        drop(h.heartbeat("done"));
        let dies = h.clone();
        let died = std::thread::spawn(move || {
            let _beat = dies.heartbeat("dies");
            panic!("the loop dies");
        })
        .join();
        assert!(died.is_err());
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.stale_parts().is_empty() {
            assert!(Instant::now() < deadline, "never went stale");
            std::thread::yield_now();
        }
        assert_eq!(h.stale_parts(), ["dies"]);
    }
}
