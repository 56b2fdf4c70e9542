//! The node's addresses, interfaces and AS as start-up registers them (reference §8.1 steps 6-9,
//! §8.2), and the address conflict check.
//!
//! Contract: pure. [`plan_registration`] turns the configuration, the host interfaces and the
//! node as stored into the fields to write; [`find_conflict`] names the other node already using
//! one of the new addresses. The caller writes the fields with compare-and-swap.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::autodetect::{detect, node_interfaces, plan_address, AddressPlan};
use super::interfaces::HostInterface;
use super::StartupError;
use crate::resources::node::NodeInterface;
use starling_ipam::pools::IpFamily;
use starling_model::config::{AddressSetting, AutodetectionMethod, Config, NetworkingBackend};
use starling_model::{AsNumber, CalicoNode};

/// What start-up writes into the node registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub ipv4_address: Option<Ipv4Net>,
    pub ipv6_address: Option<Ipv6Net>,
    /// `AS` from the environment; `None` keeps the node's own.
    pub as_number: Option<AsNumber>,
    /// `spec.interfaces`; `None` leaves them as stored.
    pub interfaces: Option<Vec<NodeInterface>>,
}

impl Registration {
    /// Writes the registration into `node`; returns the interfaces to store.
    pub fn apply(&self, node: &mut CalicoNode) -> Option<Vec<NodeInterface>> {
        node.ipv4_address = self.ipv4_address;
        node.ipv6_address = self.ipv6_address;
        if let Some(as_number) = self.as_number {
            node.as_number = Some(as_number);
        }
        self.interfaces.clone()
    }
}

/// The node's address of `family` as a generic network.
fn current(node: &CalicoNode, family: IpFamily) -> Option<IpNet> {
    match family {
        IpFamily::V4 => node.ipv4_address.map(IpNet::V4),
        IpFamily::V6 => node.ipv6_address.map(IpNet::V6),
    }
}

/// Decides one family's address.
fn resolve_family(
    setting: &AddressSetting,
    method: &AutodetectionMethod,
    family: IpFamily,
    node: &CalicoNode,
    interfaces: &[HostInterface],
    reach: &dyn Fn(&str, IpFamily) -> Result<IpAddr, String>,
) -> Result<Option<IpNet>, StartupError> {
    let existing = current(node, family);
    match plan_address(setting, family, existing, interfaces) {
        AddressPlan::Keep => Ok(existing),
        AddressPlan::Fixed(net) => Ok(Some(net)),
        AddressPlan::Autodetect => {
            match detect(method, family, interfaces, &node.internal_ips, reach) {
                Ok(found) => {
                    tracing::info!(
                        address = %found.address,
                        interface = %found.interface,
                        "autodetected the node's IPv{} address",
                        family.version()
                    );
                    Ok(Some(found.address))
                }
                Err(error) => match existing {
                    Some(kept) => {
                        tracing::warn!(%error, kept = %kept, "autodetection failed; keeping the node's address");
                        Ok(Some(kept))
                    }
                    None => Err(StartupError::Autodetect(error)),
                },
            }
        }
    }
}

/// Computes the registration. `reach` is the `can-reach=` probe.
pub fn plan_registration(
    config: &Config,
    node: &CalicoNode,
    interfaces: &[HostInterface],
    reach: &dyn Fn(&str, IpFamily) -> Result<IpAddr, String>,
) -> Result<Registration, StartupError> {
    if config.networking_backend == NetworkingBackend::None {
        // Policy-only mode: calico-node writes no BGP details.
        return Ok(Registration {
            ipv4_address: node.ipv4_address,
            ipv6_address: node.ipv6_address,
            as_number: None,
            interfaces: None,
        });
    }
    let ipv4 = resolve_family(
        &config.ipv4,
        &config.ipv4_autodetection,
        IpFamily::V4,
        node,
        interfaces,
        reach,
    )?;
    let ipv6 = resolve_family(
        &config.ipv6,
        &config.ipv6_autodetection,
        IpFamily::V6,
        node,
        interfaces,
        reach,
    )?;
    let ipv4_address = match ipv4 {
        Some(IpNet::V4(net)) => Some(net),
        _ => None,
    };
    let ipv6_address = match ipv6 {
        Some(IpNet::V6(net)) => Some(net),
        _ => None,
    };
    if ipv4_address.is_none() && ipv6_address.is_none() {
        return Err(StartupError::Invalid {
            reason: "no IPv4 or IPv6 address configured or detected; Calico networking needs one \
                     (set IP, IP6 or IP_AUTODETECTION_METHOD)"
                .to_string(),
        });
    }
    let mut families = Vec::new();
    if ipv4_address.is_some() && config.ipv4 != AddressSetting::None {
        families.push(IpFamily::V4);
    }
    if ipv6_address.is_some() && config.ipv6 != AddressSetting::None {
        families.push(IpFamily::V6);
    }
    let interfaces = (!families.is_empty()).then(|| {
        node_interfaces(interfaces, &families)
            .into_iter()
            .map(|(name, addresses)| NodeInterface {
                name,
                addresses: addresses.iter().map(ToString::to_string).collect(),
            })
            .collect()
    });
    Ok(Registration {
        ipv4_address,
        ipv6_address,
        as_number: config.as_number,
        interfaces,
    })
}

/// Another node already using one of our new addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub address: IpAddr,
    pub other_node: String,
}

/// The first other node whose IPv4 or IPv6 address equals ours (prefixes are ignored).
pub fn find_conflict(
    our_name: &str,
    ipv4: Option<Ipv4Net>,
    ipv6: Option<Ipv6Net>,
    nodes: &[CalicoNode],
) -> Option<Conflict> {
    let ours: Vec<IpAddr> = ipv4
        .map(|net| IpAddr::V4(net.addr()))
        .into_iter()
        .chain(ipv6.map(|net| IpAddr::V6(net.addr())))
        .collect();
    nodes
        .iter()
        .filter(|other| other.name != our_name)
        .find_map(|other| {
            let theirs = [other.ipv4().map(IpAddr::V4), other.ipv6().map(IpAddr::V6)];
            ours.iter()
                .find(|address| theirs.contains(&Some(**address)))
                .map(|address| Conflict {
                    address: *address,
                    other_node: other.name.clone(),
                })
        })
}
