//! The solicited-node multicast groups one interface's NDP socket holds, and
//! what to do when the kernel refuses more of them.
//!
//! Each IPv6 address needs its solicited-node group (ff02::1:ffXX:XXXX, the
//! low 24 bits of the address) joined, so that solicitations for it reach the
//! interface. Addresses sharing their low 24 bits share a group: the groups
//! are a set. Linux charges every membership to the socket's option memory
//! (`net.core.optmem_max`, per network namespace since Linux 6.9; 128 KiB by
//! default holds about two thousand groups), and refuses the next join with
//! ENOMEM past it. Then the interface receives all multicast for the NDP
//! packet socket instead (`PACKET_MR_ALLMULTI`), so every address stays
//! served, and goes back to plain memberships once all wanted groups fit
//! again. Mode changes are logged once each; refused joins are counted in
//! `l2_ndp_group_join_failures_total`, never logged per address.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv6Addr};

use tracing::{debug, info, warn};

use super::metrics::L2Metrics;
use super::ndp::solicited_node_multicast;
use super::socket::NdpSocket;

/// The socket operations the group bookkeeping needs (a trait so the
/// bookkeeping is tested without a kernel).
pub(super) trait Membership {
    fn join(&self, group: Ipv6Addr) -> io::Result<()>;
    fn leave(&self, group: Ipv6Addr) -> io::Result<()>;
    fn receive_all_multicast(&self, on: bool) -> io::Result<()>;
}

impl Membership for NdpSocket {
    fn join(&self, group: Ipv6Addr) -> io::Result<()> {
        NdpSocket::join(self, group)
    }
    fn leave(&self, group: Ipv6Addr) -> io::Result<()> {
        NdpSocket::leave(self, group)
    }
    fn receive_all_multicast(&self, on: bool) -> io::Result<()> {
        NdpSocket::receive_all_multicast(self, on)
    }
}

/// How solicitations reach the NDP socket of one interface.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Mode {
    /// Every wanted group is joined.
    #[default]
    Groups,
    /// Some group was refused; the interface receives all multicast.
    AllMulticast,
    /// Some group was refused and all-multicast reception was refused too:
    /// the addresses of the groups not joined are not served.
    Partial,
}

/// The groups joined on one interface and the mode it is in.
#[derive(Debug, Default)]
pub(super) struct SolicitedGroups {
    joined: BTreeSet<Ipv6Addr>,
    mode: Mode,
    /// How many groups were wanted when a join was last refused: joins are
    /// tried again only once fewer are wanted, not on every plan.
    refused_at: usize,
}

impl SolicitedGroups {
    /// How solicitations reach the socket now.
    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether solicitations for `ip` reach the socket.
    pub(super) fn receives(&self, ip: Ipv6Addr) -> bool {
        self.mode == Mode::AllMulticast || self.joined.contains(&solicited_node_multicast(ip))
    }

    /// Joins the groups of the IPv6 addresses in `here` and leaves the rest.
    pub(super) fn update(
        &mut self,
        socket: &impl Membership,
        here: &BTreeSet<IpAddr>,
        interface: &str,
        metrics: &L2Metrics,
    ) {
        let wanted: BTreeSet<Ipv6Addr> = here
            .iter()
            .filter_map(|ip| match ip {
                IpAddr::V6(v6) => Some(solicited_node_multicast(*v6)),
                IpAddr::V4(_) => None,
            })
            .collect();
        for group in self.joined.difference(&wanted) {
            if let Err(error) = socket.leave(*group) {
                debug!(%group, %error, "leaving a solicited-node group failed");
            }
        }
        self.joined.retain(|group| wanted.contains(group));
        let retry = self.mode == Mode::Groups || wanted.len() < self.refused_at;
        let mut refused = None;
        if retry {
            let missing: Vec<_> = wanted.difference(&self.joined).copied().collect();
            for group in &missing {
                match socket.join(*group) {
                    Ok(()) => {
                        self.joined.insert(*group);
                    }
                    Err(error) => {
                        // The next joins would be refused the same way.
                        metrics.group_join_failed();
                        refused = Some(error);
                        break;
                    }
                }
            }
        }
        if let Some(error) = refused {
            self.refused_at = wanted.len();
            if self.mode == Mode::Groups {
                self.enter_fallback(socket, interface, &error, wanted.len(), metrics);
            } else {
                debug!(interface, %error, "solicited-node groups still refused");
            }
        } else if self.mode != Mode::Groups && self.joined.len() == wanted.len() {
            if self.mode == Mode::AllMulticast
                && let Err(error) = socket.receive_all_multicast(false)
            {
                debug!(interface, %error, "turning all-multicast reception off failed");
            }
            info!(
                interface,
                groups = wanted.len(),
                "every solicited-node group joined again: all-multicast reception off"
            );
            self.mode = Mode::Groups;
            metrics.set_all_multicast(interface, false);
        }
    }

