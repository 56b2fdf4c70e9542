//! IPReservation rules (reference §1.6): each entry a masked CIDR or a single address.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{Subject, ValidationError};
use crate::wire::IPReservationSpec;
use crate::IpReservation;

/// A single address means /32 (IPv4) or /128 (IPv6); a CIDR must have no host bits set.
pub fn validate_ip_reservation(
    name: &str,
    spec: &IPReservationSpec,
) -> Result<IpReservation, ValidationError> {
    let subject = Subject {
        kind: "IPReservation",
        name,
    };
    let mut cidrs = Vec::new();
    for (index, text) in spec.reserved_cidrs.iter().flatten().enumerate() {
        let field = format!("spec.reservedCIDRs[{index}]");
        let cidr = match text.trim().parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => subject.masked_cidr(&field, text)?,
        };
        cidrs.push(cidr);
    }
    Ok(IpReservation {
        name: name.to_string(),
        cidrs,
    })
}
