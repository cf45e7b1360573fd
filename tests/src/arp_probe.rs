//! A client-side ARP prober for the L2 benchmark.
//!
//! It runs in the client namespace on a raw AF_PACKET socket, sends who-has
//! requests for one IP at a fixed interval, and timestamps every ARP packet
//! whose sender claims that IP: answers to us and gratuitous announcements
//! alike. It builds its frames itself rather than with the speaker's codec,
//! so a bug there cannot hide in the measurement.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::l2lab::ArpSample;
use crate::netns::{Netns, enter_named_netns};
use crate::packet_socket::{PacketSocket, format_mac, parse_mac};

const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const FRAME_LEN: usize = 42;

/// One ARP packet that claimed the probed IP.
#[derive(Clone, Debug)]
pub struct Claim {
    /// When the client's kernel received it.
    pub at: Instant,
    /// The sender hardware address, as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// A gratuitous announcement (target IP = sender IP), not an answer to us.
    pub gratuitous: bool,
}

/// A raw ARP socket bound to one interface of the current thread's namespace.
struct ArpSocket {
    socket: PacketSocket,
    our_ip: Ipv4Addr,
}

impl ArpSocket {
    fn open(interface: &str, our_mac: [u8; 6], our_ip: Ipv4Addr) -> Result<ArpSocket> {
        let socket = PacketSocket::open(interface, our_mac, ETH_P_ARP, Duration::from_millis(1))?;
        Ok(ArpSocket { socket, our_ip })
    }

    fn send_request(&self, target: Ipv4Addr) -> Result<()> {
        self.send(&request_frame(self.socket.mac, self.our_ip, target))
    }

    fn send(&self, frame: &[u8]) -> Result<()> {
        self.socket.send(frame)
    }

    /// The next claim of `target` received within the socket timeout, if any.
    fn receive_claim(&self, target: Ipv4Addr) -> Option<Claim> {
        let mut buffer = [0u8; 128];
        let (frame, at) = self.socket.receive_stamped(&mut buffer)?;
        parse_claim(frame, target, self.our_ip).map(|(mac, gratuitous)| Claim {
            at,
            mac,
            gratuitous,
        })
    }
}

