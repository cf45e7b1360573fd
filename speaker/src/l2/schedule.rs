//! When gratuitous ARPs / unsolicited Neighbor Advertisements go out: a few,
//! spaced apart, after an interface gains an IP, so one lost frame does not
//! leave neighbours pointing at the previous owner. Pure: the caller passes
//! the time in.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    remaining: u32,
    next_at: Instant,
}

/// Per IP, the gratuitous announcements still to send and when the next one is due.
#[derive(Clone, Debug)]
pub struct GratuitousSchedule {
    count: u32,
    spacing: Duration,
    pending: BTreeMap<IpAddr, Pending>,
}

impl GratuitousSchedule {
    /// A schedule sending `count` announcements per gained IP, `spacing` apart; `count` 0 sends none.
    pub fn new(count: u32, spacing: Duration) -> Self {
        GratuitousSchedule {
            count,
            spacing,
            pending: BTreeMap::new(),
        }
    }

    /// `ip` was gained at `now`: the first announcement is due at once. A
    /// burst already under way starts over.
    pub fn start(&mut self, ip: IpAddr, now: Instant) {
        if self.count == 0 {
            return;
        }
        self.pending.insert(
            ip,
            Pending {
                remaining: self.count,
                next_at: now,
            },
        );
    }

    /// `ip` was lost: announcing it any further would be a lie.
    pub fn cancel(&mut self, ip: IpAddr) {
        self.pending.remove(&ip);
    }

    /// The IPs to announce now, each counted as sent.
    pub fn take_due(&mut self, now: Instant) -> Vec<IpAddr> {
        let mut due = Vec::new();
        self.pending.retain(|ip, pending| {
            if pending.next_at > now {
                return true;
            }
            due.push(*ip);
            pending.remaining = pending.remaining.saturating_sub(1);
            pending.next_at = now + self.spacing;
            pending.remaining > 0
        });
        due
    }

    /// When [`GratuitousSchedule::take_due`] next has something to return.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().map(|pending| pending.next_at).min()
    }

    /// Whether no announcement is pending.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const SPACING: Duration = Duration::from_millis(300);

    #[test]
    fn sends_count_announcements_spaced_apart() {
        let start = Instant::now();
        let mut schedule = GratuitousSchedule::new(3, SPACING);
        schedule.start(ip("198.51.100.77"), start);
        assert_eq!(schedule.next_deadline(), Some(start));
        assert_eq!(schedule.take_due(start), vec![ip("198.51.100.77")]);
        assert_eq!(
            schedule.take_due(start + Duration::from_millis(299)),
            Vec::<IpAddr>::new()
        );
        assert_eq!(schedule.next_deadline(), Some(start + SPACING));
        assert_eq!(
            schedule.take_due(start + SPACING),
            vec![ip("198.51.100.77")]
        );
        assert_eq!(
            schedule.take_due(start + SPACING * 2),
            vec![ip("198.51.100.77")]
        );
        assert!(schedule.is_idle());
        assert_eq!(schedule.next_deadline(), None);
        assert_eq!(
            schedule.take_due(start + SPACING * 10),
            Vec::<IpAddr>::new()
        );
    }

    #[test]
    fn a_lost_ip_is_announced_no_further() {
        let start = Instant::now();
        let mut schedule = GratuitousSchedule::new(3, SPACING);
        schedule.start(ip("2001:db8::77"), start);
        schedule.start(ip("198.51.100.77"), start);
        assert_eq!(schedule.take_due(start).len(), 2);
        schedule.cancel(ip("2001:db8::77"));
        assert_eq!(
            schedule.take_due(start + SPACING),
            vec![ip("198.51.100.77")]
        );
    }

    #[test]
    fn regaining_an_ip_restarts_its_burst() {
        let start = Instant::now();
        let mut schedule = GratuitousSchedule::new(2, SPACING);
        schedule.start(ip("198.51.100.77"), start);
        schedule.take_due(start);
        let later = start + Duration::from_millis(100);
        schedule.start(ip("198.51.100.77"), later);
        assert_eq!(schedule.take_due(later), vec![ip("198.51.100.77")]);
        assert_eq!(
            schedule.take_due(later + SPACING),
            vec![ip("198.51.100.77")]
        );
        assert!(schedule.is_idle());
    }

    #[test]
    fn a_count_of_zero_announces_nothing() {
        let start = Instant::now();
        let mut schedule = GratuitousSchedule::new(0, SPACING);
        schedule.start(ip("198.51.100.77"), start);
        assert!(schedule.is_idle());
        assert_eq!(schedule.take_due(start), Vec::<IpAddr>::new());
    }
}
