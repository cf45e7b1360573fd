//! Pure liveness bookkeeping: which parts of a process beat recently.
//!
//! Each long-running loop beats under its own name; a part whose last beat is
//! older than the allowed age is stale, and `/healthz` names it. Times are
//! passed in, so this is tested without a clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The last beat of every part that beats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heartbeats {
    last: BTreeMap<String, Instant>,
}

impl Heartbeats {
    /// No parts.
    pub fn new() -> Self {
        Self::default()
    }

    /// `part` is alive at `now` (registers it on its first beat). A beat never
    /// moves a part's time backwards.
    pub fn touch(&mut self, part: &str, now: Instant) {
        match self.last.get_mut(part) {
            Some(last) => *last = (*last).max(now),
            None => {
                self.last.insert(part.to_owned(), now);
            }
        }
    }

    /// `part` ended on purpose: it is no longer expected to beat.
    pub fn forget(&mut self, part: &str) {
        self.last.remove(part);
    }

    /// The parts whose last beat is more than `max_age` before `now`, by name.
    pub fn stale(&self, now: Instant, max_age: Duration) -> Vec<String> {
        self.last
            .iter()
            .filter(|(_, last)| now.saturating_duration_since(**last) > max_age)
            .map(|(part, _)| part.clone())
            .collect()
    }

    /// The names of the parts that beat, sorted.
    #[cfg(test)]
    pub fn parts(&self) -> impl Iterator<Item = &str> {
        self.last.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE: Duration = Duration::from_secs(10);

    #[test]
    fn no_parts_means_nothing_is_stale() {
        let beats = Heartbeats::new();
        assert!(beats.stale(Instant::now(), AGE).is_empty());
    }

    #[test]
    fn a_part_turns_stale_only_after_max_age() {
        let t0 = Instant::now();
        let mut beats = Heartbeats::new();
        beats.touch("plan", t0);
        assert!(
            beats.stale(t0 + AGE, AGE).is_empty(),
            "exactly max_age is fresh"
        );
        assert_eq!(
            beats.stale(t0 + AGE + Duration::from_millis(1), AGE),
            ["plan"]
        );
        beats.touch("plan", t0 + AGE * 2);
        assert!(
            beats.stale(t0 + AGE * 2, AGE).is_empty(),
            "a beat makes it fresh"
        );
    }

    #[test]
    fn only_the_silent_parts_are_named_sorted() {
        let t0 = Instant::now();
        let mut beats = Heartbeats::new();
        beats.touch("plan", t0);
        beats.touch("l2", t0);
        beats.touch("bgp", t0);
        beats.touch("l2", t0 + AGE);
        assert_eq!(beats.stale(t0 + AGE * 2, AGE), ["bgp", "plan"]);
        assert_eq!(beats.parts().collect::<Vec<_>>(), ["bgp", "l2", "plan"]);
    }

    #[test]
    fn a_late_old_beat_does_not_move_time_back() {
        let t0 = Instant::now();
        let mut beats = Heartbeats::new();
        beats.touch("plan", t0 + AGE);
        beats.touch("plan", t0);
        assert!(beats.stale(t0 + AGE * 2, AGE).is_empty());
    }

    #[test]
    fn a_forgotten_part_is_never_stale() {
        let t0 = Instant::now();
        let mut beats = Heartbeats::new();
        beats.touch("l2", t0);
        beats.forget("l2");
        assert!(beats.stale(t0 + AGE * 3, AGE).is_empty());
        assert_eq!(beats.parts().count(), 0);
    }

    #[test]
    fn a_clock_behind_the_last_beat_is_not_stale() {
        let t0 = Instant::now();
        let mut beats = Heartbeats::new();
        beats.touch("plan", t0 + AGE * 5);
        assert!(beats.stale(t0, AGE).is_empty());
    }
}
