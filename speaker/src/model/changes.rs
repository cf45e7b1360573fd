//! Which watched objects of one kind changed since the plan loop's last pass, as the
//! watch events name them: what [`super::ViewCache::sync_keys`] visits instead of every
//! cached object.

use std::collections::BTreeSet;
use std::mem;

use super::view::ServiceKey;

/// The objects of one kind (by `namespace/name`) written or deleted since the last
/// [`Changes::take`], or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Any object may have changed: a first list, or a re-list after a watch restarted.
    Everything,
    /// Only these objects changed (written or deleted).
    Keys(BTreeSet<ServiceKey>),
}

/// Nothing is known yet: the first pass must visit everything.
impl Default for Changes {
    fn default() -> Self {
        Changes::Everything
    }
}

impl Changes {
    /// Notes that the object `key` was written or deleted.
    pub fn mark(&mut self, key: ServiceKey) {
        if let Changes::Keys(keys) = self {
            keys.insert(key);
        }
    }

    /// Notes that any object may have changed.
    pub fn mark_everything(&mut self) {
        *self = Changes::Everything;
    }

    /// The changes so far, leaving none.
    pub fn take(&mut self) -> Changes {
        mem::replace(self, Changes::Keys(BTreeSet::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_accumulate_until_taken_and_everything_absorbs_them() {
        let mut changes = Changes::default();
        changes.mark(ServiceKey::new("a", "x"));
        assert_eq!(changes.take(), Changes::Everything);
        changes.mark(ServiceKey::new("a", "x"));
        changes.mark(ServiceKey::new("a", "y"));
        changes.mark(ServiceKey::new("a", "x"));
        let expected = [ServiceKey::new("a", "x"), ServiceKey::new("a", "y")];
        assert_eq!(changes.take(), Changes::Keys(expected.into()));
        assert_eq!(changes.take(), Changes::Keys(BTreeSet::new()));
        changes.mark(ServiceKey::new("a", "z"));
        changes.mark_everything();
        changes.mark(ServiceKey::new("a", "w"));
        assert_eq!(changes.take(), Changes::Everything);
    }
}
