//! Writes the seed corpus: a few valid inputs per target, built with the
//! speaker's own encoders. Run from `speaker/fuzz`:
//! `cargo run --example seeds` (files are named `seed-*`; rerunning rewrites them).

use std::fs;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ferrolb_speaker::bgp::codec::{CodecOptions, encode_message};
use ferrolb_speaker::bgp::message::{
    AddressFamily, AsPath, LargeCommunity, Message, MpNextHop, MpNlri, MpReach, Notification, Open,
    Origin, PathAttribute, RouteRefresh, Update,
};
use ferrolb_speaker::l2::MacAddr;
use ferrolb_speaker::l2::arp::ArpFrame;
use ferrolb_speaker::l2::ndp::{NeighborAdvertisement, solicited_node_multicast};
use ferrolb_speaker::l2::ndp_frame::icmpv6_checksum;
use ferrolb_speaker::membership::auth::Envelope;
use ferrolb_speaker::membership::reach::ReachReport;
use ferrolb_speaker_fuzz::gossip::{authenticator, member, peer, us};
use ferrolb_speaker_fuzz::stream::control_byte;
use foca::AccumulatingRuntime;

const OURS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const THEIRS: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("seed written");
}

fn arp() {
    let vip = Ipv4Addr::new(198, 51, 100, 77);
    let mut request = ArpFrame::gratuitous(vip, THEIRS);
    request.sender_ip = Ipv4Addr::new(198, 51, 100, 2);
    let mut padded = request.to_bytes().to_vec();
    padded.extend([0; 18]);
    write("arp", "request", &padded);
    write(
        "arp",
        "reply",
        &ArpFrame::reply_to(&request, OURS).to_bytes(),
    );
    write(
        "arp",
        "gratuitous",
        &ArpFrame::gratuitous(vip, OURS).to_bytes(),
    );
}

fn ndp() {
    let link_local: Ipv6Addr = "fe80::2".parse().expect("address");
    let vip: Ipv6Addr = "2001:db8::77".parse().expect("address");
    let solicitation = |source: Ipv6Addr, options: &[u8]| {
        let mut bytes = source.octets().to_vec();
        bytes.extend([135, 0, 0, 0, 0, 0, 0, 0]);
        bytes.extend(vip.octets());
        bytes.extend(options);
        bytes
    };
    let source_link_layer = [1, 1, 2, 0, 0, 0, 0, 2];
    write("ndp", "ns", &solicitation(link_local, &source_link_layer));
    write("ndp", "ns-dad", &solicitation(Ipv6Addr::UNSPECIFIED, &[]));
    let nonce = [14, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff];
    write(
        "ndp",
        "ns-nonce",
        &solicitation(link_local, &[source_link_layer, nonce].concat()),
    );
    let mut advertisement = link_local.octets().to_vec();
    advertisement.extend(NeighborAdvertisement::solicited(vip, OURS).to_bytes());
    write("ndp", "na", &advertisement);

    // Whole frames, as the packet socket receives them.
    let client: Ipv6Addr = "2001:db8::2".parse().expect("address");
    let frame = |destination: Ipv6Addr, to_mac: MacAddr| {
        let mut message = solicitation(client, &[1, 1, 2, 0, 0, 0, 0, 2]).split_off(16);
        let checksum = icmpv6_checksum(client, destination, &message);
        message[2..4].copy_from_slice(&checksum.to_be_bytes());
        let mut bytes = to_mac.octets().to_vec();
        bytes.extend(THEIRS.octets());
        bytes.extend([0x86, 0xdd, 0x60, 0, 0, 0, 0, message.len() as u8, 58, 255]);
        bytes.extend(client.octets());
        bytes.extend(destination.octets());
        bytes.extend(message);
        bytes
    };
    write("ndp", "frame-unicast-ns", &frame(vip, OURS));
    let group = solicited_node_multicast(vip);
    let group_mac = MacAddr([0x33, 0x33, 0xff, 0, 0, 0x77]);
    write("ndp", "frame-multicast-ns", &frame(group, group_mac));
}

