//! Reach reports: each speaker tells the others which interfaces it cannot
//! announce on ([`crate::model::reach`]), over the gossip socket, in an
//! envelope of its own ([`Envelope::Reach`](super::auth::Envelope)).
//!
//! Pure parts: the report's wire format ([`ReachReport::encode`] and
//! [`ReachReport::decode`], postcard like foca's messages, with bounds), what a
//! receiver keeps ([`ReachBook`]: the latest report per node, which expires
//! unless refreshed) and when a sender sends ([`ReachOutbox`]: at once on a
//! change and twice more against loss, then every [`REFRESH_EVERY`] while the
//! reach is not full). The gossip shell moves the datagrams.
//!
//! A lost "all good" heals by itself: the receiver's copy of the bad report
//! expires [`REPORT_TTL`] after it was last refreshed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::reach::{Reach, Reaches};

/// The most interface names one report carries.
pub const MAX_NAMES: usize = 32;
/// The longest interface name (`IFNAMSIZ` less the terminating NUL).
pub const MAX_NAME_LEN: usize = 15;
/// The longest node name (a DNS subdomain).
pub const MAX_NODE_NAME_LEN: usize = 253;
/// How long a report counts after it was last received.
pub const REPORT_TTL: Duration = Duration::from_millis(3500);
/// How often a reach that is not full is sent again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// The spacing of the repeats that follow a change.
pub const REPEAT_SPACING: Duration = Duration::from_millis(200);
/// How many times a change is sent again after the first time.
pub const REPEATS: u8 = 2;
/// Bigger than any report within the bounds.
const ENCODE_BUFFER: usize = 1024;

/// One speaker's reach, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachReport {
    /// The node the sender runs on.
    pub node_name: String,
    /// Larger replaces smaller; equal refreshes. Starts at the sender's
    /// gossip generation (wall-clock milliseconds at start), so that a
    /// restarted speaker's reports replace those of its previous run.
    pub generation: u64,
    /// See [`Reach::no_suitable`].
    pub no_suitable: bool,
    /// See [`Reach::unusable`], in order.
    pub unusable: Vec<String>,
}

/// Why bytes are not a reach report (or a report cannot be sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Not postcard for a report.
    #[error("reach report does not decode: {0}")]
    Decode(String),
    /// Bytes left after the report.
    #[error("{0} bytes after the reach report")]
    TrailingBytes(usize),
    /// More interface names than [`MAX_NAMES`].
    #[error("reach report names {0} interfaces; at most {MAX_NAMES} are accepted")]
    TooManyNames(usize),
    /// An interface name that is empty or longer than [`MAX_NAME_LEN`] bytes.
    #[error("reach report names an interface of {0} bytes; 1 to {MAX_NAME_LEN} are accepted")]
    BadInterfaceName(usize),
    /// A node name that is empty or longer than [`MAX_NODE_NAME_LEN`] bytes.
    #[error(
        "reach report comes from a node name of {0} bytes; 1 to {MAX_NODE_NAME_LEN} are accepted"
    )]
    BadNodeName(usize),
}

impl ReachReport {
    /// The report of `node_name` with `reach`.
    pub fn new(node_name: &str, generation: u64, reach: &Reach) -> Self {
        ReachReport {
            node_name: node_name.to_owned(),
            generation,
            no_suitable: reach.no_suitable,
            unusable: reach.unusable.iter().cloned().collect(),
        }
    }

    /// The reach it reports.
    pub fn reach(&self) -> Reach {
        Reach {
            no_suitable: self.no_suitable,
            unusable: self.unusable.iter().cloned().collect(),
        }
    }

    fn check(&self) -> Result<(), ReportError> {
        let node = self.node_name.len();
        if node == 0 || node > MAX_NODE_NAME_LEN {
            return Err(ReportError::BadNodeName(node));
        }
        if self.unusable.len() > MAX_NAMES {
            return Err(ReportError::TooManyNames(self.unusable.len()));
        }
        match self
            .unusable
            .iter()
            .find(|name| name.is_empty() || name.len() > MAX_NAME_LEN)
        {
            Some(bad) => Err(ReportError::BadInterfaceName(bad.len())),
            None => Ok(()),
        }
    }

    /// The payload to seal; refuses a report a receiver would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, ReportError> {
        self.check()?;
        let mut buffer = [0u8; ENCODE_BUFFER];
        postcard::to_slice(self, &mut buffer)
            .map(|used| used.to_vec())
            .map_err(|error| ReportError::Decode(error.to_string()))
    }

    /// The report in `payload`, checked against the bounds.
    pub fn decode(payload: &[u8]) -> Result<Self, ReportError> {
        let (report, rest): (ReachReport, &[u8]) = postcard::take_from_bytes(payload)
            .map_err(|error| ReportError::Decode(error.to_string()))?;
        if !rest.is_empty() {
            return Err(ReportError::TrailingBytes(rest.len()));
        }
        report.check()?;
        Ok(report)
    }
}

/// What became of a received report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Taken; the published reaches changed.
    Changed,
    /// Taken as a refresh of what we had.
    Refreshed,
    /// Older than the report we hold for that node.
    Stale,
    /// Claims to come from our own node (a misconfiguration, or a replay).
    Ours,
}

