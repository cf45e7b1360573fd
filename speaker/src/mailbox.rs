//! Changes handed from one task to another, merged while they wait: like a
//! `tokio::sync::watch` channel (a receiver that falls behind takes everything
//! at once, a sender never waits), but of changes rather than whole values,
//! so that neither side visits what did not change.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// A change waiting to be taken, merged with the ones before it.
#[derive(Debug, Default)]
pub struct Pending<T> {
    value: Mutex<T>,
}

impl<T: Default> Pending<T> {
    /// Merges a change into what waits.
    pub fn push(&self, merge: impl FnOnce(&mut T)) {
        merge(&mut self.value.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Everything that waits, leaving nothing.
    pub fn take(&self) -> T {
        std::mem::take(&mut *self.value.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// [`Pending`] changes and the wake-up of their one receiver. A sender that
/// also publishes a value (a `watch` channel) sends here after it, so a
/// receiver woken here reads the value the change is about, or a newer one.
#[derive(Debug, Default)]
pub struct Mailbox<T> {
    pending: Pending<T>,
    wake: Notify,
}

impl<T: Default> Mailbox<T> {
    /// Merges a change into what waits and wakes the receiver (now, or at its
    /// next [`Mailbox::changed`] if it is busy).
    pub fn send(&self, merge: impl FnOnce(&mut T)) {
        self.pending.push(merge);
        self.wake.notify_one();
    }

    /// Everything that waits, leaving nothing.
    pub fn take(&self) -> T {
        self.pending.take()
    }

    /// Until something was sent since the last wake-up.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }
}
