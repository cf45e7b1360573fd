//! The compact store's bookkeeping against a plain map: after any sequence of writes,
//! deletes and (re-)lists, it holds what the last complete list and the writes and
//! deletes since say, and nothing a list left out.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// The bookkeeping's values have no texts to share.
impl ShareTexts for u32 {
    fn share_texts(&mut self, _: &mut Texts) {}
}

const NAMESPACES: [&str; 2] = ["a", "b"];
const NAMES: usize = 4;

#[derive(Debug, Clone)]
enum Event {
    Apply(usize, usize, u32),
    Delete(usize, usize),
    /// A whole re-list: the objects listed (namespace, name, value).
    Relist(Vec<(usize, usize, u32)>),
    /// A re-list that never completes (the watch failed again).
    Unfinished(Vec<(usize, usize, u32)>),
}

fn key(namespace: usize, name: usize) -> ServiceKey {
    ServiceKey::new(NAMESPACES[namespace], format!("n{name}"))
}

fn event() -> impl Strategy<Value = Event> {
    let object = (0..NAMESPACES.len(), 0..NAMES, 0u32..100);
    prop_oneof![
        4 => object.clone().prop_map(|(ns, n, v)| Event::Apply(ns, n, v)),
        2 => (0..NAMESPACES.len(), 0..NAMES).prop_map(|(ns, n)| Event::Delete(ns, n)),
        1 => prop::collection::vec(object.clone(), 0..6).prop_map(Event::Relist),
        1 => prop::collection::vec(object, 0..6).prop_map(Event::Unfinished),
    ]
}

fn contents(store: &ObjectStore<u32>) -> BTreeMap<ServiceKey, u32> {
    store
        .iter()
        .map(|(namespace, name, value)| (ServiceKey::new(namespace, name), **value))
        .collect()
}

proptest! {
    #[test]
    fn the_store_holds_what_its_events_say(events in prop::collection::vec(event(), 0..30)) {
        let mut store = ObjectStore::default();
        let mut model: BTreeMap<ServiceKey, u32> = BTreeMap::new();
        for event in events {
            match event {
                Event::Apply(ns, n, v) => {
                    store.apply(&key(ns, n), v);
                    model.insert(key(ns, n), v);
                }
                Event::Delete(ns, n) => {
                    store.delete(&key(ns, n));
                    model.remove(&key(ns, n));
                }
                Event::Relist(objects) => {
                    store.list_started();
                    for &(ns, n, v) in &objects {
                        store.listed(&key(ns, n), v);
                        // Until the list is done, the store keeps what it had.
                        prop_assert_eq!(contents(&store), model.clone());
                    }
                    store.list_done();
                    model = objects.iter().map(|&(ns, n, v)| (key(ns, n), v)).collect();
                }
                Event::Unfinished(objects) => {
                    store.list_started();
                    for &(ns, n, v) in &objects {
                        store.listed(&key(ns, n), v);
                    }
                }
            }
            prop_assert_eq!(contents(&store), model.clone());
            prop_assert_eq!(store.len(), model.len());
            prop_assert_eq!(store.is_empty(), model.is_empty());
            for (key, value) in &model {
                prop_assert_eq!(store.get(key).map(|v| **v), Some(*value));
            }
        }
    }
}

/// A namespace left without names is dropped, so keys of gone namespaces do not pile up.
#[test]
fn an_emptied_namespace_is_dropped() {
    let mut by_key = ByKey::default();
    assert_eq!(by_key.insert("a", "x", 1), None);
    assert_eq!(by_key.insert("a", "x", 2), Some(1));
    assert_eq!(by_key.remove("a", "x"), Some(2));
    assert!(by_key.0.is_empty());
    assert_eq!(by_key.remove("a", "x"), None);
}

mod texts {
    use std::sync::Arc;

    use crate::model::fixtures::{NAMESPACE, k8s_endpoint, k8s_service, k8s_slice};
    use crate::model::{ObjectStore, ServiceKey, ServiceObject, SliceObject};

    fn slice(name: &str, nodes: &[&str]) -> SliceObject {
        let endpoints = nodes.iter().map(|n| k8s_endpoint(Some(n), None)).collect();
        SliceObject::of(&k8s_slice(name, "web", endpoints))
    }

    /// The node names of a store's endpoints and the class of its Services are held
    /// once, however many objects repeat them.
    #[test]
    fn a_store_holds_each_repeated_text_once() {
        let mut slices = ObjectStore::default();
        slices.apply(&ServiceKey::new(NAMESPACE, "a"), slice("a", &["n1", "n2"]));
        slices.list_started();
        slices.listed(&ServiceKey::new(NAMESPACE, "b"), slice("b", &["n2", "n1"]));
        slices.list_done();
        slices.apply(&ServiceKey::new(NAMESPACE, "c"), slice("c", &["n1"]));
        let nodes: Vec<&Arc<str>> = slices
            .iter()
            .flat_map(|(_, _, slice)| slice.endpoints.iter())
            .filter_map(|endpoint| endpoint.node.as_ref())
            .collect();
        assert_eq!(nodes.len(), 3);
        for node in &nodes {
            let same = nodes.iter().filter(|other| ***other == **node);
            assert!(same.clone().all(|other| Arc::ptr_eq(other, node)), "{node}");
        }

        let mut services = ObjectStore::default();
        for name in ["a", "b"] {
            let service = k8s_service(name, Some("example.com/lb"), &[], false);
            services.apply(
                &ServiceKey::new(NAMESPACE, name),
                ServiceObject::of(&service),
            );
        }
        let classes: Vec<&Arc<str>> = services
            .iter()
            .filter_map(|(_, _, service)| service.class.as_ref())
            .collect();
        assert!(matches!(classes[..], [a, b] if Arc::ptr_eq(a, b)));
    }

    /// Texts no object holds any more are forgotten: a store whose node names keep
    /// changing holds a bounded number of them.
    #[test]
    fn texts_no_object_holds_are_forgotten() {
        let mut slices = ObjectStore::default();
        for i in 0..1000 {
            let name = format!("n{i}");
            slices.apply(&ServiceKey::new(NAMESPACE, "a"), slice("a", &[&name]));
            assert!(
                slices.texts.held.len() <= 64,
                "{i}: {}",
                slices.texts.held.len()
            );
        }
    }
}
