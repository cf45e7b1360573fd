//! A set of integers stored as merged runs of consecutive values.
//!
//! This is the workhorse behind [`super::UsedAddresses`]: one `Runs` per address
//! family. Keeping runs *merged* (no two runs overlap or touch) is what makes
//! "lowest free value at or after `x`" a single lookup: if `x` is inside a run,
//! the value right after that run's end is free, because otherwise the next run
//! would touch this one and they would have been merged.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Disjoint, non-adjacent inclusive runs, keyed by start (`start -> end`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Runs {
    map: BTreeMap<u128, u128>,
}

impl Runs {
    /// The run that contains `v`, as `(start, end)`. `O(log n)`.
    pub(crate) fn run_containing(&self, v: u128) -> Option<(u128, u128)> {
        // The only candidate is the last run starting at or before `v`.
        let (&start, &end) = self.map.range(..=v).next_back()?;
        (end >= v).then_some((start, end))
    }

    pub(crate) fn contains(&self, v: u128) -> bool {
        self.run_containing(v).is_some()
    }

    /// Adds `v`, merging with the runs that end right before or start right
    /// after it. Returns `false` when `v` was already present. `O(log n)`.
    pub(crate) fn insert(&mut self, v: u128) -> bool {
        // A run ending exactly at `v - 1` (only possible when `v > 0`).
        let mut left = None;
        if let Some((&start, &end)) = self.map.range(..=v).next_back() {
            if end >= v {
                return false;
            }
            // `end < v`, so `end + 1` cannot overflow.
            if end + 1 == v {
                left = Some(start);
            }
        }
        // A run starting exactly at `v + 1` (none when `v` is the largest value).
        let right_end = v
            .checked_add(1)
            .and_then(|next| self.map.get(&next).map(|&end| (next, end)));
        if let Some((next, _)) = right_end {
            self.map.remove(&next);
        }
        let end = right_end.map_or(v, |(_, end)| end);
        match left {
            Some(start) => {
                self.map.insert(start, end);
            }
            None => {
                self.map.insert(v, end);
            }
        }
        true
    }

    /// Removes `v`, splitting its run in two when `v` is in its middle.
    /// Returns `false` when `v` was absent. `O(log n)`.
    pub(crate) fn remove(&mut self, v: u128) -> bool {
        let Some((start, end)) = self.run_containing(v) else {
            return false;
        };
        // `start <= v <= end`, so `v - 1` is only taken when `v > start >= 0`
        // and `v + 1` only when `v < end <= u128::MAX`: neither overflows.
        if start == v {
            self.map.remove(&start);
        } else {
            self.map.insert(start, v - 1);
        }
        if v < end {
            self.map.insert(v + 1, end);
        }
        true
    }

    /// The lowest value `>= v` that is absent; `None` only when every value
    /// from `v` to `u128::MAX` is present. `O(log n)`: a single lookup, since
    /// the value after a merged run is never in the set.
    pub(crate) fn first_absent_from(&self, v: u128) -> Option<u128> {
        match self.run_containing(v) {
            Some((_, end)) => end.checked_add(1),
            None => Some(v),
        }
    }

    /// How many values of `start..=end` are present. `O(log n + k)` for the
    /// `k` runs that overlap the range.
    pub(crate) fn count_in(&self, start: u128, end: u128) -> u128 {
        if start > end {
            return 0;
        }
        let mut count: u128 = 0;
        // A run that starts before `start` but reaches into the range.
        if let Some((&run_start, &run_end)) = self.map.range(..start).next_back()
            && run_end >= start
        {
            debug_assert!(run_start < start);
            count = run_end.min(end) - start + 1;
        }
        for (&run_start, &run_end) in self
            .map
            .range((Bound::Included(start), Bound::Included(end)))
        {
            count = count.saturating_add(run_end.min(end) - run_start + 1);
        }
        count
    }

    /// The runs in ascending order, as `(start, end)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u128, u128)> + '_ {
        self.map.iter().map(|(&start, &end)| (start, end))
    }

    /// Number of runs (not of values).
    #[cfg(test)]
    pub(crate) fn run_count(&self) -> usize {
        self.map.len()
    }

    /// Checks the representation invariant: runs are well formed, sorted,
    /// disjoint and never adjacent.
    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        let mut previous_end: Option<u128> = None;
        for (start, end) in self.iter() {
            assert!(start <= end, "run {start}..={end} is reversed");
            if let Some(prev) = previous_end {
                assert!(
                    prev < start && start - prev >= 2,
                    "runs ending {prev} and starting {start} touch"
                );
            }
            previous_end = Some(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(r: &Runs) -> Vec<(u128, u128)> {
        r.iter().collect()
    }

    #[test]
    fn insert_merges_left_right_and_both() {
        let mut r = Runs::default();
        assert!(r.insert(10));
        assert!(r.insert(12));
        assert_eq!(runs(&r), vec![(10, 10), (12, 12)]);
        assert!(r.insert(11));
        assert_eq!(runs(&r), vec![(10, 12)]);
        assert!(r.insert(13));
        assert!(r.insert(9));
        assert_eq!(runs(&r), vec![(9, 13)]);
        assert!(!r.insert(11));
        r.assert_invariants();
    }

    #[test]
    fn remove_splits_and_trims() {
        let mut r = Runs::default();
        for v in 0..=5 {
            r.insert(v);
        }
        assert!(r.remove(3));
        assert_eq!(runs(&r), vec![(0, 2), (4, 5)]);
        assert!(r.remove(0));
        assert!(r.remove(5));
        assert_eq!(runs(&r), vec![(1, 2), (4, 4)]);
        assert!(r.remove(4));
        assert_eq!(runs(&r), vec![(1, 2)]);
        assert!(!r.remove(4));
        r.assert_invariants();
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut r = Runs::default();
        assert!(r.insert(u128::MAX));
        assert!(r.insert(u128::MAX - 1));
        assert!(r.insert(0));
        assert_eq!(runs(&r), vec![(0, 0), (u128::MAX - 1, u128::MAX)]);
        assert_eq!(r.first_absent_from(u128::MAX - 1), None);
        assert_eq!(r.first_absent_from(0), Some(1));
        assert_eq!(r.count_in(0, u128::MAX), 3);
        assert!(r.remove(u128::MAX));
        assert_eq!(r.first_absent_from(u128::MAX - 1), Some(u128::MAX));
        assert!(r.remove(0));
        assert_eq!(r.run_count(), 1);
    }

    #[test]
    fn count_in_clips_runs_at_both_ends() {
        let mut r = Runs::default();
        for v in (0..10).chain(20..30) {
            r.insert(v);
        }
        assert_eq!(r.count_in(5, 24), 10);
        assert_eq!(r.count_in(10, 19), 0);
        assert_eq!(r.count_in(9, 9), 1);
        assert_eq!(r.count_in(29, 100), 1);
        assert_eq!(r.count_in(7, 3), 0);
    }
}
