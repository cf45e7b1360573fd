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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ferrolb_crds::l2::L2Advertisement;
use ferrolb_crds::pool::IPAddressPool;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ClassFilter;
use super::convert::{
    ViewWarning, is_usable, is_usable_in_full_disruption, l2_advertisement_view, namespaced_key,
    node_view, placements, pool_view, service_name_of, service_view,
};
use super::eligibility::readiness_counts;
use super::view::{ClusterView, ServiceEndpoints, ServiceKey};

/// The view and what each watched Service and EndpointSlice contributed to it.
#[derive(Debug, Default)]
pub struct ViewCache {
    view: ClusterView,
    services: Entries<Seen>,
    slices: Entries<SliceEntry>,
    /// The slices naming each Service, whether or not it is in the view.
    slices_of: HashMap<ServiceKey, BTreeSet<ServiceKey>>,
    /// The warnings of the Services that have any, derived again only when the
    /// Service changes.
    service_warnings: BTreeMap<ServiceKey, Vec<ViewWarning>>,
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

#[derive(Debug)]
struct Seen {
    version: Option<String>,
    generation: u64,
}

#[derive(Debug)]
struct SliceEntry {
    seen: Seen,
    service: ServiceKey,
    /// The usable endpoints' nodes and unplaced count, when conditions count.
    usable: (Vec<String>, usize),
    /// The same in a full disruption (no node Ready).
    disruption: (Vec<String>, usize),
}

/// Per object, by namespace then name: found from an object's metadata without
/// building a key (two allocations per object and plan).
#[derive(Debug)]
struct Entries<T>(HashMap<String, HashMap<String, T>>);

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Entries(HashMap::new())
    }
}

impl<T> Entries<T> {
    fn get_mut(&mut self, meta: &ObjectMeta) -> Option<&mut T> {
        let (namespace, name) = (meta.namespace.as_deref()?, meta.name.as_deref()?);
        self.0.get_mut(namespace)?.get_mut(name)
    }

    fn get(&self, key: &ServiceKey) -> Option<&T> {
        self.0.get(&key.namespace)?.get(&key.name)
    }

    fn insert(&mut self, key: &ServiceKey, value: T) -> Option<T> {
        let names = self.0.entry(key.namespace.clone()).or_default();
        names.insert(key.name.clone(), value)
    }

    fn remove(&mut self, key: &ServiceKey) -> Option<T> {
        let names = self.0.get_mut(&key.namespace)?;
        let removed = names.remove(&key.name);
        if names.is_empty() {
            self.0.remove(&key.namespace);
        }
        removed
    }

    /// The keys of the entries `pick` picks.
    fn keys_where(&self, pick: impl Fn(&T) -> bool) -> Vec<ServiceKey> {
        self.0
            .iter()
            .flat_map(|(namespace, names)| {
                names
                    .iter()
                    .filter(|(_, value)| pick(value))
                    .map(|(name, _)| ServiceKey::new(namespace.clone(), name.clone()))
            })
            .collect()
    }
}

impl Seen {
    fn unchanged(&self, version: Option<&String>) -> bool {
        version.is_some() && self.version.as_ref() == version
    }
}

