//! The queue of foca's pending timer events.
//!
//! foca asks for events to be handed back after a delay and tolerates lateness
//! but not loss. Events due at the same instant are handed back in foca's own
//! `Timer` order (an indirect probe before the next probe round), which is
//! what foca's `Ord` on `Timer` exists for.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use foca::Timer;
use tokio::time::Instant;

use super::identity::SpeakerId;

/// Timer events ordered by when they are due.
#[derive(Debug, Default)]
pub struct TimerQueue {
    pending: BinaryHeap<Reverse<(Instant, Timer<SpeakerId>)>>,
}

impl TimerQueue {
    /// Schedules `event` for `after` past `now`.
    pub fn schedule(&mut self, now: Instant, after: Duration, event: Timer<SpeakerId>) {
        self.pending.push(Reverse((now + after, event)));
    }

    /// When the earliest event is due, if any is pending.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.peek().map(|Reverse((due, _))| *due)
    }

    /// Removes and returns the earliest event if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer<SpeakerId>> {
        if self.next_deadline()? <= now {
            self.pending.pop().map(|Reverse((_, event))| event)
        } else {
            None
        }
    }

    /// How many events are pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn events_come_back_in_deadline_order_and_only_when_due() {
        let start = Instant::now();
        let mut queue = TimerQueue::default();
        queue.schedule(start, ms(300), Timer::PeriodicGossip(3));
        queue.schedule(start, ms(100), Timer::PeriodicGossip(1));
        queue.schedule(start, ms(200), Timer::PeriodicGossip(2));
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.next_deadline(), Some(start + ms(100)));
        assert_eq!(queue.pop_due(start + ms(50)), None);
        assert_eq!(
            queue.pop_due(start + ms(250)),
            Some(Timer::PeriodicGossip(1))
        );
        assert_eq!(
            queue.pop_due(start + ms(250)),
            Some(Timer::PeriodicGossip(2))
        );
        assert_eq!(queue.pop_due(start + ms(250)), None);
        assert_eq!(
            queue.pop_due(start + ms(300)),
            Some(Timer::PeriodicGossip(3))
        );
        assert!(queue.is_empty());
        assert_eq!(queue.next_deadline(), None);
    }

    #[test]
    fn an_indirect_probe_due_together_with_the_next_round_goes_first() {
        let start = Instant::now();
        let mut queue = TimerQueue::default();
        let probed = SpeakerId::seed_placeholder(([127, 0, 0, 1], 1).into());
        queue.schedule(start, ms(10), Timer::ProbeRandomMember(0));
        queue.schedule(
            start,
            ms(10),
            Timer::SendIndirectProbe {
                probed_id: probed.clone(),
                token: 0,
            },
        );
        assert_eq!(
            queue.pop_due(start + ms(10)),
            Some(Timer::SendIndirectProbe {
                probed_id: probed,
                token: 0
            })
        );
        assert_eq!(
            queue.pop_due(start + ms(10)),
            Some(Timer::ProbeRandomMember(0))
        );
    }
}
