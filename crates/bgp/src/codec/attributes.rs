//! Path attributes (RFC 4271 §4.3, §5): the decoded set, its wire encoding, and decoding with the
//! revised error handling of RFC 7606 — each malformed attribute becomes an
//! [`AttributeProblem`] with its action, and only the cases RFC 7606 reserves for session reset
//! (MP_REACH/MP_UNREACH trouble, unrecognised well-known attributes) fail the decode.
//!
//! 4-octet AS handling (RFC 6793): towards a 2-octet session AS numbers above 65535 become
//! AS_TRANS in AS_PATH/AGGREGATOR and the real values travel in AS4_PATH/AS4_AGGREGATOR; on
//! decode from such a session the two are merged back (§4.2.3) so callers only ever see real ASes.

use std::net::Ipv4Addr;

use ipnet::IpNet;

use starling_model::AsNumber;

use super::as_path::AsPath;
use super::error::{AttributeProblem, DecodeError, EncodeError, UpdateError, UpdateErrorAction};
use super::mp::{MpReach, MpUnreach};
use super::reader::Reader;
pub use super::values::{Aggregator, Community, LargeCommunity, Origin, RawAttribute};
use super::CodecOptions;

/// Attribute flag bits (RFC 4271 §4.3).
pub mod attribute_flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod attribute_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITIES: u8 = 32;
}

use attribute_flag::{EXTENDED_LENGTH, OPTIONAL, PARTIAL, TRANSITIVE};
use attribute_type as kind;

/// The path attributes of an UPDATE. Absent attributes are `None`/empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub multi_exit_disc: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<Community>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub large_communities: Vec<LargeCommunity>,
    /// Unrecognised optional transitive attributes, in type-code order.
    pub unknown: Vec<RawAttribute>,
}

/// Expected (optional, transitive) flag bits of a recognised attribute.
fn expected_flags(type_code: u8) -> Option<u8> {
    match type_code {
        kind::ORIGIN
        | kind::AS_PATH
        | kind::NEXT_HOP
        | kind::LOCAL_PREF
        | kind::ATOMIC_AGGREGATE => Some(TRANSITIVE),
        kind::MULTI_EXIT_DISC
        | kind::ORIGINATOR_ID
        | kind::CLUSTER_LIST
        | kind::MP_REACH_NLRI
        | kind::MP_UNREACH_NLRI => Some(OPTIONAL),
        kind::AGGREGATOR
        | kind::COMMUNITIES
        | kind::AS4_PATH
        | kind::AS4_AGGREGATOR
        | kind::LARGE_COMMUNITIES => Some(OPTIONAL | TRANSITIVE),
        _ => None,
    }
}

/// RFC 7606 §7 action when a recognised attribute is malformed (MP_* are handled as resets).
fn malformed_action(type_code: u8) -> UpdateErrorAction {
    match type_code {
        kind::ATOMIC_AGGREGATE | kind::AGGREGATOR | kind::AS4_PATH | kind::AS4_AGGREGATOR => {
            UpdateErrorAction::AttributeDiscard
        }
        _ => UpdateErrorAction::TreatAsWithdraw,
    }
}

/// Outcome of decoding the attribute field.
pub(crate) struct DecodedAttributes {
    pub attributes: PathAttributes,
    pub problems: Vec<AttributeProblem>,
}

