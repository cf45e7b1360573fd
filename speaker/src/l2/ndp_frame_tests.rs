use super::*;
use proptest::prelude::*;

const OWNER: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const SOLICITOR: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

fn vip() -> Ipv6Addr {
    "2001:db8::77".parse().unwrap()
}

fn solicitor() -> Ipv6Addr {
    "2001:db8::2".parse().unwrap()
}

/// A reachability probe for 2001:db8::77 from 2001:db8::2, sent to the IP
/// itself at the owner's MAC, as the kernel sends it. Built and checksummed
/// outside this crate (a few lines of Python), so the decoder's checksum
/// code is checked against an independent one.
const UNICAST_PROBE: [u8; 86] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x86,
    0xdd, // Ethernet
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a,
    0xff, // version, length 32, ICMPv6, hop limit 255
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, // source
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, // destination
    0x87, 0x00, 0xeb, 0x86, 0x00, 0x00, 0x00, 0x00, // NS, code 0, checksum, reserved
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, // target
    0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, // source link-layer address
];

/// A frame carrying `message` from `source` to `destination`, with the
/// checksum the decoder computes.
fn frame_of(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> Vec<u8> {
    let mut message = message.to_vec();
    let checksum = icmpv6_checksum(source, destination, &message);
    message[2..4].copy_from_slice(&checksum.to_be_bytes());
    let mut frame = UNICAST_PROBE[..ICMPV6_OFFSET].to_vec();
    frame[18..20].copy_from_slice(&(message.len() as u16).to_be_bytes());
    frame[22..38].copy_from_slice(&source.octets());
    frame[38..54].copy_from_slice(&destination.octets());
    frame.extend(message);
    frame
}

fn probe_message() -> &'static [u8] {
    &UNICAST_PROBE[ICMPV6_OFFSET..]
}

#[test]
fn decodes_a_unicast_solicitation_frame() {
    let frame = Icmpv6Frame::parse(&UNICAST_PROBE).unwrap();
    assert_eq!(
        frame,
        Icmpv6Frame {
            ethernet_destination: OWNER,
            ethernet_source: SOLICITOR,
            source: solicitor(),
            destination: vip(),
            hop_limit: 255,
            message: probe_message(),
        }
    );
    assert!(!frame.is_advertisement());
    assert_eq!(
        frame.solicitation(),
        Ok(NeighborSolicitation {
            source: solicitor(),
            target: vip(),
            source_link_layer: Some(SOLICITOR),
        })
    );
}

#[test]
fn the_checksum_matches_an_independent_computation() {
    assert_eq!(icmpv6_checksum(solicitor(), vip(), probe_message()), 0xeb86);
    // An odd length pads with a zero byte; the result still verifies.
    let odd = frame_of(solicitor(), vip(), &[probe_message(), &[7]].concat());
    assert!(Icmpv6Frame::parse(&odd).is_ok());
}

#[test]
fn ethernet_padding_after_the_payload_is_not_part_of_the_message() {
    let mut padded = UNICAST_PROBE.to_vec();
    padded.extend([0u8; 10]);
    let frame = Icmpv6Frame::parse(&padded).unwrap();
    assert_eq!(frame.message, probe_message());
}

#[test]
fn multicast_and_duplicate_address_detection_solicitations_go_to_the_group() {
    let group = solicited_node_multicast(vip());
    let multicast = frame_of(solicitor(), group, probe_message());
    let ns = Icmpv6Frame::parse(&multicast)
        .unwrap()
        .solicitation()
        .unwrap();
    assert_eq!(ns.target, vip());

    let dad_message = &probe_message()[..24];
    let dad = frame_of(Ipv6Addr::UNSPECIFIED, group, dad_message);
    let ns = Icmpv6Frame::parse(&dad).unwrap().solicitation().unwrap();
    assert!(ns.is_duplicate_address_detection());
}

#[test]
fn solicitations_sent_elsewhere_are_refused_by_name() {
    let dad_to_target = frame_of(Ipv6Addr::UNSPECIFIED, vip(), &probe_message()[..24]);
    let other: Ipv6Addr = "2001:db8::10".parse().unwrap();
    let to_other = frame_of(solicitor(), other, probe_message());
    let to_other_group = frame_of(
        solicitor(),
        solicited_node_multicast(other),
        probe_message(),
    );
    for (bytes, destination) in [
        (dad_to_target, vip()),
        (to_other, other),
        (to_other_group, solicited_node_multicast(other)),
    ] {
        assert_eq!(
            Icmpv6Frame::parse(&bytes).unwrap().solicitation(),
            Err(FrameError::UnexpectedDestination {
                target: vip(),
                destination,
            })
        );
    }
}

