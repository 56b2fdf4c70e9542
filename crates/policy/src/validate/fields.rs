//! Checks of single wire values: selectors, CIDRs, protocols, ports, ICMP fields. Each returns
//! the checked value or a message that quotes the offending value (the caller adds the path).

use ipnet::IpNet;
use starling_selector::Selector;

use super::Port;
use crate::model::NumOrString;
use crate::program::{Icmp, PortRange};

pub const PROTOCOL_ICMP: u8 = 1;
pub const PROTOCOL_TCP: u8 = 6;
pub const PROTOCOL_UDP: u8 = 17;
pub const PROTOCOL_ICMPV6: u8 = 58;
pub const PROTOCOL_SCTP: u8 = 132;
pub const PROTOCOL_UDPLITE: u8 = 136;

/// Protocols whose packets carry ports (Calico's `SupportsPorts`).
pub fn has_ports(protocol: u8) -> bool {
    matches!(
        protocol,
        PROTOCOL_TCP | PROTOCOL_UDP | PROTOCOL_SCTP | PROTOCOL_UDPLITE
    )
}

/// The protocol number of a name (any case) as Calico spells them.
pub fn protocol_number(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "tcp" => PROTOCOL_TCP,
        "udp" => PROTOCOL_UDP,
        "icmp" => PROTOCOL_ICMP,
        "icmpv6" => PROTOCOL_ICMPV6,
        "sctp" => PROTOCOL_SCTP,
        "udplite" => PROTOCOL_UDPLITE,
        _ => return None,
    })
}

/// Calico's name of a protocol number, for messages and explain output.
pub fn protocol_name(protocol: u8) -> String {
    match protocol {
        PROTOCOL_TCP => "TCP".to_string(),
        PROTOCOL_UDP => "UDP".to_string(),
        PROTOCOL_ICMP => "ICMP".to_string(),
        PROTOCOL_ICMPV6 => "ICMPv6".to_string(),
        PROTOCOL_SCTP => "SCTP".to_string(),
        PROTOCOL_UDPLITE => "UDPLite".to_string(),
        other => other.to_string(),
    }
}

pub fn selector(text: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|error| format!("{text:?} is not a selector: {error}"))
}

/// A CIDR, or a single address meaning its host network (Calico's `ParseCIDROrIP`); host bits
/// are cleared as Calico normalises them.
pub fn net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(address) = text.parse::<std::net::IpAddr>() {
        return Ok(IpNet::from(address));
    }
    Err(format!("{text:?} is not a CIDR"))
}

pub fn protocol(value: &NumOrString) -> Result<u8, String> {
    match value {
        NumOrString::Number(number) => match u8::try_from(*number) {
            Ok(protocol) if protocol >= 1 => Ok(protocol),
            _ => Err(format!("{number} is not a protocol number (1-255)")),
        },
        NumOrString::Text(text) => {
            if let Ok(number) = text.parse::<i64>() {
                return protocol(&NumOrString::Number(number));
            }
            protocol_number(text).ok_or_else(|| {
                format!(
                    "{text:?} is not a protocol (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1-255)"
                )
            })
        }
    }
}

fn port_number(number: i64, original: &str) -> Result<u16, String> {
    u16::try_from(number).map_err(|_| format!("{original} is out of range (0-65535)"))
}

/// A port: a number, `"min:max"` or a named port (IANA service name).
pub fn port(value: &NumOrString) -> Result<Port, String> {
    match value {
        NumOrString::Number(number) => {
            let port = port_number(*number, &number.to_string())?;
            Ok(Port::Range(PortRange {
                first: port,
                last: port,
            }))
        }
        NumOrString::Text(text) => {
            let number = |part: &str| -> Result<u16, String> {
                let parsed = part
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{text:?} is not a port, a range or a port name"))?;
                port_number(parsed, &format!("{text:?}"))
            };
            if let Some((first, last)) = text.split_once(':') {
                let (first, last) = (number(first)?, number(last)?);
                if first > last {
                    return Err(format!("{text:?} is not a range (min > max)"));
                }
                return Ok(Port::Range(PortRange { first, last }));
            }
            if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
                let port = number(text)?;
                return Ok(Port::Range(PortRange {
                    first: port,
                    last: port,
                }));
            }
            if is_port_name(text) {
                Ok(Port::Named(text.clone()))
            } else {
                Err(format!("{text:?} is not a port, a range or a port name"))
            }
        }
    }
}

/// IANA service name (Kubernetes' `IsValidPortName`): 1-15 of `[a-z0-9-]`, at least one letter,
/// no leading, trailing or double `-`.
pub fn is_port_name(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        && text.bytes().any(|byte| byte.is_ascii_lowercase())
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--")
}

/// ICMP type 0-254 and code 0-255; a code needs a type.
pub fn icmp(icmp_type: Option<i64>, code: Option<i64>) -> Result<Option<Icmp>, String> {
    let icmp_type = match (icmp_type, code) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err("code needs a type".to_string()),
        (Some(icmp_type), _) => icmp_type,
    };
    let icmp_type = u8::try_from(icmp_type)
        .ok()
        .filter(|value| *value <= 254)
        .ok_or_else(|| format!("type {icmp_type} is out of range (0-254)"))?;
    let code = match code {
        None => None,
        Some(code) => {
            Some(u8::try_from(code).map_err(|_| format!("code {code} is out of range (0-255)"))?)
        }
    };
    Ok(Some(Icmp { icmp_type, code }))
}
