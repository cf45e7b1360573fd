//! Typed BGP-4 messages (RFC 4271) with the extensions an announce-only speaker needs:
//! 4-octet AS numbers (RFC 6793), multiprotocol IPv6 unicast (RFC 4760), route refresh
//! (RFC 2918), large communities (RFC 8092). Encoding and decoding live in `codec`.

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
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// A whole BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
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
    pub afi: u16,
    pub safi: u8,
}

impl AddressFamily {
    pub const IPV4_UNICAST: AddressFamily = AddressFamily { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: AddressFamily = AddressFamily { afi: 2, safi: 1 };
}

/// OPEN (RFC 4271 §4.2). `my_as` is the 2-octet header field exactly as on the wire;
/// use [`Open::asn`] for the speaker's real AS and [`Open::new`] to build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_identifier: Ipv4Addr,
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
    /// Any other capability, kept so it can be logged; we never act on it.
    Unknown { code: u8, value: Vec<u8> },
}

/// UPDATE (RFC 4271 §4.3). IPv6 routes travel inside the MP_REACH_NLRI and
/// MP_UNREACH_NLRI attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: Vec<PathAttribute>,
    pub nlri: Vec<Ipv4Net>,
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Igp,
    Egp,
    Incomplete,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 for the confederation ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

/// An AS_PATH (or AS4_PATH). Whether it is encoded with 2- or 4-octet AS numbers
/// depends on the session, see `codec::CodecOptions`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AsPath {
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
    pub global_admin: u32,
    pub local_data_1: u32,
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
    V4(Ipv4Addr),
    /// RFC 2545: a global address, optionally followed by a link-local one.
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

/// The prefixes of an MP_REACH_NLRI or MP_UNREACH_NLRI; the family (AFI) follows from
/// the variant, the SAFI is always unicast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MpNlri {
    Ipv4(Vec<Ipv4Net>),
    Ipv6(Vec<Ipv6Net>),
}

impl MpNlri {
    pub fn family(&self) -> AddressFamily {
        match self {
            MpNlri::Ipv4(_) => AddressFamily::IPV4_UNICAST,
            MpNlri::Ipv6(_) => AddressFamily::IPV6_UNICAST,
        }
    }

    pub fn prefixes(&self) -> Vec<IpNet> {
        match self {
            MpNlri::Ipv4(nets) => nets.iter().copied().map(IpNet::V4).collect(),
            MpNlri::Ipv6(nets) => nets.iter().copied().map(IpNet::V6).collect(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            MpNlri::Ipv4(nets) => nets.len(),
            MpNlri::Ipv6(nets) => nets.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub next_hop: MpNextHop,
    pub nlri: MpNlri,
}

/// A path attribute we do not interpret (or an MP attribute of a family we do not
/// speak), kept byte for byte. `flags` holds the optional, transitive and partial bits;
/// the extended-length bit is chosen again when encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// A path attribute (RFC 4271 §5 and the RFCs named on each variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathAttribute {
    Origin(Origin),
    AsPath(AsPath),
    NextHop(Ipv4Addr),
    MultiExitDisc(u32),
    LocalPref(u32),
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
    Unknown(RawAttribute),
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod attribute_flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes.
pub mod attribute_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// NOTIFICATION (RFC 4271 §4.5). Codes are kept as raw numbers so any peer's message
/// round-trips; see [`error_code`] and the `*_subcode` modules for the values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
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
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;
}

pub mod header_subcode {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

pub mod open_subcode {
    pub const UNSPECIFIC: u8 = 0;
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
}

pub mod update_subcode {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// FSM error subcodes (RFC 6608).
pub mod fsm_subcode {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486).
pub mod cease_subcode {
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
}

/// ROUTE-REFRESH (RFC 2918; `subtype` is the RFC 7313 field, 0 for a plain request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: AddressFamily,
    pub subtype: u8,
}
