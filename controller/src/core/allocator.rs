//! The allocation table: which Service holds which IPs from which pool.
//!
//! Pure state, no I/O. The shell feeds it pools and Service requests and
//! writes back what it decides. Every operation costs O(log n) in the number
//! of allocated IPs (times the few ranges of a pool), never the pool's size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use super::allocation_error::AllocationError;
use super::labels::Labels;
use super::pools::{Pool, PoolConfig, resolve_pools};
use super::service::{ServiceKey, ServiceRequest, SharingTerms};
use crate::ipam::{Family, UsedAddresses, buggy_count};

/// The IPs a Service holds and the pool they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Name of the IPAddressPool the IPs came from.
    pub pool: String,
    /// In the Service's family preference order.
    pub ips: Vec<IpAddr>,
}

impl std::fmt::Display for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ips: Vec<String> = self.ips.iter().map(ToString::to_string).collect();
        write!(f, "{} from pool {}", ips.join(", "), self.pool)
    }
}

/// Addresses of one pool in use and still free, per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolUsage {
    /// IPv4 addresses of the pool held by Services (including ones outside its allocatable set, e.g. kept through an overlap).
    pub assigned_v4: u128,
    /// IPv6 addresses of the pool held by Services.
    pub assigned_v6: u128,
    /// IPv4 addresses the pool can still hand out: allocatable, not held, and not skipped by `avoidBuggyIPs`.
    pub available_v4: u128,
    /// IPv6 addresses the pool can still hand out: allocatable, not held, and not withheld as
    /// a subnet-router anycast address (saturating at `u128::MAX`).
    pub available_v6: u128,
}

impl PoolUsage {
    /// Addresses of the pool held by Services, both families.
    pub fn in_use(&self) -> u128 {
        self.assigned_v4 + self.assigned_v6
    }
}

#[derive(Debug, Clone)]
struct IpEntry {
    pool: String,
    /// `None`: held exclusively by one Service.
    sharing_key: Option<String>,
    users: super::ip_users::Users,
}

/// Counters kept per pool so status never needs a scan.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    assigned: [u128; 2],
    /// Of `assigned`, those inside the pool's `fresh` set (for IPv4, its allocatable set).
    assigned_fresh: [u128; 2],
}