/// Decodes the Path Attributes field. `has_ipv4_nlri` says whether the UPDATE's NLRI field
/// carries prefixes, which makes NEXT_HOP mandatory.
pub(crate) fn decode_attributes(
    bytes: &[u8],
    options: &CodecOptions,
    has_ipv4_nlri: bool,
) -> Result<DecodedAttributes, DecodeError> {
    let mut attributes = PathAttributes::default();
    let mut problems: Vec<AttributeProblem> = Vec::new();
    let mut seen = [false; 256];
    let mut as4_path: Option<AsPath> = None;
    let mut as4_aggregator: Option<Aggregator> = None;
    let mut reader = Reader::new(bytes);

    while !reader.is_empty() {
        let start = reader.rest();
        // RFC 7606 §4: a header or value overrunning the field is treat-as-withdraw; the
        // Total Path Attribute Length still locates the NLRI.
        let header_and_value = (|| {
            let flags = reader.u8()?;
            let type_code = reader.u8()?;
            let length = if flags & EXTENDED_LENGTH != 0 {
                reader.u16()?
            } else {
                u16::from(reader.u8()?)
            };
            let value = reader.take(usize::from(length))?;
            Some((flags, type_code, value))
        })();
        let Some((flags, type_code, value)) = header_and_value else {
            problems.push(AttributeProblem {
                type_code: start.get(1).copied().unwrap_or(0),
                action: UpdateErrorAction::TreatAsWithdraw,
                error: UpdateError::AttributeLength {
                    attribute: start.to_vec(),
                },
            });
            break;
        };
        let raw = &start[..start.len() - reader.remaining()];

        if seen[usize::from(type_code)] {
            // RFC 7606 §3 g.
            if type_code == kind::MP_REACH_NLRI || type_code == kind::MP_UNREACH_NLRI {
                return Err(UpdateError::MalformedAttributeList {
                    reason: "MP_REACH_NLRI or MP_UNREACH_NLRI appears twice",
                }
                .into());
            }
            problems.push(AttributeProblem {
                type_code,
                action: UpdateErrorAction::AttributeDiscard,
                error: UpdateError::MalformedAttributeList {
                    reason: "attribute appears twice",
                },
            });
            continue;
        }
        seen[usize::from(type_code)] = true;

        let Some(expected) = expected_flags(type_code) else {
            if flags & OPTIONAL == 0 {
                return Err(UpdateError::UnrecognizedWellKnownAttribute {
                    attribute: raw.to_vec(),
                }
                .into());
            }
            if flags & TRANSITIVE != 0 {
                attributes.unknown.push(RawAttribute {
                    flags: (flags | PARTIAL) & !EXTENDED_LENGTH & 0xf0,
                    type_code,
                    value: value.to_vec(),
                });
            }
            continue;
        };

        let is_multiprotocol =
            type_code == kind::MP_REACH_NLRI || type_code == kind::MP_UNREACH_NLRI;
        let partial_forbidden = expected & TRANSITIVE == 0 || expected & OPTIONAL == 0;
        if flags & (OPTIONAL | TRANSITIVE) != expected
            || (partial_forbidden && flags & PARTIAL != 0)
        {
            let error = UpdateError::AttributeFlags {
                attribute: raw.to_vec(),
            };
            if is_multiprotocol {
                return Err(error.into());
            }
            problems.push(AttributeProblem {
                type_code,
                action: malformed_action(type_code),
                error,
            });
            continue;
        }

        if let Err(error) = decode_one(
            type_code,
            value,
            raw,
            options,
            &mut attributes,
            &mut as4_path,
            &mut as4_aggregator,
        ) {
            if is_multiprotocol {
                return Err(error.into());
            }
            problems.push(AttributeProblem {
                type_code,
                action: malformed_action(type_code),
                error,
            });
        }
    }

    if !options.four_octet_as {
        merge_four_octet(&mut attributes, as4_path, as4_aggregator);
    }

    // RFC 7606 §3 d: missing well-known mandatory attributes when there is something to announce.
    let announces_multiprotocol = attributes
        .mp_reach
        .as_ref()
        .is_some_and(|reach| !reach.prefixes.is_empty());
    if has_ipv4_nlri || announces_multiprotocol {
        let mut mandatory = vec![kind::ORIGIN, kind::AS_PATH];
        if has_ipv4_nlri {
            mandatory.push(kind::NEXT_HOP);
        }
        for type_code in mandatory {
            let present = match type_code {
                kind::ORIGIN => attributes.origin.is_some(),
                kind::AS_PATH => attributes.as_path.is_some(),
                _ => attributes.next_hop.is_some(),
            };
            let already_reported = problems
                .iter()
                .any(|problem| problem.type_code == type_code);
            if !present && !already_reported {
                problems.push(AttributeProblem {
                    type_code,
                    action: UpdateErrorAction::TreatAsWithdraw,
                    error: UpdateError::MissingWellKnownAttribute { type_code },
                });
            }
        }
    }
    Ok(DecodedAttributes {
        attributes,
        problems,
    })
}

