//! What each node can serve in L2 mode: its *reach*.
//!
//! An owner whose only link goes down falls silent in gossip and loses its IPs to the
//! others. But a node can lose the interface an L2Advertisement names (`interfaces:
//! [eth1]`) while gossip still flows on another one; it would stay elected and the IP would
//! go dark. So each speaker works out which of the interfaces it may be asked to announce on
//! it cannot use ([`Reach`]), tells the others (`membership::reach`), and the election
//! passes over a node whose reach does not cover an IP's interfaces ([`Reach::covers`]).
//!
//! A node that never reported has [`Reach::FULL`]: speakers that predate reach reports keep
//! the behaviour they had.

use std::collections::{BTreeMap, BTreeSet};

use super::l2::InterfaceSelection;
use super::scope::AdvertisementScope;
use super::view::ClusterView;

/// Each node's reach, by node name; a node not in the map has [`Reach::FULL`].
pub type Reaches = BTreeMap<String, Reach>;

/// What one node cannot serve. The default, [`Reach::FULL`], is "everything".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Reach {
    /// No interface of the node is fit to announce on when an advertisement names none
    /// (every interface down, say): [`InterfaceSelection::AllSuitable`] reaches nothing.
    pub no_suitable: bool,
    /// Interfaces named by the L2Advertisements that select the node, that the node cannot
    /// announce on (down, no carrier, missing).
    pub unusable: BTreeSet<String>,
}

impl Reach {
    /// Full reach: the node can serve whatever it is asked to.
    pub const FULL: Reach = Reach {
        no_suitable: false,
        unusable: BTreeSet::new(),
    };

    /// Whether this is [`Reach::FULL`].
    pub fn is_full(&self) -> bool {
        !self.no_suitable && self.unusable.is_empty()
    }

    /// Whether the node can announce on at least one of the interfaces `selection` asks for.
    pub fn covers(&self, selection: &InterfaceSelection) -> bool {
        match selection {
            InterfaceSelection::AllSuitable => !self.no_suitable,
            InterfaceSelection::Named(names) => {
                names.iter().any(|name| !self.unusable.contains(name))
            }
        }
    }
}

/// The reach of `node` in `reaches`: [`Reach::FULL`] when it never reported.
pub fn reach_of<'r>(reaches: &'r Reaches, node: &str) -> &'r Reach {
    static FULL: Reach = Reach::FULL;
    reaches.get(node).unwrap_or(&FULL)
}

/// The reaches the election goes by: `reported` (every node's, from gossip) with `node`'s
/// own taken from `own` instead, which is newer than any copy gossip holds.
pub fn with_own(reported: Option<&Reaches>, node: &str, own: &Reach) -> Reaches {
    let mut reaches: Reaches = reported
        .into_iter()
        .flatten()
        .filter(|(name, _)| name.as_str() != node)
        .map(|(name, reach)| (name.clone(), reach.clone()))
        .collect();
    if !own.is_full() {
        reaches.insert(node.to_owned(), own.clone());
    }
    reaches
}

/// The interfaces named by the L2Advertisements that select `node`: those whose state
/// goes into its [`Reach::unusable`].
pub fn named_interfaces(view: &ClusterView, node: &str) -> BTreeSet<String> {
    let Some(node) = view.nodes.get(node) else {
        return BTreeSet::new();
    };
    view.l2_advertisements
        .values()
        .filter(|advertisement| advertisement.selects_node(&node.labels))
        .flat_map(|advertisement| advertisement.interfaces.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::*;

    #[test]
    fn full_reach_covers_everything() {
        assert!(Reach::FULL.is_full());
        assert!(Reach::default().is_full());
        assert!(Reach::FULL.covers(&InterfaceSelection::AllSuitable));
        assert!(Reach::FULL.covers(&InterfaceSelection::Named(names(&["eth1"]))));
        // Nothing named covers nothing, whatever the reach.
        assert!(!Reach::FULL.covers(&InterfaceSelection::Named(BTreeSet::new())));
    }

    #[test]
    fn a_named_selection_needs_one_usable_interface() {
        let reach = Reach {
            no_suitable: false,
            unusable: names(&["eth1"]),
        };
        assert!(!reach.is_full());
        assert!(!reach.covers(&InterfaceSelection::Named(names(&["eth1"]))));
        assert!(reach.covers(&InterfaceSelection::Named(names(&["eth1", "eth2"]))));
        assert!(reach.covers(&InterfaceSelection::AllSuitable));
    }

    #[test]
    fn no_suitable_interface_covers_only_named_ones() {
        let reach = Reach {
            no_suitable: true,
            unusable: BTreeSet::new(),
        };
        assert!(!reach.covers(&InterfaceSelection::AllSuitable));
        assert!(reach.covers(&InterfaceSelection::Named(names(&["eth9"]))));
    }

    #[test]
    fn a_node_that_never_reported_has_full_reach() {
        let reaches = Reaches::from([(
            "node-b".to_owned(),
            Reach {
                no_suitable: true,
                unusable: BTreeSet::new(),
            },
        )]);
        assert!(reach_of(&reaches, "node-a").is_full());
        assert!(!reach_of(&reaches, "node-b").is_full());
    }

    #[test]
    fn our_own_reach_replaces_the_reported_one() {
        let down = Reach {
            no_suitable: true,
            unusable: BTreeSet::new(),
        };
        let reported = Reaches::from([
            ("node-a".to_owned(), down.clone()),
            ("node-b".to_owned(), down.clone()),
        ]);
        let merged = with_own(Some(&reported), "node-a", &Reach::FULL);
        assert_eq!(merged, Reaches::from([("node-b".to_owned(), down.clone())]));
        let merged = with_own(None, "node-a", &down);
        assert_eq!(merged, Reaches::from([("node-a".to_owned(), down)]));
    }

    #[test]
    fn named_interfaces_come_from_the_advertisements_selecting_the_node() {
        let mut view = cluster(&["node-a", "node-b"]);
        if let Some(node) = view.nodes.get_mut("node-a") {
            node.labels = labels(&[("lan", "two")]);
        }
        let mut lan2 = advertisement("lan2");
        lan2.selectors.node_selectors = vec![selector(&[("lan", "two")])];
        lan2.interfaces = vec!["eth1".to_owned()];
        view.insert_l2_advertisement(lan2);
        let mut lan3 = advertisement("lan3");
        lan3.interfaces = vec!["eth2".to_owned()];
        view.insert_l2_advertisement(lan3);
        assert_eq!(named_interfaces(&view, "node-a"), names(&["eth1", "eth2"]));
        assert_eq!(named_interfaces(&view, "node-b"), names(&["eth2"]));
        assert!(named_interfaces(&view, "node-z").is_empty());
    }
}
