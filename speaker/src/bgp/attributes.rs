//! Path attributes (RFC 4271 §4.3 and §5): flag and length checks, the typed
//! attributes we know, and raw bytes for the rest.

use super::codec::{CodecOptions, DecodeError, EncodeError};
use super::message::attribute_flags::{EXTENDED_LENGTH, OPTIONAL, PARTIAL, TRANSITIVE};
use super::message::*;
use super::update_errors::{UpdateError, tolerate};
use super::wire::{
    Reader, put_ipv4_prefix, put_ipv6_prefix, read_ipv4_prefixes, read_ipv6_prefixes,
};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// How RFC 4271 classifies an attribute we recognise; it fixes the flags it must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    WellKnown,
    OptionalTransitive,
    OptionalNonTransitive,
}

impl Category {
    fn of(type_code: u8) -> Option<Category> {
        use attribute_type::*;
        match type_code {
            ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE => {
                Some(Category::WellKnown)
            }
            AGGREGATOR | COMMUNITIES | AS4_PATH | AS4_AGGREGATOR | LARGE_COMMUNITIES => {
                Some(Category::OptionalTransitive)
            }
            MULTI_EXIT_DISC | MP_REACH_NLRI | MP_UNREACH_NLRI => {
                Some(Category::OptionalNonTransitive)
            }
            _ => None,
        }
    }

    /// The flags we send for this category.
    fn flags(self) -> u8 {
        match self {
            Category::WellKnown => TRANSITIVE,
            Category::OptionalTransitive => OPTIONAL | TRANSITIVE,
            Category::OptionalNonTransitive => OPTIONAL,
        }
    }

    /// Whether received flags agree with the category. The partial bit is only
    /// meaningful on optional transitive attributes and must be clear elsewhere.
    fn accepts(self, flags: u8) -> bool {
        match self {
            Category::OptionalTransitive => {
                flags & (OPTIONAL | TRANSITIVE) == OPTIONAL | TRANSITIVE
            }
            _ => flags & (OPTIONAL | TRANSITIVE | PARTIAL) == self.flags(),
        }
    }
}

/// The type code an attribute is encoded with.
pub(crate) fn type_code(attribute: &PathAttribute) -> u8 {
    use attribute_type::*;
    match attribute {
        PathAttribute::Origin(_) => ORIGIN,
        PathAttribute::AsPath(_) => AS_PATH,
        PathAttribute::NextHop(_) => NEXT_HOP,
        PathAttribute::MultiExitDisc(_) => MULTI_EXIT_DISC,
        PathAttribute::LocalPref(_) => LOCAL_PREF,
        PathAttribute::AtomicAggregate => ATOMIC_AGGREGATE,
        PathAttribute::Communities(_) => COMMUNITIES,
        PathAttribute::MpReach(_) => MP_REACH_NLRI,
        PathAttribute::MpUnreach(_) => MP_UNREACH_NLRI,
        PathAttribute::As4Path(_) => AS4_PATH,
        PathAttribute::LargeCommunities(_) => LARGE_COMMUNITIES,
        PathAttribute::Unknown(raw) => raw.type_code,
    }
}

/// Decodes the path attributes section of an UPDATE. Errors the session survives
/// (RFC 7606) are returned beside the attributes, the offending attribute left out;
/// an error that calls for a session reset is returned as the `Err`.
pub(crate) fn decode_attributes(
    bytes: &[u8],
    options: CodecOptions,
) -> Result<(Vec<PathAttribute>, Vec<UpdateError>), DecodeError> {
    let mut reader = Reader::new(bytes);
    let mut attributes = Vec::new();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    while !reader.is_empty() {
        let Framed {
            flags,
            type_code,
            value,
            whole,
        } = match next_attribute(&mut reader) {
            Ok(attribute) => attribute,
            Err(reason) => {
                // RFC 7606 §4: the rest of the list cannot be read, but the total
                // attribute length still tells where the NLRI starts.
                tolerate(&mut errors, DecodeError::MalformedAttributeList { reason })?;
                break;
            }
        };
        if !seen.insert(type_code) {
            tolerate(&mut errors, DecodeError::DuplicateAttribute { type_code })?;
            continue;
        }
        match decode_attribute(flags, type_code, value, whole, options) {
            Ok(attribute) => attributes.push(attribute),
            Err(error) => tolerate(&mut errors, error)?,
        }
    }
    Ok((attributes, errors))
}