fn decode_one(
    type_code: u8,
    value: &[u8],
    raw: &[u8],
    options: &CodecOptions,
    attributes: &mut PathAttributes,
    as4_path: &mut Option<AsPath>,
    as4_aggregator: &mut Option<Aggregator>,
) -> Result<(), UpdateError> {
    let length_error = || UpdateError::AttributeLength {
        attribute: raw.to_vec(),
    };
    let optional_error = || UpdateError::OptionalAttribute {
        attribute: raw.to_vec(),
    };
    let four_bytes = |bytes: &[u8]| -> Option<u32> {
        let array: [u8; 4] = bytes.try_into().ok()?;
        Some(u32::from_be_bytes(array))
    };
    match type_code {
        kind::ORIGIN => {
            let [code] = value else {
                return Err(length_error());
            };
            attributes.origin = Some(match code {
                0 => Origin::Igp,
                1 => Origin::Egp,
                2 => Origin::Incomplete,
                _ => {
                    return Err(UpdateError::InvalidOrigin {
                        attribute: raw.to_vec(),
                    })
                }
            });
        }
        kind::AS_PATH => {
            attributes.as_path = Some(
                AsPath::decode(value, options.four_octet_as).ok_or(UpdateError::MalformedAsPath)?,
            );
        }
        kind::NEXT_HOP => {
            let address = Ipv4Addr::from(four_bytes(value).ok_or_else(length_error)?);
            if address.is_unspecified() || address.is_broadcast() || address.is_multicast() {
                return Err(UpdateError::InvalidNextHop {
                    attribute: raw.to_vec(),
                });
            }
            attributes.next_hop = Some(address);
        }
        kind::MULTI_EXIT_DISC => {
            attributes.multi_exit_disc = Some(four_bytes(value).ok_or_else(length_error)?)
        }
        kind::LOCAL_PREF => {
            attributes.local_pref = Some(four_bytes(value).ok_or_else(length_error)?)
        }
        kind::ATOMIC_AGGREGATE => {
            if !value.is_empty() {
                return Err(length_error());
            }
            attributes.atomic_aggregate = true;
        }
        kind::AGGREGATOR => {
            attributes.aggregator =
                Some(decode_aggregator(value, options.four_octet_as).ok_or_else(length_error)?)
        }
        kind::COMMUNITIES => {
            if value.is_empty() || value.len() % 4 != 0 {
                return Err(optional_error());
            }
            attributes.communities = value
                .chunks_exact(4)
                .map(|chunk| {
                    Community(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
                })
                .collect();
        }
        kind::ORIGINATOR_ID => {
            attributes.originator_id =
                Some(Ipv4Addr::from(four_bytes(value).ok_or_else(length_error)?))
        }
        kind::CLUSTER_LIST => {
            if value.is_empty() || value.len() % 4 != 0 {
                return Err(optional_error());
            }
            attributes.cluster_list = value
                .chunks_exact(4)
                .map(|chunk| Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]))
                .collect();
        }
        kind::MP_REACH_NLRI => {
            // Families Starling does not carry are ignored like any optional non-transitive.
            attributes.mp_reach = MpReach::decode(value).map_err(|_| optional_error())?;
        }
        kind::MP_UNREACH_NLRI => {
            attributes.mp_unreach = MpUnreach::decode(value).map_err(|_| optional_error())?;
        }
        kind::AS4_PATH => {
            let path = AsPath::decode(value, true).ok_or_else(optional_error)?;
            *as4_path = Some(path);
        }
        kind::AS4_AGGREGATOR => {
            *as4_aggregator = Some(decode_aggregator(value, true).ok_or_else(length_error)?);
        }
        kind::LARGE_COMMUNITIES => {
            if value.is_empty() || value.len() % 12 != 0 {
                return Err(optional_error());
            }
            attributes.large_communities = value
                .chunks_exact(12)
                .map(|chunk| LargeCommunity {
                    global_administrator: u32::from_be_bytes([
                        chunk[0], chunk[1], chunk[2], chunk[3],
                    ]),
                    local_data_1: u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
                    local_data_2: u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]),
                })
                .collect();
        }
        _ => {}
    }
    Ok(())
}

