//! The address-management requests the CNI plugin sends to the daemon over the control socket
//! (one JSON object per line, see `control.rs`), and the daemon's answers.
//!
//! Wire shape: requests are tagged by `"request"` with `ipam_`-prefixed names
//! (`{"request":"ipam_assign", ...}`), responses by `"result"`
//! (`{"result":"assigned","addresses":["10.0.0.5/32"]}`), so a wider control enum using the same
//! `request` tag can absorb these variants, or embed the enum unambiguously with
//! `#[serde(untagged)]`.
//! Unknown fields are ignored in both directions so plugin and daemon may differ by a version
//! during a rolling update.
//!
//! Contract for the daemon's handler:
//! - `Assign`: read the pod's and namespace's annotations (Kubernetes datastore), combine them
//!   with `ipam` and `feature_control` into the IPAM request (pod `ipv4pools` beats namespace
//!   `ipv4pools` beats `ipam.ipv4_pools`; `ipAddrs`/`requested_addresses` assign exactly those;
//!   `ipAddrsNoIpam` only with `feature_control.ip_addrs_no_ipam`), assign under `handle` with
//!   attributes node/pod/namespace/timestamp, then write the pod annotations
//!   `cni.projectcalico.org/podIP`, `podIPs` and `containerID`; return the `hwAddr` annotation
//!   as `pod_mac`. If the annotation write fails,
//!   release what was assigned and answer an error: the plugin must never be told "assigned" for
//!   addresses that are not recorded on the pod. Assigning again under a handle that already
//!   holds addresses returns those addresses (a retried ADD).
//! - `ReleaseByHandle`: release everything under `handle` (nothing held is success with an empty
//!   list) and clear `podIP`/`podIPs` when the pod's `containerID` annotation still names
//!   `container_id` (a newer sandbox of the same pod keeps its annotations).
//! - `EndpointAdd` (after wiring): in etcd mode write the pod's WorkloadEndpoint as Calico's CNI
//!   plugin does (`datastore::endpoints`) and answer `EndpointRecorded{name}`; the Kubernetes
//!   datastore keeps none (`name: None`). An error fails the ADD, which then rolls back.
//!   `ReleaseByHandle` also deletes that endpoint unless it names another container.
//! - `Check`: `Checked` when `handle` holds exactly `addresses`, else `Error{kind: Mismatch}`.
//! - `Status`: `Ready` once IPAM can serve requests (datastore in sync), else
//!   `Error{kind: Unavailable}`.
//! - `GarbageCollect` (CNI GC): release every handle of `network_name` on this node that is not
//!   in `valid_handles` (the rule is `cni::gc::plan`, shared with the test allocator), as
//!   `ReleaseByHandle` would (endpoint, annotations), and answer `GarbageCollected` with what was
//!   released and the pods left with no address on this node. A handle that cannot be released
//!   is a `problems` entry; the others are still released (the specification asks GC to remove
//!   as much as it can).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::config::{FeatureControl, IpamSection};
use super::result::{code, CniError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request")]
pub enum IpamRequest {
    #[serde(rename = "ipam_assign")]
    Assign(AssignRequest),
    #[serde(rename = "ipam_release_by_handle")]
    ReleaseByHandle(ReleaseRequest),
    #[serde(rename = "ipam_check")]
    Check(CheckRequest),
    #[serde(rename = "ipam_endpoint_add")]
    EndpointAdd(EndpointAddRequest),
    #[serde(rename = "ipam_status")]
    Status,
    #[serde(rename = "ipam_gc")]
    GarbageCollect(GcRequest),
}

/// CNI GC for one network on the daemon's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRequest {
    pub network_name: String,
    /// `<network name>.<containerID>` of every attachment the runtime still has.
    pub valid_handles: Vec<String>,
    /// Allocations younger than this are kept whatever the list says: an ADD may be between
    /// its assignment and the runtime recording the sandbox.
    #[serde(default)]
    pub grace_seconds: u64,
}

/// A pod named by allocation attributes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedHandle {
    pub handle: String,
    pub addresses: Vec<IpNet>,
}

