//! `namespace/name` of a Service: the key the controller and the speakers
//! both index Services by.
//!
//! One key is one shared allocation: a clone is a reference-count increment,
//! so the maps that index the same Service (stores, view, plans, reports)
//! share its text instead of each holding two `String`s of their own.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

/// `namespace/name` of a Service.
///
/// Held as one pointer to a shared `namespace` + `name` text and the length of
/// the namespace: 8 bytes in each map that holds it (the two `String`s were
/// 48), and one text per key however many maps hold it. Ordered, compared and
/// hashed as the pair (namespace, name), never as the joined text (which would
/// put namespace `a-b` before `a`).
#[derive(Clone)]
pub struct ServiceKey(Arc<KeyText>);

/// The shared part of a [`ServiceKey`]: `namespace` then `name`, unseparated.
struct KeyText {
    /// `namespace` followed by `name`.
    text: Box<str>,
    /// Byte length of the namespace within `text`.
    split: usize,
}

impl ServiceKey {
    /// The key of the Service `name` in `namespace`.
    pub fn new(namespace: impl AsRef<str>, name: impl AsRef<str>) -> ServiceKey {
        let (namespace, name) = (namespace.as_ref(), name.as_ref());
        let mut text = String::with_capacity(namespace.len() + name.len());
        text.push_str(namespace);
        text.push_str(name);
        ServiceKey(Arc::new(KeyText {
            text: text.into_boxed_str(),
            split: namespace.len(),
        }))
    }

    /// The key of `service`, read from its metadata; a missing name or namespace becomes empty.
    pub fn of(service: &Service) -> ServiceKey {
        ServiceKey::new(
            service.metadata.namespace.as_deref().unwrap_or_default(),
            service.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    /// The Service's namespace (empty only for an object without one, which the API server never returns).
    pub fn namespace(&self) -> &str {
        // `split` is `namespace.len()` of the `&str` the text starts with: a char boundary.
        self.0.text.get(..self.0.split).unwrap_or_default()
    }

    /// The Service's name.
    pub fn name(&self) -> &str {
        self.0.text.get(self.0.split..).unwrap_or_default()
    }

    /// Whether `other` is a clone of this very key (one allocation), not only equal.
    pub fn shares(&self, other: &ServiceKey) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// `(namespace, name)`: what the key is compared, ordered and hashed by.
    fn parts(&self) -> (&str, &str) {
        (self.namespace(), self.name())
    }
}

impl PartialEq for ServiceKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.split == other.0.split && self.0.text == other.0.text)
    }
}

impl Eq for ServiceKey {}

impl Ord for ServiceKey {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return Ordering::Equal;
        }
        self.parts().cmp(&other.parts())
    }
}

impl PartialOrd for ServiceKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for ServiceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceKey")
            .field("namespace", &self.namespace())
            .field("name", &self.name())
            .finish()
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use proptest::prelude::*;

    use super::*;

    fn hash_of(key: &ServiceKey) -> u64 {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish()
    }

    /// Short strings over a small alphabet with `-`, `/` and a multi-byte
    /// char, so that prefixes, separators and char boundaries all come up.
    fn part() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab/é-]{0,4}").expect("valid regex")
    }

    #[test]
    fn accessors_and_display() {
        let key = ServiceKey::new("team-a", "web");
        assert_eq!(key.namespace(), "team-a");
        assert_eq!(key.name(), "web");
        assert_eq!(key.to_string(), "team-a/web");
        assert_eq!(
            format!("{key:?}"),
            r#"ServiceKey { namespace: "team-a", name: "web" }"#
        );
    }

    #[test]
    fn namespace_a_orders_before_a_b_whatever_the_names() {
        // Joined, "a" + "z" > "a-b" + "a"; as pairs, "a" < "a-b".
        assert!(ServiceKey::new("a", "z") < ServiceKey::new("a-b", "a"));
    }

    #[test]
    fn a_clone_shares_the_text() {
        let key = ServiceKey::new("ns", "name");
        let copy = key.clone();
        assert!(copy.shares(&key));
        assert_eq!(Arc::strong_count(&key.0), 2);
        let equal = ServiceKey::new("ns", "name");
        assert!(equal == key && !equal.shares(&key));
    }

    proptest! {
        /// Ordered, compared and hashed as the (namespace, name) pair, and
        /// the parts read back as given.
        #[test]
        fn orders_as_the_pair(a in (part(), part()), b in (part(), part())) {
            let (ka, kb) = (ServiceKey::new(&a.0, &a.1), ServiceKey::new(&b.0, &b.1));
            prop_assert_eq!((ka.namespace(), ka.name()), (a.0.as_str(), a.1.as_str()));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka.partial_cmp(&kb), Some(a.cmp(&b)));
            prop_assert_eq!(ka == kb, a == b);
            if ka == kb {
                prop_assert_eq!(hash_of(&ka), hash_of(&kb));
            }
            prop_assert_eq!(ka.to_string(), format!("{}/{}", a.0, a.1));
        }
    }
}
