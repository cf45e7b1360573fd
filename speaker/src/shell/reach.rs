//! This node's reach, kept up to date in the plan loop: recomputed from the
//! interface list (which the L2 announcer rescans) and the L2Advertisements
//! selecting the node, logged and counted when it changes, and merged with
//! the other nodes' reports for the election.

use tracing::{info, warn};

use crate::l2::L2Metrics;
use crate::l2::interfaces::{ExcludePatterns, InterfaceInfo};
use crate::l2::reach::own_reach;
use crate::model::ClusterView;
use crate::model::reach::{Reach, Reaches, named_interfaces, with_own};

/// Our reach as last computed.
pub(super) struct OwnReach {
    node: String,
    exclude: ExcludePatterns,
    metrics: L2Metrics,
    current: Reach,
}

impl OwnReach {
    pub(super) fn new(node: &str, exclude: ExcludePatterns, metrics: L2Metrics) -> Self {
        OwnReach {
            node: node.to_owned(),
            exclude,
            metrics,
            current: Reach::FULL,
        }
    }

    /// Recomputes our reach; `None` in `listing` (interfaces not listed yet)
    /// is full reach. Returns the new reach when it changed.
    pub(super) fn update(
        &mut self,
        view: &ClusterView,
        listing: Option<&[InterfaceInfo]>,
    ) -> Option<Reach> {
        let reach = match listing {
            Some(listing) => own_reach(listing, &self.exclude, &named_interfaces(view, &self.node)),
            None => Reach::FULL,
        };
        if reach == self.current {
            return None;
        }
        let unusable: Vec<&String> = reach.unusable.iter().collect();
        if reach.is_full() {
            info!(node = %self.node, "every interface we may announce on is usable again: back in the election");
        } else {
            warn!(node = %self.node, ?unusable, no_suitable = reach.no_suitable, "cannot announce on some interfaces: leaving the election for the IPs announced there");
        }
        self.metrics
            .set_unreachable_interfaces(reach.unusable.len() + usize::from(reach.no_suitable));
        self.current = reach.clone();
        Some(reach)
    }

    /// The reaches the election goes by: the others' reports, and ours as
    /// computed here (the gossip task may not have taken it yet).
    pub(super) fn merged(&self, reported: Option<&Reaches>) -> Reaches {
        with_own(reported, &self.node, &self.current)
    }
}
