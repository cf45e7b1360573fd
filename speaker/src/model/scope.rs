//! What an advertisement selects: pools, Services and nodes. `L2Advertisement` and
//! `BGPAdvertisement` share these fields as one [`AdvertisementSelectors`], which both
//! advertisement views hold; the eligibility rules reach it through [`AdvertisementScope`],
//! whatever the mode.

pub use ferrolb_crds::advertisement::AdvertisementSelectors;
use ferrolb_crds::labels::Labels;

use super::view::PoolView;

/// An advertisement of either mode, as the shared eligibility rules see it. The meaning of
/// each field, empty ones included, is [`AdvertisementSelectors`]'.
pub trait AdvertisementScope {
    /// The advertisement's pool, Service and node selectors.
    fn selectors(&self) -> &AdvertisementSelectors;

    /// Whether the advertisement covers IPs of `pool` (by name or labels).
    fn selects_pool(&self, pool: &PoolView) -> bool {
        self.selectors().selects_pool(&pool.name, &pool.labels)
    }

    /// Whether the advertisement covers a Service with `service_labels`.
    fn selects_service(&self, service_labels: &Labels) -> bool {
        self.selectors().selects_service(service_labels)
    }

    /// Whether a node with `node_labels` may announce under the advertisement.
    fn selects_node(&self, node_labels: &Labels) -> bool {
        self.selectors().selects_node(node_labels)
    }
}
