//! BGPConfiguration (`crd.projectcalico.org/v1`, reference §1.7): cluster-wide (`default`) and
//! per-node (`node.<name>`) BGP settings. Wire shape only; see `crate::validate`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::AsNumber;

/// Specification of a BGPConfiguration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// `Trace|Debug|Info|Warning|Error|Fatal` (any case); `Info` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_severity_screen: Option<String>,
    /// Full mesh between all nodes (true when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh_enabled: Option<bool>,
    /// Default AS of nodes without their own (64512 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    #[serde(
        default,
        rename = "serviceClusterIPs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub service_cluster_ips: Option<Vec<ServiceCidr>>,
    #[serde(
        default,
        rename = "serviceExternalIPs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub service_external_ips: Option<Vec<ServiceCidr>>,
    #[serde(
        default,
        rename = "serviceLoadBalancerIPs",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub service_load_balancer_ips: Option<Vec<ServiceCidr>>,
    /// `Enabled` (default) or `Disabled` (advertise each LoadBalancer IP as a /32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::enabled_disabled")]
    pub service_load_balancer_aggregation: Option<String>,
    /// Named BGP communities, referenced by `prefixAdvertisements`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub communities: Option<Vec<Community>>,
    /// Communities attached to routes inside a CIDR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub prefix_advertisements: Option<Vec<PrefixAdvertisement>>,
    /// BGP listen port, 1..65535 (179 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub listen_port: Option<i64>,
    /// Password of the node-to-node mesh sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_mesh_password: Option<BgpPassword>,
    /// Graceful-restart time of mesh sessions (Go duration, e.g. `120s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::duration")]
    pub node_mesh_max_restart_time: Option<String>,
    /// `None` (default) or `NodeIP` (listen on the node IP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::bind_mode")]
    pub bind_mode: Option<String>,
    /// Interfaces whose addresses are not exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub ignored_interfaces: Option<Vec<String>>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV4",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv4: Option<String>,
    #[serde(
        default,
        rename = "localWorkloadPeeringIPV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub local_workload_peering_ipv6: Option<String>,
    /// Which pool routes the BGP side programs (reference §0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::program_cluster_routes")]
    pub program_cluster_routes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483646))]
    pub ipv4_normal_route_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 2147483646))]
    pub ipv6_normal_route_priority: Option<i64>,
}

/// `{cidr}` items of the service IP lists.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct ServiceCidr {
    pub cidr: String,
}

/// A named community value, `aa:nn` or `aa:nn:mm`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct Community {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Communities (names or literal values) for routes inside `cidr`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[schemars(extend("x-kubernetes-map-type" = "atomic"))]
pub struct PrefixAdvertisement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communities: Option<Vec<String>>,
}

/// `{secretKeyRef: {name, key, optional}}`, shared by BGPConfiguration and BGPPeer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BgpPassword {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<SecretKeySelector>,
}

/// A key of a Secret in calico-node's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeySelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}
