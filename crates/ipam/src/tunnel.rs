//! Tunnel addresses of a node (reference §8.4): keep, allocate or release the IPIP and VXLAN
//! (v4/v6) addresses with Calico's handle names (`ipip-tunnel-addr-<node>`, ...) and attributes
//! (`node`, `type`). Returns the node's new tunnel fields; the caller writes the node once.
//! On error every address assigned in this pass is released again.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use super::allocator::{AddressRequest, Allocator, AssignRequest};
use super::block::{Attribute, Block, ATTRIBUTE_NODE, ATTRIBUTE_TYPE};
use super::pools::IpFamily;
use super::records::IpamConfig;
use super::{release, IpamError};
use crate::store::{IpamStore, IpamStoreExt};
use starling_model::{AllowedUse, CalicoNode, IpPool};

/// The tunnel address kinds Starling manages (WireGuard is not part of the dataplane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelKind {
    Ipip,
    VxlanV4,
    VxlanV6,
}

impl TunnelKind {
    pub const ALL: [TunnelKind; 3] = [TunnelKind::Ipip, TunnelKind::VxlanV4, TunnelKind::VxlanV6];

    pub fn handle_id(self, node: &str) -> String {
        match self {
            TunnelKind::Ipip => format!("ipip-tunnel-addr-{node}"),
            TunnelKind::VxlanV4 => format!("vxlan-tunnel-addr-{node}"),
            TunnelKind::VxlanV6 => format!("vxlan-v6-tunnel-addr-{node}"),
        }
    }

    /// The `type` attribute value.
    pub fn attribute_type(self) -> &'static str {
        match self {
            TunnelKind::Ipip => "ipipTunnelAddress",
            TunnelKind::VxlanV4 => "vxlanTunnelAddress",
            TunnelKind::VxlanV6 => "vxlanV6TunnelAddress",
        }
    }

    pub fn family(self) -> IpFamily {
        match self {
            TunnelKind::Ipip | TunnelKind::VxlanV4 => IpFamily::V4,
            TunnelKind::VxlanV6 => IpFamily::V6,
        }
    }

    /// Pools this kind of address may come from for `node`.
    pub fn eligible_pools(self, pools: &[IpPool], node: &CalicoNode) -> Vec<IpPool> {
        pools
            .iter()
            .filter(|p| p.is_active() && p.allows(AllowedUse::Tunnel))
            .filter(|p| IpFamily::of_net(&p.cidr) == self.family())
            .filter(|p| match self {
                TunnelKind::Ipip => p.ipip_mode.is_enabled(),
                TunnelKind::VxlanV4 | TunnelKind::VxlanV6 => p.vxlan_mode.is_enabled(),
            })
            .filter(|p| p.node_selector.matches(&node.labels))
            .cloned()
            .collect()
    }

    fn current(self, node: &CalicoNode) -> Option<IpAddr> {
        match self {
            TunnelKind::Ipip => node.ipv4_ipip_tunnel_addr.map(IpAddr::V4),
            TunnelKind::VxlanV4 => node.ipv4_vxlan_tunnel_addr.map(IpAddr::V4),
            TunnelKind::VxlanV6 => node.ipv6_vxlan_tunnel_addr.map(IpAddr::V6),
        }
    }
}

/// The node's tunnel fields after reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TunnelAddresses {
    pub ipv4_ipip_tunnel_addr: Option<std::net::Ipv4Addr>,
    pub ipv4_vxlan_tunnel_addr: Option<std::net::Ipv4Addr>,
    pub ipv6_vxlan_tunnel_addr: Option<std::net::Ipv6Addr>,
}

impl TunnelAddresses {
    /// Writes the fields into the node; true when anything changed (the node then needs a write).
    pub fn apply_to(&self, node: &mut CalicoNode) -> bool {
        let changed = node.ipv4_ipip_tunnel_addr != self.ipv4_ipip_tunnel_addr
            || node.ipv4_vxlan_tunnel_addr != self.ipv4_vxlan_tunnel_addr
            || node.ipv6_vxlan_tunnel_addr != self.ipv6_vxlan_tunnel_addr;
        node.ipv4_ipip_tunnel_addr = self.ipv4_ipip_tunnel_addr;
        node.ipv4_vxlan_tunnel_addr = self.ipv4_vxlan_tunnel_addr;
        node.ipv6_vxlan_tunnel_addr = self.ipv6_vxlan_tunnel_addr;
        changed
    }

