//! Default IP pools from `CALICO_IPV4POOL_*` / `CALICO_IPV6POOL_*` (reference §8.3).

use ipnet::IpNet;

use crate::pool::EncapMode;
use starling_selector::Selector;

/// Where a default pool's CIDR comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolCidrSource {
    /// `…_CIDR` unset: kubeadm's podSubnet, else `192.168.0.0/16` (IPv4; the first of
    /// 172.16-31.0.0/16 if that overlaps a host address) or a random ULA /48 (IPv6).
    Automatic,
    /// `…_CIDR` set (masked as Calico does).
    Explicit(IpNet),
}

/// One default pool as calico-node would create it (named `default-ipv4-ippool` /
/// `default-ipv6-ippool`, only when no pool of the family exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPoolConfig {
    pub cidr: PoolCidrSource,
    pub block_size: u8,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub nat_outgoing: bool,
    pub node_selector: Selector,
    pub disable_bgp_export: bool,
}

/// Default pool settings per family; `None` means no default pool of that family
/// (`NO_DEFAULT_POOLS=true` or `…_CIDR=none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultPools {
    pub ipv4: Option<DefaultPoolConfig>,
    pub ipv6: Option<DefaultPoolConfig>,
}

impl DefaultPoolConfig {
    pub const IPV4_NAME: &'static str = "default-ipv4-ippool";
    pub const IPV6_NAME: &'static str = "default-ipv6-ippool";
}

/// `CALICO_IPV4POOL_IPIP` / `…_VXLAN`: case-insensitive `""|off|never`, `always`,
/// `crosssubnet|cross-subnet`.
pub fn parse_encap_mode(text: &str) -> Result<EncapMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "off" | "never" => Ok(EncapMode::Never),
        "always" => Ok(EncapMode::Always),
        "crosssubnet" | "cross-subnet" => Ok(EncapMode::CrossSubnet),
        _ => Err("expected Never (or off), Always or CrossSubnet".to_string()),
    }
}

/// calico-node's lenient boolean: false for `false|0|no|n|f` (any case), true for anything else.
pub fn parse_lenient_bool(text: &str) -> bool {
    !matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "false" | "0" | "no" | "n" | "f"
    )
}
