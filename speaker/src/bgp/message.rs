//! Typed BGP-4 messages (RFC 4271) with the extensions an announce-only speaker needs:
//! 4-octet AS numbers (RFC 6793), multiprotocol IPv6 unicast (RFC 4760), route refresh
//! (RFC 2918), large communities (RFC 8092). Encoding and decoding live in `codec`.

use super::update_errors::UpdateError;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Every message starts with 16 bytes of all ones (RFC 4271 §4.1).
pub const MARKER: [u8; 16] = [0xff; 16];
/// Marker (16) + length (2) + type (1).
pub const HEADER_LEN: usize = 19;
/// Largest message RFC 4271 allows (we do not negotiate RFC 8654 extended messages).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The only BGP version we speak.
pub const BGP_VERSION: u8 = 4;
/// Stands in for a 4-octet AS in 2-octet fields (RFC 6793).
pub const AS_TRANS: u16 = 23456;
/// Well-known GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326).
pub const GRACEFUL_SHUTDOWN: u32 = 0xffff_0000;

/// The wire value of each message type.
pub mod message_type {
    /// OPEN: the first message of a session, proposing its parameters.
    pub const OPEN: u8 = 1;
    /// UPDATE: announces and withdraws routes.
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION: reports an error and closes the session.
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE: header only; keeps the hold timer from expiring.
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH: asks the peer to send its routes again.
    pub const ROUTE_REFRESH: u8 = 5;
}

/// A whole BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN: the session's parameters.
    Open(Open),
    /// UPDATE: routes announced and withdrawn.
    Update(Update),
    /// NOTIFICATION: an error; the sender closes the connection after it.
    Notification(Notification),
    /// KEEPALIVE: proof of life, no body.
    Keepalive,
    /// ROUTE-REFRESH: a request to resend all routes of one family.
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh(_) => "ROUTE-REFRESH",
        }
    }
}

/// An (AFI, SAFI) pair. Kept as raw numbers so that families we do not know survive a
/// capability round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressFamily {
    /// Address Family Identifier (IANA): 1 is IPv4, 2 is IPv6.
    pub afi: u16,
    /// Subsequent Address Family Identifier: 1 is unicast.
    pub safi: u8,
}

impl AddressFamily {
    /// IPv4 unicast (AFI 1, SAFI 1).
    pub const IPV4_UNICAST: AddressFamily = AddressFamily { afi: 1, safi: 1 };
    /// IPv6 unicast (AFI 2, SAFI 1).
    pub const IPV6_UNICAST: AddressFamily = AddressFamily { afi: 2, safi: 1 };
}

/// OPEN (RFC 4271 §4.2). `my_as` is the 2-octet header field exactly as on the wire;
/// use [`Open::asn`] for the speaker's real AS and [`Open::new`] to build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// BGP version; we send and accept only [`BGP_VERSION`].
    pub version: u8,
    /// The sender's AS, or [`AS_TRANS`] when it needs 4 octets.
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 (no keepalives) or at least 3.
    pub hold_time: u16,
    /// The sender's BGP identifier (router ID), unique per speaker and never 0.0.0.0.
    pub bgp_identifier: Ipv4Addr,
    /// Capabilities from all capability optional parameters, in wire order.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn`, advertising the multiprotocol capability for each family,
    /// route refresh and 4-octet AS support. The header carries AS_TRANS when the AS
    /// does not fit in 2 octets.
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        families: &[AddressFamily],
    ) -> Open {
        let mut capabilities: Vec<Capability> = families
            .iter()
            .map(|family| Capability::Multiprotocol(*family))
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::FourOctetAs(asn));
        Open {
            version: BGP_VERSION,
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_identifier,
            capabilities,
        }
    }

    /// The sender's AS: the 4-octet AS capability when present (RFC 6793), else the header.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// The AS from the 4-octet AS capability, if the sender supports 4-octet AS numbers.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
    }

    /// The families the sender announced with the multiprotocol capability.
    pub fn families(&self) -> Vec<AddressFamily> {
        self.capabilities
            .iter()
            .filter_map(|capability| match capability {
                Capability::Multiprotocol(family) => Some(*family),
                _ => None,
            })
            .collect()
    }

    /// The sender's Graceful Restart capability, if it sent one.
    pub fn graceful_restart(&self) -> Option<&super::graceful_restart::GracefulRestart> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::GracefulRestart(restart) => Some(restart),
                _ => None,
            })
    }

    /// Whether the sender may be sent ROUTE-REFRESH (it announced the capability).
    pub fn supports_route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }
}

