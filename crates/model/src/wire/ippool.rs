//! IPPool (`crd.projectcalico.org/v1`, reference §1.1): the wire shape, exactly as Calico writes it.
//!
//! Every field is optional on the wire so that an object read from the API server or etcd
//! serialises back with the same fields it had; defaults and rules are applied by
//! `crate::validate` when converting into `crate::IpPool`. Unknown fields are ignored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Specification of an IPPool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IPPoolSpec {
    /// The pool CIDR, strictly masked (e.g. `10.244.0.0/16`).
    pub cidr: String,
    /// VXLAN encapsulation: `Never` (default), `Always` or `CrossSubnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::encap_mode")]
    pub vxlan_mode: Option<String>,
    /// IP-in-IP encapsulation: `Never` (default), `Always` or `CrossSubnet`; IPv4 only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::encap_mode")]
    pub ipip_mode: Option<String>,
    /// Masquerade traffic from the pool to destinations outside every pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat_outgoing: Option<bool>,
    /// No new allocations from a disabled pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Do not export the pool's routes over BGP.
    #[serde(
        default,
        rename = "disableBGPExport",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_bgp_export: Option<bool>,
    /// Prefix length of the pool's blocks (26 for IPv4, 122 for IPv6 when absent).
    /// Signed and wide on the wire so that an out-of-range value reaches validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i64>,
    /// Nodes that may allocate from the pool (`all()` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<String>,
    /// Namespaces whose pods may allocate from the pool (all when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// `Workload`, `Tunnel`, `LoadBalancer` (`[Workload, Tunnel]` when absent or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::allowed_uses")]
    pub allowed_uses: Option<Vec<String>>,
    /// `Automatic` (default) or `Manual` (used only when a request names the pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::assignment_mode")]
    pub assignment_mode: Option<String>,
    /// Legacy (API v1) IPIP settings, still tolerated on read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipip: Option<LegacyIpip>,
    /// Legacy (API v1) spelling of `natOutgoing`, still tolerated on read.
    #[serde(
        default,
        rename = "nat-outgoing",
        skip_serializing_if = "Option::is_none"
    )]
    pub nat_outgoing_legacy: Option<bool>,
}

/// The legacy `spec.ipip` object: `{enabled, mode}` with mode `always` or `cross-subnet`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LegacyIpip {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}
