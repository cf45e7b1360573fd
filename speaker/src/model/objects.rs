//! The Services and EndpointSlices as the speaker keeps them: only the fields it reads,
//! converted once when the watch delivers an object, held once (the watch's
//! [`ObjectStore`] and the [`super::ViewCache`] share them by [`Arc`]), keyed by
//! namespace and then name so that a namespace's text is held once per store.
//!
//! [`ObjectStore`] is a watch's cache: objects written and deleted one at a time, and a
//! (re-)list that replaces the whole set when it completes (until then the store keeps
//! what it had, so an outage does not empty it); [`apply_event`] takes one watch event
//! into it (the watch task in `shell::stores` only calls it and notes the result).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_crds::class::Interest;
use ferrolb_crds::labels::Labels;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::runtime::watcher;

use super::ClassFilter;
use super::convert::LABEL_SERVICE_NAME;
use super::name::Name;
use super::object_text::{Uid, Version};
use super::view::ServiceKey;

/// What the speaker reads of a Service: its uid (named by the reporter's Events),
/// `resourceVersion` (the view cache), labels (advertisements' Service selectors), what
/// decides whether it is ours, the traffic policy, and the ingress IPs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceObject {
    /// `metadata.uid`.
    pub uid: Option<Uid>,
    /// `metadata.resourceVersion`.
    pub version: Option<Version>,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `spec.type` is `LoadBalancer`.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass` (shared by a store's Services, [`Texts`]).
    pub class: Option<Arc<str>>,
    /// `spec.externalTrafficPolicy: Local`.
    pub local_traffic_policy: bool,
    /// The `status.loadBalancer.ingress[].ip` that parse, in order, without duplicates.
    pub ips: Box<[IpAddr]>,
    /// The `status.loadBalancer.ingress[].ip` that do not parse, in order.
    pub invalid_ips: Box<[Box<str>]>,
}

/// What the speaker reads of an EndpointSlice: its `resourceVersion`, the Service it
/// names, and each endpoint's node and conditions (addresses and ports are most of a
/// slice).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceObject {
    /// `metadata.resourceVersion`.
    pub version: Option<Version>,
    /// The `kubernetes.io/service-name` label: the Service in the slice's namespace.
    pub service: Option<Name>,
    /// The endpoints, in order.
    pub endpoints: Box<[EndpointObject]>,
}

/// One endpoint of a [`SliceObject`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointObject {
    /// `nodeName` (shared by a store's endpoints, [`Texts`]).
    pub node: Option<Arc<str>>,
    /// `conditions`.
    pub conditions: Option<EndpointConditions>,
}

/// The key of an object: its namespace and name, both non-empty.
pub fn object_key(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<ServiceKey> {
    match (&meta.namespace, &meta.name) {
        (Some(namespace), Some(name)) if !namespace.is_empty() && !name.is_empty() => {
            Some(ServiceKey::new(namespace, name))
        }
        _ => None,
    }
}

impl ServiceObject {
    /// What the speaker keeps of `service`.
    pub fn of(service: &Service) -> ServiceObject {
        let meta = &service.metadata;
        let spec = service.spec.as_ref();
        let ingress = service
            .status
            .as_ref()
            .and_then(|status| status.load_balancer.as_ref())
            .and_then(|load_balancer| load_balancer.ingress.as_ref());
        let (mut ips, mut invalid_ips) = (Vec::new(), Vec::new());
        // Entries with only a hostname are not ours to announce.
        for text in ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref()) {
            match text.parse::<IpAddr>() {
                Ok(ip) if !ips.contains(&ip) => ips.push(ip),
                Ok(_) => {}
                Err(_) => invalid_ips.push(Box::from(text.as_str())),
            }
        }
        ServiceObject {
            uid: meta.uid.as_deref().map(Uid::new),
            version: meta.resource_version.as_deref().map(Version::new),
            labels: meta.labels.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            load_balancer: spec.and_then(|spec| spec.type_.as_deref()) == Some("LoadBalancer"),
            class: spec.and_then(|spec| spec.load_balancer_class.as_deref().map(Arc::from)),
            local_traffic_policy: spec.and_then(|spec| spec.external_traffic_policy.as_deref())
                == Some("Local"),
            ips: ips.into_boxed_slice(),
            invalid_ips: invalid_ips.into_boxed_slice(),
        }
    }

    /// What `class` makes of the Service ([`ClassFilter::interest`]'s rule).
    pub fn interest(&self, class: &ClassFilter) -> Interest {
        if self.deleting || !self.load_balancer {
            Interest::NotLoadBalancer
        } else if class.serves_class(self.class.as_deref()) {
            Interest::Ours
        } else {
            Interest::OtherClass
        }
    }

    /// Whether the Service is ours to serve.
    pub fn is_ours(&self, class: &ClassFilter) -> bool {
        self.interest(class) == Interest::Ours
    }
}

impl SliceObject {
    /// What the speaker keeps of `slice`.
    pub fn of(slice: &EndpointSlice) -> SliceObject {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(LABEL_SERVICE_NAME));
        SliceObject {
            version: slice.metadata.resource_version.as_deref().map(Version::new),
            service: service.map(|name| Name::from(name.as_str())),
            endpoints: slice.endpoints.iter().map(EndpointObject::of).collect(),
        }
    }
}

impl EndpointObject {
    /// What the speaker keeps of `endpoint`.
    pub fn of(endpoint: &Endpoint) -> EndpointObject {
        EndpointObject {
            node: endpoint.node_name.as_deref().map(Arc::from),
            conditions: endpoint.conditions.clone(),
        }
    }
}

/// Values by namespace, then name (each held in place when short, [`Name`]): found by a
/// key's two texts without building a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByKey<T>(HashMap<Name, HashMap<Name, T>>);

impl<T> Default for ByKey<T> {
    fn default() -> Self {
        ByKey(HashMap::new())
    }
}

impl<T> ByKey<T> {
    /// The value of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&T> {
        self.0.get(namespace)?.get(name)
    }

    /// The value of `namespace/name`, to change.
    pub fn get_mut(&mut self, namespace: &str, name: &str) -> Option<&mut T> {
        self.0.get_mut(namespace)?.get_mut(name)
    }

    /// Sets the value of `namespace/name`, returning the one it replaces.
    pub fn insert(&mut self, namespace: &str, name: &str, value: T) -> Option<T> {
        let names = match self.0.get_mut(namespace) {
            Some(names) => names,
            None => self.0.entry(Name::from(namespace)).or_default(),
        };
        match names.get_mut(name) {
            Some(old) => Some(std::mem::replace(old, value)),
            None => names.insert(Name::from(name), value),
        }
    }

    /// Removes `namespace/name`, returning its value.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<T> {
        let names = self.0.get_mut(namespace)?;
        let removed = names.remove(name);
        if names.is_empty() {
            self.0.remove(namespace);
        }
        removed
    }

    /// Every entry: namespace, name, value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &T)> {
        self.0.iter().flat_map(|(namespace, names)| {
            names
                .iter()
                .map(move |(name, value)| (&**namespace, &**name, value))
        })
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.0.values().map(HashMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The keys of the entries `pick` picks.
    pub fn keys_where(&self, pick: impl Fn(&T) -> bool) -> Vec<ServiceKey> {
        self.iter()
            .filter(|(_, _, value)| pick(value))
            .map(|(namespace, name, _)| ServiceKey::new(namespace, name))
            .collect()
    }
}

/// Texts that many objects repeat (node names, a class), each held once and handed
/// out shared; those no object holds any more are forgotten as the set grows.
#[derive(Debug, Default)]
pub struct Texts {
    held: HashSet<Arc<str>>,
    /// How many texts were held after the last pruning.
    kept: usize,
}

impl Texts {
    /// Makes `text` the one held of its content.
    pub fn share(&mut self, text: &mut Arc<str>) {
        match self.held.get(&**text) {
            Some(held) => *text = Arc::clone(held),
            None => {
                if self.held.len() >= 2 * self.kept.max(32) {
                    self.held.retain(|held| Arc::strong_count(held) > 1);
                    self.kept = self.held.len();
                }
                self.held.insert(Arc::clone(text));
            }
        }
    }
}

/// An object whose repeated texts a store shares ([`Texts`]).
pub trait ShareTexts {
    /// Makes each repeated text of the object the one `texts` holds.
    fn share_texts(&mut self, texts: &mut Texts);
}

impl ShareTexts for ServiceObject {
    fn share_texts(&mut self, texts: &mut Texts) {
        if let Some(class) = &mut self.class {
            texts.share(class);
        }
    }
}

impl ShareTexts for SliceObject {
    fn share_texts(&mut self, texts: &mut Texts) {
        for node in self.endpoints.iter_mut().filter_map(|e| e.node.as_mut()) {
            texts.share(node);
        }
    }
}

/// One watched kind's objects, as its watch events leave them.
#[derive(Debug)]
pub struct ObjectStore<T> {
    objects: ByKey<Arc<T>>,
    /// A (re-)list under way: the objects listed so far.
    listing: Option<ByKey<Arc<T>>>,
    /// The texts the objects share.
    texts: Texts,
}

impl<T> Default for ObjectStore<T> {
    fn default() -> Self {
        ObjectStore {
            objects: ByKey::default(),
            listing: None,
            texts: Texts::default(),
        }
    }
}

impl<T: ShareTexts> ObjectStore<T> {
    /// An object written (added or changed).
    pub fn apply(&mut self, key: &ServiceKey, mut object: T) {
        object.share_texts(&mut self.texts);
        self.objects
            .insert(key.namespace(), key.name(), Arc::new(object));
    }

    /// An object of the list under way.
    pub fn listed(&mut self, key: &ServiceKey, mut object: T) {
        object.share_texts(&mut self.texts);
        self.listing.get_or_insert_with(ByKey::default).insert(
            key.namespace(),
            key.name(),
            Arc::new(object),
        );
    }
}

impl<T> ObjectStore<T> {
    /// An object deleted.
    pub fn delete(&mut self, key: &ServiceKey) {
        self.objects.remove(key.namespace(), key.name());
    }

    /// A (re-)list starts; the store keeps its objects until it is done.
    pub fn list_started(&mut self) {
        self.listing = Some(ByKey::default());
    }

    /// The list is complete: its objects replace the store's, so objects deleted while
    /// the watch was away disappear.
    pub fn list_done(&mut self) {
        self.objects = self.listing.take().unwrap_or_default();
    }

    /// The object `key`.
    pub fn get(&self, key: &ServiceKey) -> Option<&Arc<T>> {
        self.objects.get(key.namespace(), key.name())
    }

    /// Every object: namespace, name, object.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Arc<T>)> {
        self.objects.iter()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// What one watch event did to a compact store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The object `key` was written or deleted.
    Object(ServiceKey),
    /// A (re-)list completed: the store holds exactly the objects listed.
    Listed,
    /// Nothing the plan needs to hear of yet (a list under way, or an object
    /// without a namespace or name, which the API server never sends).
    Nothing,
}

/// Applies one watch event to `store`, converting the object with `convert`:
/// the store logic of kube's reflector (a list replaces the whole set once
/// complete), for objects the speaker keeps compact.
pub fn apply_event<K: kube::Resource, T: ShareTexts>(
    store: &mut ObjectStore<T>,
    event: watcher::Event<K>,
    convert: fn(&K) -> T,
) -> Applied {
    match event {
        watcher::Event::Init => {
            store.list_started();
            Applied::Nothing
        }
        watcher::Event::InitApply(object) => {
            if let Some(key) = object_key(object.meta()) {
                store.listed(&key, convert(&object));
            }
            Applied::Nothing
        }
        watcher::Event::InitDone => {
            store.list_done();
            Applied::Listed
        }
        watcher::Event::Apply(object) => match object_key(object.meta()) {
            Some(key) => {
                store.apply(&key, convert(&object));
                Applied::Object(key)
            }
            None => Applied::Nothing,
        },
        watcher::Event::Delete(object) => match object_key(object.meta()) {
            Some(key) => {
                store.delete(&key);
                Applied::Object(key)
            }
            None => Applied::Nothing,
        },
    }
}

#[cfg(test)]
#[path = "objects_tests.rs"]
mod tests;
