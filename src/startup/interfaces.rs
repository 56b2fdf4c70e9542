//! Host interfaces as autodetection sees them (reference §8.2): name, kernel index, up/down and
//! every address with its prefix, listed from the current network namespace with getifaddrs(3).
//!
//! Contract: [`list_host_interfaces`] is the only I/O here; everything else is pure. The default
//! exclusion list is calico-node's, so `first-found` skips the same interfaces Calico skips.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use nix::ifaddrs::getifaddrs;
use nix::net::if_::{if_nametoindex, InterfaceFlags};
use regex::Regex;

/// Interfaces `first-found` and `skip-interface=` never pick, and `spec.interfaces` leaves out.
pub const DEFAULT_INTERFACE_EXCLUDES: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^podman.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo",
    "^br-.*",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    r"^vxlan\.calico.*",
    r"^vxlan-v6\.calico.*",
    r"^wireguard\.cali.*",
    r"^wg-v6\.cali.*",
    "^nodelocaldns.*",
];

/// One host interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    /// Kernel interface index; Calico walks interfaces from the highest index down.
    pub index: u32,
    pub up: bool,
    /// Each address with the prefix of its subnet (e.g. `10.0.0.5/24`).
    pub addresses: Vec<IpNet>,
}

/// A list of interface-name regular expressions (any match counts).
#[derive(Debug, Clone)]
pub struct NamePatterns(Vec<Regex>);

impl NamePatterns {
    /// Compiles the patterns; the error names the pattern that does not compile.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<NamePatterns, String> {
        patterns
            .iter()
            .map(|pattern| {
                Regex::new(pattern.as_ref()).map_err(|error| {
                    format!(
                        "interface pattern {:?} is not a regular expression: {error}",
                        pattern.as_ref()
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(NamePatterns)
    }

    /// No patterns: matches nothing.
    pub fn none() -> NamePatterns {
        NamePatterns(Vec::new())
    }

    /// calico-node's default exclusions.
    pub fn default_excludes() -> NamePatterns {
        // The built-in patterns are constants and compile; a failure would be a bug here.
        NamePatterns::new(DEFAULT_INTERFACE_EXCLUDES).unwrap_or(NamePatterns(Vec::new()))
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|pattern| pattern.is_match(name))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Number of leading one bits of a netmask.
fn prefix_of(mask: IpAddr) -> u8 {
    let ones = match mask {
        IpAddr::V4(mask) => u32::from(mask).leading_ones(),
        IpAddr::V6(mask) => u128::from(mask).leading_ones(),
    };
    // At most 128, so the conversion cannot fail.
    u8::try_from(ones).unwrap_or(u8::MAX)
}

fn ip_of(address: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Every interface of the current network namespace with its addresses, ordered by index.
pub fn list_host_interfaces() -> Result<Vec<HostInterface>, String> {
    let entries = getifaddrs().map_err(|error| format!("cannot list host interfaces: {error}"))?;
    let mut interfaces: BTreeMap<String, HostInterface> = BTreeMap::new();
    for entry in entries {
        let interface = interfaces
            .entry(entry.interface_name.clone())
            .or_insert_with(|| HostInterface {
                name: entry.interface_name.clone(),
                index: if_nametoindex(entry.interface_name.as_str()).unwrap_or(0),
                up: false,
                addresses: Vec::new(),
            });
        interface.up |= entry.flags.contains(InterfaceFlags::IFF_UP);
        let (Some(address), Some(mask)) = (
            entry.address.as_ref().and_then(ip_of),
            entry.netmask.as_ref().and_then(ip_of),
        ) else {
            continue;
        };
        if let Ok(net) = IpNet::new(address, prefix_of(mask)) {
            if !interface.addresses.contains(&net) {
                interface.addresses.push(net);
            }
        }
    }
    let mut list: Vec<HostInterface> = interfaces.into_values().collect();
    list.sort_by_key(|interface| interface.index);
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_excludes_match_calico_interfaces_only() {
        let excludes = NamePatterns::default_excludes();
        for name in [
            "lo",
            "docker0",
            "cali1234",
            "vxlan.calico",
            "tunl0",
            "veth9",
            "br-abc",
        ] {
            assert!(excludes.matches(name), "{name} should be excluded");
        }
        for name in ["eth0", "ens3", "bond0", "vxlan0"] {
            assert!(!excludes.matches(name), "{name} should not be excluded");
        }
    }

    #[test]
    fn bad_pattern_is_named() {
        let error = NamePatterns::new(&["eth(".to_string()]).unwrap_err();
        assert!(error.contains("eth("), "{error}");
    }

    #[test]
    fn netmask_prefix() {
        assert_eq!(prefix_of("255.255.255.0".parse().unwrap()), 24);
        assert_eq!(prefix_of("ffff:ffff:ffff:ffff::".parse().unwrap()), 64);
        assert_eq!(prefix_of("0.0.0.0".parse().unwrap()), 0);
    }

    #[test]
    fn loopback_is_listed() {
        let interfaces = list_host_interfaces().unwrap();
        let loopback = interfaces.iter().find(|i| i.name == "lo").unwrap();
        assert!(loopback.addresses.contains(&"127.0.0.1/8".parse().unwrap()));
    }
}
