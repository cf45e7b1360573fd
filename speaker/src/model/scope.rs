//! What an advertisement selects: pools, Services and nodes. `L2Advertisement` and
//! `BGPAdvertisement` share these four fields and their meaning, so the rules live here
//! once, behind a trait that each advertisement view implements.

use ferrolb_crds::labels::{Labels, any_selector_matches};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::view::{L2AdvertisementView, PoolView};

/// The selecting fields of an advertisement, with MetalLB's meaning of "empty".
pub trait AdvertisementScope {
    /// `spec.ipAddressPools`.
    fn pool_names(&self) -> &[String];
    /// `spec.ipAddressPoolSelectors`.
    fn pool_selectors(&self) -> &[LabelSelector];
    /// `spec.nodeSelectors`.
    fn node_selectors(&self) -> &[LabelSelector];
    /// `spec.serviceSelectors`.
    fn service_selectors(&self) -> &[LabelSelector];

    /// Named in `ipAddressPools`, or matched by one of `ipAddressPoolSelectors`; when both
    /// are empty, every pool.
    fn selects_pool(&self, pool: &PoolView) -> bool {
        let names = self.pool_names();
        let selectors = self.pool_selectors();
        if names.is_empty() && selectors.is_empty() {
            return true;
        }
        names.contains(&pool.name)
            || (!selectors.is_empty() && any_selector_matches(selectors, &pool.labels))
    }

    /// Matched by one of `serviceSelectors`; when empty, every Service.
    fn selects_service(&self, service_labels: &Labels) -> bool {
        any_selector_matches(self.service_selectors(), service_labels)
    }

    /// Matched by one of `nodeSelectors`; when empty, every node.
    fn selects_node(&self, node_labels: &Labels) -> bool {
        any_selector_matches(self.node_selectors(), node_labels)
    }
}

impl AdvertisementScope for L2AdvertisementView {
    fn pool_names(&self) -> &[String] {
        &self.pools
    }

    fn pool_selectors(&self) -> &[LabelSelector] {
        &self.pool_selectors
    }

    fn node_selectors(&self) -> &[LabelSelector] {
        &self.node_selectors
    }

    fn service_selectors(&self) -> &[LabelSelector] {
        &self.service_selectors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector {
            match_labels: Some(labels(pairs)),
            match_expressions: None,
        }
    }

    fn pool(name: &str, pairs: &[(&str, &str)]) -> PoolView {
        PoolView {
            name: name.into(),
            labels: labels(pairs),
            ranges: Vec::new(),
        }
    }

    fn advertisement() -> L2AdvertisementView {
        L2AdvertisementView {
            name: "ad".into(),
            pools: Vec::new(),
            pool_selectors: Vec::new(),
            node_selectors: Vec::new(),
            service_selectors: Vec::new(),
            interfaces: Vec::new(),
        }
    }

    #[test]
    fn empty_pool_fields_select_every_pool() {
        assert!(advertisement().selects_pool(&pool("any", &[])));
    }

    #[test]
    fn pools_by_name_or_by_selector() {
        let mut ad = advertisement();
        ad.pools = vec!["named".into()];
        assert!(ad.selects_pool(&pool("named", &[])));
        assert!(!ad.selects_pool(&pool("other", &[("tier", "gold")])));
        ad.pool_selectors = vec![selector(&[("tier", "gold")])];
        assert!(ad.selects_pool(&pool("other", &[("tier", "gold")])));
        assert!(!ad.selects_pool(&pool("other", &[("tier", "iron")])));
        ad.pools.clear();
        assert!(!ad.selects_pool(&pool("named", &[])));
    }

    #[test]
    fn services_and_nodes_by_selector() {
        let mut ad = advertisement();
        assert!(ad.selects_service(&labels(&[])));
        assert!(ad.selects_node(&labels(&[])));
        ad.service_selectors = vec![selector(&[("app", "web")])];
        ad.node_selectors = vec![selector(&[("zone", "a")]), selector(&[("zone", "b")])];
        assert!(ad.selects_service(&labels(&[("app", "web")])));
        assert!(!ad.selects_service(&labels(&[("app", "db")])));
        assert!(ad.selects_node(&labels(&[("zone", "b")])));
        assert!(!ad.selects_node(&labels(&[("zone", "c")])));
    }
}
