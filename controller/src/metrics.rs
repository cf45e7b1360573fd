//! Prometheus metrics of the controller (`prometheus-client`, OpenMetrics
//! text).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ferrolb_controller_allocations_total` | counter | `pool`, `family` |
//! | `ferrolb_controller_allocation_failures_total` | counter | `reason` |
//! | `ferrolb_controller_releases_total` | counter | `pool` |
//! | `ferrolb_controller_pool_assigned_addresses` | gauge (i64) | `pool`, `family` |
//! | `ferrolb_controller_pool_available_addresses` | gauge (f64) | `pool`, `family` |
//! | `ferrolb_controller_is_leader` | gauge (0/1) | |
//! | `ferrolb_controller_pending_services` | gauge | |
//!
//! `family` is `ipv4` or `ipv6`. Failure `reason`s are short snake_case
//! words; the usual ones are in [`reason`].
//!
//! The available-address gauge is an `f64`: an IPv6 pool holds up to 2^128
//! addresses, which no integer gauge can show. Above 2^53 it is rounded
//! (to 53 significant bits), which is fine for capacity dashboards. The
//! assigned-address gauge is an `i64` and saturates at `i64::MAX`.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use ferrolb_runtime::http::{MetricsText, encode_registry};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The prefix of every metric the controller exposes.
pub const PREFIX: &str = "ferrolb_controller";

/// Usual values of the `reason` label of
/// `ferrolb_controller_allocation_failures_total`.
pub mod reason {
    /// The pool has no free address.
    pub const POOL_FULL: &str = "pool_full";
    /// A requested IP is in no pool.
    pub const IP_IN_NO_POOL: &str = "ip_in_no_pool";
    /// A requested IP is used by another Service that may not share it.
    pub const IP_TAKEN: &str = "ip_taken";
    /// Sharing keys or ports conflict.
    pub const SHARING_CONFLICT: &str = "sharing_conflict";
    /// No pool offers a requested IP family.
    pub const FAMILY_UNAVAILABLE: &str = "family_unavailable";
    /// The requested pool does not exist.
    pub const UNKNOWN_POOL: &str = "unknown_pool";
    /// An annotation could not be parsed.
    pub const INVALID_ANNOTATION: &str = "invalid_annotation";
}

/// An IP family, as a label value (`ipv4`, `ipv6`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// `ipv4`
    V4,
    /// `ipv6`
    V6,
}

impl IpFamily {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "ipv4",
            IpFamily::V6 => "ipv6",
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<IpAddr> for IpFamily {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }
}

impl From<&ipnet::IpNet> for IpFamily {
    fn from(net: &ipnet::IpNet) -> Self {
        match net {
            ipnet::IpNet::V4(_) => IpFamily::V4,
            ipnet::IpNet::V6(_) => IpFamily::V6,
        }
    }
}