/// A capability from the OPEN's capabilities optional parameter (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1 (RFC 4760).
    Multiprotocol(AddressFamily),
    /// Code 2 (RFC 2918).
    RouteRefresh,
    /// Code 65 (RFC 6793), carrying the sender's AS.
    FourOctetAs(u32),
    /// Code 64 (RFC 4724).
    GracefulRestart(super::graceful_restart::GracefulRestart),
    /// Any other capability, kept so it can be logged; we never act on it.
    Unknown {
        /// The capability code.
        code: u8,
        /// The capability value, uninterpreted.
        value: Vec<u8>,
    },
}

/// UPDATE (RFC 4271 §4.3). IPv6 routes travel inside the MP_REACH_NLRI and
/// MP_UNREACH_NLRI attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// IPv4 prefixes withdrawn (IPv6 ones are in MP_UNREACH_NLRI).
    pub withdrawn: Vec<Ipv4Net>,
    /// Path attributes, applying to every prefix announced in this UPDATE.
    pub attributes: Vec<PathAttribute>,
    /// IPv4 prefixes announced (IPv6 ones are in MP_REACH_NLRI).
    pub nlri: Vec<Ipv4Net>,
    /// Errors RFC 7606 let a received UPDATE survive, already applied by the decoder
    /// (see `update_errors`). Never encoded; empty in the UPDATEs we build.
    pub errors: Vec<UpdateError>,
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Code 0: learned from an interior protocol; what we send for Service routes.
    Igp,
    /// Code 1: learned through EGP (historic).
    Egp,
    /// Code 2: learned some other way.
    Incomplete,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 for the confederation ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// AS_SET (1): unordered ASes, from aggregation.
    Set,
    /// AS_SEQUENCE (2): ASes in the order the route traversed them, nearest first.
    Sequence,
    /// AS_CONFED_SEQUENCE (3): ordered member ASes within a confederation.
    ConfedSequence,
    /// AS_CONFED_SET (4): unordered member ASes within a confederation.
    ConfedSet,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    /// How the ASes are to be read.
    pub kind: SegmentKind,
    /// The AS numbers; at most 255 per segment on the wire.
    pub asns: Vec<u32>,
}

/// An AS_PATH (or AS4_PATH). Whether it is encoded with 2- or 4-octet AS numbers
/// depends on the session, see `codec::CodecOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsPath {
    /// The segments, in wire order.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// The path an eBGP speaker sends for its own routes: one sequence of its AS.
    pub fn originated_by(asn: u32) -> AsPath {
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentKind::Sequence,
                asns: vec![asn],
            }],
        }
    }

    /// Whether some AS in the path does not fit in 2 octets, so a 2-octet session needs AS_TRANS and AS4_PATH.
    pub fn contains_4_octet_as(&self) -> bool {
        self.segments
            .iter()
            .flat_map(|segment| segment.asns.iter())
            .any(|asn| u16::try_from(*asn).is_err())
    }
}

/// A large community (RFC 8092): global administrator and two local data parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    /// The global administrator, usually the AS that defines the community.
    pub global_admin: u32,
    /// First local data part, meaning defined by the administrator.
    pub local_data_1: u32,
    /// Second local data part, meaning defined by the administrator.
    pub local_data_2: u32,
}

impl From<(u32, u32, u32)> for LargeCommunity {
    fn from((global_admin, local_data_1, local_data_2): (u32, u32, u32)) -> Self {
        LargeCommunity {
            global_admin,
            local_data_1,
            local_data_2,
        }
    }
}

/// The next hop inside MP_REACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MpNextHop {
    /// An IPv4 next hop (IPv4 routes sent over MP_REACH_NLRI).
    V4(Ipv4Addr),
    /// RFC 2545: a global address, optionally followed by a link-local one.
    V6 {
        /// The global unicast next hop.
        global: Ipv6Addr,
        /// The link-local next hop, when the peer is on the same link.
        link_local: Option<Ipv6Addr>,
    },
}

