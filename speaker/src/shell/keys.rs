//! The keys of the Services and EndpointSlices the watches saw change, handed to
//! [`model::ViewCache::sync_keys`] so a pass visits only those objects; a (re-)list
//! makes the next pass visit every object ([`model::ViewCache::sync`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::Node;

use super::stores::{Shared, Stores, read};
use crate::model::{self, Changes, ClassFilter, ServiceKey};

/// One kind's changes, noted by its watch task and taken by the plan loop.
pub type Noted = Arc<Mutex<Changes>>;

/// Notes that the object `key` was written or deleted, or with `None` that the whole
/// store was listed again. Called after the store has the change, so a pass that takes
/// the key reads the object as it is now or newer.
pub fn note(noted: Option<&Noted>, key: Option<ServiceKey>) {
    let Some(noted) = noted else {
        return;
    };
    let mut changes = noted.lock().unwrap_or_else(PoisonError::into_inner);
    match key {
        Some(key) => changes.mark(key),
        None => changes.mark_everything(),
    }
}

fn take(noted: &Noted) -> Changes {
    noted.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The objects named, each as the store has it now (`None`: deleted).
fn lookup<T>(store: &Shared<T>, keys: BTreeSet<ServiceKey>) -> Vec<(ServiceKey, Option<Arc<T>>)> {
    let store = read(store);
    keys.into_iter()
        .map(|key| {
            let object = store.get(&key).cloned();
            (key, object)
        })
        .collect()
}

/// Brings `cache` up to date with the stores: through the keys noted since the last
/// call when both kinds have them, else through every object.
pub fn sync_view(
    cache: &mut model::ViewCache,
    stores: &Stores,
    nodes: &[Arc<Node>],
    class: &ClassFilter,
) -> model::Synced {
    let pools = stores.pools.state();
    let l2 = stores.l2_advertisements.state();
    // Both taken before any object is read: a change noted later is seen next pass.
    let changes = (take(&stores.service_changes), take(&stores.slice_changes));
    if let (Changes::Keys(services), Changes::Keys(slices)) = changes {
        let services = lookup(&stores.services, services);
        let slices = lookup(&stores.slices, slices);
        return cache.sync_keys(
            services.iter().map(|(key, o)| (key, o.as_ref())),
            slices.iter().map(|(key, o)| (key, o.as_ref())),
            nodes.iter().map(AsRef::as_ref),
            pools.iter().map(AsRef::as_ref),
            l2.iter().map(AsRef::as_ref),
            class,
        );
    }
    // A (re-)list: every object, read under the stores' locks (the watch tasks
    // wait for this pass, which takes no await).
    let services = read(&stores.services);
    let slices = read(&stores.slices);
    cache.sync(
        services.iter(),
        slices.iter(),
        nodes.iter().map(AsRef::as_ref),
        pools.iter().map(AsRef::as_ref),
        l2.iter().map(AsRef::as_ref),
        class,
    )
}
