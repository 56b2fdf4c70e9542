//! UPDATE message (RFC 4271 §4.3): decoding with RFC 7606 error actions, encoding, End-of-RIB
//! markers (RFC 4724 §2) and packing many prefixes that share attributes into as few UPDATEs as
//! fit in the maximum message size.

use ipnet::{IpNet, Ipv4Net};

use super::attributes::{decode_attributes, PathAttributes};
use super::error::{AttributeProblem, DecodeError, EncodeError, UpdateError, UpdateErrorAction};
use super::mp::{check_family, MpReach, MpUnreach, NextHop};
use super::prefix::{decode_ipv4_prefixes, encode_prefix, encoded_prefix_length, Family};
use super::reader::Reader;
use super::{write_header, CodecOptions, HEADER_LENGTH, MAX_MESSAGE_LENGTH, MESSAGE_TYPE_UPDATE};

/// An UPDATE message. `problems` lists the malformed attributes RFC 7606 lets the session
/// survive; [`Update::error_action`] says what to do with the routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn_routes: Vec<Ipv4Net>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
    pub problems: Vec<AttributeProblem>,
}

impl Update {
    /// The End-of-RIB marker for `family`: an empty UPDATE for IPv4 unicast, an UPDATE with only
    /// an empty MP_UNREACH_NLRI otherwise.
    pub fn end_of_rib(family: Family) -> Update {
        let mut update = Update::default();
        if family != Family::IPV4_UNICAST {
            update.attributes.mp_unreach = Some(MpUnreach {
                family,
                prefixes: Vec::new(),
            });
        }
        update
    }

    /// The family this UPDATE marks as End-of-RIB, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn_routes.is_empty() || !self.nlri.is_empty() || !self.problems.is_empty() {
            return None;
        }
        let only_unreach = PathAttributes {
            mp_unreach: self.attributes.mp_unreach.clone(),
            ..PathAttributes::default()
        };
        if self.attributes != only_unreach {
            return None;
        }
        match &self.attributes.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(unreach) if unreach.prefixes.is_empty() => Some(unreach.family),
            Some(_) => None,
        }
    }

    /// The most severe RFC 7606 action among the problems, if any.
    pub fn error_action(&self) -> Option<UpdateErrorAction> {
        self.problems.iter().map(|problem| problem.action).max()
    }

    /// Prefixes this UPDATE makes reachable (none when it must be treated as withdraw).
    pub fn announced(&self) -> Vec<IpNet> {
        if self.error_action() == Some(UpdateErrorAction::TreatAsWithdraw) {
            return Vec::new();
        }
        self.announced_ignoring_errors()
    }

    /// Prefixes this UPDATE makes unreachable, including the announced ones under
    /// treat-as-withdraw.
    pub fn withdrawn(&self) -> Vec<IpNet> {
        let mut withdrawn: Vec<IpNet> = self
            .withdrawn_routes
            .iter()
            .map(|net| IpNet::V4(*net))
            .collect();
        if let Some(unreach) = &self.attributes.mp_unreach {
            withdrawn.extend_from_slice(&unreach.prefixes);
        }
        if self.error_action() == Some(UpdateErrorAction::TreatAsWithdraw) {
            withdrawn.extend(self.announced_ignoring_errors());
        }
        withdrawn
    }

    fn announced_ignoring_errors(&self) -> Vec<IpNet> {
        let mut announced: Vec<IpNet> = self.nlri.iter().map(|net| IpNet::V4(*net)).collect();
        announced.extend_from_slice(self.attributes.multiprotocol_announced());
        announced
    }

    pub(crate) fn decode(body: &[u8], options: &CodecOptions) -> Result<Update, DecodeError> {
        let list_error = |reason| DecodeError::from(UpdateError::MalformedAttributeList { reason });
        let mut reader = Reader::new(body);
        let withdrawn_length = reader
            .u16()
            .ok_or(list_error("withdrawn routes length missing"))?;
        let withdrawn_bytes = reader
            .take(usize::from(withdrawn_length))
            .ok_or(list_error("withdrawn routes length exceeds the message"))?;
        let attributes_length = reader
            .u16()
            .ok_or(list_error("total path attribute length missing"))?;
        let attribute_bytes = reader
            .take(usize::from(attributes_length))
            .ok_or(list_error(
                "total path attribute length exceeds the message",
            ))?;
        let withdrawn_routes =
            decode_ipv4_prefixes(withdrawn_bytes).map_err(|_| UpdateError::InvalidNetworkField)?;
        let nlri =
            decode_ipv4_prefixes(reader.rest()).map_err(|_| UpdateError::InvalidNetworkField)?;
        let decoded = decode_attributes(attribute_bytes, options, !nlri.is_empty())?;
        Ok(Update {
            withdrawn_routes,
            attributes: decoded.attributes,
            nlri,
            problems: decoded.problems,
        })
    }

    pub(crate) fn encode_body(
        &self,
        options: &CodecOptions,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let withdrawn_start = out.len();
        out.extend_from_slice(&[0, 0]);
        for prefix in &self.withdrawn_routes {
            encode_prefix(&IpNet::V4(*prefix), out);
        }
        let withdrawn_length = out.len() - withdrawn_start - 2;
        write_u16_at(out, withdrawn_start, withdrawn_length)?;
        let attributes_start = out.len();
        out.extend_from_slice(&[0, 0]);
        self.attributes.encode(options, out)?;
        let attributes_length = out.len() - attributes_start - 2;
        write_u16_at(out, attributes_start, attributes_length)?;
        for prefix in &self.nlri {
            encode_prefix(&IpNet::V4(*prefix), out);
        }
        Ok(())
    }
}

