//! Byte-level helpers shared by the codec: a bounds-checked reader (every read of
//! network bytes goes through it, so a short buffer is an error, never a panic) and the
//! prefix encoding used by NLRI, withdrawn routes and the MP attributes.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Reads big-endian values from a slice; each read returns `None` when too few bytes
/// remain.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn bytes(&mut self, count: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(count)?;
        self.rest = rest;
        Some(taken)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn ipv4(&mut self) -> Option<Ipv4Addr> {
        self.array::<4>().map(Ipv4Addr::from)
    }

    pub(crate) fn ipv6(&mut self) -> Option<Ipv6Addr> {
        self.array::<16>().map(Ipv6Addr::from)
    }

    /// Everything not read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }
}

/// Bytes needed for the address part of a prefix of this length.
pub(crate) fn prefix_octets(prefix_len: u8) -> usize {
    usize::from(prefix_len).div_ceil(8)
}

/// Encoded size of one prefix: the length byte and the significant octets.
pub(crate) fn encoded_prefix_len(prefix_len: u8) -> usize {
    1 + prefix_octets(prefix_len)
}

/// Writes `<length, prefix>` (RFC 4271 §4.3), taking only the significant octets.
/// Host bits are cleared so the receiver sees a canonical prefix.
pub(crate) fn put_prefix(out: &mut Vec<u8>, prefix_len: u8, address_octets: &[u8]) {
    out.push(prefix_len);
    let significant = address_octets
        .iter()
        .take(prefix_octets(prefix_len))
        .enumerate();
    for (index, octet) in significant {
        let bits_before = index * 8;
        let bits_here = usize::from(prefix_len).saturating_sub(bits_before).min(8);
        // bits_here is 1..=8 for every octet taken, so the shift stays below 8.
        let mask = 0xffu8 << (8 - bits_here);
        out.push(octet & mask);
    }
}

pub(crate) fn put_ipv4_prefix(out: &mut Vec<u8>, net: &Ipv4Net) {
    put_prefix(out, net.prefix_len(), &net.addr().octets());
}

pub(crate) fn put_ipv6_prefix(out: &mut Vec<u8>, net: &Ipv6Net) {
    put_prefix(out, net.prefix_len(), &net.addr().octets());
}

/// Why a prefix field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixError {
    /// The length byte exceeds the address size.
    LengthTooLong,
    /// Fewer bytes remain than the length byte promises.
    Truncated,
}

fn read_prefix_octets<const N: usize>(
    reader: &mut Reader<'_>,
) -> Result<(u8, [u8; N]), PrefixError> {
    let prefix_len = reader.u8().ok_or(PrefixError::Truncated)?;
    if usize::from(prefix_len) > N * 8 {
        return Err(PrefixError::LengthTooLong);
    }
    let significant = reader
        .bytes(prefix_octets(prefix_len))
        .ok_or(PrefixError::Truncated)?;
    let mut octets = [0u8; N];
    for (slot, byte) in octets.iter_mut().zip(significant) {
        *slot = *byte;
    }
    Ok((prefix_len, octets))
}

/// Reads IPv4 prefixes until the reader is empty. Host bits are cleared.
pub(crate) fn read_ipv4_prefixes(mut reader: Reader<'_>) -> Result<Vec<Ipv4Net>, PrefixError> {
    let mut nets = Vec::new();
    while !reader.is_empty() {
        let (prefix_len, octets) = read_prefix_octets::<4>(&mut reader)?;
        let net = Ipv4Net::new(Ipv4Addr::from(octets), prefix_len)
            .map_err(|_| PrefixError::LengthTooLong)?;
        nets.push(net.trunc());
    }
    Ok(nets)
}

/// Reads IPv6 prefixes until the reader is empty. Host bits are cleared.
pub(crate) fn read_ipv6_prefixes(mut reader: Reader<'_>) -> Result<Vec<Ipv6Net>, PrefixError> {
    let mut nets = Vec::new();
    while !reader.is_empty() {
        let (prefix_len, octets) = read_prefix_octets::<16>(&mut reader)?;
        let net = Ipv6Net::new(Ipv6Addr::from(octets), prefix_len)
            .map_err(|_| PrefixError::LengthTooLong)?;
        nets.push(net.trunc());
    }
    Ok(nets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_refuses_to_read_past_the_end() {
        let mut reader = Reader::new(&[1, 2, 3]);
        assert_eq!(reader.u16(), Some(0x0102));
        assert_eq!(reader.u16(), None);
        assert_eq!(reader.u8(), Some(3));
        assert_eq!(reader.u8(), None);
    }

    #[test]
    fn prefixes_take_only_significant_octets_and_clear_host_bits() {
        let mut out = Vec::new();
        put_prefix(&mut out, 20, &[198, 51, 100 + 15, 7]);
        assert_eq!(out, vec![20, 198, 51, 112]);
        let mut out = Vec::new();
        put_ipv4_prefix(&mut out, &"0.0.0.0/0".parse().unwrap());
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn reading_prefixes_checks_length_and_truncation() {
        assert_eq!(
            read_ipv4_prefixes(Reader::new(&[24, 198, 51, 100, 32, 203, 0, 113, 9])).unwrap(),
            vec![
                "198.51.100.0/24".parse::<Ipv4Net>().unwrap(),
                "203.0.113.9/32".parse().unwrap()
            ]
        );
        assert_eq!(
            read_ipv4_prefixes(Reader::new(&[33, 1, 2, 3, 4, 5])),
            Err(PrefixError::LengthTooLong)
        );
        assert_eq!(
            read_ipv4_prefixes(Reader::new(&[24, 198, 51])),
            Err(PrefixError::Truncated)
        );
        assert_eq!(
            read_ipv6_prefixes(Reader::new(&[32, 0x20, 0x01, 0x0d, 0xb8])).unwrap(),
            vec!["2001:db8::/32".parse::<Ipv6Net>().unwrap()]
        );
        assert_eq!(
            read_ipv6_prefixes(Reader::new(&[129])),
            Err(PrefixError::LengthTooLong)
        );
    }
}