fn decode_aggregator(value: &[u8], four_octet: bool) -> Option<Aggregator> {
    let mut reader = Reader::new(value);
    let asn = if four_octet {
        reader.u32()?
    } else {
        u32::from(reader.u16()?)
    };
    let address = reader.ipv4()?;
    reader.is_empty().then_some(Aggregator {
        asn: AsNumber(asn),
        address,
    })
}

/// RFC 6793 §4.2.3 for UPDATEs from a 2-octet session.
fn merge_four_octet(
    attributes: &mut PathAttributes,
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
) {
    if let (Some(aggregator), Some(_)) = (attributes.aggregator, as4_aggregator) {
        if aggregator.asn != AsNumber::TRANS {
            // An aggregating 2-octet speaker after the AS4 information: both AS4 attributes
            // are stale and ignored.
            return;
        }
    }
    if let (Some(aggregator), Some(four)) = (attributes.aggregator.as_mut(), as4_aggregator) {
        *aggregator = four;
    }
    if let (Some(path), Some(four)) = (attributes.as_path.as_mut(), as4_path) {
        *path = AsPath::merge_as4(path, &four);
    }
}

fn push_attribute(
    out: &mut Vec<u8>,
    flags: u8,
    type_code: u8,
    value: &[u8],
) -> Result<(), EncodeError> {
    let length = u16::try_from(value.len()).map_err(|_| EncodeError::AttributeTooLong {
        type_code,
        length: value.len(),
    })?;
    if length > 255 {
        out.push((flags | EXTENDED_LENGTH) & 0xf0);
        out.push(type_code);
        out.extend_from_slice(&length.to_be_bytes());
    } else {
        out.push(flags & !EXTENDED_LENGTH & 0xf0);
        out.push(type_code);
        out.push(length as u8);
    }
    out.extend_from_slice(value);
    Ok(())
}