#[test]
fn malformed_frames_are_refused_by_name() {
    let patched = |at: usize, value: &[u8]| {
        let mut bytes = UNICAST_PROBE.to_vec();
        bytes[at..at + value.len()].copy_from_slice(value);
        bytes
    };
    let parse = |bytes: &[u8]| Icmpv6Frame::parse(bytes).map(|_| ());
    assert_eq!(
        parse(&UNICAST_PROBE[..53]),
        Err(FrameError::Truncated { len: 53 })
    );
    assert_eq!(
        parse(&patched(12, &[0x08, 0x00])),
        Err(FrameError::NotIpv6(0x0800))
    );
    assert_eq!(parse(&patched(14, &[0x40])), Err(FrameError::BadVersion(4)));
    assert_eq!(parse(&patched(20, &[0])), Err(FrameError::NotIcmpv6(0)));
    assert_eq!(
        parse(&UNICAST_PROBE[..80]),
        Err(FrameError::PayloadTruncated {
            payload_len: 32,
            available: 26,
        })
    );
    assert_eq!(
        parse(&patched(56, &[0xeb, 0x87])),
        Err(FrameError::BadChecksum {
            found: 0xeb87,
            expected: 0xeb86,
        })
    );
    // A changed address is caught by the checksum too: the pseudo-header covers it.
    assert!(matches!(
        parse(&patched(53, &[0x78])),
        Err(FrameError::BadChecksum { .. })
    ));
    // Checksummed, but not a valid solicitation.
    let mut code_one = probe_message().to_vec();
    code_one[1] = 1;
    let bytes = frame_of(solicitor(), vip(), &code_one);
    assert_eq!(
        Icmpv6Frame::parse(&bytes).unwrap().solicitation(),
        Err(FrameError::Solicitation(NdpParseError::NonZeroCode(1)))
    );
    let dad_with_address = frame_of(
        Ipv6Addr::UNSPECIFIED,
        solicited_node_multicast(vip()),
        probe_message(),
    );
    assert_eq!(
        Icmpv6Frame::parse(&dad_with_address)
            .unwrap()
            .solicitation(),
        Err(FrameError::Solicitation(
            NdpParseError::LinkLayerOptionFromUnspecifiedSource
        ))
    );
}

#[test]
fn an_advertisement_frame_is_told_apart() {
    let mut advertisement = probe_message()[..24].to_vec();
    advertisement[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
    let bytes = frame_of(vip(), solicitor(), &advertisement);
    let frame = Icmpv6Frame::parse(&bytes).unwrap();
    assert!(frame.is_advertisement());
    assert!(matches!(
        frame.solicitation(),
        Err(FrameError::Solicitation(
            NdpParseError::NotNeighborSolicitation(136)
        ))
    ));
}

/// Runs a classic BPF program of the instructions the filter uses, as the
/// kernel would: the number of bytes to keep (0 drops the frame).
fn run_filter(program: &[BpfInstruction], frame: &[u8]) -> u32 {
    let mut accumulator = 0u32;
    let mut pc = 0usize;
    while let Some(instruction) = program.get(pc) {
        let at = instruction.k as usize;
        pc += 1;
        match instruction.code {
            BPF_LD_H_ABS => match frame.get(at..at + 2) {
                Some(&[high, low]) => accumulator = u32::from(u16::from_be_bytes([high, low])),
                _ => return 0,
            },
            BPF_LD_B_ABS => match frame.get(at) {
                Some(byte) => accumulator = u32::from(*byte),
                None => return 0,
            },
            BPF_JMP_JEQ_K => {
                let jump = if accumulator == instruction.k {
                    instruction.jt
                } else {
                    instruction.jf
                };
                pc += usize::from(jump);
            }
            BPF_RET_K => return instruction.k,
            other => panic!("unexpected BPF code {other:#x}"),
        }
    }
    panic!("the program ran off its end")
}

#[test]
fn the_filter_passes_neighbor_discovery_and_drops_the_rest() {
    let filter = &NEIGHBOR_DISCOVERY_FILTER;
    assert_eq!(run_filter(filter, &UNICAST_PROBE), u32::MAX);
    let mut advertisement = UNICAST_PROBE.to_vec();
    advertisement[ICMPV6_OFFSET] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
    assert_eq!(run_filter(filter, &advertisement), u32::MAX);

    let patched = |at: usize, value: u8| {
        let mut bytes = UNICAST_PROBE.to_vec();
        bytes[at] = value;
        bytes
    };
    let echo_request = patched(ICMPV6_OFFSET, 128);
    let router_solicitation = patched(ICMPV6_OFFSET, 133);
    let hop_by_hop = patched(20, 0);
    let ipv4 = patched(12, 0x08);
    for dropped in [echo_request, router_solicitation, hop_by_hop, ipv4] {
        assert_eq!(run_filter(filter, &dropped), 0);
    }
    assert_eq!(run_filter(filter, &UNICAST_PROBE[..ICMPV6_OFFSET]), 0);
}

proptest! {
    #[test]
    fn parsing_arbitrary_frames_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        if let Ok(frame) = Icmpv6Frame::parse(&bytes) {
            let _ = frame.solicitation();
        }
    }

    #[test]
    fn checksummed_frames_with_arbitrary_messages_never_panic(
        message in proptest::collection::vec(any::<u8>(), 0..96),
        source in any::<[u8; 16]>(),
        destination in any::<[u8; 16]>(),
    ) {
        let bytes = frame_of(source.into(), destination.into(), &{
            let mut message = message;
            message.resize(message.len().max(4), 0);
            message
        });
        let frame = Icmpv6Frame::parse(&bytes);
        prop_assert!(frame.is_ok(), "{frame:?}");
        if let Ok(frame) = frame {
            let _ = frame.solicitation();
        }
    }

    #[test]
    fn the_filter_and_the_decoder_agree_on_what_is_neighbor_discovery(
        kind in any::<u8>(), next_header in any::<u8>(),
    ) {
        let mut bytes = UNICAST_PROBE.to_vec();
        bytes[20] = next_header;
        bytes[ICMPV6_OFFSET] = kind;
        let passes = run_filter(&NEIGHBOR_DISCOVERY_FILTER, &bytes) != 0;
        let neighbor_discovery = next_header == NEXT_HEADER_ICMPV6
            && (kind == ICMPV6_NEIGHBOR_SOLICITATION || kind == ICMPV6_NEIGHBOR_ADVERTISEMENT);
        prop_assert_eq!(passes, neighbor_discovery);
    }
}
