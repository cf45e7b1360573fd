//! The [`ClusterView`] kept up to date rather than rebuilt: [`ViewCache::sync`] gives the
//! same view as [`ClusterView::from_objects`] (the property tests prove it over random
//! sequences of changes) but converts again only the Services and EndpointSlices whose
//! `metadata.resourceVersion` changed since the last call (or that have none), and says
//! which Services' view or endpoints changed, the set [`super::L2Planner::plan_touched`]
//! re-decides.
//!
//! [`ViewCache::sync_keys`] does the same visiting only the Services and EndpointSlices
//! the watch events named since the last call ([`super::Changes`]), so a change costs
//! in proportion to itself, not to the cluster; [`ViewCache::sync`] visits every
//! object (the first pass, and after a watch listed its kind again). Either way an
//! object whose resourceVersion is unchanged is not converted again, and a Service's
//! warnings are derived again only when it changes. Nodes, pools and L2Advertisements are few
//! and converted whole every time; when the nodes' readiness turns endpoint conditions
//! on or off, every Service's endpoints are merged again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ferrolb_crds::l2::L2Advertisement;
use ferrolb_crds::pool::IPAddressPool;
use k8s_openapi::api::core::v1::Node;

use super::ClassFilter;
use super::convert::{
    ViewWarning, add_placements, is_usable, is_usable_in_full_disruption, l2_advertisement_view,
    node_view, pool_view, service_view,
};
use super::eligibility::readiness_counts;
use super::few::Few;
use super::name::Name;
use super::object_text::Version;
use super::objects::{ByKey, ServiceObject, SliceObject};
use super::view::{ClusterView, ServiceEndpoints, ServiceKey};

/// The view and what each watched Service and EndpointSlice contributed to it.
#[derive(Debug, Default)]
pub struct ViewCache {
    view: ClusterView,
    /// The Services in the view, as last taken in, by the view's own key (a Service not
    /// ours is not kept: taking it in again only finds it is not ours).
    services: HashMap<ServiceKey, Seen<ServiceObject>>,
    slices: ByKey<Seen<SliceObject>>,
    /// The slices naming each Service (by name, in the Service's namespace), whether or
    /// not the Service is in the view; by the view's own key when it is.
    slices_of: HashMap<ServiceKey, Few<Name>>,
    /// The warnings of the Services that have any, derived again only when the
    /// Service changes.
    service_warnings: BTreeMap<ServiceKey, Vec<ViewWarning>>,
    /// The node names the view's endpoints hold, each once (pruned of names no
    /// longer used whenever every Service's endpoints are merged again).
    node_names: HashSet<Arc<str>>,
    readiness_counts: Option<bool>,
    generation: u64,
}

/// What one call of [`ViewCache::sync`] changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Synced {
    /// The Services whose view or endpoints changed (added and removed ones included);
    /// `None` when the first sync or a change of readiness may have changed any.
    pub touched: Option<BTreeSet<ServiceKey>>,
    /// As [`ClusterView::from_objects`] reports them, sorted by their text (so two syncs
    /// with the same warnings give equal lists).
    pub warnings: Vec<ViewWarning>,
}

/// What one sync collects on its way.
struct Pass {
    generation: u64,
    warnings: Vec<ViewWarning>,
    touched: BTreeSet<ServiceKey>,
    /// Services whose endpoints must be merged again.
    merge: BTreeSet<ServiceKey>,
}

/// An object as last taken in: the very object the watch's store holds (shared, not
/// copied), and the pass that last saw it.
#[derive(Debug)]
struct Seen<T> {
    object: Arc<T>,
    generation: u64,
}

/// An object's `resourceVersion`.
trait Versioned {
    fn version(&self) -> Option<&Version>;
}

impl Versioned for ServiceObject {
    fn version(&self) -> Option<&Version> {
        self.version.as_ref()
    }
}

impl Versioned for SliceObject {
    fn version(&self) -> Option<&Version> {
        self.version.as_ref()
    }
}

impl<T: Versioned> Seen<T> {
    /// Whether `object` is the one seen: the same, or of the same resourceVersion.
    /// Then it takes the new one's place, so the store's and the cache's stay one.
    fn take_if_unchanged(&mut self, object: &Arc<T>, generation: u64) -> bool {
        let unchanged = Arc::ptr_eq(&self.object, object)
            || (object.version().is_some() && self.object.version() == object.version());
        if unchanged {
            self.object = Arc::clone(object);
            self.generation = generation;
        }
        unchanged
    }
}

