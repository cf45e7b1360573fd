//! Rebuilding the speaker's per-IP B-trees after they grew.
//!
//! The maps and sets keyed by IP grow one key at a time and mostly in ascending
//! order (the controller hands out the lowest free address first), and a B-tree
//! grown that way keeps its nodes about half full. Measured with 10,000 IPv4 keys:
//! 182 bytes an entry for an 80-byte value, 80 for a 24-byte one, where the same
//! tree built from its sorted entries (`collect`, which fills every node) takes 99
//! and 43. [`Regrow`] rebuilds a tree that way each time it has grown by a quarter
//! since the last rebuild: O(n) work per quarter of growth, so O(1) amortised per
//! insert, and a tree that does not grow is never rebuilt.

use std::collections::{BTreeMap, BTreeSet};

/// Below this many entries a tree is a handful of nodes: never rebuilt.
const SMALLEST_REBUILT: usize = 256;

/// A B-tree the speaker rebuilds when it has grown: a map or a set.
pub trait Rebuildable {
    /// How many entries it holds.
    fn entries(&self) -> usize;
    /// The same entries, in nodes filled to the brim.
    fn rebuild(&mut self);
}

impl<K: Ord, V> Rebuildable for BTreeMap<K, V> {
    fn entries(&self) -> usize {
        self.len()
    }

    fn rebuild(&mut self) {
        *self = std::mem::take(self).into_iter().collect();
    }
}

/// Several trees counted and rebuilt as one (the IPs of each interface).
pub struct EachTree<'t, T>(pub &'t mut BTreeMap<String, T>);

impl<T: Rebuildable> Rebuildable for EachTree<'_, T> {
    fn entries(&self) -> usize {
        self.0.values().map(Rebuildable::entries).sum()
    }

    fn rebuild(&mut self) {
        self.0.values_mut().for_each(Rebuildable::rebuild);
    }
}

impl<K: Ord> Rebuildable for BTreeSet<K> {
    fn entries(&self) -> usize {
        self.len()
    }

    fn rebuild(&mut self) {
        *self = std::mem::take(self).into_iter().collect();
    }
}

/// When one tree was last rebuilt: kept beside it, told after each batch of inserts.
/// Bookkeeping, not part of any value: every `Regrow` equals every other, so a
/// struct holding one compares by its trees alone.
#[derive(Debug, Default, Clone)]
pub struct Regrow {
    /// Its size at the last rebuild, or the smallest since (growth counts from there).
    base: usize,
}

impl PartialEq for Regrow {
    fn eq(&self, _: &Regrow) -> bool {
        true
    }
}

impl Eq for Regrow {}

impl Regrow {
    /// Rebuilds `tree` if it has grown by a quarter since the last rebuild (or since
    /// it was smallest after one); whether it did.
    pub fn after_inserts(&mut self, tree: &mut impl Rebuildable) -> bool {
        let len = tree.entries();
        self.base = self.base.min(len);
        if len < SMALLEST_REBUILT || len < self.base + self.base / 4 {
            return false;
        }
        tree.rebuild();
        self.base = len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_growing_tree_is_rebuilt_once_per_quarter_of_growth_and_keeps_its_entries() {
        let mut map = BTreeMap::new();
        let mut regrow = Regrow::default();
        let mut rebuilt_at = Vec::new();
        for key in 0..1_000u32 {
            map.insert(key, key * 2);
            if regrow.after_inserts(&mut map) {
                rebuilt_at.push(map.len());
            }
        }
        assert_eq!(rebuilt_at, [256, 320, 400, 500, 625, 781, 976]);
        assert!(map.iter().all(|(key, value)| *value == key * 2));
        assert_eq!(map.len(), 1_000);
    }

    #[test]
    fn trees_counted_as_one_are_rebuilt_together() {
        let mut each: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
        each.insert("a".into(), (0..200).collect());
        each.insert("b".into(), (0..55).collect());
        let mut regrow = Regrow::default();
        assert!(!regrow.after_inserts(&mut EachTree(&mut each)));
        each.get_mut("b").map(|b| b.insert(55));
        assert!(regrow.after_inserts(&mut EachTree(&mut each)));
        assert_eq!(each["a"].len() + each["b"].len(), 256);
        assert_eq!(regrow, Regrow::default());
    }

    #[test]
    fn a_tree_that_does_not_grow_is_left_alone() {
        let mut set: BTreeSet<u32> = (0..1_000).collect();
        let mut regrow = Regrow::default();
        assert!(regrow.after_inserts(&mut set));
        for key in 0..1_000 {
            set.remove(&key);
            set.insert(key);
            assert!(!regrow.after_inserts(&mut set));
        }
    }

    #[test]
    fn growth_counts_from_the_smallest_size_since_the_last_rebuild() {
        let mut set: BTreeSet<u32> = (0..1_000).collect();
        let mut regrow = Regrow::default();
        assert!(regrow.after_inserts(&mut set));
        set.retain(|key| *key < 400);
        assert!(!regrow.after_inserts(&mut set));
        set.extend(400..499);
        assert!(!regrow.after_inserts(&mut set));
        set.insert(499);
        assert!(regrow.after_inserts(&mut set));
    }
}
