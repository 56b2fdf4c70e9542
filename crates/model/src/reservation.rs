//! IP reservations (reference §1.6): addresses automatic assignment must skip.

use std::net::IpAddr;

use ipnet::IpNet;

/// A validated IPReservation: masked CIDRs (single addresses as /32 or /128).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpReservation {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

impl IpReservation {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|cidr| cidr.contains(&ip))
    }

    /// True when every address of `block` is reserved (IPAM then skips the whole block).
    pub fn covers(&self, block: &IpNet) -> bool {
        self.cidrs.iter().any(|cidr| cidr.contains(block))
    }
}