/// One attribute as framed in the list, not yet interpreted.
struct Framed<'a> {
    flags: u8,
    type_code: u8,
    value: &'a [u8],
    /// Flags, type, length and value: the NOTIFICATION data if it is malformed.
    whole: Vec<u8>,
}

/// Reads the next attribute of the list, or says why its header or length does not
/// fit the list.
fn next_attribute<'a>(reader: &mut Reader<'a>) -> Result<Framed<'a>, &'static str> {
    let start = reader.clone();
    let (Some(flags), Some(type_code)) = (reader.u8(), reader.u8()) else {
        return Err("truncated attribute header");
    };
    let value_len = if flags & EXTENDED_LENGTH != 0 {
        reader.u16().map(usize::from)
    } else {
        reader.u8().map(usize::from)
    }
    .ok_or("truncated attribute length")?;
    let header_len = if flags & EXTENDED_LENGTH != 0 { 4 } else { 3 };
    let value = reader
        .bytes(value_len)
        .ok_or("attribute overruns the attribute list")?;
    let whole = start
        .clone()
        .bytes(header_len + value_len)
        .unwrap_or_default()
        .to_vec();
    Ok(Framed {
        flags,
        type_code,
        value,
        whole,
    })
}

fn decode_attribute(
    flags: u8,
    type_code: u8,
    value: &[u8],
    whole: Vec<u8>,
    options: CodecOptions,
) -> Result<PathAttribute, DecodeError> {
    use attribute_type::*;
    let Some(category) = Category::of(type_code) else {
        if flags & OPTIONAL == 0 {
            return Err(DecodeError::UnrecognizedWellKnownAttribute {
                type_code,
                attribute: whole,
            });
        }
        return Ok(raw(flags, type_code, value));
    };
    if !category.accepts(flags) {
        return Err(DecodeError::AttributeFlags {
            type_code,
            flags,
            attribute: whole,
        });
    }
    let length_error = |whole: Vec<u8>| DecodeError::AttributeLength {
        type_code,
        attribute: whole,
    };
    let mut reader = Reader::new(value);
    let fixed_u32 = |reader: &mut Reader<'_>| reader.u32().filter(|_| value.len() == 4);
    let attribute = match type_code {
        ORIGIN => {
            let [origin] = <[u8; 1]>::try_from(value).map_err(|_| length_error(whole.clone()))?;
            PathAttribute::Origin(match origin {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                _ => return Err(DecodeError::InvalidOrigin { attribute: whole }),
            })
        }
        AS_PATH => PathAttribute::AsPath(decode_as_path(reader, options.four_octet_as)?),
        AS4_PATH => PathAttribute::As4Path(decode_as_path(reader, true).map_err(|_| {
            DecodeError::OptionalAttribute {
                type_code,
                reason: "malformed AS4_PATH",
                attribute: whole.clone(),
            }
        })?),
        NEXT_HOP => {
            let octets = <[u8; 4]>::try_from(value).map_err(|_| length_error(whole.clone()))?;
            let next_hop = Ipv4Addr::from(octets);
            if next_hop.is_unspecified() || next_hop.is_broadcast() || next_hop.is_multicast() {
                return Err(DecodeError::InvalidNextHop { attribute: whole });
            }
            PathAttribute::NextHop(next_hop)
        }
        MULTI_EXIT_DISC => {
            PathAttribute::MultiExitDisc(fixed_u32(&mut reader).ok_or_else(|| length_error(whole))?)
        }
        LOCAL_PREF => {
            PathAttribute::LocalPref(fixed_u32(&mut reader).ok_or_else(|| length_error(whole))?)
        }
        ATOMIC_AGGREGATE if value.is_empty() => PathAttribute::AtomicAggregate,
        // Kept raw, but their length is checked (RFC 7606 §7.7, RFC 6793 §6).
        AGGREGATOR | AS4_AGGREGATOR if value.len() == aggregator_len(type_code, options) => {
            raw(flags, type_code, value)
        }
        COMMUNITIES if value.len().is_multiple_of(4) => {
            let mut communities = Vec::with_capacity(value.len() / 4);
            while let Some(community) = reader.u32() {
                communities.push(community);
            }
            PathAttribute::Communities(communities)
        }
        LARGE_COMMUNITIES if value.len().is_multiple_of(12) => {
            let mut communities = Vec::with_capacity(value.len() / 12);
            while let (Some(global_admin), Some(local_data_1), Some(local_data_2)) =
                (reader.u32(), reader.u32(), reader.u32())
            {
                communities.push(LargeCommunity {
                    global_admin,
                    local_data_1,
                    local_data_2,
                });
            }
            PathAttribute::LargeCommunities(communities)
        }
        MP_REACH_NLRI => decode_mp_reach(reader, flags, whole)?,
        MP_UNREACH_NLRI => decode_mp_unreach(reader, flags, whole)?,
        _ => return Err(length_error(whole)),
    };
    Ok(attribute)
}

