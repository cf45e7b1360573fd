//! The leader's own-clock guard on its writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Whether this replica may still act as leader, by its own monotonic
/// clock: until `renew_deadline` after its last successful renewal was
/// sent. Every writer waits on it just before each request, so a leader
/// frozen past its lease (SIGSTOP, a stalled VM) sends nothing when it
/// wakes, even in the moment before its renewal task sees the loss and the
/// process steps down.
#[derive(Clone, Debug, Default)]
pub struct Fence(Option<Arc<Mutex<Instant>>>);

impl Fence {
    /// Always open: no leader election (a single replica).
    pub fn open() -> Fence {
        Fence(None)
    }

    pub(super) fn until(deadline: Instant) -> Fence {
        Fence(Some(Arc::new(Mutex::new(deadline))))
    }

    /// Moves the deadline to `deadline`, never back.
    pub(super) fn extend(&self, deadline: Instant) {
        if let Some(until) = &self.0
            && let Ok(mut until) = until.lock()
        {
            *until = (*until).max(deadline);
        }
    }

    /// Whether writes may go out now.
    pub fn is_open(&self) -> bool {
        match &self.0 {
            None => true,
            Some(until) => until.lock().is_ok_and(|u| Instant::now() < *u),
        }
    }

    /// Waits until writes may go out (for ever, once the leadership is
    /// lost: the process then steps down).
    pub async fn wait_open(&self) {
        while !self.is_open() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fence_closes_at_its_deadline_until_extended() {
        assert!(Fence::open().is_open());
        let fence = Fence::until(Instant::now() + Duration::from_millis(50));
        assert!(fence.is_open());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!fence.is_open(), "past the deadline");
        fence.extend(Instant::now() - Duration::from_secs(1));
        assert!(!fence.is_open(), "a deadline never moves back");
        fence.extend(Instant::now() + Duration::from_secs(60));
        assert!(fence.is_open(), "renewed");
    }
}
