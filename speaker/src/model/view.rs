//! The cluster as the speaker's decisions see it: only the fields that matter, already
//! parsed, in maps keyed by name so that iteration order never depends on watch order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ferrolb_crds::address::IpRange;
use ferrolb_crds::labels::Labels;

use super::few::Few;
use super::scope::{AdvertisementScope, AdvertisementSelectors};

pub use ferrolb_crds::service_key::ServiceKey;

/// A LoadBalancer Service of our class that has IPs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// The Service's namespace and name.
    pub key: ServiceKey,
    /// The Service's labels, matched by advertisements' service selectors.
    pub labels: Labels,
    /// From `status.loadBalancer.ingress[].ip`, in order, without duplicates (the
    /// usual one held in place).
    pub ips: Few<IpAddr>,
    /// `externalTrafficPolicy: Local`: only nodes with a usable endpoint may take traffic.
    pub local_traffic_policy: bool,
}

/// A Node, reduced to what decides whether it may announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The Node's name.
    pub name: String,
    /// The Node's labels, matched by node selectors and checked for the exclude-from-load-balancers label.
    pub labels: Labels,
    /// Condition `Ready` is `True`.
    pub ready: bool,
    /// Condition `NetworkUnavailable` is `True`.
    pub network_unavailable: bool,
}

/// Where a Service's usable endpoints run, merged over all its EndpointSlices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceEndpoints {
    /// Nodes hosting at least one usable endpoint.
    pub nodes: NodeSet,
    /// Usable endpoints with no `nodeName`: they count for "has endpoints at all" but put
    /// no node forward.
    pub unplaced: usize,
}

/// A few node names, sorted, without duplicates: a set sized to its members (a
/// `BTreeSet` allocates room for eleven), whose names may be shared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSet(Vec<Arc<str>>);

impl NodeSet {
    /// Whether `node` is in the set.
    pub fn contains<N: AsRef<str> + ?Sized>(&self, node: &N) -> bool {
        let node = node.as_ref();
        self.0.binary_search_by(|name| (**name).cmp(node)).is_ok()
    }

    /// Adds `node`; whether it was new.
    pub fn insert(&mut self, node: Arc<str>) -> bool {
        match self.0.binary_search(&node) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, node);
                true
            }
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many nodes it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The names, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|name| &**name)
    }

    /// Frees room beyond the members.
    pub fn shrink_to_fit(&mut self) {
        self.0.shrink_to_fit();
    }
}

impl<S: AsRef<str>> FromIterator<S> for NodeSet {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> NodeSet {
        let mut set = NodeSet::default();
        for name in names {
            set.insert(Arc::from(name.as_ref()));
        }
        set
    }
}

impl From<BTreeSet<String>> for NodeSet {
    fn from(names: BTreeSet<String>) -> NodeSet {
        names.into_iter().collect()
    }
}

/// A few Services, sorted, without duplicates: a set sized to its members (usually
/// one Service on an IP, for which a `BTreeSet` would allocate room for eleven), one
/// Service held in place (no heap block of its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSet(Few<ServiceKey>);

impl ServiceSet {
    /// Whether `service` is in the set.
    pub fn contains(&self, service: &ServiceKey) -> bool {
        self.0.as_slice().binary_search(service).is_ok()
    }

    /// Adds `service`, growing the set by one place only; whether it was new.
    pub fn insert(&mut self, service: ServiceKey) -> bool {
        match self.0.as_slice().binary_search(&service) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, service);
                true
            }
        }
    }

    /// Removes `service`; whether it was there.
    pub fn remove(&mut self, service: &ServiceKey) -> bool {
        let had = self.contains(service);
        if had {
            self.0.retain(|kept| kept != service);
        }
        had
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many Services it holds.
    pub fn len(&self) -> usize {
        self.0.as_slice().len()
    }

    /// The Services, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ServiceKey> {
        self.0.as_slice().iter()
    }
}

