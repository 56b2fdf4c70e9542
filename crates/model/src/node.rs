//! The Calico view of a node, whether it came from Kubernetes Node annotations (§2.1) or from
//! the etcd-mode Calico Node resource (§1.9).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::AsNumber;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex octets separated by ':')")]
pub struct MacAddrError(pub String);

impl FromStr for MacAddr {
    type Err = MacAddrError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in bytes.iter_mut() {
            let part = parts.next().ok_or_else(|| MacAddrError(text.to_string()))?;
            if part.len() != 2 {
                return Err(MacAddrError(text.to_string()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacAddrError(text.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacAddrError(text.to_string()));
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// One Calico node: name, labels, BGP addresses (with the host interface prefix), tunnel addresses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CalicoNode {
    pub name: String,
    /// Kubernetes labels merged with Calico labels (Kubernetes wins).
    pub labels: BTreeMap<String, String>,
    /// `spec.bgp.ipv4Address`, e.g. 10.0.0.5/24.
    pub ipv4_address: Option<Ipv4Net>,
    pub ipv6_address: Option<Ipv6Net>,
    pub as_number: Option<AsNumber>,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    pub ipv4_vxlan_tunnel_addr: Option<Ipv4Addr>,
    pub vxlan_tunnel_mac: Option<MacAddr>,
    pub ipv6_vxlan_tunnel_addr: Option<Ipv6Addr>,
    pub vxlan_tunnel_mac_v6: Option<MacAddr>,
    /// Kubernetes `status.addresses` of type InternalIP, for `kubernetes-internal-ip` autodetection.
    pub internal_ips: Vec<std::net::IpAddr>,
}

impl CalicoNode {
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4_address.map(|n| n.addr())
    }

    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ipv6_address.map(|n| n.addr())
    }

    pub fn is_route_reflector(&self) -> bool {
        self.route_reflector_cluster_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_round_trip_and_errors() {
        let mac: MacAddr = "66:0a:1B:2c:3d:4e".parse().unwrap();
        assert_eq!(mac.to_string(), "66:0a:1b:2c:3d:4e");
        assert!("66:0a:1b:2c:3d".parse::<MacAddr>().is_err());
        assert!("66:0a:1b:2c:3d:4e:5f".parse::<MacAddr>().is_err());
        assert!("zz:0a:1b:2c:3d:4e".parse::<MacAddr>().is_err());
    }
}