impl EncodeLabelValue for IpFamily {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
        fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolFamilyLabels {
    pool: String,
    family: IpFamily,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    allocations: Family<PoolFamilyLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    releases: Family<PoolLabels, Counter>,
    assigned: Family<PoolFamilyLabels, Gauge>,
    available: Family<PoolFamilyLabels, Gauge<f64, AtomicU64>>,
    is_leader: Gauge,
    pending: Gauge,
}

/// The controller's metrics. Cheap to clone; clones share the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero (`is_leader` 0, `pending_services` 0), in a
    /// registry of their own whose prefix ([`PREFIX`]) starts every name.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let allocations = Family::<PoolFamilyLabels, Counter>::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        let releases = Family::<PoolLabels, Counter>::default();
        let assigned = Family::<PoolFamilyLabels, Gauge>::default();
        let available = Family::<PoolFamilyLabels, Gauge<f64, AtomicU64>>::default();
        let is_leader = Gauge::default();
        let pending = Gauge::default();
        registry.register(
            "allocations",
            "Addresses assigned to Services",
            allocations.clone(),
        );
        registry.register(
            "allocation_failures",
            "Services that could not be given an address, by reason",
            failures.clone(),
        );
        registry.register(
            "releases",
            "Addresses given back to a pool",
            releases.clone(),
        );
        registry.register(
            "pool_assigned_addresses",
            "Addresses of the pool assigned to Services",
            assigned.clone(),
        );
        registry.register(
            "pool_available_addresses",
            "Addresses of the pool still free (a float: IPv6 pools can hold more than 2^63)",
            available.clone(),
        );
        registry.register(
            "is_leader",
            "1 if this replica holds the leader Lease, else 0",
            is_leader.clone(),
        );
        registry.register(
            "pending_services",
            "LoadBalancer Services waiting for an address",
            pending.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                allocations,
                failures,
                releases,
                assigned,
                available,
                is_leader,
                pending,
            }),
        }
    }

    /// One address of `family` assigned from `pool`.
    pub fn record_allocation(&self, pool: &str, family: impl Into<IpFamily>) {
        self.inner
            .allocations
            .get_or_create(&PoolFamilyLabels {
                pool: pool.to_owned(),
                family: family.into(),
            })
            .inc();
    }

    /// One failed allocation. `reason` should be a short snake_case word
    /// from a fixed set (see [`reason`]), never free text.
    pub fn record_failure(&self, reason: &str) {
        self.inner
            .failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// One address given back to `pool`.
    pub fn record_release(&self, pool: &str) {
        self.inner
            .releases
            .get_or_create(&PoolLabels {
                pool: pool.to_owned(),
            })
            .inc();
    }

    /// The usage of one family of `pool`.
    pub fn set_pool_usage(
        &self,
        pool: &str,
        family: impl Into<IpFamily>,
        assigned: u128,
        available: u128,
    ) {
        let labels = PoolFamilyLabels {
            pool: pool.to_owned(),
            family: family.into(),
        };
        self.inner
            .assigned
            .get_or_create(&labels)
            .set(i64::try_from(assigned).unwrap_or(i64::MAX));
        // `as` rounds to the nearest f64; u128 -> f64 cannot overflow.
        self.inner
            .available
            .get_or_create(&labels)
            .set(available as f64);
    }

    /// Forgets the usage gauges of a deleted pool (both families). The
    /// counters are kept: they are totals since the process started.
    pub fn remove_pool(&self, pool: &str) {
        for family in [IpFamily::V4, IpFamily::V6] {
            let labels = PoolFamilyLabels {
                pool: pool.to_owned(),
                family,
            };
            self.inner.assigned.remove(&labels);
            self.inner.available.remove(&labels);
        }
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.inner.is_leader.set(i64::from(leader));
    }

    /// How many Services wait for an address.
    pub fn set_pending(&self, n: usize) {
        self.inner.pending.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// All metrics in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        encode_registry(&self.inner.registry)
    }
}