/// A pod whose every address on this node GC released: its host-side veth may go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StalePod {
    pub namespace: String,
    pub name: String,
    /// What GC released for it; a veth still routing anything else is not this pod's any more.
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignRequest {
    /// `<network name>.<containerID>`.
    pub handle: String,
    pub network_name: String,
    pub container_id: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The interface inside the pod (`CNI_IFNAME`), for multi-interface pods.
    pub interface_name: String,
    /// The network config's `ipam` section.
    pub ipam: IpamSection,
    pub feature_control: FeatureControl,
    /// Addresses the runtime asked for (`CNI_ARGS IP=`, the `ips` capability); like the
    /// `ipAddrs` annotation they must be assigned exactly or the request fails.
    #[serde(default)]
    pub requested_addresses: Vec<IpAddr>,
    /// The pod's annotations as the orchestrator passed them with the attachment (network
    /// config `args.cni.projectcalico.org/annotations`). Used only when the daemon has no
    /// Kubernetes API to read the pod from (etcd mode); the API's annotations win otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,
}

/// A floating IP of the pod (`cni.projectcalico.org/floatingIPs`), paired with the pod
/// address of its family: the WorkloadEndpoint's `spec.ipNATs` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub internal: IpAddr,
    pub external: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub handle: String,
    pub network_name: String,
    pub container_id: String,
    /// Absent when the runtime did not name the pod; then no annotation is touched.
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    /// The interface inside the pod (`CNI_IFNAME`); names the WorkloadEndpoint to remove.
    /// Absent from older plugins: then `eth0`.
    #[serde(default)]
    pub interface_name: Option<String>,
}

