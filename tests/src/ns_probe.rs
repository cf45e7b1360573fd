//! A hand-built unicast Neighbor Solicitation, as a kernel sends one to check
//! that a neighbour is still reachable (RFC 4861 §7.3.1): to the IP itself,
//! at the MAC it has cached, rather than to the solicited-node group
//! (ndisc6 sends only the latter). The frame is built byte by byte here, not
//! with the speaker's codec, so a bug there cannot hide in the test.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::netns::{Netns, in_netns};
use crate::packet_socket::{PacketSocket, format_mac, parse_mac};

const ETH_P_IPV6: u16 = 0x86dd;
const NEXT_HEADER_ICMPV6: u8 = 58;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const FLAG_SOLICITED: u8 = 0x40;
/// Ethernet (14) + IPv6 (40): where the ICMPv6 message starts.
const ICMPV6_AT: usize = 54;

/// A solicited Neighbor Advertisement for the probed IP, sent to us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// From sending the solicitation to receiving this.
    pub after: Duration,
    /// The frame's source MAC.
    pub from_mac: String,
    /// The MAC in the target link-layer address option, if any.
    pub target_mac: Option<String>,
}

/// The frame of a Neighbor Solicitation for `target` from `our_mac`/`our_ip`,
/// sent to `target` itself at `to_mac`, with hop limit 255 and our MAC in a
/// source link-layer address option.
pub fn unicast_solicitation(
    our_mac: [u8; 6],
    our_ip: Ipv6Addr,
    to_mac: [u8; 6],
    target: Ipv6Addr,
) -> Vec<u8> {
    let mut message = vec![NEIGHBOR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
    message.extend(target.octets());
    message.extend([1, 1]);
    message.extend(our_mac);
    let checksum = checksum(our_ip, target, &message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());

    let mut frame = Vec::with_capacity(ICMPV6_AT + message.len());
    frame.extend(to_mac);
    frame.extend(our_mac);
    frame.extend(ETH_P_IPV6.to_be_bytes());
    frame.extend([0x60, 0, 0, 0]); // version 6, no traffic class or flow label
    frame.extend((message.len() as u16).to_be_bytes());
    frame.extend([NEXT_HEADER_ICMPV6, 255]);
    frame.extend(our_ip.octets());
    frame.extend(target.octets());
    frame.extend(message);
    frame
}

/// The ICMPv6 checksum of `message` (its checksum field zero) over the IPv6
/// pseudo-header: the ones' complement of the ones' complement sum of
/// 16-bit words (RFC 1071, RFC 8200 §8.1).
fn checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    bytes.extend(source.octets());
    bytes.extend(destination.octets());
    bytes.extend((message.len() as u32).to_be_bytes());
    bytes.extend([0, 0, 0, NEXT_HEADER_ICMPV6]);
    bytes.extend(message);
    if bytes.len() % 2 == 1 {
        bytes.push(0);
    }
    let mut sum: u32 = bytes
        .chunks_exact(2)
        .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A solicited advertisement for `target` addressed to `our_ip`, if `frame` is one.
fn parse_answer(
    frame: &[u8],
    target: Ipv6Addr,
    our_ip: Ipv6Addr,
) -> Option<(String, Option<String>)> {
    if frame.get(12..14)? != ETH_P_IPV6.to_be_bytes() || *frame.get(20)? != NEXT_HEADER_ICMPV6 {
        return None;
    }
    let destination: [u8; 16] = frame.get(38..54)?.try_into().ok()?;
    let message = frame.get(ICMPV6_AT..)?;
    let flags = *message.get(4)?;
    if *message.first()? != NEIGHBOR_ADVERTISEMENT
        || flags & FLAG_SOLICITED == 0
        || Ipv6Addr::from(destination) != our_ip
        || message.get(8..24)? != target.octets()
    {
        return None;
    }
    // A target link-layer address option, if the first option is one.
    let target_mac = match message.get(24..32) {
        Some([2, 1, mac @ ..]) => Some(format_mac(mac)),
        _ => None,
    };
    Some((format_mac(frame.get(6..12)?), target_mac))
}

/// Sends `count` unicast solicitations for `target` to `to_mac` from
/// `interface` of `netns` (whose address there is `our_ip`), one after the
/// other, each waiting at most `timeout` for its answer: `None` where none came.
pub fn unicast_solicitations(
    netns: &Netns,
    interface: &str,
    our_ip: Ipv6Addr,
    target: Ipv6Addr,
    to_mac: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<Option<Answer>>> {
    let our_mac = parse_mac(&netns.mac(interface)?)?;
    let frame = unicast_solicitation(our_mac, our_ip, parse_mac(to_mac)?, target);
    let interface = interface.to_string();
    in_netns(netns, move || {
        let socket =
            PacketSocket::open(&interface, our_mac, ETH_P_IPV6, Duration::from_millis(20))?;
        let mut answers = Vec::with_capacity(count);
        let mut buffer = [0u8; 2048];
        for _ in 0..count {
            let sent = Instant::now();
            socket.send(&frame)?;
            let mut answer = None;
            while answer.is_none() && sent.elapsed() < timeout {
                answer = socket
                    .receive(&mut buffer)
                    .and_then(|received| parse_answer(received, target, our_ip))
                    .map(|(from_mac, target_mac)| Answer {
                        after: sent.elapsed(),
                        from_mac,
                        target_mac,
                    });
            }
            answers.push(answer);
        }
        Ok(answers)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const US: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn ip(text: &str) -> Ipv6Addr {
        text.parse().expect("an IPv6 address")
    }

    #[test]
    fn the_solicitation_is_unicast_to_the_target_with_a_known_checksum() {
        let frame = unicast_solicitation(US, ip("2001:db8::2"), OWNER, ip("2001:db8::77"));
        assert_eq!(frame.len(), 86);
        assert_eq!(&frame[0..6], &OWNER);
        assert_eq!(&frame[38..54], &ip("2001:db8::77").octets());
        assert_eq!(frame[21], 255, "hop limit");
        // The same value an independent (Python) computation gives.
        assert_eq!(&frame[56..58], &[0xeb, 0x86]);
    }

    #[test]
    fn only_a_solicited_advertisement_for_the_target_to_us_is_an_answer() {
        let (us, target) = (ip("2001:db8::2"), ip("2001:db8::77"));
        // Reuse the solicitation's layout, turned into the owner's answer.
        let mut answer = unicast_solicitation(OWNER, target, US, us);
        answer[ICMPV6_AT] = NEIGHBOR_ADVERTISEMENT;
        answer[ICMPV6_AT + 4] = 0x60;
        answer[ICMPV6_AT + 8..ICMPV6_AT + 24].copy_from_slice(&target.octets());
        answer[ICMPV6_AT + 24] = 2;
        let owner = format_mac(&OWNER);
        assert_eq!(
            parse_answer(&answer, target, us),
            Some((owner.clone(), Some(owner)))
        );
        let mut unsolicited = answer.clone();
        unsolicited[ICMPV6_AT + 4] = 0x20;
        assert_eq!(parse_answer(&unsolicited, target, us), None);
        assert_eq!(parse_answer(&answer, ip("2001:db8::78"), us), None);
        assert_eq!(parse_answer(&answer, target, ip("2001:db8::3")), None);
    }
}
