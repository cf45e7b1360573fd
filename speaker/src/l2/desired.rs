//! The desired announcements, from the plan loop to the announcer: the whole
//! map (a `watch` channel, read in place) and the IPs whose entry changed
//! since the announcer last looked (a [`Mailbox`]), so that the announcer
//! places again only those and keeps no copy of the map to compare with.

use std::sync::Arc;

use tokio::sync::watch;

use super::serving::Desired;
use crate::mailbox::Mailbox;
use crate::model::Touched;

/// A new channel holding `initial` (every IP counts as changed).
pub fn desired_channel(initial: Desired) -> (DesiredSender, DesiredReceiver) {
    let (value_tx, value_rx) = watch::channel(initial);
    let changes = Arc::new(Mailbox::<Touched>::default());
    changes.send(|touched| *touched = Touched::everything());
    (
        DesiredSender {
            value: value_tx,
            changes: changes.clone(),
        },
        DesiredReceiver {
            value: value_rx,
            changes,
        },
    )
}

/// The plan loop's end.
pub struct DesiredSender {
    value: watch::Sender<Desired>,
    changes: Arc<Mailbox<Touched>>,
}

impl DesiredSender {
    /// Lets `patch` change the map in place; it returns the IPs whose entry
    /// it changed (`None` when it changed nothing). Returns whether it did.
    pub fn send_patch(&self, patch: impl FnOnce(&mut Desired) -> Option<Touched>) -> bool {
        let mut changed = None;
        self.value.send_if_modified(|desired| {
            changed = patch(desired);
            changed.is_some()
        });
        // After the value, so the announcer, woken here, reads the value the
        // change is about or a newer one (see `Mailbox`).
        match changed {
            Some(touched) => {
                self.changes.send(|pending| pending.merge(touched));
                true
            }
            None => false,
        }
    }

    /// Replaces the whole map (every IP counts as changed).
    pub fn send_replace(&self, desired: Desired) {
        self.send_patch(|current| {
            *current = desired;
            Some(Touched::everything())
        });
    }

    /// How many IPs are desired.
    pub fn len(&self) -> usize {
        self.value.borrow().len()
    }

    /// Whether no IP is desired.
    pub fn is_empty(&self) -> bool {
        self.value.borrow().is_empty()
    }
}

/// The announcer's end.
pub struct DesiredReceiver {
    value: watch::Receiver<Desired>,
    changes: Arc<Mailbox<Touched>>,
}

/// The sender is gone: the last map is all there will be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderGone;

impl DesiredReceiver {
    /// Until a change was sent since the last wake-up, or the sender is gone.
    pub async fn changed(&mut self) -> Result<(), SenderGone> {
        tokio::select! {
            () = self.changes.changed() => Ok(()),
            closed = self.value.changed() => closed.map_err(|_| SenderGone),
        }
    }

    /// The IPs changed since the last call, then the map (taken in that
    /// order: the map is as new as the changes, or newer; an IP changed
    /// again after it is also taken at the next call).
    pub fn take(&mut self) -> (Touched, watch::Ref<'_, Desired>) {
        let touched = self.changes.take();
        (touched, self.value.borrow_and_update())
    }

    /// The map, without taking the changes.
    pub fn borrow(&self) -> watch::Ref<'_, Desired> {
        self.value.borrow()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    use super::*;
    use crate::l2::plan::InterfaceFilter;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, last])
    }

    fn set(desired: &mut Desired, last: u8) -> Option<Touched> {
        desired.insert(ip(last), InterfaceFilter::AllSuitable);
        Some(Touched {
            all: false,
            ips: BTreeSet::from([ip(last)]),
        })
    }

    #[tokio::test]
    async fn changes_sent_while_the_announcer_is_busy_are_all_taken_with_the_newest_map() {
        let (sender, mut receiver) = desired_channel(Desired::new());
        // The first look places everything.
        receiver.changed().await.unwrap();
        assert!(receiver.take().0.all);

        assert!(sender.send_patch(|desired| set(desired, 1)));
        assert!(sender.send_patch(|desired| set(desired, 2)));
        assert!(!sender.send_patch(|_| None), "an unchanged map is not sent");
        receiver.changed().await.unwrap();
        let (touched, desired) = receiver.take();
        assert_eq!(touched.ips, BTreeSet::from([ip(1), ip(2)]));
        assert!(!touched.all);
        assert_eq!(desired.len(), 2);
        drop(desired);

        sender.send_replace(Desired::new());
        receiver.changed().await.unwrap();
        let (touched, desired) = receiver.take();
        assert!(touched.all && desired.is_empty());
        drop(desired);

        drop(sender);
        // Woken by the last send, if not taken yet, then told the sender is gone.
        let mut outcome = receiver.changed().await;
        if outcome.is_ok() {
            outcome = receiver.changed().await;
        }
        assert_eq!(outcome, Err(SenderGone));
    }
}