fn bgp_messages() -> Vec<(&'static str, bool, Message)> {
    let families = [AddressFamily::IPV4_UNICAST, AddressFamily::IPV6_UNICAST];
    let router_id = Ipv4Addr::new(198, 51, 100, 1);
    let common = |asn| {
        vec![
            PathAttribute::Origin(Origin::Igp),
            PathAttribute::AsPath(AsPath::originated_by(asn)),
        ]
    };
    let mut v4 = common(64512);
    v4.extend([
        PathAttribute::NextHop(Ipv4Addr::new(198, 51, 100, 10)),
        PathAttribute::MultiExitDisc(10),
        PathAttribute::Communities(vec![0xfde8_0001]),
        PathAttribute::LargeCommunities(vec![LargeCommunity::from((64512, 1, 2))]),
    ]);
    let mut v6 = common(4_200_000_000);
    v6.push(PathAttribute::MpReach(MpReach {
        next_hop: MpNextHop::V6 {
            global: "2001:db8::10".parse().expect("address"),
            link_local: Some("fe80::10".parse().expect("address")),
        },
        nlri: MpNlri::Ipv6(vec!["2001:db8:1::/64".parse().expect("prefix")]),
    }));
    vec![
        (
            "open",
            true,
            Message::Open(Open::new(4_200_000_000, 90, router_id, &families)),
        ),
        (
            "open-2-octet",
            false,
            Message::Open(Open::new(64512, 90, router_id, &families[..1])),
        ),
        (
            "update-v4",
            false,
            Message::Update(Update {
                withdrawn: Vec::new(),
                attributes: v4,
                nlri: vec!["203.0.113.7/32".parse().expect("prefix")],
                errors: Vec::new(),
            }),
        ),
        (
            "update-v6",
            true,
            Message::Update(Update {
                withdrawn: Vec::new(),
                attributes: v6,
                nlri: Vec::new(),
                errors: Vec::new(),
            }),
        ),
        (
            "withdraw",
            true,
            Message::Update(Update {
                withdrawn: vec!["203.0.113.7/32".parse().expect("prefix")],
                attributes: vec![PathAttribute::MpUnreach(MpNlri::Ipv6(vec![
                    "2001:db8:1::/64".parse().expect("prefix"),
                ]))],
                nlri: Vec::new(),
                errors: Vec::new(),
            }),
        ),
        ("keepalive", false, Message::Keepalive),
        (
            "notification",
            false,
            Message::Notification(Notification::new(3, 1, vec![1, 2])),
        ),
        (
            "route-refresh",
            false,
            Message::RouteRefresh(RouteRefresh {
                family: AddressFamily::IPV4_UNICAST,
                subtype: 0,
            }),
        ),
    ]
}

fn bgp() {
    let mut session = Vec::new();
    for (name, four_octet_as, message) in bgp_messages() {
        let options = CodecOptions { four_octet_as };
        let bytes = encode_message(&message, options).expect("seed encodes");
        write(
            "bgp_message",
            name,
            &[&[u8::from(four_octet_as)][..], &bytes].concat(),
        );
        if four_octet_as {
            session.extend(bytes);
        }
    }
    // OPEN, UPDATEs: a session's start, read whole, in odd chunks, byte by byte.
    let chunks = [1u8, 6, 18, 200];
    write(
        "bgp_stream",
        "session-chunks",
        &[&[control_byte(false, chunks.len())][..], &chunks, &session].concat(),
    );
    write(
        "bgp_stream",
        "session-bytes",
        &[&[control_byte(true, 0)][..], &session].concat(),
    );
}

/// Datagrams of a short exchange between the fixture's two members:
/// the peer announcing itself to us, our feed back, then probes.
fn gossip() {
    const SEEDS: usize = 8;
    let auth = authenticator();
    // [peer, us]: each round, each one's datagrams go to the other.
    let mut members = [
        (member(peer()), AccumulatingRuntime::new()),
        (member(us()), AccumulatingRuntime::new()),
    ];
    let (peer_foca, peer_runtime) = &mut members[0];
    peer_foca.announce(us(), peer_runtime).expect("announce");
    let mut count = 0;
    for _ in 0..3 {
        for sender in 0..2 {
            let sent: Vec<_> = std::iter::from_fn(|| members[sender].1.to_send()).collect();
            let (foca, runtime) = &mut members[1 - sender];
            for (to, payload) in sent {
                count += 1;
                if count <= SEEDS {
                    let name = format!("{count}-to-{}", to.node_name);
                    write("gossip_frame", &name, &auth.seal(&payload));
                }
                let _ = foca.handle_data(&payload, &mut *runtime);
            }
        }
        // Fire the timers due so far (probes, gossip) at once; the ones they
        // schedule wait for the next round.
        for (foca, runtime) in &mut members {
            let due: Vec<_> = std::iter::from_fn(|| runtime.to_schedule()).collect();
            for (_, timer) in due {
                let _ = foca.handle_timer(timer, &mut *runtime);
            }
        }
    }
}

/// A reach report as a speaker whose eth1 is down sends it.
fn reach() {
    let report = ReachReport {
        node_name: "node-b".to_owned(),
        generation: 1_700_000_000_001,
        no_suitable: false,
        unusable: vec!["eth1".to_owned()],
    };
    let payload = report.encode().expect("within bounds");
    write(
        "gossip_frame",
        "reach-eth1-down",
        &authenticator().seal_as(Envelope::Reach, &payload),
    );
}

fn main() {
    arp();
    ndp();
    bgp();
    gossip();
    reach();
}