/// The prefixes of an MP_REACH_NLRI or MP_UNREACH_NLRI; the family (AFI) follows from
/// the variant, the SAFI is always unicast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpNlri {
    /// IPv4 unicast prefixes.
    Ipv4(Vec<Ipv4Net>),
    /// IPv6 unicast prefixes.
    Ipv6(Vec<Ipv6Net>),
}

impl MpNlri {
    /// The (AFI, SAFI) the prefixes are carried under.
    pub fn family(&self) -> AddressFamily {
        match self {
            MpNlri::Ipv4(_) => AddressFamily::IPV4_UNICAST,
            MpNlri::Ipv6(_) => AddressFamily::IPV6_UNICAST,
        }
    }

    /// The prefixes, of either family.
    pub fn prefixes(&self) -> Vec<IpNet> {
        match self {
            MpNlri::Ipv4(nets) => nets.iter().copied().map(IpNet::V4).collect(),
            MpNlri::Ipv6(nets) => nets.iter().copied().map(IpNet::V6).collect(),
        }
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        match self {
            MpNlri::Ipv4(nets) => nets.len(),
            MpNlri::Ipv6(nets) => nets.len(),
        }
    }

    /// Whether there are no prefixes (an empty MP_UNREACH_NLRI is the End-of-RIB marker of its family).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The content of MP_REACH_NLRI (RFC 4760): prefixes announced with their next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    /// Next hop for all the prefixes.
    pub next_hop: MpNextHop,
    /// The announced prefixes.
    pub nlri: MpNlri,
}

/// A path attribute we do not interpret (or an MP attribute of a family we do not
/// speak), kept byte for byte. `flags` holds the optional, transitive and partial bits;
/// the extended-length bit is chosen again when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    /// Flag bits, see [`attribute_flags`].
    pub flags: u8,
    /// Attribute type code, see [`attribute_type`].
    pub type_code: u8,
    /// The value bytes, as received.
    pub value: Vec<u8>,
}

