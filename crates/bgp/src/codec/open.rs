//! OPEN message (RFC 4271 §4.2) and the capabilities optional parameter (RFC 5492):
//! multiprotocol (RFC 4760 §8), route refresh (RFC 2918), graceful restart (RFC 4724 §3),
//! 4-octet AS (RFC 6793 §3). Unknown capabilities are kept as raw code/value pairs.
//!
//! The codec does not judge the OPEN's contents (version, AS, hold time, identifier): that is
//! the session's OPEN validation, which knows the configuration.

use std::net::Ipv4Addr;

use starling_model::AsNumber;

use super::error::{DecodeError, EncodeError};
use super::prefix::Family;
use super::reader::Reader;

/// Optional parameter type carrying capabilities (RFC 5492 §4).
const PARAMETER_CAPABILITIES: u8 = 2;

/// Capability codes (IANA "Capability Codes").
pub mod capability_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field; AS_TRANS when the real AS needs 4 octets.
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_identifier: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// A capability advertised in an OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    Multiprotocol(Family),
    RouteRefresh,
    GracefulRestart(GracefulRestart),
    FourOctetAs(AsNumber),
    Unknown { code: u8, value: Vec<u8> },
}

/// The graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    /// Restart State bit: the sender has restarted and is preserving forwarding state.
    pub restarting: bool,
    /// Notification bit of RFC 8538 (graceful restart also for NOTIFICATIONs).
    pub notification: bool,
    /// Restart Time in seconds (12 bits).
    pub restart_time: u16,
    pub families: Vec<GracefulRestartFamily>,
}

/// One address family in the graceful restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartFamily {
    pub family: Family,
    /// Forwarding State bit: forwarding state for this family was preserved across the restart.
    pub forwarding_preserved: bool,
}

impl Open {
    /// An OPEN for `asn`, writing AS_TRANS into the 2-octet field when `asn` needs 4 octets and
    /// always adding the 4-octet AS capability (RFC 6793 §3) when `capabilities` lacks it.
    pub fn new(
        asn: AsNumber,
        hold_time: u16,
        bgp_identifier: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Open {
        let my_as = u16::try_from(asn.0).unwrap_or(AsNumber::TRANS.0 as u16);
        if !capabilities
            .iter()
            .any(|capability| matches!(capability, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        Open {
            version: 4,
            my_as,
            hold_time,
            bgp_identifier,
            capabilities,
        }
    }

    /// The sender's AS: from the 4-octet AS capability if present, else the 2-octet field.
    pub fn asn(&self) -> AsNumber {
        self.four_octet_as()
            .unwrap_or(AsNumber(u32::from(self.my_as)))
    }

    /// The AS from the 4-octet AS capability, if the sender advertised it.
    pub fn four_octet_as(&self) -> Option<AsNumber> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::FourOctetAs(asn) => Some(*asn),
                _ => None,
            })
    }

    /// Families from multiprotocol capabilities. RFC 4760 §8: a speaker that sends none
    /// implicitly supports IPv4 unicast only.
    pub fn families(&self) -> Vec<Family> {
        let families: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|capability| match capability {
                Capability::Multiprotocol(family) => Some(*family),
                _ => None,
            })
            .collect();
        if families.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            families
        }
    }

    pub fn supports_route_refresh(&self) -> bool {
        self.capabilities
            .iter()
            .any(|capability| matches!(capability, Capability::RouteRefresh))
    }

    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities
            .iter()
            .find_map(|capability| match capability {
                Capability::GracefulRestart(restart) => Some(restart),
                _ => None,
            })
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, DecodeError> {
        let short = DecodeError::MalformedOpen {
            reason: "message shorter than its fixed fields",
        };
        let mut reader = Reader::new(body);
        let version = reader.u8().ok_or(short.clone())?;
        let my_as = reader.u16().ok_or(short.clone())?;
        let hold_time = reader.u16().ok_or(short.clone())?;
        let bgp_identifier = reader.ipv4().ok_or(short.clone())?;
        let parameters_length = reader.u8().ok_or(short)?;
        if usize::from(parameters_length) != reader.remaining() {
            return Err(DecodeError::MalformedOpen {
                reason: "optional parameters length disagrees with the message length",
            });
        }
        let mut capabilities = Vec::new();
        while !reader.is_empty() {
            let truncated = DecodeError::MalformedOpen {
                reason: "optional parameter runs past the end of the message",
            };
            let parameter_type = reader.u8().ok_or(truncated.clone())?;
            let length = reader.u8().ok_or(truncated.clone())?;
            let value = reader.take(usize::from(length)).ok_or(truncated)?;
            if parameter_type != PARAMETER_CAPABILITIES {
                return Err(DecodeError::UnsupportedOptionalParameter { parameter_type });
            }
            decode_capabilities(value, &mut capabilities)?;
        }
        Ok(Open {
            version,
            my_as,
            hold_time,
            bgp_identifier,
            capabilities,
        })
    }

    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.push(self.version);
        out.extend_from_slice(&self.my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.bgp_identifier.octets());
        // Capabilities go into as few parameters as fit in 255 bytes each.
        let mut parameters: Vec<Vec<u8>> = Vec::new();
        for capability in &self.capabilities {
            let encoded = encode_capability(capability)?;
            match parameters.last_mut() {
                Some(current) if current.len() + encoded.len() <= 255 => {
                    current.extend_from_slice(&encoded)
                }
                _ => parameters.push(encoded),
            }
        }
        let total: usize = parameters.iter().map(|value| value.len() + 2).sum();
        let total = u8::try_from(total).map_err(|_| EncodeError::MessageTooLong {
            length: total,
            maximum: 255,
        })?;
        out.push(total);
        for value in parameters {
            out.push(PARAMETER_CAPABILITIES);
            out.push(value.len() as u8);
            out.extend_from_slice(&value);
        }
        Ok(())
    }
}

