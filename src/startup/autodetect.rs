//! IP autodetection and the node's address settings (reference §8.2), as pure functions over the
//! host interfaces.
//!
//! Contract: given the interfaces, the method and (for `can-reach=`) a function that answers "which
//! local address would the kernel use towards this destination", [`detect`] returns the address
//! with its interface prefix or says why none fits. Like calico-node, interfaces are walked from
//! the highest kernel index down and only global unicast addresses count. Unlike calico-node,
//! interfaces that are down are skipped: an address on a down link cannot carry node traffic.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use super::interfaces::{HostInterface, NamePatterns};
use starling_ipam::pools::IpFamily;
use starling_model::config::{AddressSetting, AutodetectionMethod};

/// Why no address could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IPv{} autodetection ({method}): {reason}", family.version())]
pub struct AutodetectError {
    pub family: IpFamily,
    pub method: String,
    pub reason: String,
}

/// An autodetected address and the interface holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub interface: String,
    pub address: IpNet,
}

/// Go's `IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or broadcast.
pub fn is_global_unicast(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_multicast()
                || v4.is_link_local()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = (v6.segments()[0] & 0xffc0) == 0xfe80;
            !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || link_local)
        }
    }
}

fn describe(method: &AutodetectionMethod) -> String {
    match method {
        AutodetectionMethod::FirstFound => "first-found".to_string(),
        AutodetectionMethod::Interface(patterns) => format!("interface={}", patterns.join(",")),
        AutodetectionMethod::SkipInterface(patterns) => {
            format!("skip-interface={}", patterns.join(","))
        }
        AutodetectionMethod::Cidr(cidrs) => format!(
            "cidr={}",
            cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        AutodetectionMethod::CanReach(destination) => format!("can-reach={destination}"),
        AutodetectionMethod::KubernetesInternalIp => "kubernetes-internal-ip".to_string(),
    }
}

/// The first global unicast address of the family on an up interface passing the filters,
/// walking interfaces from the highest index down (calico-node's order).
fn first_address(
    interfaces: &[HostInterface],
    family: IpFamily,
    include: Option<&NamePatterns>,
    exclude: &NamePatterns,
    cidrs: &[IpNet],
) -> Option<Detected> {
    let mut ordered: Vec<&HostInterface> = interfaces.iter().collect();
    ordered.sort_by_key(|interface| std::cmp::Reverse(interface.index));
    ordered
        .into_iter()
        .filter(|interface| interface.up)
        .filter(|interface| include.is_none_or(|patterns| patterns.matches(&interface.name)))
        .filter(|interface| !exclude.matches(&interface.name))
        .find_map(|interface| {
            interface
                .addresses
                .iter()
                .filter(|net| IpFamily::of_net(net) == family)
                .filter(|net| is_global_unicast(net.addr()))
                .find(|net| cidrs.is_empty() || cidrs.iter().any(|cidr| cidr.contains(&net.addr())))
                .map(|net| Detected {
                    interface: interface.name.clone(),
                    address: *net,
                })
        })
}

/// The address with the prefix of the interface that holds it (any interface, any state), or
/// `None` when no interface has it.
pub fn local_cidr(interfaces: &[HostInterface], address: IpAddr) -> Option<(String, IpNet)> {
    interfaces.iter().find_map(|interface| {
        interface
            .addresses
            .iter()
            .find(|net| net.addr() == address)
            .map(|net| (interface.name.clone(), *net))
    })
}

/// A host address as a single-address network (no interface told us the prefix).
pub fn host_net(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

/// Runs one autodetection method.
///
/// `internal_ips` are the Kubernetes Node's InternalIPs (for `kubernetes-internal-ip`);
/// `reach` answers `can-reach=` with the local source address towards the destination.
pub fn detect(
    method: &AutodetectionMethod,
    family: IpFamily,
    interfaces: &[HostInterface],
    internal_ips: &[IpAddr],
    reach: &dyn Fn(&str, IpFamily) -> Result<IpAddr, String>,
) -> Result<Detected, AutodetectError> {
    let error = |reason: String| AutodetectError {
        family,
        method: describe(method),
        reason,
    };
    let none_found = || error("no matching global unicast address on an up interface".into());
    match method {
        AutodetectionMethod::FirstFound => first_address(
            interfaces,
            family,
            None,
            &NamePatterns::default_excludes(),
            &[],
        )
        .ok_or_else(none_found),
        AutodetectionMethod::Interface(patterns) => {
            let include = NamePatterns::new(patterns).map_err(error)?;
            first_address(
                interfaces,
                family,
                Some(&include),
                &NamePatterns::none(),
                &[],
            )
            .ok_or_else(none_found)
        }
        AutodetectionMethod::SkipInterface(patterns) => {
            let mut all: Vec<String> = super::interfaces::DEFAULT_INTERFACE_EXCLUDES
                .iter()
                .map(|pattern| pattern.to_string())
                .collect();
            all.extend(patterns.iter().cloned());
            let exclude = NamePatterns::new(&all).map_err(error)?;
            first_address(interfaces, family, None, &exclude, &[]).ok_or_else(none_found)
        }
        AutodetectionMethod::Cidr(cidrs) => {
            first_address(interfaces, family, None, &NamePatterns::none(), cidrs)
                .ok_or_else(none_found)
        }
        AutodetectionMethod::CanReach(destination) => {
            let source = reach(destination, family).map_err(error)?;
            if IpFamily::of_address(&source) != family {
                return Err(error(format!(
                    "the route towards {destination} uses {source}, not an IPv{} address",
                    family.version()
                )));
            }
            local_cidr(interfaces, source)
                .map(|(interface, address)| Detected { interface, address })
                .ok_or_else(|| {
                    error(format!(
                        "source address {source} towards {destination} is on no host interface"
                    ))
                })
        }
        AutodetectionMethod::KubernetesInternalIp => {
            let address = internal_ips
                .iter()
                .copied()
                .find(|address| IpFamily::of_address(address) == family)
                .ok_or_else(|| {
                    error(format!(
                        "the Kubernetes Node has no IPv{} InternalIP",
                        family.version()
                    ))
                })?;
            Ok(match local_cidr(interfaces, address) {
                Some((interface, address)) => Detected { interface, address },
                // calico-node keeps the bare address when no interface holds it.
                None => Detected {
                    interface: String::new(),
                    address: host_net(address),
                },
            })
        }
    }
}

/// What to do with one family's address, given the setting and the node's current address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPlan {
    /// Run the autodetection method (keep `existing` if it fails and there is one).
    Autodetect,
    /// Keep whatever the node has (possibly nothing).
    Keep,
    /// Use this address (the prefix looked up when it was given bare).
    Fixed(IpNet),
}

/// calico-node's decision table: IPv4 autodetects when `IP=autodetect` or when `IP` is unset and
/// the node has no IPv4 address; IPv6 only when `IP6=autodetect`. `none` keeps what is there.
pub fn plan_address(
    setting: &AddressSetting,
    family: IpFamily,
    existing: Option<IpNet>,
    interfaces: &[HostInterface],
) -> AddressPlan {
    match setting {
        AddressSetting::Autodetect => AddressPlan::Autodetect,
        AddressSetting::Unset if family == IpFamily::V4 && existing.is_none() => {
            AddressPlan::Autodetect
        }
        AddressSetting::Unset | AddressSetting::None => AddressPlan::Keep,
        AddressSetting::Fixed {
            address,
            prefix: Some(prefix),
        } => IpNet::new(*address, *prefix)
            .map(AddressPlan::Fixed)
            .unwrap_or(AddressPlan::Fixed(host_net(*address))),
        AddressSetting::Fixed {
            address,
            prefix: None,
        } => match local_cidr(interfaces, *address) {
            Some((_, net)) => AddressPlan::Fixed(net),
            None => {
                tracing::warn!(%address, "no host interface holds the configured address; using it as a host address");
                AddressPlan::Fixed(host_net(*address))
            }
        },
    }
}

/// `spec.interfaces`: every interface outside the default exclusions, sorted by name, with its
/// addresses of the given families.
pub fn node_interfaces(
    interfaces: &[HostInterface],
    families: &[IpFamily],
) -> Vec<(String, Vec<IpAddr>)> {
    let excludes = NamePatterns::default_excludes();
    let mut list: Vec<(String, Vec<IpAddr>)> = interfaces
        .iter()
        .filter(|interface| !excludes.matches(&interface.name))
        .map(|interface| {
            let addresses = interface
                .addresses
                .iter()
                .filter(|net| families.contains(&IpFamily::of_net(net)))
                .map(IpNet::addr)
                .collect();
            (interface.name.clone(), addresses)
        })
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// The automatic IPv4 default pool: 192.168.0.0/16 unless a host interface's subnet overlaps it,
/// then the first of 172.16.0.0/16 … 172.31.0.0/16 that overlaps none (reference §8.3).
pub fn default_ipv4_pool_cidr(interfaces: &[HostInterface]) -> Option<Ipv4Net> {
    let host_nets: Vec<Ipv4Net> = interfaces
        .iter()
        .flat_map(|interface| interface.addresses.iter())
        .filter_map(|net| match net {
            IpNet::V4(v4) => Some(v4.trunc()),
            IpNet::V6(_) => None,
        })
        .collect();
    let overlaps = |candidate: &Ipv4Net| {
        host_nets
            .iter()
            .any(|host| host.contains(candidate) || candidate.contains(host))
    };
    let preferred = Ipv4Net::new(std::net::Ipv4Addr::new(192, 168, 0, 0), 16).ok()?;
    std::iter::once(preferred)
        .chain(
            (16..=31).filter_map(|second| {
                Ipv4Net::new(std::net::Ipv4Addr::new(172, second, 0, 0), 16).ok()
            }),
        )
        .find(|candidate| !overlaps(candidate))
}