fn family_index(family: Family) -> usize {
    match family {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

/// The whole allocation state of the controller.
#[derive(Debug, Default)]
pub struct Allocator {
    pools: BTreeMap<String, Pool>,
    ips: BTreeMap<IpAddr, IpEntry>,
    used: UsedAddresses,
    services: HashMap<ServiceKey, Assignment>,
    /// IPs of each (pool, sharing key), to find a shareable IP in O(log n).
    shared: HashMap<(String, String), BTreeSet<IpAddr>>,
    counts: HashMap<String, Counts>,
}

impl Allocator {
    /// An empty table: no pools, no assignments.
    pub fn new() -> Allocator {
        Allocator::default()
    }

    /// The pools in use, by name, with overlaps already resolved.
    pub fn pools(&self) -> &BTreeMap<String, Pool> {
        &self.pools
    }

    /// The IPs `key` holds now, or `None` when it holds none.
    pub fn assignment(&self, key: &ServiceKey) -> Option<&Assignment> {
        self.services.get(key)
    }

    /// How many Services hold at least one IP.
    pub fn assigned_services(&self) -> usize {
        self.services.len()
    }

    /// Replaces the pool set. Returns the Services whose IPs their pool no
    /// longer declares (or whose pool is gone): the shell must re-assign them.
    pub fn set_pools(&mut self, configs: Vec<PoolConfig>) -> Vec<ServiceKey> {
        self.pools = resolve_pools(configs);
        self.recount();
        let mut orphans: Vec<ServiceKey> = self
            .services
            .iter()
            .filter(|(_, a)| {
                self.pools
                    .get(&a.pool)
                    .is_none_or(|p| a.ips.iter().any(|ip| !p.config.declared.contains(*ip)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        orphans.sort();
        orphans
    }

    fn recount(&mut self) {
        let mut counts: HashMap<String, Counts> = HashMap::new();
        for (ip, entry) in &self.ips {
            let c = counts.entry(entry.pool.clone()).or_default();
            let f = family_index(Family::of(ip));
            c.assigned[f] += 1;
            if self
                .pools
                .get(&entry.pool)
                .is_some_and(|p| p.fresh.contains(*ip))
            {
                c.assigned_fresh[f] += 1;
            }
        }
        self.counts = counts;
    }

    /// Usage of one pool, for its status and metrics.
    pub fn usage(&self, pool: &str) -> PoolUsage {
        let counts = self.counts.get(pool).copied().unwrap_or_default();
        let Some(p) = self.pools.get(pool) else {
            return PoolUsage {
                assigned_v4: counts.assigned[0],
                assigned_v6: counts.assigned[1],
                ..Default::default()
            };
        };
        let buggy = if p.config.avoid_buggy {
            buggy_count(&p.fresh)
        } else {
            0
        };
        let usable_v4 = p.fresh.size(Family::V4).saturating_sub(buggy);
        PoolUsage {
            assigned_v4: counts.assigned[0],
            assigned_v6: counts.assigned[1],
            available_v4: usable_v4.saturating_sub(counts.assigned_fresh[0]),
            available_v6: p
                .fresh
                .size(Family::V6)
                .saturating_sub(counts.assigned_fresh[1]),
        }
    }

    /// Decides the IPs of a Service: keeps what it holds while that is still
    /// valid, else allocates. On error the Service holds nothing.
    pub fn assign(
        &mut self,
        request: &ServiceRequest,
        namespace_labels: &Labels,
    ) -> Result<Assignment, AllocationError> {
        if let Some(current) = self.services.get(&request.key).cloned() {
            if self.still_valid(&current, request) {
                self.update_terms(&current, request);
                return Ok(current);
            }
            self.release(&request.key);
        }
        let candidates = self.candidate_pools(request, namespace_labels)?;
        let mut first_error = None;
        for pool_name in candidates {
            match self.pick_from_pool(&pool_name, request) {
                Ok(ips) => {
                    let assignment = Assignment {
                        pool: pool_name,
                        ips,
                    };
                    self.commit(request, &assignment);
                    return Ok(assignment);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(AllocationError::NoEligiblePool {
            pools: self.pools.len(),
        }))
    }

    /// Frees a Service's IPs. Returns what it held, and whether any IP became free.
    pub fn release(&mut self, key: &ServiceKey) -> Option<(Assignment, bool)> {
        let assignment = self.services.remove(key)?;
        let mut freed = false;
        for ip in &assignment.ips {
            let Some(entry) = self.ips.get_mut(ip) else {
                continue;
            };
            entry.users.remove(key);
            if !entry.users.is_empty() {
                continue;
            }
            let pool = entry.pool.clone();
            if let Some(shared_key) = entry.sharing_key.clone() {
                let index_key = (pool.clone(), shared_key);
                if let Some(set) = self.shared.get_mut(&index_key) {
                    set.remove(ip);
                    if set.is_empty() {
                        self.shared.remove(&index_key);
                    }
                }
            }
            self.ips.remove(ip);
            self.used.remove(*ip);
            self.count(&pool, *ip, false);
            freed = true;
        }
        Some((assignment, freed))
    }

    /// Whether `standing` (IPs a Service holds, or shows after a restart)
    /// comes from a pool out of allocation (deleted, or invalid) while no
    /// valid pool declares those IPs. Such IPs are frozen with their
    /// Service: never moved, and nothing new is drawn from that pool.
    pub fn frozen(&self, standing: &Assignment) -> bool {
        !self.pools.contains_key(&standing.pool)
            && !self.pools.values().any(|p| declares_all(p, &standing.ips))
    }

    /// Keeps `standing` for `key`, whose request cannot be served (or whose
    /// pool is frozen): its IPs stay while their pool still declares them
    /// or is frozen, and no other Service holds them unshareably. False
    /// when they cannot be kept; `key` then holds what it held before.
    pub fn hold(
        &mut self,
        key: &ServiceKey,
        standing: &Assignment,
        sharing: Option<&SharingTerms>,
    ) -> bool {
        if self.services.get(key) == Some(standing) {
            return true;
        }
        let in_pool = self
            .pools
            .get(&standing.pool)
            .is_some_and(|p| declares_all(p, &standing.ips));
        let free = standing.ips.iter().all(|ip| {
            self.ips.get(ip).is_none_or(|e| e.pool == standing.pool)
                && self.shareable_with(*ip, sharing, Some(key)).is_ok()
        });
        if standing.ips.is_empty() || !(in_pool || self.frozen(standing)) || !free {
            return false;
        }
        self.release(key);
        self.commit_as(key, sharing, standing);
        true
    }

    fn count(&mut self, pool: &str, ip: IpAddr, add: bool) {
        let in_fresh = self.pools.get(pool).is_some_and(|p| p.fresh.contains(ip));
        let c = self.counts.entry(pool.to_string()).or_default();
        let f = family_index(Family::of(&ip));
        let step = |v: &mut u128| {
            *v = if add {
                v.saturating_add(1)
            } else {
                v.saturating_sub(1)
            }
        };
        step(&mut c.assigned[f]);
        if in_fresh {
            step(&mut c.assigned_fresh[f]);
        }
    }

    fn still_valid(&self, current: &Assignment, request: &ServiceRequest) -> bool {
        let Some(pool) = self.pools.get(&current.pool) else {
            return false;
        };
        if request
            .requested_pool
            .as_ref()
            .is_some_and(|p| *p != current.pool)
        {
            return false;
        }
        if !request.requested_ips.is_empty() {
            let wanted: BTreeSet<_> = request.requested_ips.iter().collect();
            if wanted != current.ips.iter().collect() {
                return false;
            }
        }
        let families: BTreeSet<Family> = current.ips.iter().map(Family::of).collect();
        let fits_families = if request.needs.all_required {
            families == request.needs.families.iter().copied().collect()
        } else {
            !families.is_empty() && families.iter().all(|f| request.needs.families.contains(f))
        };
        fits_families
            && current.ips.iter().all(|ip| {
                pool.config.declared.contains(*ip)
                    && self.shareable(*ip, request, Some(&request.key)).is_ok()
            })
    }

    fn update_terms(&mut self, current: &Assignment, request: &ServiceRequest) {
        for ip in &current.ips {
            if let Some(entry) = self.ips.get_mut(ip) {
                entry
                    .users
                    .insert(request.key.clone(), request.sharing.clone());
            }
        }
    }

    /// Pools to try, best first.
    fn candidate_pools(
        &self,
        request: &ServiceRequest,
        namespace_labels: &Labels,
    ) -> Result<Vec<String>, AllocationError> {
        // A requested pool or IP names where to allocate, never who may:
        // the pool's serviceAllocation still has to admit the Service.
        let admits = |pool: &Pool| {
            pool.config
                .scope
                .as_ref()
                .is_none_or(|scope| scope.admits(request, namespace_labels))
        };
        if let Some(name) = &request.requested_pool {
            let Some(pool) = self.pools.get(name) else {
                return Err(AllocationError::UnknownPool { pool: name.clone() });
            };
            if !admits(pool) {
                return Err(AllocationError::PoolOutOfScope { pool: name.clone() });
            }
            return Ok(vec![name.clone()]);
        }
        if let Some(ip) = request.requested_ips.first() {
            let (admitting, excluding): (Vec<&Pool>, Vec<&Pool>) = self
                .pools
                .values()
                .filter(|p| {
                    request
                        .requested_ips
                        .iter()
                        .all(|ip| p.config.declared.contains(*ip))
                })
                .partition(|p| admits(p));
            if let Some(excluding) = excluding.first()
                && admitting.is_empty()
            {
                return Err(AllocationError::RequestedIpOutOfScope {
                    ip: *ip,
                    pool: excluding.config.name.clone(),
                });
            }
            let holding: Vec<String> = admitting
                .into_iter()
                .map(|p| p.config.name.clone())
                .collect();
            if holding.is_empty() {
                let missing = request
                    .requested_ips
                    .iter()
                    .find(|ip| {
                        !self
                            .pools
                            .values()
                            .any(|p| p.config.declared.contains(**ip))
                    })
                    .unwrap_or(ip);
                return Err(AllocationError::RequestedIpInNoPool { ip: *missing });
            }
            return Ok(holding);
        }
        let mut scoped: Vec<(i32, &str)> = Vec::new();
        let mut unscoped: Vec<&str> = Vec::new();
        for pool in self.pools.values().filter(|p| p.config.auto_assign) {
            match &pool.config.scope {
                Some(scope) if scope.admits(request, namespace_labels) => {
                    scoped.push((scope.priority.unwrap_or(i32::MAX), &pool.config.name))
                }
                Some(_) => {}
                None => unscoped.push(&pool.config.name),
            }
        }
        scoped.sort();
        let mut names: Vec<String> = scoped
            .into_iter()
            .map(|(_, n)| n.to_string())
            .chain(unscoped.into_iter().map(str::to_string))
            .collect();
        // Stability: an IP the Service already shows stays with it (e.g. across
        // a restart), even if its pool would not be chosen for a new Service.
        if let Some(ip) = request.current_ips.first() {
            let home = request
                .recorded_pool
                .as_ref()
                .filter(|p| {
                    self.pools
                        .get(*p)
                        .is_some_and(|pool| pool.config.declared.contains(*ip))
                })
                .cloned()
                .or_else(|| {
                    self.pools
                        .values()
                        .find(|p| p.config.declared.contains(*ip))
                        .map(|p| p.config.name.clone())
                });
            if let Some(home) = home {
                names.retain(|n| *n != home);
                names.insert(0, home);
            }
        }
        if names.is_empty() {
            return Err(AllocationError::NoEligiblePool {
                pools: self.pools.len(),
            });
        }
        Ok(names)
    }

    /// Whether `request` may hold `ip` alongside its current users (ignoring `me`).
    fn shareable(
        &self,
        ip: IpAddr,
        request: &ServiceRequest,
        me: Option<&ServiceKey>,
    ) -> Result<(), AllocationError> {
        self.shareable_with(ip, request.sharing.as_deref(), me)
    }

    /// Whether a Service with terms `sharing` may hold `ip` alongside its current users (ignoring `me`).
    fn shareable_with(
        &self,
        ip: IpAddr,
        sharing: Option<&SharingTerms>,
        me: Option<&ServiceKey>,
    ) -> Result<(), AllocationError> {
        let Some(entry) = self.ips.get(&ip) else {
            return Ok(());
        };
        for (user, terms) in entry.users.iter().filter(|(user, _)| Some(*user) != me) {
            let (Some(mine), Some(theirs)) = (sharing, terms) else {
                return Err(AllocationError::IpTaken {
                    ip,
                    by: user.clone(),
                });
            };
            let conflict = |reason: String| AllocationError::SharingConflict {
                ip,
                with: user.clone(),
                reason,
            };
            if mine.key != theirs.key {
                return Err(conflict(format!(
                    "sharing keys differ ({:?} vs {:?})",
                    mine.key, theirs.key
                )));
            }
            if let Some(port) = mine.ports.intersection(&theirs.ports).next() {
                return Err(conflict(format!("both use port {port}")));
            }
            if (mine.local_traffic_policy || theirs.local_traffic_policy)
                && mine.selector != theirs.selector
            {
                return Err(conflict(
                    "externalTrafficPolicy is Local and the selectors differ".into(),
                ));
            }
        }
        Ok(())
    }

    fn pick_from_pool(
        &self,
        pool_name: &str,
        request: &ServiceRequest,
    ) -> Result<Vec<IpAddr>, AllocationError> {
        let Some(pool) = self.pools.get(pool_name) else {
            return Err(AllocationError::UnknownPool {
                pool: pool_name.to_string(),
            });
        };
        let mut picked = Vec::new();
        let mut first_error = None;
        for &family in &request.needs.families {
            match self.pick_family(pool, request, family) {
                Ok(ip) => picked.push(ip),
                Err(e) => {
                    let explicit = request
                        .requested_ips
                        .iter()
                        .any(|ip| Family::of(ip) == family);
                    if request.needs.all_required || explicit {
                        return Err(e);
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        match (picked.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(picked),
        }
    }

    fn pick_family(
        &self,
        pool: &Pool,
        request: &ServiceRequest,
        family: Family,
    ) -> Result<IpAddr, AllocationError> {
        let name = &pool.config.name;
        if let Some(ip) = request
            .requested_ips
            .iter()
            .find(|ip| Family::of(ip) == family)
        {
            if !pool.config.declared.contains(*ip) {
                return Err(AllocationError::RequestedIpNotInPool {
                    ip: *ip,
                    pool: name.clone(),
                });
            }
            let already_ours = self.ips.get(ip).is_some_and(|e| e.pool == *name);
            if !pool.allocatable.contains(*ip) && !already_ours && !request.current_ips.contains(ip)
            {
                return Err(AllocationError::RequestedIpInOverlap {
                    ip: *ip,
                    pool: name.clone(),
                });
            }
            self.shareable(*ip, request, Some(&request.key))?;
            return Ok(*ip);
        }
        if let Some(ip) = request
            .current_ips
            .iter()
            .find(|ip| Family::of(ip) == family)
        {
            let owner_ok = self.ips.get(ip).is_none_or(|e| e.pool == *name);
            if pool.config.declared.contains(*ip)
                && owner_ok
                && self.shareable(*ip, request, Some(&request.key)).is_ok()
            {
                return Ok(*ip);
            }
        }
        if let Some(terms) = &request.sharing
            && let Some(ips) = self.shared.get(&(name.clone(), terms.key.clone()))
            && let Some(ip) = ips
                .iter()
                .filter(|ip| Family::of(ip) == family)
                .find(|ip| self.shareable(**ip, request, Some(&request.key)).is_ok())
        {
            return Ok(*ip);
        }
        if !pool.config.declared.has_family(family) {
            return Err(AllocationError::FamilyUnavailable {
                pool: name.clone(),
                family,
            });
        }
        self.used
            .lowest_free(&pool.fresh, family, pool.config.avoid_buggy)
            .ok_or(AllocationError::PoolFull {
                pool: name.clone(),
                family,
            })
    }

    fn commit(&mut self, request: &ServiceRequest, assignment: &Assignment) {
        self.commit_as(&request.key, request.sharing.as_deref(), assignment);
    }

    fn commit_as(
        &mut self,
        key: &ServiceKey,
        sharing: Option<&SharingTerms>,
        assignment: &Assignment,
    ) {
        for ip in &assignment.ips {
            let is_new = !self.ips.contains_key(ip);
            let entry = self.ips.entry(*ip).or_insert_with(|| IpEntry {
                pool: assignment.pool.clone(),
                sharing_key: sharing.map(|s| s.key.clone()),
                users: super::ip_users::Users::default(),
            });
            entry
                .users
                .insert(key.clone(), sharing.cloned().map(Box::new));
            if is_new {
                self.used.insert(*ip);
                if let Some(terms) = sharing {
                    self.shared
                        .entry((assignment.pool.clone(), terms.key.clone()))
                        .or_default()
                        .insert(*ip);
                }
                self.count(&assignment.pool, *ip, true);
            }
        }
        self.services.insert(key.clone(), assignment.clone());
    }
}

fn declares_all(pool: &Pool, ips: &[IpAddr]) -> bool {
    ips.iter().all(|ip| pool.config.declared.contains(*ip))
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
