//! What the fuzz targets (`fuzz_targets/`) and the seed generator
//! (`examples/seeds.rs`) share: how a target reads its input, and the gossip
//! fixture (key and members) the signed seeds are made with.
//!
//! Input layouts, one per target:
//! - `arp`: an Ethernet frame.
//! - `ndp`: 16 bytes of IPv6 source address, then an ICMPv6 message; the
//!   whole input is also decoded as a received Ethernet frame.
//! - `bgp_message`: one flag byte (bit 0: 4-octet AS negotiated), then the
//!   bytes of a TCP stream.
//! - `bgp_stream`: one control byte (bit 0: 4-octet AS from the start; bits
//!   4..8: how many chunk-size bytes follow), the chunk sizes (each byte + 1;
//!   none means one byte at a time), then the TCP stream.
//! - `gossip_frame`: a datagram as received on the gossip port.

pub mod stream {
    //! Feeding a byte stream to the session's framer in chunks.

    use ferrolb_speaker::bgp::codec::{CodecOptions, DecodeError};
    use ferrolb_speaker::bgp::framing::Framer;
    use ferrolb_speaker::bgp::message::{MAX_MESSAGE_LEN, Message};

    /// The `bgp_stream` input split into its parts.
    pub struct StreamInput<'a> {
        /// Codec options before any OPEN is seen.
        pub options: CodecOptions,
        /// Chunk sizes, used in turn; empty means one byte at a time.
        pub chunk_sizes: Vec<usize>,
        /// The TCP stream.
        pub stream: &'a [u8],
    }

    /// Reads the `bgp_stream` layout (see the crate docs).
    pub fn split(data: &[u8]) -> Option<StreamInput<'_>> {
        let (&control, rest) = data.split_first()?;
        let count = usize::from(control >> 4);
        let (sizes, stream) = rest.split_at_checked(count)?;
        Some(StreamInput {
            options: CodecOptions {
                four_octet_as: control & 1 != 0,
            },
            chunk_sizes: sizes.iter().map(|size| usize::from(*size) + 1).collect(),
            stream,
        })
    }

    /// The control byte for `chunk_sizes` (at most 15) and the options.
    pub fn control_byte(four_octet_as: bool, chunk_sizes: usize) -> u8 {
        ((chunk_sizes.min(15) as u8) << 4) | u8::from(four_octet_as)
    }

    /// Everything a session would get from `stream` delivered in chunks of
    /// `chunk_sizes` (cycled; a single 1 when empty), switching to 4-octet AS
    /// decoding after an OPEN that offers it, as the session does once it has
    /// negotiated. Panics if the framer holds more than one message's worth.
    pub fn frame(
        stream: &[u8],
        chunk_sizes: &[usize],
        mut options: CodecOptions,
    ) -> Vec<Result<Message, DecodeError>> {
        let mut framer = Framer::new();
        let mut out = Vec::new();
        let mut rest = stream;
        let one_at_a_time = [1];
        let sizes = if chunk_sizes.is_empty() {
            &one_at_a_time[..]
        } else {
            chunk_sizes
        };
        let mut sizes = sizes.iter().copied().cycle();
        while !rest.is_empty() {
            let size = sizes.next().unwrap_or(1).min(rest.len());
            let (chunk, later) = rest.split_at(size);
            rest = later;
            framer.push(chunk);
            loop {
                match framer.next_message(options) {
                    Ok(Some(message)) => {
                        if let Message::Open(open) = &message {
                            options.four_octet_as |= open.four_octet_as().is_some();
                        }
                        out.push(Ok(message));
                    }
                    Ok(None) => break,
                    Err(error) => out.push(Err(error)),
                }
            }
            assert!(
                framer.buffered() < MAX_MESSAGE_LEN,
                "the framer holds {} bytes without a whole message",
                framer.buffered()
            );
        }
        out
    }
}

pub mod gossip {
    //! The gossip fixture: a test key and two members with fixed identities.

    use ferrolb_speaker::membership::GossipTimings;
    use ferrolb_speaker::membership::auth::Authenticator;
    use ferrolb_speaker::membership::identity::SpeakerId;
    use ferrolb_speaker::membership::inbound::{SpeakerFoca, seeded_foca};

    /// The shared key of the fixture (a test key, used nowhere else).
    pub const KEY: &[u8] = b"ferrolb-fuzz-test-key";

    /// The member the `gossip_frame` target plays.
    pub fn us() -> SpeakerId {
        SpeakerId {
            node_name: "node-a".to_owned(),
            addr: "198.51.100.1:7946".parse().expect("an address"),
            generation: 1,
        }
    }

    /// The other member, whose datagrams are the seeds.
    pub fn peer() -> SpeakerId {
        SpeakerId {
            node_name: "node-b".to_owned(),
            addr: "198.51.100.2:7946".parse().expect("an address"),
            generation: 1,
        }
    }

    /// The authenticator for [`KEY`].
    pub fn authenticator() -> Authenticator {
        Authenticator::new(&[KEY]).expect("the fixture key is long enough")
    }

    /// A fresh member with the speaker's default timings and a fixed RNG seed.
    pub fn member(identity: SpeakerId) -> SpeakerFoca {
        let config = GossipTimings::default()
            .foca_config()
            .expect("the default timings are valid");
        seeded_foca(identity, config, 7)
    }
}