/// Served on `/metrics`.
impl MetricsText for Metrics {
    fn encode_text(&self) -> String {
        self.encode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The value of the sample line `name{labels}` (labels as encoded), or
    /// `None` if absent.
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            let value = rest.strip_prefix(' ')?;
            Some(value.to_owned())
        })
    }

    #[test]
    fn fresh_metrics_encode_the_scalars_and_eof() {
        let m = Metrics::new();
        let text = m.encode();
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(
            sample(&text, "ferrolb_controller_is_leader").as_deref(),
            Some("0")
        );
        assert_eq!(
            sample(&text, "ferrolb_controller_pending_services").as_deref(),
            Some("0")
        );
        assert!(text.contains("# TYPE ferrolb_controller_is_leader gauge"));
        // Labelled families show up once they have a sample.
        assert!(!text.contains("ferrolb_controller_allocations"));
    }

    #[test]
    fn counters_have_total_suffix_and_labels() {
        let m = Metrics::new();
        m.record_allocation("default", IpFamily::V4);
        m.record_allocation("default", IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        m.record_allocation("v6", IpAddr::V6(Ipv6Addr::LOCALHOST));
        m.record_failure(reason::POOL_FULL);
        m.record_release("default");
        let text = m.encode();
        assert!(text.contains("# TYPE ferrolb_controller_allocations counter"));
        assert_eq!(
            sample(
                &text,
                r#"ferrolb_controller_allocations_total{pool="default",family="ipv4"}"#
            )
            .as_deref(),
            Some("2"),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"ferrolb_controller_allocations_total{pool="v6",family="ipv6"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"ferrolb_controller_allocation_failures_total{reason="pool_full"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"ferrolb_controller_releases_total{pool="default"}"#
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn pool_usage_handles_huge_ipv6_pools() {
        let m = Metrics::new();
        m.set_pool_usage("v6", IpFamily::V6, u128::MAX, 1u128 << 64);
        m.set_pool_usage("v4", IpFamily::V4, 3, 253);
        let text = m.encode();
        assert_eq!(
            sample(
                &text,
                r#"ferrolb_controller_pool_assigned_addresses{pool="v6",family="ipv6"}"#
            )
            .as_deref(),
            Some(i64::MAX.to_string().as_str())
        );
        let avail = sample(
            &text,
            r#"ferrolb_controller_pool_available_addresses{pool="v6",family="ipv6"}"#,
        );
        let avail: f64 = avail
            .unwrap_or_else(|| panic!("no available-addresses sample in\n{text}"))
            .parse()
            .expect("a float sample");
        assert_eq!(avail, 18_446_744_073_709_551_616.0);
        assert_eq!(
            sample(
                &text,
                r#"ferrolb_controller_pool_available_addresses{pool="v4",family="ipv4"}"#
            )
            .as_deref(),
            Some("253.0")
        );
    }

    #[test]
    fn remove_pool_drops_its_gauges_only() {
        let m = Metrics::new();
        m.set_pool_usage("gone", IpFamily::V4, 1, 2);
        m.set_pool_usage("gone", IpFamily::V6, 1, 2);
        m.set_pool_usage("kept", IpFamily::V4, 1, 2);
        m.record_release("gone");
        m.remove_pool("gone");
        let text = m.encode();
        assert!(!text.contains(r#"addresses{pool="gone""#), "{text}");
        assert!(text.contains(
            r#"ferrolb_controller_pool_assigned_addresses{pool="kept",family="ipv4"} 1"#
        ));
        assert!(text.contains(r#"ferrolb_controller_releases_total{pool="gone"} 1"#));
    }

    #[test]
    fn leader_and_pending_gauges() {
        let m = Metrics::new();
        let shared = m.clone();
        shared.set_leader(true);
        shared.set_pending(7);
        let text = m.encode();
        assert_eq!(
            sample(&text, "ferrolb_controller_is_leader").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "ferrolb_controller_pending_services").as_deref(),
            Some("7")
        );
        m.set_leader(false);
        assert_eq!(
            sample(&m.encode(), "ferrolb_controller_is_leader").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.record_allocation("we\"ird\npool", IpFamily::V4);
        let text = m.encode();
        assert!(text.contains(r#"pool="we\"ird\npool""#), "{text}");
    }

    /// Dashboards, alerts and the end-to-end tests query these names: a
    /// renaming must be a deliberate change of this list.
    #[test]
    fn exposes_exactly_the_documented_names() {
        let m = Metrics::new();
        // Labelled families show only once they have a sample.
        m.record_allocation("p", IpFamily::V4);
        m.record_failure(reason::POOL_FULL);
        m.record_release("p");
        m.set_pool_usage("p", IpFamily::V4, 1, 2);
        let text = m.encode();
        let names: Vec<&str> = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split(['{', ' ']).next())
            .collect();
        assert_eq!(
            names,
            [
                "ferrolb_controller_allocations_total",
                "ferrolb_controller_allocation_failures_total",
                "ferrolb_controller_releases_total",
                "ferrolb_controller_pool_assigned_addresses",
                "ferrolb_controller_pool_available_addresses",
                "ferrolb_controller_is_leader",
                "ferrolb_controller_pending_services",
            ],
            "{text}"
        );
    }

    #[test]
    fn families_from_networks() {
        let v4: ipnet::IpNet = "192.0.2.0/24".parse().expect("a valid network");
        let v6: ipnet::IpNet = "2001:db8::/64".parse().expect("a valid network");
        assert_eq!(IpFamily::from(&v4), IpFamily::V4);
        assert_eq!(IpFamily::from(&v6), IpFamily::V6);
        assert_eq!(IpFamily::V6.to_string(), "ipv6");
    }
}