/// AGGREGATOR holds an AS and an IPv4 address; the AS takes 4 octets on a 4-octet
/// session and always in AS4_AGGREGATOR.
fn aggregator_len(type_code: u8, options: CodecOptions) -> usize {
    if options.four_octet_as || type_code == attribute_type::AS4_AGGREGATOR {
        8
    } else {
        6
    }
}

fn decode_as_path(mut reader: Reader<'_>, four_octet: bool) -> Result<AsPath, DecodeError> {
    let malformed = |reason| DecodeError::MalformedAsPath { reason };
    let mut segments = Vec::new();
    while !reader.is_empty() {
        let (Some(kind), Some(count)) = (reader.u8(), reader.u8()) else {
            return Err(malformed("truncated segment header"));
        };
        let kind = match kind {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            3 => SegmentKind::ConfedSequence,
            4 => SegmentKind::ConfedSet,
            _ => return Err(malformed("unknown segment type")),
        };
        if count == 0 {
            return Err(malformed("empty segment"));
        }
        let mut asns = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let asn = if four_octet {
                reader.u32()
            } else {
                reader.u16().map(u32::from)
            };
            asns.push(asn.ok_or(malformed("segment overruns the attribute"))?);
        }
        segments.push(AsSegment { kind, asns });
    }
    Ok(AsPath { segments })
}

fn optional_error(type_code: u8, reason: &'static str, whole: &[u8]) -> DecodeError {
    DecodeError::OptionalAttribute {
        type_code,
        reason,
        attribute: whole.to_vec(),
    }
}

/// An attribute kept byte for byte: one we do not interpret, or an MP attribute for
/// a family we do not speak (we never act on it).
fn raw(flags: u8, type_code: u8, value: &[u8]) -> PathAttribute {
    PathAttribute::Unknown(RawAttribute {
        flags: flags & (OPTIONAL | TRANSITIVE | PARTIAL),
        type_code,
        value: value.to_vec(),
    })
}

fn decode_mp_nlri(
    family: AddressFamily,
    reader: Reader<'_>,
    type_code: u8,
    whole: &[u8],
) -> Result<MpNlri, DecodeError> {
    let invalid = |_| optional_error(type_code, "invalid prefix", whole);
    if family == AddressFamily::IPV4_UNICAST {
        read_ipv4_prefixes(reader)
            .map(MpNlri::Ipv4)
            .map_err(invalid)
    } else {
        read_ipv6_prefixes(reader)
            .map(MpNlri::Ipv6)
            .map_err(invalid)
    }
}

