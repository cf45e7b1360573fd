//! BGP messages a speaker sent, counted from a tcpdump capture of its session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use ferrolb_tests::netns::Netns;
use ferrolb_tests::process::{spawn_tied, terminate};

/// tcpdump writing a pcap file in a namespace.
pub(super) struct PcapCapture {
    child: Option<Child>,
    file: PathBuf,
}

impl PcapCapture {
    pub(super) fn start(netns: &Netns, dir: &std::path::Path, filter: &str) -> Result<PcapCapture> {
        let file = dir.join(format!("bgp-{}.pcap", netns.name));
        let log = dir.join(format!("tcpdump-{}.log", netns.name));
        let mut command = netns.command("tcpdump");
        command
            .args(["-i", "eth0", "-n", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter);
        let child = spawn_tied(command, &log)?;
        // tcpdump needs a moment before it captures.
        std::thread::sleep(Duration::from_millis(700));
        Ok(PcapCapture {
            child: Some(child),
            file,
        })
    }

    /// Stops tcpdump and returns the captured TCP segments.
    pub(super) fn stop(mut self) -> Result<Vec<TcpSegment>> {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
        }
        let bytes = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        tcp_segments(&bytes)
    }
}

impl Drop for PcapCapture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, Duration::from_secs(3));
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The payload of one captured TCP segment (IPv4 over Ethernet).
#[derive(Clone, Debug)]
pub struct TcpSegment {
    /// (source port, destination port): the connection, in one direction.
    pub ports: (u16, u16),
    pub sequence: u32,
    pub payload: Vec<u8>,
}

/// The TCP segments with a payload in a pcap file of Ethernet frames.
pub fn tcp_segments(pcap: &[u8]) -> Result<Vec<TcpSegment>> {
    let magic = pcap.get(..4).context("pcap shorter than its header")?;
    let little_endian = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => bail!("not a pcap file"),
    };
    let read_u32 = |at: usize| -> Option<u32> {
        let b: [u8; 4] = pcap.get(at..at + 4)?.try_into().ok()?;
        Some(if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let link_type = read_u32(20).context("pcap header")?;
    if link_type != 1 {
        bail!("pcap link type {link_type}, expected Ethernet");
    }
    let mut segments = Vec::new();
    let mut at = 24;
    while let Some(captured) = read_u32(at + 8) {
        let start = at + 16;
        let end = start + captured as usize;
        let Some(frame) = pcap.get(start..end) else {
            break;
        };
        if let Some(segment) = tcp_in_frame(frame) {
            segments.push(segment);
        }
        at = end;
    }
    Ok(segments)
}

fn tcp_in_frame(frame: &[u8]) -> Option<TcpSegment> {
    let be16 = |b: &[u8], at: usize| Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?));
    if be16(frame, 12)? != 0x0800 {
        return None;
    }
    let ip = frame.get(14..)?;
    let header = usize::from(ip.first()? & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if *ip.get(9)? != 6 || total < header {
        return None;
    }
    let tcp = ip.get(header..total)?;
    let tcp_header = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(tcp_header..)?;
    if payload.is_empty() {
        return None;
    }
    Some(TcpSegment {
        ports: (be16(tcp, 0)?, be16(tcp, 2)?),
        sequence: u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?),
        payload: payload.to_vec(),
    })
}

/// BGP messages found in captured streams.
#[derive(Debug, Default, PartialEq)]
pub struct BgpMessageStats {
    pub updates: usize,
    /// Whole UPDATE messages, headers included.
    pub update_bytes: usize,
    /// Prefixes in NLRI and MP_REACH_NLRI.
    pub announced: usize,
    /// Prefixes in withdrawn routes and MP_UNREACH_NLRI.
    pub withdrawn: usize,
    /// UPDATEs (counted in `updates` too) with no prefix at all: End-of-RIB
    /// markers (RFC 4724: empty for IPv4, an empty MP_UNREACH_NLRI otherwise).
    pub end_of_rib: usize,
    /// TCP segments with a payload.
    pub segments: usize,
}

/// Reassembles each connection's byte stream (retransmissions dropped) and
/// counts the BGP UPDATEs in it, from the first message marker on.
pub fn bgp_message_stats(segments: &[TcpSegment]) -> BgpMessageStats {
    let mut stats = BgpMessageStats {
        segments: segments.len(),
        ..Default::default()
    };
    let mut connections: HashMap<(u16, u16), Vec<&TcpSegment>> = HashMap::new();
    for segment in segments {
        connections.entry(segment.ports).or_default().push(segment);
    }
    for (_, mut parts) in connections {
        let Some(first) = parts.first().map(|s| s.sequence) else {
            continue;
        };
        // Offsets from the first captured byte, safe across sequence wrap.
        parts.sort_by_key(|s| s.sequence.wrapping_sub(first));
        let mut stream = Vec::new();
        for part in parts {
            let offset = part.sequence.wrapping_sub(first) as usize;
            if offset > stream.len() {
                // A gap: the capture missed bytes; stop at what is contiguous.
                break;
            }
            let fresh = part.payload.get(stream.len() - offset..).unwrap_or(&[]);
            stream.extend_from_slice(fresh);
        }
        count_messages(&stream, &mut stats);
    }
    stats
}

const MARKER: [u8; 16] = [0xff; 16];