impl ViewCache {
    /// The view as of the last [`ViewCache::sync`].
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Brings the view up to date with the given objects, each with its namespace and
    /// name (all of each kind, as a watch's [`super::ObjectStore::iter`] gives them).
    pub fn sync<'o>(
        &mut self,
        services: impl IntoIterator<Item = (&'o str, &'o str, &'o Arc<ServiceObject>)>,
        endpoint_slices: impl IntoIterator<Item = (&'o str, &'o str, &'o Arc<SliceObject>)>,
        nodes: impl IntoIterator<Item = &'o Node>,
        pools: impl IntoIterator<Item = &'o IPAddressPool>,
        l2_advertisements: impl IntoIterator<Item = &'o L2Advertisement>,
        class: &ClassFilter,
    ) -> Synced {
        let mut pass = self.start_pass();
        for (namespace, name, service) in services {
            self.put_service(&ServiceKey::new(namespace, name), service, class, &mut pass);
        }
        let gone: Vec<ServiceKey> = self
            .services
            .iter()
            .filter(|(_, seen)| seen.generation != pass.generation)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.remove_service(&key, &mut pass);
        }
        for (namespace, name, slice) in endpoint_slices {
            self.put_slice(namespace, name, slice, &mut pass);
        }
        let gone = self
            .slices
            .keys_where(|seen| seen.generation != pass.generation);
        for key in gone {
            self.remove_slice(&key, &mut pass);
        }
        self.finish_pass(pass, nodes, pools, l2_advertisements)
    }