fn read_family(reader: &mut Reader<'_>) -> Option<AddressFamily> {
    let afi = reader.u16()?;
    let safi = reader.u8()?;
    Some(AddressFamily { afi, safi })
}

fn is_spoken(family: AddressFamily) -> bool {
    family == AddressFamily::IPV4_UNICAST || family == AddressFamily::IPV6_UNICAST
}

fn decode_mp_reach(
    mut reader: Reader<'_>,
    flags: u8,
    whole: Vec<u8>,
) -> Result<PathAttribute, DecodeError> {
    let type_code = attribute_type::MP_REACH_NLRI;
    let all = reader.clone().rest();
    let truncated = || optional_error(type_code, "truncated", &whole);
    let family = read_family(&mut reader).ok_or_else(truncated)?;
    if !is_spoken(family) {
        return Ok(raw(flags, type_code, all));
    }
    let next_hop_len = reader.u8().ok_or_else(truncated)?;
    let mut next_hop_reader = Reader::new(
        reader
            .bytes(usize::from(next_hop_len))
            .ok_or_else(truncated)?,
    );
    let next_hop = match next_hop_len {
        4 => next_hop_reader.ipv4().map(MpNextHop::V4),
        16 => next_hop_reader.ipv6().map(|global| MpNextHop::V6 {
            global,
            link_local: None,
        }),
        32 => next_hop_reader
            .ipv6()
            .zip(next_hop_reader.ipv6())
            .map(|(global, link_local)| MpNextHop::V6 {
                global,
                link_local: Some(link_local),
            }),
        _ => None,
    }
    .ok_or_else(|| optional_error(type_code, "next hop length is not 4, 16 or 32", &whole))?;
    let _reserved = reader.u8().ok_or_else(truncated)?;
    let nlri = decode_mp_nlri(family, reader, type_code, &whole)?;
    Ok(PathAttribute::MpReach(MpReach { next_hop, nlri }))
}

fn decode_mp_unreach(
    mut reader: Reader<'_>,
    flags: u8,
    whole: Vec<u8>,
) -> Result<PathAttribute, DecodeError> {
    let type_code = attribute_type::MP_UNREACH_NLRI;
    let all = reader.clone().rest();
    let family =
        read_family(&mut reader).ok_or_else(|| optional_error(type_code, "truncated", &whole))?;
    if !is_spoken(family) {
        return Ok(raw(flags, type_code, all));
    }
    Ok(PathAttribute::MpUnreach(decode_mp_nlri(
        family, reader, type_code, &whole,
    )?))
}

fn put_as_path(out: &mut Vec<u8>, path: &AsPath, four_octet: bool) -> Result<(), EncodeError> {
    for segment in &path.segments {
        out.push(match segment.kind {
            SegmentKind::Set => 1,
            SegmentKind::Sequence => 2,
            SegmentKind::ConfedSequence => 3,
            SegmentKind::ConfedSet => 4,
        });
        out.push(u8::try_from(segment.asns.len()).map_err(|_| EncodeError::AsPathSegmentTooLong)?);
        for asn in &segment.asns {
            if four_octet {
                out.extend_from_slice(&asn.to_be_bytes());
            } else {
                let two_octet = u16::try_from(*asn).unwrap_or(AS_TRANS);
                out.extend_from_slice(&two_octet.to_be_bytes());
            }
        }
    }
    Ok(())
}

fn put_mp_family(out: &mut Vec<u8>, nlri: &MpNlri) {
    let family = nlri.family();
    out.extend_from_slice(&family.afi.to_be_bytes());
    out.push(family.safi);
}