#[derive(Debug, Clone)]
struct Entry {
    generation: u64,
    reach: Reach,
    refreshed: Instant,
}

/// The reaches a speaker knows: its own, and the latest unexpired report of
/// each other node.
#[derive(Debug, Clone)]
pub struct ReachBook {
    own_node: String,
    own: Reach,
    others: BTreeMap<String, Entry>,
}

impl ReachBook {
    /// A book knowing only that we have full reach.
    pub fn new(own_node: String) -> Self {
        ReachBook {
            own_node,
            own: Reach::FULL,
            others: BTreeMap::new(),
        }
    }

    /// Sets our own reach; whether it changed.
    pub fn set_own(&mut self, reach: Reach) -> bool {
        let changed = self.own != reach;
        self.own = reach;
        changed
    }

    /// Takes a report received at `now`.
    pub fn receive(&mut self, report: &ReachReport, now: Instant) -> Received {
        if report.node_name == self.own_node {
            return Received::Ours;
        }
        let reach = report.reach();
        match self.others.get_mut(&report.node_name) {
            Some(entry) if report.generation < entry.generation => Received::Stale,
            Some(entry) => {
                entry.generation = report.generation;
                entry.refreshed = now;
                if entry.reach == reach {
                    Received::Refreshed
                } else {
                    entry.reach = reach;
                    Received::Changed
                }
            }
            None => {
                self.others.insert(
                    report.node_name.clone(),
                    Entry {
                        generation: report.generation,
                        reach: reach.clone(),
                        refreshed: now,
                    },
                );
                if reach.is_full() {
                    Received::Refreshed
                } else {
                    Received::Changed
                }
            }
        }
    }

    /// Forgets the report of a node whose speaker is gone; whether the
    /// published reaches changed.
    pub fn forget(&mut self, node: &str) -> bool {
        self.others
            .remove(node)
            .is_some_and(|entry| !entry.reach.is_full())
    }

    /// [`ReachBook::forget`] for each of `nodes`; whether the published
    /// reaches changed.
    pub fn forget_all<'n>(&mut self, nodes: impl IntoIterator<Item = &'n String>) -> bool {
        nodes
            .into_iter()
            .fold(false, |changed, node| self.forget(node) | changed)
    }

    /// Drops the reports not refreshed within [`REPORT_TTL`] of `now`;
    /// whether the published reaches changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        self.others.retain(|_, entry| {
            let keep = now.saturating_duration_since(entry.refreshed) < REPORT_TTL;
            changed |= !keep && !entry.reach.is_full();
            keep
        });
        changed
    }

    /// When the next report expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.others
            .values()
            .map(|entry| entry.refreshed + REPORT_TTL)
            .min()
    }

    /// Every node's reach that is not full, ours included.
    pub fn reaches(&self) -> Reaches {
        self.others
            .iter()
            .map(|(node, entry)| (node, &entry.reach))
            .chain(std::iter::once((&self.own_node, &self.own)))
            .filter(|(_, reach)| !reach.is_full())
            .map(|(node, reach)| (node.clone(), reach.clone()))
            .collect()
    }
}

/// When our report goes out.
#[derive(Debug, Clone)]
pub struct ReachOutbox {
    report: ReachReport,
    repeats_left: u8,
    next: Option<Instant>,
}

impl ReachOutbox {
    /// Full reach, nothing to send yet. `generation` is our gossip generation.
    pub fn new(own_node: &str, generation: u64) -> Self {
        ReachOutbox {
            report: ReachReport::new(own_node, generation, &Reach::FULL),
            repeats_left: 0,
            next: None,
        }
    }

    /// The report as it stands.
    pub fn report(&self) -> &ReachReport {
        &self.report
    }

    /// Sets our reach at `now`. When it changed, the report (one generation
    /// later) is due at once: returns whether to send it now to every member.
    pub fn set(&mut self, reach: &Reach, now: Instant) -> bool {
        if self.report.reach() == *reach {
            return false;
        }
        let generation = self.report.generation.saturating_add(1);
        self.report = ReachReport::new(&self.report.node_name, generation, reach);
        self.repeats_left = REPEATS;
        self.next = Some(now + REPEAT_SPACING);
        true
    }

    /// Whether the report is due at `now` (a repeat, or a refresh of a reach
    /// that is not full); if so, schedules the next one.
    pub fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(next) if next <= now => {}
            _ => return false,
        }
        if self.repeats_left > 0 {
            self.repeats_left -= 1;
        }
        self.next = if self.repeats_left > 0 {
            Some(now + REPEAT_SPACING)
        } else if self.report.reach().is_full() {
            None
        } else {
            Some(now + REFRESH_EVERY)
        };
        true
    }

    /// When the report is next due.
    pub fn next_due(&self) -> Option<Instant> {
        self.next
    }

    /// The report for a member that just joined: only a reach that is not
    /// full, since a node nobody heard from has full reach anyway.
    pub fn for_newcomer(&self) -> Option<&ReachReport> {
        (!self.report.reach().is_full()).then_some(&self.report)
    }
}

#[cfg(test)]
#[path = "reach_tests.rs"]
mod tests;
