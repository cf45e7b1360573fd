//! BGP wire format: framing, and encoding and decoding of each message. Every decode
//! error names the NOTIFICATION that RFC 4271 §6 prescribes for it, so the session can
//! answer a malformed message correctly without knowing the details. Errors in an
//! UPDATE that RFC 7606 lets the session survive are not decode errors: they are
//! applied to the decoded [`Update`] and listed in its `errors` (see `update_errors`).

use super::attributes::{decode_attributes, encode_attributes};
use super::graceful_restart::{CAPABILITY_CODE as GRACEFUL_RESTART, GracefulRestart};
use super::message::*;
use super::update_errors::{UpdateAction, apply, tolerate};
use super::wire::{Reader, put_ipv4_prefix, read_ipv4_prefixes};

/// What the session negotiated that changes the wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodecOptions {
    /// Both sides sent the 4-octet AS capability: AS_PATH carries 4-octet AS numbers.
    pub four_octet_as: bool,
}

/// A received message that violates the protocol. [`DecodeError::notification`] gives
/// the NOTIFICATION to send before closing the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The 16-byte marker is not all ones.
    #[error("the header marker is not all ones")]
    ConnectionNotSynchronized,
    /// The length field is below the minimum for the message type or above 4096 bytes.
    #[error("bad message length {length}")]
    BadMessageLength {
        /// The length field as received, in bytes.
        length: u16,
    },
    /// A message type we do not know.
    #[error("unknown message type {message_type}")]
    BadMessageType {
        /// The type as received.
        message_type: u8,
    },
    /// An OPEN for a BGP version other than 4.
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion {
        /// The version the peer asked for.
        version: u8,
    },
    /// An OPEN optional parameter other than capabilities (type 2).
    #[error("unsupported optional parameter type {parameter_type}")]
    UnsupportedOptionalParameter {
        /// The parameter's type.
        parameter_type: u8,
    },
    /// An OPEN whose fields or capabilities do not parse.
    #[error("malformed OPEN: {reason}")]
    MalformedOpen {
        /// What does not parse, for logs.
        reason: &'static str,
    },
    /// Attribute lengths that do not add up to the total attribute length.
    #[error("malformed attribute list: {reason}")]
    MalformedAttributeList {
        /// What is wrong, for logs.
        reason: &'static str,
    },
    /// The withdrawn routes length or the total attribute length overruns the UPDATE,
    /// so its NLRI cannot be located.
    #[error("cannot locate the NLRI: {reason}")]
    NlriNotLocatable {
        /// What is wrong, for logs.
        reason: &'static str,
    },
    /// An attribute type that appears more than once in one UPDATE.
    #[error("attribute {type_code} appears more than once")]
    DuplicateAttribute {
        /// The repeated attribute's type code.
        type_code: u8,
    },
    /// An attribute marked well-known (not optional) whose type we do not know.
    #[error("unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnownAttribute {
        /// The attribute's type code.
        type_code: u8,
        /// The whole attribute as received (flags, type, length, value), sent back as the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// An UPDATE that announces routes lacks ORIGIN or AS_PATH, or IPv4 NLRI come without NEXT_HOP.
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnownAttribute {
        /// The missing attribute's type code.
        type_code: u8,
    },
    /// An attribute whose optional or transitive bit contradicts its type.
    #[error("attribute {type_code} has flags {flags:#04x} that conflict with its type")]
    AttributeFlags {
        /// The attribute's type code.
        type_code: u8,
        /// The flags as received.
        flags: u8,
        /// The whole attribute as received (flags, type, length, value), sent back as the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// An attribute whose length is wrong for its type (e.g. a NEXT_HOP not 4 bytes long).
    #[error("attribute {type_code} has a length that conflicts with its type")]
    AttributeLength {
        /// The attribute's type code.
        type_code: u8,
        /// The whole attribute as received (flags, type, length, value), sent back as the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// ORIGIN is not 0 (IGP), 1 (EGP) or 2 (INCOMPLETE).
    #[error("invalid ORIGIN")]
    InvalidOrigin {
        /// The whole attribute as received (flags, type, length, value), sent back as the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// NEXT_HOP is 0.0.0.0, the broadcast address or a multicast address.
    #[error("invalid NEXT_HOP")]
    InvalidNextHop {
        /// The whole attribute as received (flags, type, length, value), sent back as the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// An optional attribute we interpret (communities, MP_REACH_NLRI...) has a value that does not parse.
    #[error("optional attribute {type_code} is malformed: {reason}")]
    OptionalAttribute {
        /// The attribute's type code.
        type_code: u8,
        /// What does not parse, for logs.
        reason: &'static str,
        /// The whole attribute as received (flags, type, length, value), sent back as the NOTIFICATION data.
        attribute: Vec<u8>,
    },
    /// A prefix length above 32 (IPv4) or 128 (IPv6), or prefix bytes cut short.
    #[error("invalid prefix in the NLRI or withdrawn routes")]
    InvalidNetworkField,
    /// An AS_PATH segment of unknown type or whose length overruns the attribute.
    #[error("malformed AS_PATH: {reason}")]
    MalformedAsPath {
        /// What is wrong, for logs.
        reason: &'static str,
    },
}

impl DecodeError {
    /// The NOTIFICATION RFC 4271 §6 prescribes for this error.
    pub fn notification(&self) -> Notification {
        use DecodeError::*;
        let update = |subcode: u8, data: &[u8]| {
            Notification::new(error_code::UPDATE_MESSAGE, subcode, data.to_vec())
        };
        match self {
            ConnectionNotSynchronized => Notification::new(
                error_code::MESSAGE_HEADER,
                header_subcode::CONNECTION_NOT_SYNCHRONIZED,
                Vec::new(),
            ),
            BadMessageLength { length } => Notification::new(
                error_code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_LENGTH,
                length.to_be_bytes().to_vec(),
            ),
            BadMessageType { message_type } => Notification::new(
                error_code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_TYPE,
                vec![*message_type],
            ),
            // The data is the largest version we support (§6.2).
            UnsupportedVersion { .. } => Notification::new(
                error_code::OPEN_MESSAGE,
                open_subcode::UNSUPPORTED_VERSION,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            UnsupportedOptionalParameter { .. } => Notification::new(
                error_code::OPEN_MESSAGE,
                open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                Vec::new(),
            ),
            MalformedOpen { .. } => Notification::new(
                error_code::OPEN_MESSAGE,
                open_subcode::UNSPECIFIC,
                Vec::new(),
            ),
            MalformedAttributeList { .. } | NlriNotLocatable { .. } | DuplicateAttribute { .. } => {
                update(update_subcode::MALFORMED_ATTRIBUTE_LIST, &[])
            }
            UnrecognizedWellKnownAttribute { attribute, .. } => {
                update(update_subcode::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, attribute)
            }
            MissingWellKnownAttribute { type_code } => {
                update(update_subcode::MISSING_WELL_KNOWN_ATTRIBUTE, &[*type_code])
            }
            AttributeFlags { attribute, .. } => {
                update(update_subcode::ATTRIBUTE_FLAGS_ERROR, attribute)
            }
            AttributeLength { attribute, .. } => {
                update(update_subcode::ATTRIBUTE_LENGTH_ERROR, attribute)
            }
            InvalidOrigin { attribute } => {
                update(update_subcode::INVALID_ORIGIN_ATTRIBUTE, attribute)
            }
            InvalidNextHop { attribute } => {
                update(update_subcode::INVALID_NEXT_HOP_ATTRIBUTE, attribute)
            }
            OptionalAttribute { attribute, .. } => {
                update(update_subcode::OPTIONAL_ATTRIBUTE_ERROR, attribute)
            }
            InvalidNetworkField => update(update_subcode::INVALID_NETWORK_FIELD, &[]),
            MalformedAsPath { .. } => update(update_subcode::MALFORMED_AS_PATH, &[]),
        }
    }
}

/// A message we were asked to send that does not fit the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message would exceed 4096 bytes.
    #[error("message of {length} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    MessageTooLong {
        /// Its length in bytes.
        length: usize,
    },
    /// A capability's value does not fit its 1-byte length.
    #[error("capability {code} has a value longer than 255 bytes")]
    CapabilityTooLong {
        /// The capability code.
        code: u8,
    },
    /// The OPEN's optional parameters do not fit their 1-byte total length.
    #[error("OPEN optional parameters exceed 255 bytes")]
    OptionalParametersTooLong,
    /// An attribute's value does not fit even the 2-byte extended length.
    #[error("attribute {type_code} has a value longer than 65535 bytes")]
    AttributeTooLong {
        /// The attribute's type code.
        type_code: u8,
    },
    /// An AS_PATH segment holds more AS numbers than its 1-byte count allows.
    #[error("an AS_PATH segment has more than 255 AS numbers")]
    AsPathSegmentTooLong,
}

/// Reads one message from the front of `buffer`. Returns `Ok(None)` when the buffer
/// does not yet hold a whole message, or the message and the number of bytes it used.
pub fn decode_message(
    buffer: &[u8],
    options: CodecOptions,
) -> Result<Option<(Message, usize)>, DecodeError> {
    let mut header = Reader::new(buffer);
    let (Some(marker), Some(length), Some(message_type)) =
        (header.array::<16>(), header.u16(), header.u8())
    else {
        return Ok(None);
    };
    if marker != MARKER {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let (minimum, maximum) = match message_type {
        message_type::OPEN => (29, MAX_MESSAGE_LEN),
        message_type::UPDATE => (23, MAX_MESSAGE_LEN),
        message_type::NOTIFICATION => (21, MAX_MESSAGE_LEN),
        message_type::KEEPALIVE => (HEADER_LEN, HEADER_LEN),
        message_type::ROUTE_REFRESH => (23, 23),
        other => {
            // §6.1 checks the length field before the type.
            if usize::from(length) < HEADER_LEN || usize::from(length) > MAX_MESSAGE_LEN {
                return Err(DecodeError::BadMessageLength { length });
            }
            return Err(DecodeError::BadMessageType {
                message_type: other,
            });
        }
    };
    let total = usize::from(length);
    if total < minimum || total > maximum {
        return Err(DecodeError::BadMessageLength { length });
    }
    let Some(body) = buffer.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    let body = Reader::new(body);
    let message = match message_type {
        message_type::OPEN => Message::Open(decode_open(body)?),
        message_type::UPDATE => Message::Update(decode_update(body, options)?),
        message_type::NOTIFICATION => Message::Notification(decode_notification(body)),
        message_type::ROUTE_REFRESH => Message::RouteRefresh(decode_route_refresh(body)?),
        _ => Message::Keepalive,
    };
    Ok(Some((message, total)))
}

/// Encodes one message, header included.
pub fn encode_message(message: &Message, options: CodecOptions) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&[0, 0]);
    match message {
        Message::Open(open) => {
            out.push(message_type::OPEN);
            encode_open(&mut out, open)?;
        }
        Message::Update(update) => {
            out.push(message_type::UPDATE);
            encode_update(&mut out, update, options)?;
        }
        Message::Notification(notification) => {
            out.push(message_type::NOTIFICATION);
            out.push(notification.code);
            out.push(notification.subcode);
            out.extend_from_slice(&notification.data);
        }
        Message::Keepalive => out.push(message_type::KEEPALIVE),
        Message::RouteRefresh(refresh) => {
            out.push(message_type::ROUTE_REFRESH);
            out.extend_from_slice(&refresh.family.afi.to_be_bytes());
            out.push(refresh.subtype);
            out.push(refresh.family.safi);
        }
    }
    let length = out.len();
    let wire_length = u16::try_from(length)
        .ok()
        .filter(|_| length <= MAX_MESSAGE_LEN)
        .ok_or(EncodeError::MessageTooLong { length })?;
    if let Some(field) = out.get_mut(16..18) {
        field.copy_from_slice(&wire_length.to_be_bytes());
    }
    Ok(out)
}

const CAPABILITIES_PARAMETER: u8 = 2;

mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const FOUR_OCTET_AS: u8 = 65;
}