/// Sent after ADD has wired the pod: everything the WorkloadEndpoint records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointAddRequest {
    pub handle: String,
    pub container_id: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The interface inside the pod (`CNI_IFNAME`).
    pub interface_name: String,
    /// The host side of the veth.
    pub host_interface: String,
    /// The pod interface's MAC (`aa:bb:cc:dd:ee:ff`).
    #[serde(default)]
    pub mac: Option<String>,
    pub addresses: Vec<IpNet>,
    /// What `Assigned` answered in `floating_ips`, recorded as `spec.ipNATs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub floating_ips: Vec<FloatingIp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    pub handle: String,
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum IpamResponse {
    /// Pod addresses as /32 and /128 networks.
    Assigned {
        addresses: Vec<IpNet>,
        /// The pod interface's MAC from the `cni.projectcalico.org/hwAddr` annotation, if set
        /// (`aa:bb:cc:dd:ee:ff`); otherwise the kernel's random one is kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pod_mac: Option<String>,
        /// The pod's validated floating IPs (`feature_control.floating_ips` on); the plugin
        /// passes them back with `EndpointAdd`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        floating_ips: Vec<FloatingIp>,
    },
    /// What the handle held (empty when it held nothing).
    Released {
        addresses: Vec<IpNet>,
    },
    Checked,
    /// The WorkloadEndpoint was written under `name`; `None` when the datastore keeps none
    /// (Kubernetes: the pod is the endpoint).
    EndpointRecorded {
        #[serde(default)]
        name: Option<String>,
    },
    Ready,
    GarbageCollected {
        released: Vec<ReleasedHandle>,
        stale_pods: Vec<StalePod>,
        /// What could not be released, one sentence each.
        #[serde(default)]
        problems: Vec<String>,
    },
    Error(IpamError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamError {
    pub kind: IpamErrorKind,
    /// Says what failed and for which pod, pool or address (e.g. the exhausted pools' names).
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpamErrorKind {
    /// No free address in any usable pool.
    Exhausted,
    /// A specifically requested address is taken, reserved or outside every pool.
    AddressInUse,
    /// The request cannot be served as given: unknown or disabled pool, bad annotation,
    /// `ipAddrsNoIpam` without the feature, pod not found.
    Invalid,
    /// The datastore is unreachable or not in sync yet; retrying later may work.
    Unavailable,
    /// CHECK: the handle does not hold exactly the given addresses.
    Mismatch,
    Internal,
}

impl IpamResponse {
    /// The answer to a line that does not parse (the `on_garbage` of `control::serve`).
    pub fn garbage(text: String) -> IpamResponse {
        IpamResponse::Error(IpamError {
            kind: IpamErrorKind::Invalid,
            message: text,
        })
    }

    pub fn error(kind: IpamErrorKind, message: impl Into<String>) -> IpamResponse {
        IpamResponse::Error(IpamError {
            kind,
            message: message.into(),
        })
    }
}

impl IpamError {
    /// The CNI error the plugin reports for this daemon error.
    pub fn to_cni_error(&self, action: &str) -> CniError {
        let code = match self.kind {
            IpamErrorKind::Exhausted => code::POOL_EXHAUSTED,
            IpamErrorKind::AddressInUse => code::ADDRESS_IN_USE,
            IpamErrorKind::Invalid => code::IPAM_REFUSED,
            IpamErrorKind::Unavailable => code::TRY_AGAIN_LATER,
            IpamErrorKind::Mismatch => code::CHECK_FAILED,
            IpamErrorKind::Internal => code::IPAM_INTERNAL,
        };
        CniError::new(code, format!("{action}: {}", self.message), String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let request = IpamRequest::Assign(AssignRequest {
            handle: "k8s-pod-network.c1".into(),
            network_name: "k8s-pod-network".into(),
            container_id: "c1".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            interface_name: "eth0".into(),
            ipam: IpamSection::default(),
            feature_control: FeatureControl::default(),
            requested_addresses: vec!["10.0.0.7".parse().unwrap()],
            pod_annotations: Default::default(),
        });
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["request"], "ipam_assign");
        assert_eq!(json["handle"], "k8s-pod-network.c1");
        assert_eq!(json["ipam"]["type"], "starling-ipam");
        let back: IpamRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, request);

        let gc = serde_json::to_value(IpamRequest::GarbageCollect(GcRequest {
            network_name: "k8s-pod-network".into(),
            valid_handles: vec!["k8s-pod-network.c1".into()],
            grace_seconds: 60,
        }))
        .unwrap();
        assert_eq!(gc["request"], "ipam_gc");
        assert_eq!(gc["valid_handles"][0], "k8s-pod-network.c1");
        // An older plugin sends no grace: then none.
        let without_grace: IpamRequest =
            serde_json::from_str(r#"{"request":"ipam_gc","network_name":"n","valid_handles":[]}"#)
                .unwrap();
        assert!(matches!(without_grace, IpamRequest::GarbageCollect(r) if r.grace_seconds == 0));
        let collected: IpamResponse = serde_json::from_str(
            r#"{"result":"garbage_collected","released":[{"handle":"n.c2","addresses":["10.0.0.2/32"]}],"stale_pods":[]}"#,
        )
        .unwrap();
        assert!(
            matches!(collected, IpamResponse::GarbageCollected { released, problems, .. } if released.len() == 1 && problems.is_empty())
        );

        let status = serde_json::to_string(&IpamRequest::Status).unwrap();
        assert_eq!(status, r#"{"request":"ipam_status"}"#);

        let answer: IpamResponse = serde_json::from_str(
            r#"{"result":"assigned","addresses":["10.0.0.5/32","fd00::5/128"],"extra":1}"#,
        )
        .unwrap();
        assert_eq!(
            answer,
            IpamResponse::Assigned {
                addresses: vec![
                    "10.0.0.5/32".parse().unwrap(),
                    "fd00::5/128".parse().unwrap()
                ],
                pod_mac: None,
                floating_ips: Vec::new(),
            }
        );
        let error = serde_json::to_value(IpamResponse::error(
            IpamErrorKind::Exhausted,
            "pool default-ipv4-ippool is full",
        ))
        .unwrap();
        assert_eq!(error["result"], "error");
        assert_eq!(error["kind"], "exhausted");
    }

    #[test]
    fn error_kinds_map_to_cni_codes() {
        let unavailable = IpamError {
            kind: IpamErrorKind::Unavailable,
            message: "datastore not in sync".into(),
        };
        let cni = unavailable.to_cni_error("assigning an address");
        assert_eq!(cni.code, code::TRY_AGAIN_LATER);
        assert!(cni.msg.contains("datastore not in sync"));
        let exhausted = IpamError {
            kind: IpamErrorKind::Exhausted,
            message: "pools a, b".into(),
        };
        assert_eq!(exhausted.to_cni_error("x").code, code::POOL_EXHAUSTED);
    }
}
