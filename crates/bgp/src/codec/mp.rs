//! MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3–4) for IPv4 and IPv6 unicast, including the
//! IPv6 next hop of 16 bytes (global) or 32 bytes (global + link-local, RFC 2545 §3).

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::error::EncodeError;
use super::prefix::{decode_prefixes, encode_prefix, Family};
use super::reader::Reader;

/// A next hop as carried in NEXT_HOP or MP_REACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NextHop {
    V4(Ipv4Addr),
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

/// MP_REACH_NLRI for a supported family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub prefixes: Vec<IpNet>,
}

/// MP_UNREACH_NLRI for a supported family; no prefixes means End-of-RIB (RFC 4724 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub prefixes: Vec<IpNet>,
}

/// MP attribute content that is wrong for its family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MultiprotocolError;

impl MpReach {
    /// `Ok(None)` for a well-formed attribute of a family Starling does not carry.
    pub(crate) fn decode(value: &[u8]) -> Result<Option<MpReach>, MultiprotocolError> {
        let mut reader = Reader::new(value);
        let afi = reader.u16().ok_or(MultiprotocolError)?;
        let safi = reader.u8().ok_or(MultiprotocolError)?;
        let family = Family { afi, safi };
        let next_hop_length = reader.u8().ok_or(MultiprotocolError)?;
        let next_hop_bytes = reader
            .take(usize::from(next_hop_length))
            .ok_or(MultiprotocolError)?;
        let _reserved = reader.u8().ok_or(MultiprotocolError)?;
        if !family.is_supported() {
            return Ok(None);
        }
        let mut next_hop_reader = Reader::new(next_hop_bytes);
        let next_hop = match (family, next_hop_length) {
            (Family::IPV4_UNICAST, 4) => {
                NextHop::V4(next_hop_reader.ipv4().ok_or(MultiprotocolError)?)
            }
            (Family::IPV6_UNICAST, 16) => NextHop::V6 {
                global: next_hop_reader.ipv6().ok_or(MultiprotocolError)?,
                link_local: None,
            },
            (Family::IPV6_UNICAST, 32) => NextHop::V6 {
                global: next_hop_reader.ipv6().ok_or(MultiprotocolError)?,
                link_local: Some(next_hop_reader.ipv6().ok_or(MultiprotocolError)?),
            },
            _ => return Err(MultiprotocolError),
        };
        let prefixes = decode_prefixes(reader.rest(), family).map_err(|_| MultiprotocolError)?;
        Ok(Some(MpReach {
            family,
            next_hop,
            prefixes,
        }))
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_header(out)?;
        for prefix in &self.prefixes {
            check_family(prefix, self.family)?;
            encode_prefix(prefix, out);
        }
        Ok(())
    }

    /// AFI, SAFI, next hop and reserved octet: everything before the NLRI.
    pub(crate) fn encode_header(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.family.safi);
        match (self.family, self.next_hop) {
            (Family::IPV4_UNICAST, NextHop::V4(address)) => {
                out.push(4);
                out.extend_from_slice(&address.octets());
            }
            (Family::IPV6_UNICAST, NextHop::V6 { global, link_local }) => {
                out.push(if link_local.is_some() { 32 } else { 16 });
                out.extend_from_slice(&global.octets());
                if let Some(link_local) = link_local {
                    out.extend_from_slice(&link_local.octets());
                }
            }
            _ => {
                return Err(EncodeError::NextHopFamilyMismatch {
                    family: self.family,
                })
            }
        }
        out.push(0);
        Ok(())
    }
}

impl MpUnreach {
    pub(crate) fn decode(value: &[u8]) -> Result<Option<MpUnreach>, MultiprotocolError> {
        let mut reader = Reader::new(value);
        let afi = reader.u16().ok_or(MultiprotocolError)?;
        let safi = reader.u8().ok_or(MultiprotocolError)?;
        let family = Family { afi, safi };
        if !family.is_supported() {
            return Ok(None);
        }
        let prefixes = decode_prefixes(reader.rest(), family).map_err(|_| MultiprotocolError)?;
        Ok(Some(MpUnreach { family, prefixes }))
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(&self.family.afi.to_be_bytes());
        out.push(self.family.safi);
        for prefix in &self.prefixes {
            check_family(prefix, self.family)?;
            encode_prefix(prefix, out);
        }
        Ok(())
    }
}

pub(crate) fn check_family(prefix: &IpNet, family: Family) -> Result<(), EncodeError> {
    if Family::of_prefix(prefix) == family {
        Ok(())
    } else {
        Err(EncodeError::PrefixFamilyMismatch {
            prefix: *prefix,
            family,
        })
    }
}
