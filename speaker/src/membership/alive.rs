//! Which nodes have a live speaker, from foca's notifications.
//!
//! foca reports liveness per identity, and keeps at most one identity per
//! gossip address. A node is alive if any identity with its name is Up: a
//! speaker restarted on a new port is Up under its new address while its
//! old address is still waiting to be declared Down, and that late Down
//! must not hide the node. Our own node is always alive.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use foca::OwnedNotification;

use super::identity::SpeakerId;

/// The members foca considers Up, and the node names they give.
#[derive(Debug, Clone)]
pub struct AliveSet {
    own_node: String,
    up: BTreeMap<SocketAddr, SpeakerId>,
}

impl AliveSet {
    /// The set of a group in which only we are known.
    pub fn new(own_node: String) -> Self {
        Self {
            own_node,
            up: BTreeMap::new(),
        }
    }

    /// Takes one notification into account. Returns whether the set of
    /// alive node names may have changed.
    pub fn apply(&mut self, notification: &OwnedNotification<SpeakerId>) -> bool {
        match notification {
            OwnedNotification::MemberUp(member) => {
                self.up.insert(member.addr, member.clone());
                true
            }
            OwnedNotification::MemberDown(member) => self.up.remove(&member.addr).is_some(),
            // foca only renames within one address. The liveness of the new
            // identity follows in a MemberUp/MemberDown if it differs from
            // the old one's; until then it inherits the old one's.
            OwnedNotification::Rename(before, after) => {
                if self.up.remove(&before.addr).is_some() {
                    self.up.insert(after.addr, after.clone());
                    true
                } else {
                    false
                }
            }
            // Every other member left or was declared Down.
            OwnedNotification::Idle => {
                let had_members = !self.up.is_empty();
                self.up.clear();
                had_members
            }
            OwnedNotification::Active
            | OwnedNotification::Defunct
            | OwnedNotification::Rejoin(_) => false,
        }
    }

    /// How many other members are Up.
    pub fn up_members(&self) -> usize {
        self.up.len()
    }

    /// The gossip addresses of the Up members.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.up.keys().copied()
    }

    /// Whether a member gossiping from `addr` is Up.
    pub fn is_up(&self, addr: &SocketAddr) -> bool {
        self.up.contains_key(addr)
    }

    /// The names of the nodes with a live speaker, ours included.
    pub fn node_names(&self) -> BTreeSet<String> {
        self.up
            .values()
            .map(|member| member.node_name.clone())
            .chain(std::iter::once(self.own_node.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnedNotification::{Active, Defunct, Idle, MemberDown, MemberUp, Rejoin, Rename};

    fn id(name: &str, port: u16, generation: u64) -> SpeakerId {
        SpeakerId {
            node_name: name.to_owned(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            generation,
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn our_own_node_is_alive_from_the_start() {
        assert_eq!(AliveSet::new("self".into()).node_names(), names(&["self"]));
    }

    #[test]
    fn members_come_up_and_go_down() {
        let mut set = AliveSet::new("self".into());
        assert!(set.apply(&MemberUp(id("a", 1, 1))));
        assert!(set.apply(&MemberUp(id("b", 2, 1))));
        assert_eq!(set.node_names(), names(&["a", "b", "self"]));
        assert!(set.apply(&MemberDown(id("a", 1, 1))));
        assert_eq!(set.node_names(), names(&["b", "self"]));
        assert!(!set.apply(&MemberDown(id("a", 1, 1))), "already down");
        assert_eq!(set.up_members(), 1);
    }

    #[test]
    fn our_own_name_stays_even_if_gossip_says_an_old_run_of_ours_died() {
        let mut set = AliveSet::new("self".into());
        set.apply(&MemberUp(id("self", 9, 1)));
        set.apply(&MemberDown(id("self", 9, 1)));
        assert_eq!(set.node_names(), names(&["self"]));
    }

    #[test]
    fn a_rename_of_an_up_member_keeps_it_up_under_the_new_identity() {
        let mut set = AliveSet::new("self".into());
        set.apply(&MemberUp(id("a", 1, 1)));
        assert!(set.apply(&Rename(id("a", 1, 1), id("a", 1, 2))));
        assert_eq!(set.node_names(), names(&["a", "self"]));
        // The Down of the new identity removes it.
        set.apply(&MemberDown(id("a", 1, 2)));
        assert_eq!(set.node_names(), names(&["self"]));
    }

    #[test]
    fn a_rename_of_a_down_member_then_up_brings_it_back() {
        let mut set = AliveSet::new("self".into());
        set.apply(&MemberUp(id("a", 1, 1)));
        set.apply(&MemberDown(id("a", 1, 1)));
        assert!(!set.apply(&Rename(id("a", 1, 1), id("a", 1, 2))));
        assert_eq!(set.node_names(), names(&["self"]));
        set.apply(&MemberUp(id("a", 1, 2)));
        assert_eq!(set.node_names(), names(&["a", "self"]));
    }

    #[test]
    fn a_node_restarted_on_a_new_port_survives_the_late_down_of_its_old_run() {
        let mut set = AliveSet::new("self".into());
        set.apply(&MemberUp(id("a", 1, 1)));
        set.apply(&MemberUp(id("a", 2, 2)));
        set.apply(&MemberDown(id("a", 1, 1)));
        assert_eq!(set.node_names(), names(&["a", "self"]));
        assert!(set.is_up(&id("a", 2, 2).addr));
        assert!(!set.is_up(&id("a", 1, 1).addr));
    }

    #[test]
    fn idle_leaves_only_ourselves() {
        let mut set = AliveSet::new("self".into());
        set.apply(&MemberUp(id("a", 1, 1)));
        assert!(set.apply(&Idle));
        assert!(!set.apply(&Idle));
        assert_eq!(set.node_names(), names(&["self"]));
    }

    #[test]
    fn notifications_about_ourselves_change_nothing() {
        let mut set = AliveSet::new("self".into());
        set.apply(&MemberUp(id("a", 1, 1)));
        for notification in [Active, Defunct, Rejoin(id("self", 3, 5))] {
            assert!(!set.apply(&notification));
        }
        assert_eq!(set.node_names(), names(&["a", "self"]));
    }
}