fn decode_open(mut body: Reader<'_>) -> Result<Open, DecodeError> {
    let truncated = DecodeError::MalformedOpen {
        reason: "truncated",
    };
    let version = body.u8().ok_or(truncated.clone())?;
    if version != BGP_VERSION {
        return Err(DecodeError::UnsupportedVersion { version });
    }
    let my_as = body.u16().ok_or(truncated.clone())?;
    let hold_time = body.u16().ok_or(truncated.clone())?;
    let bgp_identifier = body.ipv4().ok_or(truncated.clone())?;
    let parameters_len = body.u8().ok_or(truncated.clone())?;
    let mut parameters = Reader::new(body.bytes(usize::from(parameters_len)).ok_or(
        DecodeError::MalformedOpen {
            reason: "optional parameters overrun the message",
        },
    )?);
    if !body.is_empty() {
        return Err(DecodeError::MalformedOpen {
            reason: "bytes after the optional parameters",
        });
    }
    let mut capabilities = Vec::new();
    while !parameters.is_empty() {
        let (Some(parameter_type), Some(len)) = (parameters.u8(), parameters.u8()) else {
            return Err(DecodeError::MalformedOpen {
                reason: "truncated optional parameter",
            });
        };
        let value = parameters
            .bytes(usize::from(len))
            .ok_or(DecodeError::MalformedOpen {
                reason: "optional parameter overruns the parameters",
            })?;
        if parameter_type != CAPABILITIES_PARAMETER {
            return Err(DecodeError::UnsupportedOptionalParameter { parameter_type });
        }
        decode_capabilities(Reader::new(value), &mut capabilities)?;
    }
    Ok(Open {
        version,
        my_as,
        hold_time,
        bgp_identifier,
        capabilities,
    })
}

