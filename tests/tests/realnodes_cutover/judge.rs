//! Reading what the samplers saw through the cut-over.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ferrolb_tests::arp_probe::{Claim, overlapping_answers, unsettled_moments};
use ferrolb_tests::realnodes::RealCluster;
use ferrolb_tests::realnodes::http_probe::{Sample, outage};

use crate::before::Target;
use crate::{EVERY, MAX_GAP};

/// Findings, and what breaks the test among them.
#[derive(Default)]
pub struct Verdict {
    pub report: Vec<String>,
    pub problems: Vec<String>,
}

/// What an ARP prober saw of one IP through the swap.
pub struct ArpHandOver {
    /// Who answered in the window (lower case).
    macs: BTreeSet<String>,
    /// The one of them, or empty.
    owner: String,
    /// When the answers in the window were not one MAC answering each request.
    unsettled: Vec<Duration>,
    /// The longest time without any claim of the IP after the swap.
    silence: Duration,
    /// The owner's first gratuitous ARP after the swap.
    garp: Option<Instant>,
    /// Requests answered by two MACs between the swap and the window.
    overlaps: usize,
}

impl ArpHandOver {
    pub fn read(claims: &[Claim], swap: Instant, (from, to): (Instant, Instant)) -> ArpHandOver {
        let macs: BTreeSet<String> = claims
            .iter()
            .filter(|c| !c.gratuitous && c.at >= from && c.at <= to)
            .map(|c| c.mac.to_ascii_lowercase())
            .collect();
        let owner = macs.iter().next().cloned().unwrap_or_default();
        let silence = claims
            .iter()
            .filter(|c| c.at >= swap)
            .fold((swap, Duration::ZERO), |(last, longest), c| {
                (c.at, longest.max(c.at - last))
            })
            .1;
        let garp = claims
            .iter()
            .find(|c| c.gratuitous && c.at >= swap && c.mac.eq_ignore_ascii_case(&owner))
            .map(|c| c.at);
        let during: Vec<Claim> = claims
            .iter()
            .filter(|c| c.at >= swap && c.at < from)
            .cloned()
            .collect();
        ArpHandOver {
            unsettled: unsettled_moments(claims, from, to, EVERY),
            overlaps: overlapping_answers(&during, EVERY / 2).len(),
            macs,
            owner,
            silence,
            garp,
        }
    }
}

impl Verdict {
    /// ARP for `ip` (MetalLB's owner `metallb_mac`): one MAC answers in
    /// `window`, and it sent a gratuitous ARP after `swap`, whose time it
    /// returns.
    pub fn arp(
        &mut self,
        site: &RealCluster,
        ip: Ipv4Addr,
        claims: &[Claim],
        metallb_mac: &str,
        swap: Instant,
        (window_from, window_to): (Instant, Instant),
    ) -> Option<Instant> {
        let (report, problems) = (&mut self.report, &mut self.problems);
        let arp = ArpHandOver::read(claims, swap, (window_from, window_to));
        let node = site
            .node_with_mac(&arp.owner)
            .map(|i| site.nodes[i].name.clone());
        report.push(format!(
            "{ip}: MetalLB's {} -> FerroLB's {} ({node:?}); longest ARP silence after the swap {:?}; \
             owner's first gratuitous ARP {:?} after the swap; {} requests answered by two MACs during the swap; \
             unsettled in the window at {:?}",
            metallb_mac,
            arp.owner,
            arp.silence,
            arp.garp.map(|at| at - swap),
            arp.overlaps,
            arp.unsettled
        ));
        if arp.macs.len() != 1 || !arp.unsettled.is_empty() {
            problems.push(format!(
                "{ip}: answered by {:?} in the window, unsettled at {:?}",
                arp.macs, arp.unsettled
            ));
        }
        if arp.garp.is_none() {
            problems.push(format!(
                "{ip}: FerroLB's owner {} sent no gratuitous ARP after the swap",
                arp.owner
            ));
        }
        arp.garp
    }

    /// The client's requests to `target` (the loop started at `from`): none
    /// fails in the gap before FerroLB's speakers answer (the client's cached
    /// MAC still leads to a node that forwards); a request in flight when the
    /// owner's gratuitous ARP (at `moved`) moves the client to another node
    /// may be reset (its connection's state is on the old node); no gap
    /// exceeds [`MAX_GAP`]; every request in the window succeeds.
    pub fn http(
        &mut self,
        target: &Target,
        from: Instant,
        samples: &[Sample],
        moved: Option<Instant>,
        swap: Instant,
        (window_from, window_to): (Instant, Instant),
    ) {
        let (report, problems) = (&mut self.report, &mut self.problems);
        let label = &target.label;
        let through = outage(samples);
        let failures: Vec<Duration> = samples
            .iter()
            .filter(|s| !s.ok())
            .map(|s| (from + s.at).saturating_duration_since(swap))
            .collect();
        let in_window = samples
            .iter()
            .filter(|s| from + s.at >= window_from && from + s.at <= window_to);
        let (window_total, window_failed) =
            in_window.fold((0, 0), |(n, f), s| (n + 1, f + usize::from(!s.ok())));
        let moved = moved.map(|at| at - swap);
        report.push(format!(
            "{label}: {} of {} requests failed, at {failures:?} after the swap (owner moved {moved:?} after it), \
             longest gap {:?}; {window_failed} of {window_total} failed in the window",
            through.failed, through.total, through.longest_gap
        ));
        if window_total == 0 || window_failed > 0 {
            problems.push(format!(
                "{label}: {window_failed} failed requests of {window_total} after settling"
            ));
        }
        let explained = |failure: &Duration| {
            moved.is_some_and(|moved| failure.abs_diff(moved) <= Duration::from_millis(1500))
                || (moved.is_none() && failures.len() <= 1)
        };
        if through.longest_gap > MAX_GAP || !failures.iter().all(explained) {
            problems.push(format!(
                "{label}: a client with a cached MAC was not served through the swap: failures at {failures:?} \
                 after the swap, the owner moved {moved:?} after it, longest gap {:?}",
                through.longest_gap
            ));
        }
    }
}