impl<'s> IntoIterator for &'s ServiceSet {
    type Item = &'s ServiceKey;
    type IntoIter = std::slice::Iter<'s, ServiceKey>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl FromIterator<ServiceKey> for ServiceSet {
    fn from_iter<I: IntoIterator<Item = ServiceKey>>(services: I) -> ServiceSet {
        let mut all: Vec<ServiceKey> = services.into_iter().collect();
        all.sort();
        all.dedup();
        ServiceSet(Few::from(all))
    }
}

impl<const N: usize> From<[ServiceKey; N]> for ServiceSet {
    fn from(services: [ServiceKey; N]) -> ServiceSet {
        services.into_iter().collect()
    }
}

impl From<BTreeSet<ServiceKey>> for ServiceSet {
    fn from(services: BTreeSet<ServiceKey>) -> ServiceSet {
        services.into_iter().collect()
    }
}

impl ServiceEndpoints {
    /// Whether any usable endpoint exists, on any node or none.
    pub fn any_usable(&self) -> bool {
        !self.nodes.is_empty() || self.unplaced > 0
    }
}

/// An `IPAddressPool` of the speaker's namespace; only its addresses matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    /// The pool's name.
    pub name: String,
    /// The pool's labels, matched by advertisements' pool selectors.
    pub labels: Labels,
    /// The entries of `spec.addresses` that parse; malformed ones were dropped with a
    /// warning.
    pub ranges: Vec<IpRange>,
}

impl PoolView {
    /// Whether `ip` lies in one of the pool's usable entries.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.ranges.iter().any(|range| range.contains(ip))
    }
}

/// An `L2Advertisement` of the speaker's namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct L2AdvertisementView {
    /// The L2Advertisement's name.
    pub name: String,
    /// The pools, nodes and Services it covers.
    pub selectors: AdvertisementSelectors,
    /// `spec.interfaces`; empty means every suitable interface.
    pub interfaces: Vec<String>,
}

impl AdvertisementScope for L2AdvertisementView {
    fn selectors(&self) -> &AdvertisementSelectors {
        &self.selectors
    }
}

/// Everything the decisions read. Build it with [`ClusterView::from_objects`](crate::model::ClusterView::from_objects)
/// from watched objects, or with the `insert_*` methods in tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// Services of our class with IPs, by key.
    pub services: BTreeMap<ServiceKey, ServiceView>,
    /// Endpoints of the Services in `services`; a Service missing here has none.
    pub endpoints: BTreeMap<ServiceKey, ServiceEndpoints>,
    /// Nodes, by name.
    pub nodes: BTreeMap<String, NodeView>,
    /// IPAddressPools of the speaker's namespace, by name.
    pub pools: BTreeMap<String, PoolView>,
    /// L2Advertisements of the speaker's namespace, by name.
    pub l2_advertisements: BTreeMap<String, L2AdvertisementView>,
}

impl ClusterView {
    /// Adds or replaces a Service, keyed by its key.
    pub fn insert_service(&mut self, service: ServiceView) {
        self.services.insert(service.key.clone(), service);
    }

    /// The view's own `key` when it holds that Service, else `key`: a caller that keeps
    /// a Service's key shares the view's, so one Service has one key allocation.
    pub fn shared_key(&self, key: ServiceKey) -> ServiceKey {
        match self.services.get_key_value(&key) {
            Some((shared, _)) => shared.clone(),
            None => key,
        }
    }

    /// Sets the endpoints of `service`, replacing earlier ones.
    pub fn insert_endpoints(&mut self, service: ServiceKey, endpoints: ServiceEndpoints) {
        self.endpoints.insert(service, endpoints);
    }

    /// Adds or replaces a node, keyed by its name.
    pub fn insert_node(&mut self, node: NodeView) {
        self.nodes.insert(node.name.clone(), node);
    }

    /// Adds or replaces a pool, keyed by its name.
    pub fn insert_pool(&mut self, pool: PoolView) {
        self.pools.insert(pool.name.clone(), pool);
    }