/// A path attribute (RFC 4271 §5 and the RFCs named on each variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathAttribute {
    /// ORIGIN, well-known mandatory.
    Origin(Origin),
    /// AS_PATH, well-known mandatory; empty on iBGP for our own routes.
    AsPath(AsPath),
    /// NEXT_HOP for IPv4 NLRI, well-known mandatory when the UPDATE carries any.
    NextHop(Ipv4Addr),
    /// MULTI_EXIT_DISC: lower is preferred by the neighbouring AS.
    MultiExitDisc(u32),
    /// LOCAL_PREF: higher is preferred; only sent on iBGP sessions.
    LocalPref(u32),
    /// ATOMIC_AGGREGATE: a less specific route was chosen over a more specific one.
    AtomicAggregate,
    /// RFC 1997.
    Communities(Vec<u32>),
    /// RFC 4760.
    MpReach(MpReach),
    /// RFC 4760.
    MpUnreach(MpNlri),
    /// RFC 6793: the real path when the session only carries 2-octet AS numbers.
    As4Path(AsPath),
    /// RFC 8092.
    LargeCommunities(Vec<LargeCommunity>),
    /// Any other attribute, passed over unchanged.
    Unknown(RawAttribute),
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod attribute_flags {
    /// Set for optional attributes, clear for well-known ones.
    pub const OPTIONAL: u8 = 0x80;
    /// Set when an optional attribute is to be passed on by speakers that do not know it.
    pub const TRANSITIVE: u8 = 0x40;
    /// Set when some speaker on the path did not recognize the optional transitive attribute.
    pub const PARTIAL: u8 = 0x20;
    /// Set when the length field takes 2 octets instead of 1.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes.
pub mod attribute_type {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MULTI_EXIT_DISC: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271); kept raw.
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793); kept raw.
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// NOTIFICATION (RFC 4271 §4.5). Codes are kept as raw numbers so any peer's message
/// round-trips; see [`error_code`] and the `*_subcode` modules for the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Error code, see [`error_code`].
    pub code: u8,
    /// Error subcode, meaning depends on the code; 0 when unspecific.
    pub subcode: u8,
    /// Data about the error, e.g. the offending attribute (may be empty).
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION with these raw fields.
    pub fn new(code: u8, subcode: u8, data: Vec<u8>) -> Notification {
        Notification {
            code,
            subcode,
            data,
        }
    }

    /// Cease with the given subcode (RFC 4486) and no data.
    pub fn cease(subcode: u8) -> Notification {
        Notification::new(error_code::CEASE, subcode, Vec::new())
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self.code {
            error_code::MESSAGE_HEADER => "message header error",
            error_code::OPEN_MESSAGE => "OPEN message error",
            error_code::UPDATE_MESSAGE => "UPDATE message error",
            error_code::HOLD_TIMER_EXPIRED => "hold timer expired",
            error_code::FSM => "finite state machine error",
            error_code::CEASE => "cease",
            error_code::ROUTE_REFRESH => "ROUTE-REFRESH message error",
            _ => "unknown error code",
        };
        write!(f, "{code} ({}/{})", self.code, self.subcode)
    }
}

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 for ROUTE-REFRESH).
pub mod error_code {
    /// The message header was bad (see [`header_subcode`](super::header_subcode)).
    pub const MESSAGE_HEADER: u8 = 1;
    /// The OPEN was bad (see [`open_subcode`](super::open_subcode)).
    pub const OPEN_MESSAGE: u8 = 2;
    /// The UPDATE was bad (see [`update_subcode`](super::update_subcode)).
    pub const UPDATE_MESSAGE: u8 = 3;
    /// No message arrived within the hold time.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// A message arrived in a state that does not expect it (see [`fsm_subcode`](super::fsm_subcode)).
    pub const FSM: u8 = 5;
    /// The session is closed deliberately (see [`cease_subcode`](super::cease_subcode)).
    pub const CEASE: u8 = 6;
    /// The ROUTE-REFRESH was bad (RFC 7313).
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Message header error subcodes (RFC 4271 §6.1).
pub mod header_subcode {
    /// The marker was not all ones.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    /// The length is below the minimum for the type or above [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN); the data holds the length.
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    /// The type is not one we know; the data holds the type.
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN message error subcodes (RFC 4271 §6.2).
pub mod open_subcode {
    /// No more specific subcode applies.
    pub const UNSPECIFIC: u8 = 0;
    /// The version is not 4; the data holds the highest version we support.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    /// The peer's AS is not the one configured.
    pub const BAD_PEER_AS: u8 = 2;
    /// The BGP identifier is 0.0.0.0, or equals ours on an iBGP session.
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    /// An optional parameter other than capabilities.
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    /// A hold time of 1 or 2 seconds.
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

/// UPDATE message error subcodes (RFC 4271 §6.3).
pub mod update_subcode {
    /// The attribute lengths do not add up, or an attribute appears twice.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    /// A well-known attribute we do not recognize.
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    /// A mandatory well-known attribute is missing; the data holds its type code.
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    /// An attribute's flags contradict its type.
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    /// An attribute's length is wrong for its type.
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    /// ORIGIN is not 0, 1 or 2.
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    /// NEXT_HOP is not a valid unicast address.
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    /// An optional attribute we recognize is malformed.
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    /// A prefix in the NLRI or withdrawn routes is malformed.
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    /// The AS_PATH is malformed.
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// FSM error subcodes (RFC 6608).
pub mod fsm_subcode {
    /// No more specific subcode applies.
    pub const UNSPECIFIED: u8 = 0;
    /// An unexpected message while waiting for the peer's OPEN.
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    /// An unexpected message while waiting for the first KEEPALIVE.
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    /// An unexpected message once established.
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486).
pub mod cease_subcode {
    /// The session is closed by the operator: what we send when a session is stopped.
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    /// The session is reset by the operator (RFC 4486); we do not send it.
    pub const ADMINISTRATIVE_RESET: u8 = 4;
}

/// ROUTE-REFRESH (RFC 2918; `subtype` is the RFC 7313 field, 0 for a plain request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    /// The family whose routes are asked for.
    pub family: AddressFamily,
    /// 0 for a plain request; 1 and 2 mark the start and end of an enhanced refresh (RFC 7313).
    pub subtype: u8,
}