/// A broadcast who-has `target`, from `our_mac`/`our_ip`.
fn request_frame(our_mac: [u8; 6], our_ip: Ipv4Addr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
    let mut frame = [0u8; FRAME_LEN];
    frame[0..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&our_mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    frame[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    frame[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    frame[18] = 6;
    frame[19] = 4;
    frame[20..22].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    frame[22..28].copy_from_slice(&our_mac);
    frame[28..32].copy_from_slice(&our_ip.octets());
    // Target hardware address stays zero.
    frame[38..42].copy_from_slice(&target.octets());
    frame
}

/// The sender MAC of an ARP packet claiming `target`, and whether it was
/// gratuitous; `None` for anything else (including our own requests).
fn parse_claim(frame: &[u8], target: Ipv4Addr, our_ip: Ipv4Addr) -> Option<(String, bool)> {
    if frame.len() < FRAME_LEN || frame.get(12..14)? != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let operation = u16::from_be_bytes([*frame.get(20)?, *frame.get(21)?]);
    let sender_mac = frame.get(22..28)?;
    let sender_ip = Ipv4Addr::new(frame[28], frame[29], frame[30], frame[31]);
    let target_ip = Ipv4Addr::new(frame[38], frame[39], frame[40], frame[41]);
    if sender_ip != target {
        return None;
    }
    let gratuitous = target_ip == sender_ip;
    let answer_to_us = operation == ARP_REPLY && target_ip == our_ip;
    if !(gratuitous || answer_to_us) {
        return None;
    }
    Some((format_mac(sender_mac), gratuitous))
}

/// Runs `f` with an ARP socket on `interface` of `netns`, on a thread of its own.
fn spawn_in<T: Send + 'static>(
    netns: &Netns,
    interface: &str,
    our_ip: Ipv4Addr,
    f: impl FnOnce(ArpSocket) -> Result<T> + Send + 'static,
) -> Result<JoinHandle<Result<T>>> {
    let our_mac = parse_mac(&netns.mac(interface)?)?;
    let interface = interface.to_string();
    let name = netns.name.clone();
    Ok(std::thread::spawn(move || -> Result<T> {
        enter_named_netns(&name)?;
        f(ArpSocket::open(&interface, our_mac, our_ip)?)
    }))
}

/// Probes one IP continuously until stopped or `limit` has passed.
pub struct ArpProber {
    claims: Arc<Mutex<Vec<Claim>>>,
    /// When each request went out.
    sent: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl ArpProber {
    /// Starts probing `target` every `interval` from `interface` of `netns`,
    /// whose address is `our_ip`.
    pub fn start(
        netns: &Netns,
        interface: &str,
        our_ip: Ipv4Addr,
        target: Ipv4Addr,
        interval: Duration,
        limit: Duration,
    ) -> Result<ArpProber> {
        let claims: Arc<Mutex<Vec<Claim>>> = Arc::default();
        let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (out, sent_out, stopped) = (claims.clone(), sent.clone(), stop.clone());
        let thread = spawn_in(netns, interface, our_ip, move |socket| {
            let started = Instant::now();
            let mut next_request = started;
            while !stopped.load(Ordering::Relaxed) && started.elapsed() < limit {
                if Instant::now() >= next_request {
                    socket.send_request(target)?;
                    if let Ok(mut sent) = sent_out.lock() {
                        sent.push(Instant::now());
                    }
                    next_request += interval;
                }
                if let Some(claim) = socket.receive_claim(target)
                    && let Ok(mut claims) = out.lock()
                {
                    claims.push(claim);
                }
            }
            Ok(())
        })?;
        Ok(ArpProber {
            claims,
            sent,
            stop,
            thread: Some(thread),
        })
    }

    /// Every claim seen so far, in arrival order.
    pub fn claims(&self) -> Vec<Claim> {
        self.claims.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The last request sent before `at`, if any.
    pub fn request_sent_before(&self, at: Instant) -> Option<Instant> {
        let sent = self.sent.lock().ok()?;
        sent.iter().rev().find(|&&sent| sent < at).copied()
    }

    /// Whether nobody has claimed the IP for `quiet` (or ever).
    pub fn silent_for(&self, quiet: Duration) -> bool {
        let last = self.claims().last().map(|c| c.at);
        last.is_none_or(|at| at.elapsed() > quiet)
    }

    /// The first claim at or after `since` by a MAC other than `except`.
    pub fn first_claim_since(&self, since: Instant, except: Option<&str>) -> Option<Claim> {
        self.claims()
            .into_iter()
            .find(|c| c.at >= since && except.is_none_or(|mac| !c.mac.eq_ignore_ascii_case(mac)))
    }

    /// Who claimed the IP between `from` and `to` (MACs in lower case), and
    /// the longest time without any claim in that span.
    pub fn claims_between(&self, from: Instant, to: Instant) -> (BTreeSet<String>, Duration) {
        let mut macs = BTreeSet::new();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for claim in self.claims() {
            if claim.at < from || claim.at > to {
                continue;
            }
            macs.insert(claim.mac.to_ascii_lowercase());
            longest = longest.max(claim.at - last);
            last = claim.at;
        }
        (macs, longest.max(to.saturating_duration_since(last)))
    }

    /// Stops probing and reports an error the probing thread hit.
    pub fn stop(mut self) -> Result<Vec<Claim>> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("ARP prober panicked"))??;
        }
        Ok(self.claims())
    }
}

impl Drop for ArpProber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers (not gratuitous announcements) from two different MACs less than
/// `within` apart: two nodes answering one request. An owner handing over to
/// another answers requests a probe interval apart, so a `within` well under
/// the interval tells a hand-over from a split brain.
pub fn overlapping_answers(claims: &[Claim], within: Duration) -> Vec<(Claim, Claim)> {
    let mut answers: Vec<&Claim> = claims.iter().filter(|c| !c.gratuitous).collect();
    answers.sort_by_key(|c| c.at);
    let mut overlaps = Vec::new();
    for (i, first) in answers.iter().enumerate() {
        for later in &answers[i + 1..] {
            if later.at.duration_since(first.at) >= within {
                break;
            }
            if !later.mac.eq_ignore_ascii_case(&first.mac) {
                overlaps.push(((*first).clone(), (*later).clone()));
            }
        }
    }
    overlaps
}

/// When, as offsets from `from`, the answers in `[from, to]` were not one MAC
/// answering every request of a prober that asks every `interval`: the
/// answering MAC changing from one answer to the next (two MACs answering
/// one request, owners taking turns, or a hand-over, which is one change),
/// and the start of every silence longer than three intervals. Gratuitous
/// announcements are not answers. One MAC answering throughout gives none;
/// a settled hand-over gives moments close together.
pub fn unsettled_moments(
    claims: &[Claim],
    from: Instant,
    to: Instant,
    interval: Duration,
) -> Vec<Duration> {
    let mut answers: Vec<&Claim> = claims
        .iter()
        .filter(|c| !c.gratuitous && c.at >= from && c.at <= to)
        .collect();
    answers.sort_by_key(|c| c.at);
    let mut moments = Vec::new();
    let mut last: Option<&Claim> = None;
    for answer in answers {
        let previous_at = last.map_or(from, |c| c.at);
        if answer.at.duration_since(previous_at) > 3 * interval {
            moments.push(previous_at);
        }
        if last.is_some_and(|c| !c.mac.eq_ignore_ascii_case(&answer.mac)) {
            moments.push(answer.at);
        }
        last = Some(answer);
    }
    let last_at = last.map_or(from, |c| c.at);
    if to.saturating_duration_since(last_at) > 3 * interval {
        moments.push(last_at);
    }
    moments.sort();
    moments.iter().map(|at| at.duration_since(from)).collect()
}

/// The MACs that answered `ip` (gratuitous announcements aside) in each
/// whole `look`-long slice of `from..until`, as looks of the sampling of
/// [`crate::l2lab::L2Lab::sample_arp_owners`] (`at` counts from `from`): a
/// slice nobody answered in has no MAC, one that two nodes answered in has
/// two. With a prober asking several times per look, a missed or late answer
/// does not read as silence.
pub fn answer_looks(
    claims: &[Claim],
    ip: Ipv4Addr,
    from: Instant,
    until: Instant,
    look: Duration,
) -> Vec<ArpSample> {
    let mut looks = Vec::new();
    let mut start = from;
    while !look.is_zero() && start + look <= until {
        let end = start + look;
        let macs = claims
            .iter()
            .filter(|c| !c.gratuitous && c.at >= start && c.at < end)
            .map(|c| c.mac.to_ascii_lowercase())
            .collect();
        looks.push(ArpSample {
            at: start.duration_since(from),
            ip,
            macs,
        });
        start = end;
    }
    looks
}

/// Request-to-answer times of `samples` sequential who-has requests for
/// `target`, each waiting at most `timeout`; `None` where no answer came.
pub fn round_trips(
    netns: &Netns,
    interface: &str,
    our_ip: Ipv4Addr,
    target: Ipv4Addr,
    samples: usize,
    timeout: Duration,
) -> Result<Vec<Option<Duration>>> {
    let thread = spawn_in(netns, interface, our_ip, move |socket| {
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let sent = Instant::now();
            socket.send_request(target)?;
            let mut answer = None;
            while sent.elapsed() < timeout {
                if let Some(claim) = socket.receive_claim(target)
                    && !claim.gratuitous
                {
                    answer = Some(claim.at.duration_since(sent));
                    break;
                }
            }
            times.push(answer);
            // Let the neighbour table and the speaker settle between samples.
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(times)
    })?;
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("ARP round-trip thread panicked"))?
}

