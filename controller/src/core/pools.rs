//! Pools as allocation sees them, and the resolution of overlaps between them.
//!
//! Overlaps are a cross-object conflict that no schema can catch. Our rule:
//! the overlapping addresses are never handed out again by either pool (so no
//! IP can end up owned twice), while IPs that already live there stay where
//! they are (so a typo in a new pool disturbs no running Service). The pool
//! created later (ties: by name) is the one marked conflicting.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::labels::{Labels, any_selector_matches};
use super::service::ServiceRequest;
use crate::ipam::{AddressSet, IpRange};
use ferrolb_crds::address::subnet_router_anycast;

/// Which Services may draw from a pool (`spec.serviceAllocation`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllocationScope {
    /// `priority`: among admitting scoped pools, lower values are tried first; unset sorts last.
    pub priority: Option<i32>,
    /// Namespaces whose Services may use the pool; empty means any namespace.
    pub namespaces: Vec<String>,
    /// Labels the Service's namespace must match (any one selector); empty means any.
    pub namespace_selectors: Vec<LabelSelector>,
    /// Labels the Service must match (any one selector); empty means any.
    pub service_selectors: Vec<LabelSelector>,
}

impl AllocationScope {
    /// Whether the Service of `request`, in a namespace labelled `namespace_labels`, may draw from the pool: all three filters must agree.
    pub fn admits(&self, request: &ServiceRequest, namespace_labels: &Labels) -> bool {
        (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == request.key.namespace()))
            && any_selector_matches(&self.namespace_selectors, namespace_labels)
            && any_selector_matches(&self.service_selectors, &request.labels)
    }
}

/// One pool's configuration, as declared.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// The IPAddressPool's name.
    pub name: String,
    /// Orders pools for conflict resolution: the earlier-created pool wins.
    pub created: i64,
    /// Every address of `spec.addresses`, merged.
    pub declared: AddressSet,
    /// `autoAssign`: whether Services that name no pool may be given addresses from it.
    pub auto_assign: bool,
    /// `avoidBuggyIPs`: skip IPv4 addresses ending in `.0` and `.255`.
    pub avoid_buggy: bool,
    /// Addresses of `declared` never picked for a Service that asks for none in particular:
    /// the subnet-router anycast addresses of its IPv6 CIDR entries (see [`withheld`]). A
    /// Service that holds or requests one keeps or gets it.
    pub withheld: AddressSet,
    /// `serviceAllocation`, when set: only the Services it admits may use the pool, ahead of unscoped pools.
    pub scope: Option<AllocationScope>,
}

/// A pool ready for allocation: what it declared, and what it may still hand out.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The pool as declared.
    pub config: PoolConfig,
    /// `declared` minus every address another pool also declares.
    pub allocatable: AddressSet,
    /// `allocatable` minus `config.withheld`: where new addresses are picked from.
    pub fresh: AddressSet,
    /// Set when this pool is the later one of an overlap.
    pub conflict: Option<Conflict>,
}

/// The first overlap found for a pool, for its status and Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The earlier pool this one overlaps.
    pub other_pool: String,
    /// The first overlapping range.
    pub overlap: IpRange,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "addresses {} are also in pool {}; they are not allocated from either",
            self.overlap, self.other_pool
        )
    }
}

/// The addresses a pool with these `addresses` entries withholds: the IPv6 subnet-router
/// anycast address (RFC 4291 §2.6.1) of each CIDR entry, as `avoidBuggyIPs` withholds IPv4
/// `.0` and `.255`.
pub fn withheld<S: AsRef<str>>(addresses: &[S]) -> AddressSet {
    AddressSet::new(
        addresses
            .iter()
            .filter_map(|entry| subnet_router_anycast(entry.as_ref()))
            .map(IpRange::single),
    )
}

/// Resolves overlaps: every pool loses the addresses it shares with any other,
/// and the later one of each overlapping pair is marked conflicting.
///
/// Cost is O(p² · r) in pools and ranges; deployments have a handful of pools.
pub fn resolve_pools(mut configs: Vec<PoolConfig>) -> BTreeMap<String, Pool> {
    configs.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let mut pools = BTreeMap::new();
    for (index, config) in configs.iter().enumerate() {
        let mut allocatable = config.declared.clone();
        let mut conflict = None;
        for (other_index, other) in configs.iter().enumerate() {
            if other_index == index || !other.declared.overlaps(&config.declared) {
                continue;
            }
            allocatable = allocatable.difference(&other.declared);
            if other_index < index && conflict.is_none() {
                let shared = config.declared.intersection(&other.declared);
                if let Some(first) = shared.ranges().first() {
                    conflict = Some(Conflict {
                        other_pool: other.name.clone(),
                        overlap: *first,
                    });
                }
            }
        }
        pools.insert(
            config.name.clone(),
            Pool {
                config: config.clone(),
                fresh: allocatable.difference(&config.withheld),
                allocatable,
                conflict,
            },
        );
    }
    pools
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, created: i64, addresses: &[&str]) -> PoolConfig {
        PoolConfig {
            name: name.into(),
            created,
            declared: AddressSet::new(addresses.iter().map(|a| IpRange::parse(a).unwrap())),
            auto_assign: true,
            avoid_buggy: false,
            withheld: withheld(addresses),
            scope: None,
        }
    }

    #[test]
    fn later_pool_is_marked_and_overlap_is_removed_from_both() {
        let pools = resolve_pools(vec![
            config("late", 2, &["198.51.100.8/29"]),
            config("early", 1, &["198.51.100.0/28"]),
            config("apart", 3, &["2001:db8::/64"]),
        ]);
        let early = &pools["early"];
        let late = &pools["late"];
        assert!(early.conflict.is_none());
        assert_eq!(late.conflict.as_ref().unwrap().other_pool, "early");
        assert_eq!(
            late.conflict.as_ref().unwrap().overlap.to_string(),
            "198.51.100.8-198.51.100.15"
        );
        assert_eq!(
            early.allocatable.ranges()[0].to_string(),
            "198.51.100.0-198.51.100.7"
        );
        assert!(late.allocatable.is_empty());
        assert!(pools["apart"].conflict.is_none());
    }
}