impl ViewCache {
    /// The view as of the last [`ViewCache::sync`].
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Brings the view up to date with the given objects (all of each kind, as
    /// [`ClusterView::from_objects`] takes them).
    pub fn sync<'o>(
        &mut self,
        services: impl IntoIterator<Item = &'o Service>,
        endpoint_slices: impl IntoIterator<Item = &'o EndpointSlice>,
        nodes: impl IntoIterator<Item = &'o Node>,
        pools: impl IntoIterator<Item = &'o IPAddressPool>,
        l2_advertisements: impl IntoIterator<Item = &'o L2Advertisement>,
        class: &ClassFilter,
    ) -> Synced {
        let mut pass = self.start_pass();
        for service in services {
            self.put_service(service, class, &mut pass);
        }
        let gone = self
            .services
            .keys_where(|seen| seen.generation != pass.generation);
        for key in gone {
            self.remove_service(&key, &mut pass);
        }
        for slice in endpoint_slices {
            self.put_slice(slice, &mut pass);
        }
        let gone = self
            .slices
            .keys_where(|entry| entry.seen.generation != pass.generation);
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
        services: impl IntoIterator<Item = (&'o ServiceKey, Option<&'o Service>)>,
        endpoint_slices: impl IntoIterator<Item = (&'o ServiceKey, Option<&'o EndpointSlice>)>,
        nodes: impl IntoIterator<Item = &'o Node>,
        pools: impl IntoIterator<Item = &'o IPAddressPool>,
        l2_advertisements: impl IntoIterator<Item = &'o L2Advertisement>,
        class: &ClassFilter,
    ) -> Synced {
        let mut pass = self.start_pass();
        for (key, service) in services {
            if !service.is_some_and(|service| self.put_service(service, class, &mut pass)) {
                self.remove_service(key, &mut pass);
            }
        }
        for (key, slice) in endpoint_slices {
            if !slice.is_some_and(|slice| self.put_slice(slice, &mut pass)) {
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

    /// Takes in one Service; whether it is kept (it has a key).
    fn put_service(&mut self, service: &Service, class: &ClassFilter, pass: &mut Pass) -> bool {
        if let Some(seen) = self.services.get_mut(&service.metadata)
            && seen.unchanged(service.metadata.resource_version.as_ref())
        {
            seen.generation = pass.generation;
            return true;
        }
        let Some(key) = namespaced_key(&service.metadata, "Service", &mut Vec::new()) else {
            // Only Services of our class are worth a warning.
            if class.accepts(service) {
                pass.warnings
                    .push(ViewWarning::MissingName { kind: "Service" });
            }
            return false;
        };
        let version = service.metadata.resource_version.as_ref();
        let mut own = Vec::new();
        let converted = if class.accepts(service) {
            service_view(service, &mut own)
        } else {
            None
        };
        self.services.insert(
            &key,
            Seen {
                version: version.cloned(),
                generation: pass.generation,
            },
        );
        if own.is_empty() {
            self.service_warnings.remove(&key);
        } else {
            self.service_warnings.insert(key.clone(), own);
        }
        if self.set_service(&key, converted) {
            pass.touched.insert(key.clone());
            pass.merge.insert(key);
        }
        true
    }

    fn remove_service(&mut self, key: &ServiceKey, pass: &mut Pass) {
        self.services.remove(key);
        self.service_warnings.remove(key);
        if self.set_service(key, None) {
            pass.touched.insert(key.clone());
            pass.merge.insert(key.clone());
        }
    }

    /// Takes in one EndpointSlice; whether it is kept (it has a key and names a Service).
    fn put_slice(&mut self, slice: &EndpointSlice, pass: &mut Pass) -> bool {
        let Some(service_name) = service_name_of(slice) else {
            return false;
        };
        let version = slice.metadata.resource_version.as_ref();
        if let Some(entry) = self.slices.get_mut(&slice.metadata)
            && entry.seen.unchanged(version)
            && entry.service.name == *service_name
        {
            entry.seen.generation = pass.generation;
            return true;
        }
        let Some(key) = namespaced_key(&slice.metadata, "EndpointSlice", &mut pass.warnings) else {
            return false;
        };
        let service = ServiceKey::new(key.namespace.clone(), service_name);
        let entry = SliceEntry {
            seen: Seen {
                version: version.cloned(),
                generation: pass.generation,
            },
            service: service.clone(),
            usable: placements(slice, is_usable),
            disruption: placements(slice, is_usable_in_full_disruption),
        };
        if let Some(old) = self.slices.insert(&key, entry) {
            self.unlink_slice(&old.service, &key);
            pass.merge.insert(old.service);
        }
        self.slices_of
            .entry(service.clone())
            .or_default()
            .insert(key);
        pass.merge.insert(service);
        true
    }

    fn remove_slice(&mut self, key: &ServiceKey, pass: &mut Pass) {
        if let Some(old) = self.slices.remove(key) {
            self.unlink_slice(&old.service, key);
            pass.merge.insert(old.service);
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
        }
        for key in merge {
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

    fn unlink_slice(&mut self, service: &ServiceKey, slice: &ServiceKey) {
        if let Some(slices) = self.slices_of.get_mut(service) {
            slices.remove(slice);
            if slices.is_empty() {
                self.slices_of.remove(service);
            }
        }
    }

    /// Merges the endpoints of `service` again from its slices; whether they changed.
    fn merge_endpoints(&mut self, service: &ServiceKey, conditions_count: bool) -> bool {
        let merged = match self.slices_of.get(service) {
            Some(slices) if self.view.services.contains_key(service) => {
                let mut merged = ServiceEndpoints::default();
                for entry in slices.iter().filter_map(|key| self.slices.get(key)) {
                    let (nodes, unplaced) = if conditions_count {
                        &entry.usable
                    } else {
                        &entry.disruption
                    };
                    merged.nodes.extend(nodes.iter().cloned());
                    merged.unplaced = merged.unplaced.saturating_add(*unplaced);
                }
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