    /// Adds or replaces an L2Advertisement, keyed by its name.
    pub fn insert_l2_advertisement(&mut self, advertisement: L2AdvertisementView) {
        self.l2_advertisements
            .insert(advertisement.name.clone(), advertisement);
    }

    /// The pools that hold `ip`. Usually one; overlapping pools are a misconfiguration
    /// that the controller reports, and an IP in the overlap belongs to all of them here.
    pub fn pools_containing<'a>(&'a self, ip: &'a IpAddr) -> impl Iterator<Item = &'a PoolView> {
        self.pools.values().filter(move |pool| pool.contains(ip))
    }

    /// The endpoints of `service`; none when it has no EndpointSlices.
    pub fn endpoints_of(&self, service: &ServiceKey) -> Option<&ServiceEndpoints> {
        self.endpoints.get(service)
    }

    /// Every IP of a Service in the view, with the Services that hold it.
    pub fn services_by_ip(&self) -> BTreeMap<IpAddr, BTreeSet<&ServiceKey>> {
        let mut by_ip: BTreeMap<IpAddr, BTreeSet<&ServiceKey>> = BTreeMap::new();
        for service in self.services.values() {
            for ip in &service.ips {
                by_ip.entry(*ip).or_default().insert(&service.key);
            }
        }
        by_ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_set_is_a_sorted_set() {
        let key = |name: &str| ServiceKey::new("ns", name);
        let set: ServiceSet = [key("b"), key("a"), key("b")].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), [&key("a"), &key("b")]);
        assert!(set.contains(&key("a")) && set.contains(&key("b")));
        assert!(!set.contains(&key("c")) && !set.is_empty());
        assert_eq!(set.len(), 2);
        assert!(ServiceSet::default().is_empty());
        let from_tree: ServiceSet = BTreeSet::from([key("b"), key("a")]).into();
        assert_eq!(from_tree, set);
        assert_eq!(ServiceSet::from([key("b"), key("a")]), set);
        let mut grown = ServiceSet::default();
        assert!(grown.insert(key("b")) && grown.insert(key("a")) && !grown.insert(key("b")));
        assert_eq!(grown, set);
        assert!(grown.remove(&key("a")) && !grown.remove(&key("a")));
        assert_eq!(grown, ServiceSet::from([key("b")]));
    }

    proptest::proptest! {
        /// Any inserts and removes leave the set a model `BTreeSet` would be.
        #[test]
        fn a_service_set_follows_a_btree_set(
            steps in proptest::collection::vec((proptest::bool::ANY, 0..4u8), 0..24),
        ) {
            let key = |i: u8| ServiceKey::new("ns", format!("s{i}"));
            let (mut set, mut model) = (ServiceSet::default(), BTreeSet::new());
            for (insert, i) in steps {
                if insert {
                    proptest::prop_assert_eq!(set.insert(key(i)), model.insert(key(i)));
                } else {
                    proptest::prop_assert_eq!(set.remove(&key(i)), model.remove(&key(i)));
                }
                proptest::prop_assert!(set.iter().eq(model.iter()), "{set:?} {model:?}");
                proptest::prop_assert_eq!(set.len(), model.len());
                proptest::prop_assert_eq!(&set, &ServiceSet::from(model.clone()));
            }
        }
    }

    #[test]
    fn a_node_set_is_a_sorted_set() {
        let mut set: NodeSet = ["b", "a", "b"].into_iter().collect();
        assert_eq!(set.iter().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!set.insert(Arc::from("a")));
        assert!(set.insert(Arc::from("c")));
        assert!(set.insert(Arc::from("0")));
        assert_eq!(set.iter().collect::<Vec<_>>(), ["0", "a", "b", "c"]);
        assert!(set.contains("c") && set.contains(&String::from("0")));
        assert!(!set.contains("d") && !set.is_empty());
        assert_eq!(set.len(), 4);
        assert!(NodeSet::default().is_empty());
    }
}