fn write_u16_at(out: &mut [u8], at: usize, value: usize) -> Result<(), EncodeError> {
    let value = u16::try_from(value).map_err(|_| EncodeError::MessageTooLong {
        length: value,
        maximum: MAX_MESSAGE_LENGTH,
    })?;
    out[at..at + 2].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

fn finish_message(mut message: Vec<u8>) -> Vec<u8> {
    let length = message.len() as u16;
    message[16..18].copy_from_slice(&length.to_be_bytes());
    message
}

fn start_message() -> Vec<u8> {
    let mut message = Vec::with_capacity(MAX_MESSAGE_LENGTH);
    write_header(&mut message, MESSAGE_TYPE_UPDATE);
    message
}

/// Encodes UPDATEs announcing `prefixes` (all of `family`) with `attributes` and `next_hop`,
/// filling each message up to the 4096-byte limit. `attributes.next_hop`, `mp_reach` and
/// `mp_unreach` are replaced by what the family needs. MP_REACH_NLRI goes first (RFC 7606 §5.1).
pub fn pack_announcements(
    family: Family,
    next_hop: NextHop,
    attributes: &PathAttributes,
    prefixes: &[IpNet],
    options: &CodecOptions,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    for prefix in prefixes {
        check_family(prefix, family)?;
    }
    let mut base = attributes.clone();
    base.mp_reach = None;
    base.mp_unreach = None;
    base.next_hop = None;
    if family == Family::IPV4_UNICAST {
        let NextHop::V4(address) = next_hop else {
            return Err(EncodeError::NextHopFamilyMismatch { family });
        };
        base.next_hop = Some(address);
    }
    let mut attribute_bytes = Vec::new();
    base.encode(options, &mut attribute_bytes)?;

    let mut mp_header = Vec::new();
    if family != Family::IPV4_UNICAST {
        MpReach {
            family,
            next_hop,
            prefixes: Vec::new(),
        }
        .encode_header(&mut mp_header)?;
    }
    // Attribute header of MP_REACH_NLRI, always with extended length so its size is fixed.
    let mp_overhead = if mp_header.is_empty() {
        0
    } else {
        4 + mp_header.len()
    };
    let fixed = HEADER_LENGTH + 4 + attribute_bytes.len() + mp_overhead;
    if fixed >= MAX_MESSAGE_LENGTH {
        return Err(EncodeError::MessageTooLong {
            length: fixed,
            maximum: MAX_MESSAGE_LENGTH,
        });
    }
    let mut messages = Vec::new();
    let mut remaining = prefixes;
    while !remaining.is_empty() {
        let mut room = MAX_MESSAGE_LENGTH - fixed;
        let mut count = 0;
        for prefix in remaining {
            let size = encoded_prefix_length(prefix);
            if size > room {
                break;
            }
            room -= size;
            count += 1;
        }
        let (batch, rest) = remaining.split_at(count);
        remaining = rest;
        let mut message = start_message();
        message.extend_from_slice(&[0, 0]);
        let nlri_bytes: usize = batch.iter().map(encoded_prefix_length).sum();
        let total_attributes = attribute_bytes.len()
            + if mp_header.is_empty() {
                0
            } else {
                mp_overhead + nlri_bytes
            };
        message.extend_from_slice(&(total_attributes as u16).to_be_bytes());
        if !mp_header.is_empty() {
            message.push(0x80 | 0x10);
            message.push(super::attributes::attribute_type::MP_REACH_NLRI);
            message.extend_from_slice(&((mp_header.len() + nlri_bytes) as u16).to_be_bytes());
            message.extend_from_slice(&mp_header);
            for prefix in batch {
                encode_prefix(prefix, &mut message);
            }
            message.extend_from_slice(&attribute_bytes);
        } else {
            message.extend_from_slice(&attribute_bytes);
            for prefix in batch {
                encode_prefix(prefix, &mut message);
            }
        }
        messages.push(finish_message(message));
    }
    Ok(messages)
}

/// Encodes UPDATEs withdrawing `prefixes` (all of `family`): the Withdrawn Routes field for
/// IPv4 unicast, MP_UNREACH_NLRI otherwise.
pub fn pack_withdrawals(family: Family, prefixes: &[IpNet]) -> Result<Vec<Vec<u8>>, EncodeError> {
    for prefix in prefixes {
        check_family(prefix, family)?;
    }
    let ipv4 = family == Family::IPV4_UNICAST;
    // Header, two length fields, and for MP the attribute header (4) plus AFI/SAFI (3).
    let fixed = HEADER_LENGTH + 4 + if ipv4 { 0 } else { 7 };
    let mut messages = Vec::new();
    let mut remaining = prefixes;
    while !remaining.is_empty() {
        let mut room = MAX_MESSAGE_LENGTH - fixed;
        let mut count = 0;
        for prefix in remaining {
            let size = encoded_prefix_length(prefix);
            if size > room {
                break;
            }
            room -= size;
            count += 1;
        }
        let (batch, rest) = remaining.split_at(count);
        remaining = rest;
        let prefix_bytes: usize = batch.iter().map(encoded_prefix_length).sum();
        let mut message = start_message();
        if ipv4 {
            message.extend_from_slice(&(prefix_bytes as u16).to_be_bytes());
            for prefix in batch {
                encode_prefix(prefix, &mut message);
            }
            message.extend_from_slice(&[0, 0]);
        } else {
            message.extend_from_slice(&[0, 0]);
            message.extend_from_slice(&((prefix_bytes + 7) as u16).to_be_bytes());
            message.push(0x80 | 0x10);
            message.push(super::attributes::attribute_type::MP_UNREACH_NLRI);
            message.extend_from_slice(&((prefix_bytes + 3) as u16).to_be_bytes());
            message.extend_from_slice(&family.afi.to_be_bytes());
            message.push(family.safi);
            for prefix in batch {
                encode_prefix(prefix, &mut message);
            }
        }
        messages.push(finish_message(message));
    }
    Ok(messages)
}
