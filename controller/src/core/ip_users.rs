//! The Services holding one IP, in key order.
//!
//! An IP has one user unless Services share it, so this is a sorted `Vec`
//! sized to its users: a `BTreeMap` allocates a node of eleven entries
//! (1.4 KiB here) even for one, which was the largest part of the
//! controller's memory per Service (heaptrack, 5,000 Services).

use super::service::{ServiceKey, SharingTerms};

/// The users of one IP and the sharing terms each holds it under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users(Vec<(ServiceKey, Option<Box<SharingTerms>>)>);

impl Users {
    /// Adds `key`, or replaces its terms when it is a user already.
    pub fn insert(&mut self, key: ServiceKey, terms: Option<Box<SharingTerms>>) {
        match self.0.binary_search_by(|(user, _)| user.cmp(&key)) {
            Ok(found) => {
                if let Some(user) = self.0.get_mut(found) {
                    user.1 = terms;
                }
            }
            Err(at) => {
                // Grow by one: most IPs never have a second user.
                self.0.reserve_exact(1);
                self.0.insert(at, (key, terms));
            }
        }
    }

    /// Removes `key` if it is a user.
    pub fn remove(&mut self, key: &ServiceKey) {
        if let Ok(found) = self.0.binary_search_by(|(user, _)| user.cmp(key)) {
            self.0.remove(found);
        }
    }

    /// Whether no Service holds the IP.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The users and their terms, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&ServiceKey, Option<&SharingTerms>)> {
        self.0.iter().map(|(user, terms)| (user, terms.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("ns", name)
    }

    #[test]
    fn one_user_takes_one_slot() {
        let mut users = Users::default();
        users.insert(key("a"), None);
        assert_eq!(users.0.capacity(), 1);
        users.insert(key("a"), None);
        assert_eq!(users.iter().count(), 1);
        users.remove(&key("a"));
        assert!(users.is_empty());
    }

    proptest! {
        /// Inserts and removes in any order leave what a BTreeMap would.
        #[test]
        fn behaves_as_a_map(ops in proptest::collection::vec((any::<bool>(), 0u8..6), 0..60)) {
            let mut users = Users::default();
            let mut model = BTreeMap::new();
            for (insert, n) in ops {
                let k = key(&format!("s{n}"));
                if insert {
                    users.insert(k.clone(), None);
                    model.insert(k, None);
                } else {
                    users.remove(&k);
                    model.remove(&k);
                }
            }
            let got: Vec<_> = users.iter().map(|(k, t)| (k.clone(), t.cloned())).collect();
            let want: Vec<_> = model.into_iter().collect::<Vec<(ServiceKey, Option<SharingTerms>)>>();
            prop_assert_eq!(got, want);
        }
    }
}
