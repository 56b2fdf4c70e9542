//! Wire shapes of Calico's IPAM objects (reference §1.2–1.5, §3), field for field.
//!
//! Two families live here and they differ on purpose, because Calico's own two backends differ:
//! - the `crd.projectcalico.org/v1` CRD objects (`IPAMBlock`, `BlockAffinity`, `IPAMHandle`,
//!   `IPAMConfig`), cluster-scoped, camelCase (`affinityClaimTime`), `BlockAffinity.deleted` a string;
//! - the etcdv3 JSON values (`Etcd*`): `affinity_claim_time` in snake case, the affinity value is only
//!   `{"state":..,"deleted":false}`, the handle id lives only in the key, legacy `hostAffinity`.
//!
//! Nothing here validates; conversion into the domain records (`starling_ipam::records`) does.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One entry of a block's `attributes` (shared by the CRD and etcd shapes).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct AllocationAttribute {
    #[serde(rename = "handle_id", default, skip_serializing_if = "Option::is_none")]
    pub handle_id: Option<String>,
    /// Attributes of the active owner (`node`, `pod`, `namespace`, `timestamp`, `type`, ...).
    #[serde(rename = "secondary", default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<BTreeMap<String, String>>,
    #[serde(
        rename = "alternateOwnerAttrs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub alternate_owner_attrs: Option<BTreeMap<String, String>>,
    /// IP cooldown marker (Calico master); RFC 3339.
    #[serde(
        rename = "releasedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub released_at: Option<String>,
}

/// `IPAMBlock` spec (crd.projectcalico.org/v1). Object name: the CIDR with `.`, `:`, `/` → `-`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "IPAMBlock",
    plural = "ipamblocks"
)]
pub struct IPAMBlockSpec {
    pub cidr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    #[serde(
        rename = "affinityClaimTime",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub affinity_claim_time: Option<String>,
    /// Index = ordinal; value = index into `attributes`; null = free.
    #[serde(default)]
    pub allocations: Vec<Option<i64>>,
    #[serde(default)]
    pub unallocated: Vec<i64>,
    #[serde(default)]
    pub attributes: Vec<AllocationAttribute>,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    #[serde(rename = "sequenceNumberForAllocation", default)]
    pub sequence_number_for_allocation: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    pub deleted: bool,
    /// Deprecated but required by the CRD schema: always written (as false).
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
}

/// `BlockAffinity` spec (crd.projectcalico.org/v1). Name: `<node>-<blockname>`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "BlockAffinity",
    plural = "blockaffinities"
)]
pub struct BlockAffinitySpec {
    /// `pending`, `confirmed`, `pendingDeletion`; empty means confirmed (old data).
    #[serde(default)]
    pub state: String,
    pub node: String,
    /// `host` (default when empty) or `virtual`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub affinity_type: Option<String>,
    pub cidr: String,
    /// A string (`"true"`/`"false"`) in v1 for backwards compatibility.
    #[serde(default)]
    pub deleted: String,
}

/// `IPAMHandle` spec (crd.projectcalico.org/v1). Name: lowercase(handleID).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "IPAMHandle",
    plural = "ipamhandles"
)]
pub struct IPAMHandleSpec {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR (e.g. `10.244.1.0/26`) → number of addresses of this handle in it.
    #[serde(default)]
    pub block: BTreeMap<String, i64>,
    #[serde(default)]
    pub deleted: bool,
}

/// `IPAMConfig` spec (crd.projectcalico.org/v1), singleton `default`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "crd.projectcalico.org",
    version = "v1",
    kind = "IPAMConfig",
    plural = "ipamconfigs"
)]
pub struct IPAMConfigSpec {
    #[serde(rename = "strictAffinity", default)]
    pub strict_affinity: bool,
    #[serde(rename = "autoAllocateBlocks", default = "default_true")]
    pub auto_allocate_blocks: bool,
    #[serde(
        rename = "maxBlocksPerHost",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_blocks_per_host: Option<i64>,
}

fn default_true() -> bool {
    true
}

/// etcd value at `/calico/ipam/v2/assignment/ipv{4,6}/block/<a.b.c.d-NN>`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EtcdBlock {
    pub cidr: String,
    /// Written as `null` when the block is not affine (Calico does the same).
    #[serde(default)]
    pub affinity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity_claim_time: Option<String>,
    #[serde(default)]
    pub allocations: Vec<Option<i64>>,
    #[serde(default)]
    pub unallocated: Vec<i64>,
    #[serde(default)]
    pub attributes: Option<Vec<AllocationAttribute>>,
    #[serde(rename = "sequenceNumber", default)]
    pub sequence_number: u64,
    #[serde(rename = "sequenceNumberForAllocation", default)]
    pub sequence_number_for_allocation: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    pub deleted: bool,
    /// Legacy (pre-`affinity`) spelling: a bare host name.
    #[serde(
        rename = "hostAffinity",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub host_affinity: Option<String>,
}

/// etcd value at `/calico/ipam/v2/host/<node>/ipv{4,6}/block/<cidr>`; empty value ⇒ `{}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EtcdAffinity {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
    #[serde(default)]
    pub deleted: bool,
}

/// etcd value at `/calico/ipam/v2/handle/<handleID>` (the id is only in the key).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EtcdHandle {
    #[serde(default)]
    pub block: BTreeMap<String, i64>,
    #[serde(default)]
    pub deleted: bool,
}

/// etcd value at `/calico/ipam/v2/config`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct EtcdIpamConfig {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_affinity: bool,
    /// `omitempty` in Calico: absent in a stored object means false (a missing object means true).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_allocate_blocks: bool,
    #[serde(
        rename = "maxBlocksPerHost",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_blocks_per_host: Option<i64>,
}