/// A frame for [`send_frames`].
#[derive(Clone, Copy, Debug)]
pub enum TestFrame {
    /// A well-formed broadcast who-has.
    WhoHas(Ipv4Addr),
    /// A who-has cut after `len` bytes (the Ethernet header is 14).
    Truncated { target: Ipv4Addr, len: usize },
}

/// Sends `frames` once each from `interface` of `netns`, whose address is `our_ip`.
pub fn send_frames(
    netns: &Netns,
    interface: &str,
    our_ip: Ipv4Addr,
    frames: Vec<TestFrame>,
) -> Result<()> {
    let thread = spawn_in(netns, interface, our_ip, move |socket| {
        for frame in frames {
            match frame {
                TestFrame::WhoHas(target) => socket.send_request(target)?,
                TestFrame::Truncated { target, len } => {
                    let whole = request_frame(socket.socket.mac, socket.our_ip, target);
                    socket.send(whole.get(..len).unwrap_or(&whole))?
                }
            }
        }
        Ok(())
    })?;
    thread
        .join()
        .map_err(|_| anyhow::anyhow!("ARP sender panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const SERVICE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
    const OWNER: [u8; 6] = [2, 0, 0, 0, 0, 9];

    fn frame(operation: u16, sender: Ipv4Addr, target: Ipv4Addr) -> [u8; FRAME_LEN] {
        let mut frame = request_frame(OWNER, sender, target);
        frame[20..22].copy_from_slice(&operation.to_be_bytes());
        frame
    }

    /// A claim `ms` after `start`.
    fn claim(start: Instant, ms: u64, mac: &str, gratuitous: bool) -> Claim {
        Claim {
            at: start + Duration::from_millis(ms),
            mac: mac.to_string(),
            gratuitous,
        }
    }

    #[test]
    fn two_macs_answering_close_together_overlap_and_a_hand_over_does_not() {
        let start = Instant::now();
        let claim = |ms, mac, gratuitous| claim(start, ms, mac, gratuitous);
        let hand_over = [
            claim(0, "02:00:00:00:00:01", false),
            claim(100, "02:00:00:00:00:01", false),
            claim(150, "02:00:00:00:00:02", true),
            claim(200, "02:00:00:00:00:02", false),
        ];
        assert!(overlapping_answers(&hand_over, Duration::from_millis(50)).is_empty());
        let split = [
            claim(300, "02:00:00:00:00:02", false),
            claim(0, "02:00:00:00:00:01", false),
            claim(302, "02:00:00:00:00:01", false),
        ];
        let overlaps = overlapping_answers(&split, Duration::from_millis(50));
        assert_eq!(overlaps.len(), 1, "{overlaps:?}");
        assert_eq!(overlaps[0].0.mac, "02:00:00:00:00:02");
        assert_eq!(overlaps[0].1.mac, "02:00:00:00:00:01");
    }

    #[test]
    fn one_mac_throughout_is_settled_and_changes_and_silences_are_not() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let answers = |macs: &[(u64, &str)]| -> Vec<Claim> {
            macs.iter()
                .map(|&(ms, mac)| Claim {
                    at: at(ms),
                    mac: mac.to_string(),
                    gratuitous: false,
                })
                .collect()
        };
        let moments = |claims: &[Claim], to: u64| {
            unsettled_moments(claims, start, at(to), Duration::from_millis(100))
        };
        let (a, b) = ("02:00:00:00:00:01", "02:00:00:00:00:02");
        let steady = answers(&[(50, a), (150, a), (250, a), (350, a)]);
        assert!(moments(&steady, 400).is_empty());
        // A hand-over, with both answering one request: changes close together.
        let hand_over = answers(&[(50, a), (150, a), (160, b), (170, a), (250, b), (350, b)]);
        let ms = |moments: Vec<Duration>| -> Vec<u128> {
            moments.iter().map(Duration::as_millis).collect()
        };
        assert_eq!(ms(moments(&hand_over, 400)), [160, 170, 250]);
        // Owners taking turns: a change at every answer.
        let turns = answers(&[(50, a), (150, b), (250, a), (350, b)]);
        assert_eq!(ms(moments(&turns, 400)), [150, 250, 350]);
        // Silence: in the middle, and at the end.
        let silent = answers(&[(50, a), (600, a)]);
        assert_eq!(ms(moments(&silent, 1000)), [50, 600]);
        // Gratuitous announcements are not answers; outside the window neither.
        let mut announced = steady.clone();
        announced.push(Claim {
            at: at(200),
            mac: b.to_string(),
            gratuitous: true,
        });
        announced.extend(answers(&[(900, b)]));
        assert!(moments(&announced, 400).is_empty());
    }

    #[test]
    fn looks_hold_the_macs_that_answered_in_each_slice() {
        let start = Instant::now();
        let claim = |ms, mac, gratuitous| claim(start, ms, mac, gratuitous);
        let claims = [
            claim(100, "02:00:00:00:00:01", false),
            claim(600, "02:00:00:00:00:01", false),
            claim(700, "02:00:00:00:00:02", false),
            claim(1100, "02:00:00:00:00:02", true),
            claim(1600, "02:00:00:00:00:02", false),
        ];
        let look = Duration::from_millis(500);
        let looks = answer_looks(
            &claims,
            SERVICE,
            start,
            start + Duration::from_millis(1900),
            look,
        );
        let macs: Vec<usize> = looks.iter().map(|l| l.macs.len()).collect();
        // The last slice (1500..2000) is not whole: left out.
        assert_eq!(macs, [1, 2, 0], "{looks:?}");
        assert_eq!(looks[1].at, look);
    }

    #[test]
    fn an_answer_to_us_is_a_claim() {
        let claim = parse_claim(&frame(ARP_REPLY, SERVICE, US), SERVICE, US);
        assert_eq!(claim, Some(("02:00:00:00:00:09".to_string(), false)));
    }

    #[test]
    fn gratuitous_requests_and_replies_are_claims() {
        for operation in [ARP_REQUEST, ARP_REPLY] {
            let claim = parse_claim(&frame(operation, SERVICE, SERVICE), SERVICE, US);
            assert_eq!(claim, Some(("02:00:00:00:00:09".to_string(), true)));
        }
    }

    #[test]
    fn our_own_request_and_other_ips_are_not_claims() {
        assert_eq!(
            parse_claim(&frame(ARP_REQUEST, US, SERVICE), SERVICE, US),
            None
        );
        let other = Ipv4Addr::new(198, 51, 100, 21);
        assert_eq!(parse_claim(&frame(ARP_REPLY, other, US), SERVICE, US), None);
        assert_eq!(
            parse_claim(&frame(ARP_REPLY, SERVICE, US)[..41], SERVICE, US),
            None
        );
    }

    #[test]
    fn a_request_frame_asks_for_the_target() {
        let frame = request_frame(OWNER, US, SERVICE);
        assert_eq!(&frame[0..6], &[0xff; 6]);
        assert_eq!(&frame[38..42], &SERVICE.octets());
        assert_eq!(parse_mac("02:00:00:00:00:09").ok(), Some(OWNER));
    }
}