fn decode_capabilities(bytes: &[u8], into: &mut Vec<Capability>) -> Result<(), DecodeError> {
    let malformed = |reason| DecodeError::MalformedOpen { reason };
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let code = reader
            .u8()
            .ok_or(malformed("capability runs past its parameter"))?;
        let length = reader
            .u8()
            .ok_or(malformed("capability runs past its parameter"))?;
        let value = reader
            .take(usize::from(length))
            .ok_or(malformed("capability runs past its parameter"))?;
        let capability = match code {
            capability_code::MULTIPROTOCOL => match value {
                [afi_high, afi_low, _reserved, safi] => Capability::Multiprotocol(Family {
                    afi: u16::from_be_bytes([*afi_high, *afi_low]),
                    safi: *safi,
                }),
                _ => return Err(malformed("multiprotocol capability is not 4 bytes")),
            },
            capability_code::ROUTE_REFRESH => {
                if !value.is_empty() {
                    return Err(malformed("route refresh capability has a value"));
                }
                Capability::RouteRefresh
            }
            capability_code::FOUR_OCTET_AS => match value {
                [a, b, c, d] => {
                    Capability::FourOctetAs(AsNumber(u32::from_be_bytes([*a, *b, *c, *d])))
                }
                _ => return Err(malformed("4-octet AS capability is not 4 bytes")),
            },
            capability_code::GRACEFUL_RESTART => Capability::GracefulRestart(
                decode_graceful_restart(value)
                    .ok_or(malformed("graceful restart capability is not 2 + 4n bytes"))?,
            ),
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        };
        into.push(capability);
    }
    Ok(())
}

fn decode_graceful_restart(value: &[u8]) -> Option<GracefulRestart> {
    let mut reader = Reader::new(value);
    let flags_and_time = reader.u16()?;
    if reader.remaining() % 4 != 0 {
        return None;
    }
    let mut families = Vec::new();
    while !reader.is_empty() {
        let afi = reader.u16()?;
        let safi = reader.u8()?;
        let flags = reader.u8()?;
        families.push(GracefulRestartFamily {
            family: Family { afi, safi },
            forwarding_preserved: flags & 0x80 != 0,
        });
    }
    Some(GracefulRestart {
        restarting: flags_and_time & 0x8000 != 0,
        notification: flags_and_time & 0x4000 != 0,
        restart_time: flags_and_time & 0x0fff,
        families,
    })
}

fn encode_capability(capability: &Capability) -> Result<Vec<u8>, EncodeError> {
    let (code, value) = match capability {
        Capability::Multiprotocol(family) => {
            let [high, low] = family.afi.to_be_bytes();
            (
                capability_code::MULTIPROTOCOL,
                vec![high, low, 0, family.safi],
            )
        }
        Capability::RouteRefresh => (capability_code::ROUTE_REFRESH, Vec::new()),
        Capability::FourOctetAs(asn) => {
            (capability_code::FOUR_OCTET_AS, asn.0.to_be_bytes().to_vec())
        }
        Capability::GracefulRestart(restart) => {
            let mut flags_and_time = restart.restart_time.min(0x0fff);
            if restart.restarting {
                flags_and_time |= 0x8000;
            }
            if restart.notification {
                flags_and_time |= 0x4000;
            }
            let mut value = flags_and_time.to_be_bytes().to_vec();
            for entry in &restart.families {
                value.extend_from_slice(&entry.family.afi.to_be_bytes());
                value.push(entry.family.safi);
                value.push(if entry.forwarding_preserved { 0x80 } else { 0 });
            }
            (capability_code::GRACEFUL_RESTART, value)
        }
        Capability::Unknown { code, value } => (*code, value.clone()),
    };
    if value.len() > 253 {
        return Err(EncodeError::CapabilityTooLong {
            code,
            length: value.len(),
        });
    }
    let mut encoded = Vec::with_capacity(value.len() + 2);
    encoded.push(code);
    encoded.push(value.len() as u8);
    encoded.extend_from_slice(&value);
    Ok(encoded)
}
