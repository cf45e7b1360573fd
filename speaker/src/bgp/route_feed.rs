//! Routes handed from the plan loop to one session task, by change: the plan loop updates
//! the prefixes a plan changed in the shared route set and names them in a
//! [`Mailbox`], merged while the session is busy, so the session compares only those
//! prefixes with what the peer has. Neither side clones or walks the whole set per
//! change; a session walks it once when it comes up.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;

use super::session::RouteSet;
use crate::mailbox::Mailbox;

/// The routes of one peer, and the prefixes changed since the session last looked.
#[derive(Debug, Default)]
pub struct RouteFeed {
    routes: Mutex<RouteSet>,
    changes: Mailbox<BTreeSet<IpNet>>,
}

impl RouteFeed {
    /// A feed holding `routes`.
    pub fn new(routes: RouteSet) -> RouteFeed {
        RouteFeed {
            routes: Mutex::new(routes),
            changes: Mailbox::default(),
        }
    }

    /// Copies the routes of `prefixes` from `plan` (removing those it lacks) and wakes
    /// the session for them.
    pub fn update(&self, plan: &RouteSet, prefixes: &BTreeSet<IpNet>) {
        if prefixes.is_empty() {
            return;
        }
        self.with_routes(|routes| {
            for prefix in prefixes {
                match plan.get(prefix) {
                    Some(route) => routes.insert(*prefix, route.clone()),
                    None => routes.remove(prefix),
                };
            }
        });
        // After the routes: a session woken for a prefix reads its new route.
        self.changes
            .send(|waiting| waiting.extend(prefixes.iter().copied()));
    }

    /// The prefixes changed since the last call, leaving none.
    pub fn take(&self) -> BTreeSet<IpNet> {
        self.changes.take()
    }

    /// Until a prefix changed since the last wake-up.
    pub async fn changed(&self) {
        self.changes.changed().await;
    }

    /// Runs `f` on the routes, the plan loop waiting meanwhile.
    pub fn with_routes<R>(&self, f: impl FnOnce(&mut RouteSet) -> R) -> R {
        f(&mut self.routes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The feeds of the planned peers, by peer name, kept in line with the plans.
#[derive(Debug, Default)]
pub struct RouteFeeds {
    feeds: BTreeMap<String, Arc<RouteFeed>>,
}

impl RouteFeeds {
    /// Follows a plan: `planned` holds every planned peer with its routes, `changed`,
    /// per peer planned the last time too, the prefixes whose route changed since. A new
    /// peer gets a new feed with all its routes; a peer no longer planned loses its feed.
    pub fn follow<'p>(
        &mut self,
        planned: impl IntoIterator<Item = (&'p String, &'p RouteSet)>,
        changed: &BTreeMap<String, BTreeSet<IpNet>>,
    ) {
        let mut feeds = BTreeMap::new();
        for (peer, routes) in planned {
            let feed = match self.feeds.remove(peer) {
                Some(feed) => {
                    if let Some(prefixes) = changed.get(peer) {
                        feed.update(routes, prefixes);
                    }
                    feed
                }
                None => Arc::new(RouteFeed::new(routes.clone())),
            };
            feeds.insert(peer.clone(), feed);
        }
        self.feeds = feeds;
    }

    /// The feed of `peer`, when it is planned.
    pub fn get(&self, peer: &str) -> Option<&Arc<RouteFeed>> {
        self.feeds.get(peer)
    }
}