fn decode_capabilities(
    mut reader: Reader<'_>,
    capabilities: &mut Vec<Capability>,
) -> Result<(), DecodeError> {
    while !reader.is_empty() {
        let (Some(code), Some(len)) = (reader.u8(), reader.u8()) else {
            return Err(DecodeError::MalformedOpen {
                reason: "truncated capability",
            });
        };
        let value = reader
            .bytes(usize::from(len))
            .ok_or(DecodeError::MalformedOpen {
                reason: "capability overruns its parameter",
            })?;
        let mut value_reader = Reader::new(value);
        let capability = match (code, len) {
            (capability_code::MULTIPROTOCOL, 4) => {
                let (Some(afi), Some(_reserved), Some(safi)) =
                    (value_reader.u16(), value_reader.u8(), value_reader.u8())
                else {
                    return Err(DecodeError::MalformedOpen {
                        reason: "truncated multiprotocol capability",
                    });
                };
                Capability::Multiprotocol(AddressFamily { afi, safi })
            }
            (capability_code::MULTIPROTOCOL, _) => {
                return Err(DecodeError::MalformedOpen {
                    reason: "multiprotocol capability length is not 4",
                });
            }
            (capability_code::ROUTE_REFRESH, 0) => Capability::RouteRefresh,
            (capability_code::FOUR_OCTET_AS, 4) => {
                let asn = value_reader.u32().ok_or(DecodeError::MalformedOpen {
                    reason: "truncated 4-octet AS capability",
                })?;
                Capability::FourOctetAs(asn)
            }
            (capability_code::FOUR_OCTET_AS, _) => {
                return Err(DecodeError::MalformedOpen {
                    reason: "4-octet AS capability length is not 4",
                });
            }
            (GRACEFUL_RESTART, _) => match GracefulRestart::decode(value) {
                Some(restart) => Capability::GracefulRestart(restart),
                None => Capability::Unknown {
                    code,
                    value: value.to_vec(),
                },
            },
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        capabilities.push(capability);
    }
    Ok(())
}

fn encode_capability(capability: &Capability) -> Result<Vec<u8>, EncodeError> {
    let (code, value) = match capability {
        Capability::Multiprotocol(family) => {
            let mut value = family.afi.to_be_bytes().to_vec();
            value.push(0);
            value.push(family.safi);
            (capability_code::MULTIPROTOCOL, value)
        }
        Capability::RouteRefresh => (capability_code::ROUTE_REFRESH, Vec::new()),
        Capability::FourOctetAs(asn) => {
            (capability_code::FOUR_OCTET_AS, asn.to_be_bytes().to_vec())
        }
        Capability::GracefulRestart(restart) => (GRACEFUL_RESTART, restart.encode()),
        Capability::Unknown { code, value } => (*code, value.clone()),
    };
    let len = u8::try_from(value.len()).map_err(|_| EncodeError::CapabilityTooLong { code })?;
    let mut out = vec![code, len];
    out.extend_from_slice(&value);
    Ok(out)
}

fn encode_open(out: &mut Vec<u8>, open: &Open) -> Result<(), EncodeError> {
    out.push(open.version);
    out.extend_from_slice(&open.my_as.to_be_bytes());
    out.extend_from_slice(&open.hold_time.to_be_bytes());
    out.extend_from_slice(&open.bgp_identifier.octets());
    // Capabilities go into as few optional parameters as fit in 255 bytes each.
    let mut parameters: Vec<Vec<u8>> = Vec::new();
    for capability in &open.capabilities {
        let encoded = encode_capability(capability)?;
        match parameters.last_mut() {
            Some(parameter) if parameter.len() + encoded.len() <= 255 => {
                parameter.extend_from_slice(&encoded)
            }
            _ => parameters.push(encoded),
        }
    }
    let mut encoded_parameters = Vec::new();
    for parameter in parameters {
        encoded_parameters.push(CAPABILITIES_PARAMETER);
        encoded_parameters.push(
            u8::try_from(parameter.len()).map_err(|_| EncodeError::OptionalParametersTooLong)?,
        );
        encoded_parameters.extend_from_slice(&parameter);
    }
    out.push(
        u8::try_from(encoded_parameters.len())
            .map_err(|_| EncodeError::OptionalParametersTooLong)?,
    );
    out.extend_from_slice(&encoded_parameters);
    Ok(())
}

fn decode_notification(mut body: Reader<'_>) -> Notification {
    // The minimum length check guarantees code and subcode are present.
    let code = body.u8().unwrap_or_default();
    let subcode = body.u8().unwrap_or_default();
    Notification::new(code, subcode, body.rest().to_vec())
}

fn decode_route_refresh(mut body: Reader<'_>) -> Result<RouteRefresh, DecodeError> {
    let (Some(afi), Some(subtype), Some(safi)) = (body.u16(), body.u8(), body.u8()) else {
        return Err(DecodeError::BadMessageLength {
            length: u16::try_from(HEADER_LEN + body.remaining()).unwrap_or(u16::MAX),
        });
    };
    Ok(RouteRefresh {
        family: AddressFamily { afi, safi },
        subtype,
    })
}

fn decode_update(mut body: Reader<'_>, options: CodecOptions) -> Result<Update, DecodeError> {
    let unlocatable = |reason| DecodeError::NlriNotLocatable { reason };
    let withdrawn_len = body
        .u16()
        .ok_or(unlocatable("truncated withdrawn routes length"))?;
    let withdrawn = body
        .bytes(usize::from(withdrawn_len))
        .ok_or(unlocatable("withdrawn routes length exceeds the message"))?;
    let attributes_len = body
        .u16()
        .ok_or(unlocatable("truncated total attribute length"))?;
    let attributes = body
        .bytes(usize::from(attributes_len))
        .ok_or(unlocatable("total attribute length exceeds the message"))?;
    let nlri = body.rest();

    let withdrawn =
        read_ipv4_prefixes(Reader::new(withdrawn)).map_err(|_| DecodeError::InvalidNetworkField)?;
    let nlri =
        read_ipv4_prefixes(Reader::new(nlri)).map_err(|_| DecodeError::InvalidNetworkField)?;
    let (attributes, mut errors) = decode_attributes(attributes, options)?;

    let has = |type_code: u8| {
        attributes
            .iter()
            .any(|attribute| super::attributes::type_code(attribute) == type_code)
    };
    let announces_mp = has(attribute_type::MP_REACH_NLRI);
    let mut required = Vec::new();
    if !nlri.is_empty() || announces_mp {
        required.extend([attribute_type::ORIGIN, attribute_type::AS_PATH]);
    }
    if !nlri.is_empty() {
        required.push(attribute_type::NEXT_HOP);
    }
    // A malformed mandatory attribute is already treat-as-withdraw: not missing as well.
    let withdrawing = errors
        .iter()
        .any(|error| error.action == UpdateAction::TreatAsWithdraw);
    if let Some(type_code) = required.into_iter().find(|type_code| !has(*type_code))
        && !withdrawing
    {
        tolerate(
            &mut errors,
            DecodeError::MissingWellKnownAttribute { type_code },
        )?;
    }
    let update = Update {
        withdrawn,
        attributes,
        nlri,
        errors: Vec::new(),
    };
    Ok(apply(update, errors))
}

fn encode_update(
    out: &mut Vec<u8>,
    update: &Update,
    options: CodecOptions,
) -> Result<(), EncodeError> {
    let mut withdrawn = Vec::new();
    for net in &update.withdrawn {
        put_ipv4_prefix(&mut withdrawn, net);
    }
    let attributes = encode_attributes(&update.attributes, options)?;
    let section_len = |section: &Vec<u8>| {
        u16::try_from(section.len()).map_err(|_| EncodeError::MessageTooLong {
            length: section.len(),
        })
    };
    out.extend_from_slice(&section_len(&withdrawn)?.to_be_bytes());
    out.extend_from_slice(&withdrawn);
    out.extend_from_slice(&section_len(&attributes)?.to_be_bytes());
    out.extend_from_slice(&attributes);
    for net in &update.nlri {
        put_ipv4_prefix(out, net);
    }
    Ok(())
}

#[cfg(test)]
#[path = "codec_tests.rs"]
pub(crate) mod tests;
