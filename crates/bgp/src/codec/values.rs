//! Small value types carried in path attributes: ORIGIN, AGGREGATOR, communities (RFC 1997),
//! large communities (RFC 8092) and attributes kept raw.

use std::net::Ipv4Addr;

use starling_model::AsNumber;

/// ORIGIN values (RFC 4271 §5.1.1), ordered as the decision process prefers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AGGREGATOR (RFC 4271 §5.1.7), AS held in 4 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Aggregator {
    pub asn: AsNumber,
    pub address: Ipv4Addr,
}

/// A standard community (RFC 1997): high 16 bits an AS, low 16 bits a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Community(pub u32);

impl Community {
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xffff_ff03);

    pub fn new(asn: u16, value: u16) -> Community {
        Community((u32::from(asn) << 16) | u32::from(value))
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// A large community (RFC 8092).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LargeCommunity {
    pub global_administrator: u32,
    pub local_data_1: u32,
    pub local_data_2: u32,
}

impl std::fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.global_administrator, self.local_data_1, self.local_data_2
        )
    }
}

/// An attribute Starling does not interpret, passed on as received (optional transitive ones
/// get the Partial bit, RFC 4271 §5).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}