    /// The same as [`ViewCache::sync`], visiting only the Services and EndpointSlices
    /// named: each `namespace/name` with its object now, `None` when it is gone. They
    /// must name every Service and EndpointSlice written or deleted since the last
    /// call (the first call, every object); nodes, pools and L2Advertisements are
    /// given whole, as to [`ViewCache::sync`].
    pub fn sync_keys<'o>(
        &mut self,
        services: impl IntoIterator<Item = (&'o ServiceKey, Option<&'o Arc<ServiceObject>>)>,
        endpoint_slices: impl IntoIterator<Item = (&'o ServiceKey, Option<&'o Arc<SliceObject>>)>,
        nodes: impl IntoIterator<Item = &'o Node>,
        pools: impl IntoIterator<Item = &'o IPAddressPool>,
        l2_advertisements: impl IntoIterator<Item = &'o L2Advertisement>,
        class: &ClassFilter,
    ) -> Synced {
        let mut pass = self.start_pass();
        for (key, service) in services {
            match service {
                Some(service) => self.put_service(key, service, class, &mut pass),
                None => self.remove_service(key, &mut pass),
            }
        }
        for (key, slice) in endpoint_slices {
            if !slice
                .is_some_and(|slice| self.put_slice(key.namespace(), key.name(), slice, &mut pass))
            {
                self.remove_slice(key, &mut pass);
            }
        }
        self.finish_pass(pass, nodes, pools, l2_advertisements)
    }

    fn start_pass(&mut self) -> Pass {
        self.generation += 1;
        Pass {
            generation: self.generation,
            warnings: Vec::new(),
            touched: BTreeSet::new(),
            merge: BTreeSet::new(),
        }
    }

    /// The key the cache already holds for `key`'s Service (the view's, else its
    /// slices'), else `key`: one Service, one key allocation.
    fn shared_key(&self, key: &ServiceKey) -> ServiceKey {
        let held = match self.view.services.get_key_value(key) {
            Some((held, _)) => Some(held),
            None => self.slices_of.get_key_value(key).map(|(held, _)| held),
        };
        held.unwrap_or(key).clone()
    }

    /// Takes in one Service.
    fn put_service(
        &mut self,
        key: &ServiceKey,
        service: &Arc<ServiceObject>,
        class: &ClassFilter,
        pass: &mut Pass,
    ) {
        if let Some(seen) = self.services.get_mut(key)
            && seen.take_if_unchanged(service, pass.generation)
        {
            return;
        }
        let key = self.shared_key(key);
        let mut own = Vec::new();
        let converted = service
            .is_ours(class)
            .then(|| service_view(&key, service, &mut own));
        if converted.is_some() {
            let seen = Seen {
                object: Arc::clone(service),
                generation: pass.generation,
            };
            self.services.insert(key.clone(), seen);
        } else {
            self.services.remove(&key);
        }
        if own.is_empty() {
            self.service_warnings.remove(&key);
        } else {
            self.service_warnings.insert(key.clone(), own);
        }
        if self.set_service(&key, converted) {
            pass.touched.insert(key.clone());
            pass.merge.insert(key);
        }
    }

    fn remove_service(&mut self, key: &ServiceKey, pass: &mut Pass) {
        self.services.remove(key);
        self.service_warnings.remove(key);
        if self.set_service(key, None) {
            pass.touched.insert(key.clone());
            pass.merge.insert(key.clone());
        }
    }

    /// Takes in one EndpointSlice; whether it is kept (it names a Service).
    fn put_slice(
        &mut self,
        namespace: &str,
        name: &str,
        slice: &Arc<SliceObject>,
        pass: &mut Pass,
    ) -> bool {
        let Some(service) = slice.service.as_deref() else {
            return false;
        };
        if let Some(seen) = self.slices.get_mut(namespace, name)
            && seen.object.service == slice.service
            && seen.take_if_unchanged(slice, pass.generation)
        {
            return true;
        }
        let seen = Seen {
            object: Arc::clone(slice),
            generation: pass.generation,
        };
        if let Some(old) = self.slices.insert(namespace, name, seen)
            && let Some(old_service) = old.object.service.as_deref()
        {
            let old_service = ServiceKey::new(namespace, old_service);
            self.unlink_slice(&old_service, name);
            pass.merge.insert(old_service);
        }
        let service = ServiceKey::new(namespace, service);
        match self.slices_of.get_mut(&service) {
            Some(slices) => {
                let names = slices.as_slice();
                if !names.iter().any(|slice| **slice == *name) {
                    slices.insert(names.len(), Name::from(name));
                }
            }
            None => {
                let key = self.shared_key(&service);
                self.slices_of.insert(key, Few::one(Name::from(name)));
            }
        }
        pass.merge.insert(service);
        true
    }

    fn remove_slice(&mut self, key: &ServiceKey, pass: &mut Pass) {
        if let Some(old) = self.slices.remove(key.namespace(), key.name())
            && let Some(old_service) = old.object.service.as_deref()
        {
            let old_service = ServiceKey::new(key.namespace(), old_service);
            self.unlink_slice(&old_service, key.name());
            pass.merge.insert(old_service);
        }
    }

    /// Converts the few objects again, merges the endpoints of the Services the pass
    /// changed (of every Service when the nodes' readiness turned conditions on or off),
    /// and gathers the warnings.
    fn finish_pass<'o>(
        &mut self,
        pass: Pass,
        nodes: impl IntoIterator<Item = &'o Node>,
        pools: impl IntoIterator<Item = &'o IPAddressPool>,
        l2_advertisements: impl IntoIterator<Item = &'o L2Advertisement>,
    ) -> Synced {
        let Pass {
            mut warnings,
            mut touched,
            mut merge,
            ..
        } = pass;
        self.view.nodes.clear();
        for node in nodes {
            if let Some(node) = node_view(node, &mut warnings) {
                self.view.insert_node(node);
            }
        }
        let counts = readiness_counts(&self.view);
        let everything = self.readiness_counts != Some(counts);
        self.readiness_counts = Some(counts);
        if everything {
            merge = self.view.services.keys().cloned().collect();
            self.view.endpoints.clear();
            self.node_names.retain(|name| Arc::strong_count(name) > 1);
        }
        for key in merge {
            let key = self.view.shared_key(key);
            if self.merge_endpoints(&key, counts) {
                touched.insert(key);
            }
        }

        self.view.pools.clear();
        for pool in pools {
            if let Some(pool) = pool_view(pool, &mut warnings) {
                self.view.insert_pool(pool);
            }
        }
        self.view.l2_advertisements.clear();
        for advertisement in l2_advertisements {
            if let Some(advertisement) = l2_advertisement_view(advertisement, &mut warnings) {
                self.view.insert_l2_advertisement(advertisement);
            }
        }
        warnings.extend(self.service_warnings.values().flatten().cloned());
        warnings.sort_by_cached_key(ToString::to_string);
        Synced {
            touched: (!everything).then_some(touched),
            warnings,
        }
    }

    /// Sets or removes a Service's view; whether it changed.
    fn set_service(&mut self, key: &ServiceKey, converted: Option<super::ServiceView>) -> bool {
        match converted {
            Some(service) => {
                if self.view.services.get(key) == Some(&service) {
                    return false;
                }
                self.view.services.insert(key.clone(), service);
                true
            }
            None => self.view.services.remove(key).is_some(),
        }
    }

    fn unlink_slice(&mut self, service: &ServiceKey, slice: &str) {
        if let Some(slices) = self.slices_of.get_mut(service) {
            slices.retain(|name| **name != *slice);
            if slices.is_empty() {
                self.slices_of.remove(service);
            }
        }
    }

    /// Merges the endpoints of `service` again from its slices; whether they changed.
    fn merge_endpoints(&mut self, service: &ServiceKey, conditions_count: bool) -> bool {
        let usable = if conditions_count {
            is_usable
        } else {
            is_usable_in_full_disruption
        };
        let merged = match self.slices_of.get(service) {
            Some(slices) if self.view.services.contains_key(service) => {
                let mut merged = ServiceEndpoints::default();
                let names = &mut self.node_names;
                let mut intern = |node: &str| match names.get(node) {
                    Some(name) => Arc::clone(name),
                    None => {
                        let name: Arc<str> = Arc::from(node);
                        names.insert(Arc::clone(&name));
                        name
                    }
                };
                for seen in slices
                    .as_slice()
                    .iter()
                    .filter_map(|name| self.slices.get(service.namespace(), name))
                {
                    add_placements(&seen.object, usable, &mut merged, &mut intern);
                }
                merged.nodes.shrink_to_fit();
                Some(merged)
            }
            _ => None,
        };
        match merged {
            Some(merged) => {
                if self.view.endpoints.get(service) == Some(&merged) {
                    return false;
                }
                self.view.endpoints.insert(service.clone(), merged);
                true
            }
            None => self.view.endpoints.remove(service).is_some(),
        }
    }
}

#[cfg(test)]
#[path = "view_cache_proptests.rs"]
mod proptests;
