//! This node's reach ([`Reach`]), from its interfaces: what the election
//! needs to know of them (see [`crate::model::reach`]).

use std::collections::BTreeSet;

use super::interfaces::{ExcludePatterns, InterfaceInfo, capability, suitability};
use crate::model::reach::Reach;

/// The reach of a node with `interfaces`, when the L2Advertisements that select it
/// name `named`: the same tests [`super::plan::assign`] applies when it picks the
/// interfaces an IP is announced on.
pub fn own_reach(
    interfaces: &[InterfaceInfo],
    exclude: &ExcludePatterns,
    named: &BTreeSet<String>,
) -> Reach {
    let capable = |name: &String| {
        interfaces
            .iter()
            .any(|interface| interface.name == *name && capability(interface).is_ok())
    };
    Reach {
        no_suitable: !interfaces
            .iter()
            .any(|interface| suitability(interface, exclude).is_ok()),
        unusable: named
            .iter()
            .filter(|name| !capable(name))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::MacAddr;

    fn interface(name: &str, index: u8) -> InterfaceInfo {
        InterfaceInfo {
            name: name.to_owned(),
            index: u32::from(index),
            up: true,
            running: true,
            broadcast: true,
            loopback: false,
            bridge_port: false,
            mac: Some(MacAddr([0x02, 0, 0, 0, 0, index])),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn all_up_is_full_reach() {
        let interfaces = [interface("eth0", 2), interface("eth1", 3)];
        let reach = own_reach(&interfaces, &ExcludePatterns::defaults(), &names(&["eth1"]));
        assert!(reach.is_full(), "{reach:?}");
    }

    #[test]
    fn a_named_interface_down_without_carrier_or_missing_is_unusable() {
        let mut down = interface("eth1", 3);
        down.up = false;
        let mut no_carrier = interface("eth2", 4);
        no_carrier.running = false;
        let interfaces = [interface("eth0", 2), down, no_carrier];
        let reach = own_reach(
            &interfaces,
            &ExcludePatterns::defaults(),
            &names(&["eth0", "eth1", "eth2", "eth9"]),
        );
        assert_eq!(reach.unusable, names(&["eth1", "eth2", "eth9"]));
        assert!(!reach.no_suitable);
    }

    #[test]
    fn a_named_interface_is_not_excluded_by_name() {
        let interfaces = [interface("eth0", 2), interface("veth7", 3)];
        let reach = own_reach(
            &interfaces,
            &ExcludePatterns::defaults(),
            &names(&["veth7"]),
        );
        assert!(reach.is_full(), "{reach:?}");
    }

    #[test]
    fn only_excluded_or_unfit_interfaces_leave_no_suitable_one() {
        let mut down = interface("eth0", 2);
        down.up = false;
        let interfaces = [down, interface("veth7", 3)];
        let reach = own_reach(&interfaces, &ExcludePatterns::defaults(), &BTreeSet::new());
        assert!(reach.no_suitable);
        assert!(reach.unusable.is_empty());
    }
}
