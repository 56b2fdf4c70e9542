//! Address families (RFC 4760 AFI/SAFI) and the NLRI prefix encoding of RFC 4271 §4.3:
//! one length octet followed by the fewest octets that hold that many bits. Decoded prefixes are
//! normalised (host bits cleared), so a decoded value re-encodes to the canonical bytes.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::reader::Reader;

/// An address family: AFI (RFC 4760 §3) and SAFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };

    /// The unicast family a prefix belongs to.
    pub fn of_prefix(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }

    /// Whether Starling can carry routes of this family (IPv4 or IPv6 unicast).
    pub fn is_supported(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }

    /// Maximum prefix length in bits for a supported family.
    pub(crate) fn max_prefix_length(self) -> Option<u8> {
        match self {
            Family::IPV4_UNICAST => Some(32),
            Family::IPV6_UNICAST => Some(128),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => write!(f, "ipv4-unicast"),
            Family::IPV6_UNICAST => write!(f, "ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi {afi}/safi {safi}"),
        }
    }
}

/// A prefix field was syntactically wrong (length beyond the family's maximum or truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PrefixError;

/// Decodes a run of prefixes of a supported family that fills `bytes` exactly.
pub(crate) fn decode_prefixes(bytes: &[u8], family: Family) -> Result<Vec<IpNet>, PrefixError> {
    let max = family.max_prefix_length().ok_or(PrefixError)?;
    let mut reader = Reader::new(bytes);
    let mut prefixes = Vec::new();
    while !reader.is_empty() {
        let length = reader.u8().ok_or(PrefixError)?;
        if length > max {
            return Err(PrefixError);
        }
        let significant = usize::from(length).div_ceil(8);
        let octets = reader.take(significant).ok_or(PrefixError)?;
        let prefix = if max == 32 {
            let mut address = [0u8; 4];
            address[..significant].copy_from_slice(octets);
            Ipv4Net::new(Ipv4Addr::from(address), length)
                .map(|net| IpNet::V4(net.trunc()))
                .map_err(|_| PrefixError)?
        } else {
            let mut address = [0u8; 16];
            address[..significant].copy_from_slice(octets);
            Ipv6Net::new(Ipv6Addr::from(address), length)
                .map(|net| IpNet::V6(net.trunc()))
                .map_err(|_| PrefixError)?
        };
        prefixes.push(prefix);
    }
    Ok(prefixes)
}

/// Decodes IPv4 prefixes (the UPDATE's Withdrawn Routes and NLRI fields).
pub(crate) fn decode_ipv4_prefixes(bytes: &[u8]) -> Result<Vec<Ipv4Net>, PrefixError> {
    decode_prefixes(bytes, Family::IPV4_UNICAST).map(|prefixes| {
        prefixes
            .into_iter()
            .filter_map(|prefix| match prefix {
                IpNet::V4(net) => Some(net),
                IpNet::V6(_) => None,
            })
            .collect()
    })
}

/// Number of octets `prefix` takes on the wire.
pub(crate) fn encoded_prefix_length(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}

/// Appends the wire form of `prefix`; host bits are cleared.
pub(crate) fn encode_prefix(prefix: &IpNet, out: &mut Vec<u8>) {
    let length = prefix.prefix_len();
    let significant = usize::from(length).div_ceil(8);
    out.push(length);
    match prefix.trunc() {
        IpNet::V4(net) => out.extend_from_slice(&net.addr().octets()[..significant]),
        IpNet::V6(net) => out.extend_from_slice(&net.addr().octets()[..significant]),
    }
}