fn put_mp_prefixes(out: &mut Vec<u8>, nlri: &MpNlri) {
    match nlri {
        MpNlri::Ipv4(nets) => nets.iter().for_each(|net| put_ipv4_prefix(out, net)),
        MpNlri::Ipv6(nets) => nets.iter().for_each(|net| put_ipv6_prefix(out, net)),
    }
}

/// The value bytes of an attribute (without flags, type and length).
fn encode_value(attribute: &PathAttribute, options: CodecOptions) -> Result<Vec<u8>, EncodeError> {
    let mut value = Vec::new();
    match attribute {
        PathAttribute::Origin(origin) => value.push(match origin {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }),
        PathAttribute::AsPath(path) => put_as_path(&mut value, path, options.four_octet_as)?,
        PathAttribute::As4Path(path) => put_as_path(&mut value, path, true)?,
        PathAttribute::NextHop(address) => value.extend_from_slice(&address.octets()),
        PathAttribute::MultiExitDisc(number) | PathAttribute::LocalPref(number) => {
            value.extend_from_slice(&number.to_be_bytes())
        }
        PathAttribute::AtomicAggregate => {}
        PathAttribute::Communities(communities) => {
            for community in communities {
                value.extend_from_slice(&community.to_be_bytes());
            }
        }
        PathAttribute::LargeCommunities(communities) => {
            for community in communities {
                value.extend_from_slice(&community.global_admin.to_be_bytes());
                value.extend_from_slice(&community.local_data_1.to_be_bytes());
                value.extend_from_slice(&community.local_data_2.to_be_bytes());
            }
        }
        PathAttribute::MpReach(reach) => {
            put_mp_family(&mut value, &reach.nlri);
            match reach.next_hop {
                MpNextHop::V4(address) => {
                    value.push(4);
                    value.extend_from_slice(&address.octets());
                }
                MpNextHop::V6 { global, link_local } => {
                    value.push(if link_local.is_some() { 32 } else { 16 });
                    value.extend_from_slice(&global.octets());
                    if let Some(link_local) = link_local {
                        value.extend_from_slice(&link_local.octets());
                    }
                }
            }
            value.push(0); // reserved (formerly the SNPA count)
            put_mp_prefixes(&mut value, &reach.nlri);
        }
        PathAttribute::MpUnreach(nlri) => {
            put_mp_family(&mut value, nlri);
            put_mp_prefixes(&mut value, nlri);
        }
        PathAttribute::Unknown(raw) => value.extend_from_slice(&raw.value),
    }
    Ok(value)
}

/// Encodes one attribute: flags, type, length (extended when the value exceeds 255
/// bytes) and value.
pub(crate) fn encode_attribute(
    out: &mut Vec<u8>,
    attribute: &PathAttribute,
    options: CodecOptions,
) -> Result<(), EncodeError> {
    let type_code = type_code(attribute);
    let flags = match attribute {
        PathAttribute::Unknown(raw) => raw.flags & (OPTIONAL | TRANSITIVE | PARTIAL),
        _ => Category::of(type_code)
            .map(Category::flags)
            .unwrap_or(OPTIONAL),
    };
    let value = encode_value(attribute, options)?;
    if let Ok(short_len) = u8::try_from(value.len()) {
        out.extend_from_slice(&[flags, type_code, short_len]);
    } else {
        let long_len =
            u16::try_from(value.len()).map_err(|_| EncodeError::AttributeTooLong { type_code })?;
        out.extend_from_slice(&[flags | EXTENDED_LENGTH, type_code]);
        out.extend_from_slice(&long_len.to_be_bytes());
    }
    out.extend_from_slice(&value);
    Ok(())
}

pub(crate) fn encode_attributes(
    attributes: &[PathAttribute],
    options: CodecOptions,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    for attribute in attributes {
        encode_attribute(&mut out, attribute, options)?;
    }
    Ok(out)
}
