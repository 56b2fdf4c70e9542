//! WorkloadEndpoint (`projectcalico.org/v3`, reference §2.3): the host side of a pod's interface.
//! In etcd mode the CNI plugin stores it at
//! `/calico/resources/v3/projectcalico.org/workloadendpoints/<namespace>/<name>`; in the
//! Kubernetes datastore it is derived from the Pod and never stored.
//!
//! Field names and omissions follow libcalico-go's `WorkloadEndpointSpec` (every field
//! `omitempty`), so an object written here reads the same in calicoctl and Felix.

use serde::{Deserialize, Serialize};

/// Specification of a WorkloadEndpoint.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadEndpointSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub orchestrator: String,
    /// The workload name for orchestrators other than `k8s` and `cni`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(
        default,
        rename = "containerID",
        skip_serializing_if = "String::is_empty"
    )]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// The interface inside the workload (`eth0`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(
        default,
        rename = "serviceAccountName",
        skip_serializing_if = "String::is_empty"
    )]
    pub service_account_name: String,
    /// `/32` and `/128` networks.
    #[serde(default, rename = "ipNetworks", skip_serializing_if = "Vec::is_empty")]
    pub ip_networks: Vec<String>,
    #[serde(default, rename = "ipNATs", skip_serializing_if = "Vec::is_empty")]
    pub ip_nats: Vec<IpNat>,
    #[serde(
        default,
        rename = "ipv4Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_gateway: String,
    #[serde(
        default,
        rename = "ipv6Gateway",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_gateway: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// The host-side interface (`cali` + 11 hex digits).
    #[serde(
        default,
        rename = "interfaceName",
        skip_serializing_if = "String::is_empty"
    )]
    pub interface_name: String,
    /// The MAC of the interface inside the workload.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WorkloadEndpointPort>,
    #[serde(
        default,
        rename = "allowSpoofedSourcePrefixes",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow_spoofed_source_prefixes: Vec<String>,
}

/// A named or host-mapped container port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadEndpointPort {
    #[serde(default)]
    pub name: String,
    /// `TCP`, `UDP`, `SCTP` or a protocol number.
    #[serde(default)]
    pub protocol: serde_json::Value,
    #[serde(default)]
    pub port: u16,
    #[serde(default, rename = "hostPort")]
    pub host_port: u16,
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

/// A 1:1 NAT mapping (floating IP).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct IpNat {
    #[serde(default, rename = "internalIP")]
    pub internal_ip: String,
    #[serde(default, rename = "externalIP")]
    pub external_ip: String,
    #[serde(default)]
    pub source: String,
}