    fn enter_fallback(
        &mut self,
        socket: &impl Membership,
        interface: &str,
        error: &io::Error,
        wanted: usize,
        metrics: &L2Metrics,
    ) {
        let joined = self.joined.len();
        match socket.receive_all_multicast(true) {
            Ok(()) => {
                warn!(
                    interface, joined, wanted, %error,
                    "the kernel refused a solicited-node group: receiving all multicast on the interface instead"
                );
                self.mode = Mode::AllMulticast;
                metrics.set_all_multicast(interface, true);
            }
            Err(fallback) => {
                warn!(
                    interface, joined, wanted, %error, %fallback,
                    "the kernel refused a solicited-node group and all-multicast reception: IPv6 addresses of the groups not joined are not served"
                );
                self.mode = Mode::Partial;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A socket that holds at most `limit` groups.
    struct Limited {
        limit: usize,
        groups: RefCell<BTreeSet<Ipv6Addr>>,
        joins: Cell<usize>,
        all_multicast: Cell<bool>,
        refuse_all_multicast: bool,
    }

    impl Limited {
        fn new(limit: usize) -> Self {
            Limited {
                limit,
                groups: RefCell::default(),
                joins: Cell::new(0),
                all_multicast: Cell::new(false),
                refuse_all_multicast: false,
            }
        }
    }

    impl Membership for Limited {
        fn join(&self, group: Ipv6Addr) -> io::Result<()> {
            self.joins.set(self.joins.get() + 1);
            let mut groups = self.groups.borrow_mut();
            if groups.len() >= self.limit {
                return Err(io::Error::from_raw_os_error(libc::ENOMEM));
            }
            groups.insert(group);
            Ok(())
        }
        fn leave(&self, group: Ipv6Addr) -> io::Result<()> {
            self.groups.borrow_mut().remove(&group);
            Ok(())
        }
        fn receive_all_multicast(&self, on: bool) -> io::Result<()> {
            if self.refuse_all_multicast {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            self.all_multicast.set(on);
            Ok(())
        }
    }

    fn ips(range: std::ops::Range<u16>) -> BTreeSet<IpAddr> {
        range
            .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i)))
            .collect()
    }

    #[test]
    fn addresses_sharing_their_low_24_bits_share_one_group() {
        let socket = Limited::new(10);
        let mut groups = SolicitedGroups::default();
        let here: BTreeSet<IpAddr> = ["2001:db8::1:2:3", "2001:db8:1::1:2:3", "2001:db8::5"]
            .iter()
            .map(|ip| ip.parse().unwrap())
            .collect();
        groups.update(&socket, &here, "eth0", &L2Metrics::new());
        assert_eq!(socket.groups.borrow().len(), 2);
        assert_eq!(groups.mode(), Mode::Groups);
    }

    #[test]
    fn past_the_limit_every_address_is_received_through_all_multicast_and_joins_stop() {
        let socket = Limited::new(5);
        let metrics = L2Metrics::new();
        let mut groups = SolicitedGroups::default();
        let here = ips(0..20);
        groups.update(&socket, &here, "eth0", &metrics);
        assert_eq!(groups.mode(), Mode::AllMulticast);
        assert!(socket.all_multicast.get());
        assert!(
            here.iter()
                .all(|ip| matches!(ip, IpAddr::V6(v6) if groups.receives(*v6)))
        );
        let joins = socket.joins.get();
        assert_eq!(joins, 6, "stops at the first refusal");
        // Later plans with as many addresses or more do not retry.
        groups.update(&socket, &here, "eth0", &metrics);
        groups.update(&socket, &ips(0..30), "eth0", &metrics);
        assert_eq!(socket.joins.get(), joins);

        // Fewer addresses than the limit: back to plain memberships.
        groups.update(&socket, &ips(0..4), "eth0", &metrics);
        assert_eq!(groups.mode(), Mode::Groups);
        assert!(!socket.all_multicast.get());
        assert!(!groups.receives(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10)));
        assert!(groups.receives(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3)));
    }

    #[test]
    fn without_all_multicast_only_the_joined_groups_are_served() {
        let mut socket = Limited::new(3);
        socket.refuse_all_multicast = true;
        let mut groups = SolicitedGroups::default();
        groups.update(&socket, &ips(0..6), "eth0", &L2Metrics::new());
        assert_eq!(groups.mode(), Mode::Partial);
        let served = (0..6)
            .filter(|i| groups.receives(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, *i)))
            .count();
        assert_eq!(served, 3);
    }

    proptest::proptest! {
        /// What the interface task's reception relies on to visit only the IPs
        /// of a change: outside `Partial`, every IPv6 address wanted is received.
        #[test]
        fn outside_partial_every_wanted_address_is_received(
            limit in 0usize..6,
            refuse_all_multicast in proptest::bool::weighted(0.3),
            plans in proptest::collection::vec(proptest::collection::btree_set(0u16..12, 0..10), 1..12),
        ) {
            let mut socket = Limited::new(limit);
            socket.refuse_all_multicast = refuse_all_multicast;
            let mut groups = SolicitedGroups::default();
            let metrics = L2Metrics::new();
            for plan in plans {
                // i and i + 6 share their low 24 bits, so one group.
                let here: BTreeSet<IpAddr> = plan
                    .iter()
                    .map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, i / 6, 0, 0, 0, 0, i % 6)))
                    .collect();
                groups.update(&socket, &here, "eth0", &metrics);
                if groups.mode() != Mode::Partial {
                    for ip in &here {
                        let IpAddr::V6(v6) = ip else { continue };
                        proptest::prop_assert!(groups.receives(*v6), "{} in {:?}", v6, groups.mode());
                    }
                }
            }
        }
    }
}