fn count_messages(stream: &[u8], stats: &mut BgpMessageStats) {
    // The capture may start mid-message: resynchronise on the marker.
    let Some(mut at) = stream.windows(16).position(|w| w == MARKER) else {
        return;
    };
    while let Some(header) = stream.get(at..at + 19) {
        if header[..16] != MARKER {
            break;
        }
        let length = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let Some(message) = stream.get(at..at + length).filter(|_| length >= 19) else {
            break;
        };
        if header[18] == 2 {
            stats.updates += 1;
            stats.update_bytes += length;
            let (announced, withdrawn) = update_prefixes(&message[19..]).unwrap_or((0, 0));
            stats.announced += announced;
            stats.withdrawn += withdrawn;
            stats.end_of_rib += usize::from(announced + withdrawn == 0);
        }
        at += length;
    }
}

/// (announced, withdrawn) prefix counts of an UPDATE body.
fn update_prefixes(body: &[u8]) -> Option<(usize, usize)> {
    let withdrawn_length = usize::from(u16::from_be_bytes(body.get(..2)?.try_into().ok()?));
    let mut withdrawn = count_prefixes(body.get(2..2 + withdrawn_length)?)?;
    let at = 2 + withdrawn_length;
    let attributes_length = usize::from(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?));
    let attributes = body.get(at + 2..at + 2 + attributes_length)?;
    let mut announced = count_prefixes(body.get(at + 2 + attributes_length..)?)?;
    let mut rest = attributes;
    while !rest.is_empty() {
        let flags = *rest.first()?;
        let kind = *rest.get(1)?;
        let (length, header) = if flags & 0x10 != 0 {
            (
                usize::from(u16::from_be_bytes(rest.get(2..4)?.try_into().ok()?)),
                4,
            )
        } else {
            (usize::from(*rest.get(2)?), 3)
        };
        let value = rest.get(header..header + length)?;
        match kind {
            14 => {
                // AFI, SAFI, next hop length, next hop, reserved, NLRI.
                let next_hop_length = usize::from(*value.get(3)?);
                announced += count_prefixes(value.get(5 + next_hop_length..)?)?;
            }
            15 => withdrawn += count_prefixes(value.get(3..)?)?,
            _ => {}
        }
        rest = rest.get(header + length..)?;
    }
    Some((announced, withdrawn))
}

/// Prefixes in an NLRI field (length in bits, then the address bytes).
fn count_prefixes(mut nlri: &[u8]) -> Option<usize> {
    let mut count = 0;
    while let Some(&bits) = nlri.first() {
        let bytes = usize::from(bits).div_ceil(8);
        nlri = nlri.get(1 + bytes..)?;
        count += 1;
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keepalive() -> Vec<u8> {
        let mut m = MARKER.to_vec();
        m.extend_from_slice(&[0, 19, 4]);
        m
    }

    /// An UPDATE announcing `count` IPv6 /128s in MP_REACH_NLRI.
    fn mp_update(count: u8) -> Vec<u8> {
        let mut reach = vec![0, 2, 1, 16];
        reach.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        reach.extend_from_slice(&[0; 12]);
        reach.push(0);
        for i in 0..count {
            reach.push(128);
            reach.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            reach.extend_from_slice(&[0; 11]);
            reach.push(i);
        }
        let mut attributes = vec![0x40, 1, 1, 0]; // ORIGIN IGP
        attributes.extend_from_slice(&[0x90, 14]);
        attributes.extend_from_slice(&(reach.len() as u16).to_be_bytes());
        attributes.extend_from_slice(&reach);
        let mut body = vec![0, 0];
        body.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
        body.extend_from_slice(&attributes);
        let mut message = MARKER.to_vec();
        message.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        message.push(2);
        message.extend_from_slice(&body);
        message
    }

    fn segments(stream: &[u8], cut: usize, first_sequence: u32) -> Vec<TcpSegment> {
        stream
            .chunks(cut)
            .enumerate()
            .map(|(i, chunk)| TcpSegment {
                ports: (40000, 179),
                sequence: first_sequence.wrapping_add((i * cut) as u32),
                payload: chunk.to_vec(),
            })
            .collect()
    }

    #[test]
    fn updates_are_counted_across_segments_retransmissions_and_a_mid_message_start() {
        let update = mp_update(3);
        let mut stream = vec![0xaa, 0xbb]; // the tail of a message before the capture
        stream.extend(keepalive());
        stream.extend(&update);
        stream.extend(mp_update(1));
        stream.extend(keepalive());
        let mut parts = segments(&stream, 7, u32::MAX - 10);
        // A retransmission and out-of-order arrival change nothing.
        parts.push(parts[3].clone());
        parts.swap(1, 2);
        let stats = bgp_message_stats(&parts);
        assert_eq!(stats.updates, 2);
        assert_eq!(stats.update_bytes, update.len() + mp_update(1).len());
        assert_eq!(stats.announced, 4);
        assert_eq!(stats.withdrawn, 0);
        assert_eq!(stats.end_of_rib, 0);
    }

    #[test]
    fn end_of_rib_markers_are_counted_apart() {
        let mut ipv4_eor = MARKER.to_vec();
        ipv4_eor.extend_from_slice(&[0, 23, 2, 0, 0, 0, 0]);
        let mut ipv6_eor = MARKER.to_vec();
        ipv6_eor.extend_from_slice(&[0, 29, 2, 0, 0, 0, 6, 0x80, 15, 3, 0, 2, 1]);
        let mut stream = mp_update(2);
        stream.extend(&ipv4_eor);
        stream.extend(&ipv6_eor);
        let stats = bgp_message_stats(&segments(&stream, 1000, 1));
        assert_eq!(
            (stats.updates, stats.announced, stats.end_of_rib),
            (3, 2, 2)
        );
        assert_eq!(stats.update_bytes, stream.len());
    }
}