    fn set(&mut self, kind: TunnelKind, address: Option<IpAddr>) {
        match (kind, address) {
            (TunnelKind::Ipip, Some(IpAddr::V4(a))) => self.ipv4_ipip_tunnel_addr = Some(a),
            (TunnelKind::Ipip, _) => self.ipv4_ipip_tunnel_addr = None,
            (TunnelKind::VxlanV4, Some(IpAddr::V4(a))) => self.ipv4_vxlan_tunnel_addr = Some(a),
            (TunnelKind::VxlanV4, _) => self.ipv4_vxlan_tunnel_addr = None,
            (TunnelKind::VxlanV6, Some(IpAddr::V6(a))) => self.ipv6_vxlan_tunnel_addr = Some(a),
            (TunnelKind::VxlanV6, _) => self.ipv6_vxlan_tunnel_addr = None,
        }
    }
}

/// The allocation at `address`, if any.
async fn allocation_at<S: IpamStore>(
    store: &S,
    address: IpAddr,
) -> Result<Option<Attribute>, IpamError> {
    let blocks = store.list::<Block>().await?;
    Ok(blocks
        .iter()
        .find(|b| b.value.cidr.contains(&address))
        .and_then(|b| b.value.attribute_of(address).cloned()))
}

fn is_legacy(attribute: &Attribute) -> bool {
    attribute.handle_id.is_none() && attribute.secondary.is_empty()
}

/// Brings the node's tunnel addresses in line with the pools.
pub async fn reconcile_tunnel_addresses<S: IpamStore>(
    allocator: &Allocator<S>,
    node: &CalicoNode,
    pools: &[IpPool],
    config: IpamConfig,
    reserved: &[IpNet],
    now: DateTime<Utc>,
) -> Result<TunnelAddresses, IpamError> {
    let mut assigned_now: Vec<IpAddr> = Vec::new();
    let mut result = TunnelAddresses::default();
    for kind in TunnelKind::ALL {
        match reconcile_one(
            allocator,
            kind,
            node,
            pools,
            config,
            reserved,
            now,
            &mut assigned_now,
        )
        .await
        {
            Ok(address) => result.set(kind, address),
            Err(error) => {
                if let Err(rollback) =
                    release::release_addresses(allocator.store(), &assigned_now).await
                {
                    tracing::warn!(%rollback, "could not release tunnel addresses after an error");
                }
                return Err(error);
            }
        }
    }
    Ok(result)
}

#[allow(clippy::too_many_arguments)]
async fn reconcile_one<S: IpamStore>(
    allocator: &Allocator<S>,
    kind: TunnelKind,
    node: &CalicoNode,
    pools: &[IpPool],
    config: IpamConfig,
    reserved: &[IpNet],
    now: DateTime<Utc>,
    assigned_now: &mut Vec<IpAddr>,
) -> Result<Option<IpAddr>, IpamError> {
    let store = allocator.store();
    let handle_id = kind.handle_id(&node.name);
    let eligible = kind.eligible_pools(pools, node);
    let current = kind.current(node);
    let current_allocation = match current {
        Some(address) => allocation_at(store, address).await?,
        None => None,
    };
    if eligible.is_empty() {
        release::release_by_handle(store, &handle_id).await?;
        if let (Some(address), Some(attribute)) = (current, &current_allocation) {
            if is_legacy(attribute) {
                release::release_addresses(store, &[address]).await?;
            }
        }
        return Ok(None);
    }
    let attributes: BTreeMap<String, String> = [
        (ATTRIBUTE_NODE.to_string(), node.name.clone()),
        (
            ATTRIBUTE_TYPE.to_string(),
            kind.attribute_type().to_string(),
        ),
    ]
    .into_iter()
    .collect();
    if let Some(address) = current {
        let in_eligible = eligible.iter().any(|p| p.contains(address));
        match &current_allocation {
            Some(attribute)
                if in_eligible && attribute.handle_id.as_deref() == Some(handle_id.as_str()) =>
            {
                return Ok(Some(address));
            }
            Some(attribute) if in_eligible && is_legacy(attribute) => {
                // Calico's oldest tunnel allocations have no handle: re-own them in place.
                release::release_addresses(store, &[address]).await?;
                allocator
                    .assign_address(&AddressRequest {
                        address,
                        handle_id: handle_id.clone(),
                        attributes: attributes.clone(),
                        pools: eligible.clone(),
                        config,
                        now,
                    })
                    .await?;
                assigned_now.push(address);
                return Ok(Some(address));
            }
            _ => {}
        }
    }
    release::release_by_handle(store, &handle_id).await?;
    let addresses = allocator
        .auto_assign(&AssignRequest {
            handle_id,
            attributes,
            family: kind.family(),
            count: 1,
            pools: eligible,
            reserved: reserved.to_vec(),
            config,
            max_blocks_per_host: 0,
            now,
        })
        .await?;
    assigned_now.extend(addresses.iter().copied());
    Ok(addresses.first().copied())
}