impl PathAttributes {
    /// Appends every present attribute: MP attributes first, then ascending type code.
    pub(crate) fn encode(
        &self,
        options: &CodecOptions,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let mut unknown = self.unknown.iter().peekable();
        let mut emit_unknown_below = |limit: u16, out: &mut Vec<u8>| -> Result<(), EncodeError> {
            while let Some(raw) = unknown.next_if(|raw| u16::from(raw.type_code) < limit) {
                push_attribute(out, raw.flags | PARTIAL, raw.type_code, &raw.value)?;
            }
            Ok(())
        };
        let four = options.four_octet_as;
        let mut value = Vec::new();
        // RFC 7606 §5.1: MP_REACH_NLRI / MP_UNREACH_NLRI first, so a receiver can always find
        // the NLRI even if a later attribute is malformed.
        if let Some(reach) = &self.mp_reach {
            value.clear();
            reach.encode(&mut value)?;
            push_attribute(out, OPTIONAL, kind::MP_REACH_NLRI, &value)?;
        }
        if let Some(unreach) = &self.mp_unreach {
            value.clear();
            unreach.encode(&mut value)?;
            push_attribute(out, OPTIONAL, kind::MP_UNREACH_NLRI, &value)?;
        }
        if let Some(origin) = self.origin {
            push_attribute(out, TRANSITIVE, kind::ORIGIN, &[origin as u8])?;
        }
        if let Some(path) = &self.as_path {
            value.clear();
            path.encode(four, &mut value);
            push_attribute(out, TRANSITIVE, kind::AS_PATH, &value)?;
        }
        if let Some(next_hop) = self.next_hop {
            push_attribute(out, TRANSITIVE, kind::NEXT_HOP, &next_hop.octets())?;
        }
        if let Some(med) = self.multi_exit_disc {
            push_attribute(out, OPTIONAL, kind::MULTI_EXIT_DISC, &med.to_be_bytes())?;
        }
        if let Some(local_pref) = self.local_pref {
            push_attribute(out, TRANSITIVE, kind::LOCAL_PREF, &local_pref.to_be_bytes())?;
        }
        if self.atomic_aggregate {
            push_attribute(out, TRANSITIVE, kind::ATOMIC_AGGREGATE, &[])?;
        }
        if let Some(aggregator) = self.aggregator {
            value.clear();
            if four {
                value.extend_from_slice(&aggregator.asn.0.to_be_bytes());
            } else {
                let two = u16::try_from(aggregator.asn.0).unwrap_or(AsNumber::TRANS.0 as u16);
                value.extend_from_slice(&two.to_be_bytes());
            }
            value.extend_from_slice(&aggregator.address.octets());
            push_attribute(out, OPTIONAL | TRANSITIVE, kind::AGGREGATOR, &value)?;
        }
        if !self.communities.is_empty() {
            value.clear();
            for community in &self.communities {
                value.extend_from_slice(&community.0.to_be_bytes());
            }
            push_attribute(out, OPTIONAL | TRANSITIVE, kind::COMMUNITIES, &value)?;
        }
        if let Some(originator) = self.originator_id {
            push_attribute(out, OPTIONAL, kind::ORIGINATOR_ID, &originator.octets())?;
        }
        if !self.cluster_list.is_empty() {
            value.clear();
            for cluster in &self.cluster_list {
                value.extend_from_slice(&cluster.octets());
            }
            push_attribute(out, OPTIONAL, kind::CLUSTER_LIST, &value)?;
        }
        emit_unknown_below(u16::from(kind::MP_REACH_NLRI), out)?;
        emit_unknown_below(u16::from(kind::AS4_PATH), out)?;
        if !four {
            if let Some(path) = self
                .as_path
                .as_ref()
                .filter(|path| path.needs_four_octets())
            {
                value.clear();
                path.without_confederation_segments()
                    .encode(true, &mut value);
                push_attribute(out, OPTIONAL | TRANSITIVE, kind::AS4_PATH, &value)?;
            }
        }
        emit_unknown_below(u16::from(kind::AS4_AGGREGATOR), out)?;
        if !four {
            if let Some(aggregator) = self
                .aggregator
                .filter(|aggregator| !aggregator.asn.is_two_octet())
            {
                value.clear();
                value.extend_from_slice(&aggregator.asn.0.to_be_bytes());
                value.extend_from_slice(&aggregator.address.octets());
                push_attribute(out, OPTIONAL | TRANSITIVE, kind::AS4_AGGREGATOR, &value)?;
            }
        }
        emit_unknown_below(u16::from(kind::LARGE_COMMUNITIES), out)?;
        if !self.large_communities.is_empty() {
            value.clear();
            for community in &self.large_communities {
                value.extend_from_slice(&community.global_administrator.to_be_bytes());
                value.extend_from_slice(&community.local_data_1.to_be_bytes());
                value.extend_from_slice(&community.local_data_2.to_be_bytes());
            }
            push_attribute(out, OPTIONAL | TRANSITIVE, kind::LARGE_COMMUNITIES, &value)?;
        }
        emit_unknown_below(256, out)?;
        Ok(())
    }

    /// Every prefix these attributes announce through MP_REACH_NLRI.
    pub fn multiprotocol_announced(&self) -> &[IpNet] {
        self.mp_reach
            .as_ref()
            .map(|reach| reach.prefixes.as_slice())
            .unwrap_or(&[])
    }
}
