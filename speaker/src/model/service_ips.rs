//! Which Services hold each IP, kept up to date Service by Service: what the incremental
//! planners ([`super::L2Planner`], [`super::BgpPlanner`]) re-decide from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::few::Few;
use super::regrow::Regrow;
use super::view::{ClusterView, ServiceKey, ServiceSet};

/// The Services holding each IP, and the IPs of each Service as they were counted.
#[derive(Debug, Default)]
pub(super) struct ServiceIps {
    by_ip: BTreeMap<IpAddr, ServiceSet>,
    /// `by_ip` grows an IP at a time: rebuilt now and then ([`Regrow`]).
    by_ip_regrow: Regrow,
    ips_of: HashMap<ServiceKey, Few<IpAddr>>,
}

impl ServiceIps {
    /// The IPs of every Service of `view`.
    pub(super) fn of(view: &ClusterView) -> ServiceIps {
        ServiceIps {
            by_ip: view
                .services_by_ip()
                .into_iter()
                .map(|(ip, keys)| (ip, keys.into_iter().cloned().collect()))
                .collect(),
            ips_of: view
                .services
                .iter()
                .map(|(key, service)| (key.clone(), service.ips.clone()))
                .collect(),
            by_ip_regrow: Regrow::default(),
        }
    }

    /// Takes the Services `services` as `view` has them now (gone when it has them
    /// not); returns the IPs they held and hold.
    pub(super) fn update(
        &mut self,
        view: &ClusterView,
        services: &BTreeSet<ServiceKey>,
    ) -> BTreeSet<IpAddr> {
        let mut touched = BTreeSet::new();
        for key in services {
            for &ip in self.ips_of.remove(key).unwrap_or_default().as_slice() {
                touched.insert(ip);
                if let Some(keys) = self.by_ip.get_mut(&ip) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.by_ip.remove(&ip);
                    }
                }
            }
            // The view's key, not the caller's: one allocation per Service.
            if let Some((key, service)) = view.services.get_key_value(key) {
                for ip in &service.ips {
                    touched.insert(*ip);
                    self.by_ip.entry(*ip).or_default().insert(key.clone());
                }
                self.ips_of.insert(key.clone(), service.ips.clone());
            }
        }
        self.by_ip_regrow.after_inserts(&mut self.by_ip);
        touched
    }

    /// The Services holding `ip`.
    pub(super) fn at(&self, ip: &IpAddr) -> Option<&ServiceSet> {
        self.by_ip.get(ip)
    }

    /// Every IP with the Services holding it.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&IpAddr, &ServiceSet)> {
        self.by_ip.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ServiceIps;
    use crate::model::fixtures::*;

    #[test]
    fn an_update_keeps_the_views_key_not_the_callers() {
        let mut view = cluster(&["n1"]);
        view.insert_service(service("a", &["203.0.113.1"]));
        let mut ips = ServiceIps::default();
        // An equal key of another allocation, as a watch event's would be.
        let touched = BTreeSet::from([key("a")]);
        ips.update(&view, &touched);
        let (held, _) = view.services.get_key_value(&key("a")).expect("in the view");
        let at = ips.at(&ip("203.0.113.1")).expect("the IP is held");
        assert!(at.iter().all(|kept| kept.shares(held)));
        assert!(ips.ips_of.keys().all(|kept| kept.shares(held)));
    }
}
