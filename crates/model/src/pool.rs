//! IP pools as the allocator, the dataplane and BGP policy see them (validated, defaults applied).

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use starling_selector::Selector;

/// IPIP / VXLAN mode of a pool (`Never` when the field is absent or empty).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

impl EncapMode {
    pub fn is_enabled(self) -> bool {
        self != EncapMode::Never
    }
}

/// What addresses from a pool may be used for (`allowedUses`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AllowedUse {
    Workload,
    Tunnel,
    LoadBalancer,
}

/// `assignmentMode`: Manual pools are used only when a request names them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum AssignmentMode {
    #[default]
    Automatic,
    Manual,
}

/// How traffic to a pool's remote blocks is carried (reference §5.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PoolEncapsulation {
    Vxlan(EncapMode),
    Ipip(EncapMode),
    NoEncap,
    /// LoadBalancer-only pools are not routed as pod pools.
    None,
}

/// A validated IPPool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPool {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub disabled: bool,
    pub disable_bgp_export: bool,
    pub node_selector: Selector,
    pub namespace_selector: Selector,
    pub allowed_uses: BTreeSet<AllowedUse>,
    pub assignment_mode: AssignmentMode,
    /// The object carries a deletionTimestamp (or Allocatable=False): never allocate from it.
    pub deleting: bool,
}

impl IpPool {
    pub fn is_ipv4(&self) -> bool {
        matches!(self.cidr, IpNet::V4(_))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(&ip)
    }

    /// Usable for new allocations at all (not disabled, not being deleted).
    pub fn is_active(&self) -> bool {
        !self.disabled && !self.deleting
    }

    pub fn allows(&self, usage: AllowedUse) -> bool {
        self.allowed_uses.contains(&usage)
    }

    /// Routing type of the pool: VXLAN wins over IPIP (they cannot both be on once validated).
    pub fn encapsulation(&self) -> PoolEncapsulation {
        if self.allowed_uses.len() == 1 && self.allows(AllowedUse::LoadBalancer) {
            PoolEncapsulation::None
        } else if self.vxlan_mode.is_enabled() {
            PoolEncapsulation::Vxlan(self.vxlan_mode)
        } else if self.ipip_mode.is_enabled() {
            PoolEncapsulation::Ipip(self.ipip_mode)
        } else {
            PoolEncapsulation::NoEncap
        }
    }

    /// Default allowed uses when the resource leaves the set empty.
    pub fn default_allowed_uses() -> BTreeSet<AllowedUse> {
        [AllowedUse::Workload, AllowedUse::Tunnel]
            .into_iter()
            .collect()
    }
}
