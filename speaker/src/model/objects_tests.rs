//! The compact store's bookkeeping against a plain map: after any sequence of writes,
//! deletes and (re-)lists, it holds what the last complete list and the writes and
//! deletes since say, and nothing a list left out.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

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
