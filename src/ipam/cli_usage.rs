//! Addresses known to be in use, for `ipam check`'s leak classes (reference §4.7): workload
//! endpoints and node tunnel addresses (IPIP, VXLAN, WireGuard). etcd mode reads the v3
//! WorkloadEndpoint and Node objects; Kubernetes mode reads Pods (the addresses their
//! WorkloadEndpoint would carry, §2.3) and the Node tunnel annotations (§2.1). Parsing is pure
//! (`*_from_json`, `pod_addresses`); only `addresses_in_use` touches the datastore.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::datastore::AnyDatastore;
use crate::syncer::convert::Conversion;
use starling_calc::state::Resource;
use starling_ipam::check::InUseAddress;
use starling_model::store::StoreError;

const WEP_PREFIX: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/";
const NODE_PREFIX: &str = "/calico/resources/v3/projectcalico.org/nodes/";

const TUNNEL_ANNOTATIONS: [(&str, &str); 5] = [
    ("projectcalico.org/IPv4IPIPTunnelAddr", "ipip"),
    ("projectcalico.org/IPv4VXLANTunnelAddr", "vxlan"),
    ("projectcalico.org/IPv6VXLANTunnelAddr", "vxlan-v6"),
    ("projectcalico.org/IPv4WireguardInterfaceAddr", "wireguard"),
    (
        "projectcalico.org/IPv6WireguardInterfaceAddr",
        "wireguard-v6",
    ),
];

fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<IpNet>().ok().map(|n| n.addr()))
}

/// Addresses of one etcd-mode WorkloadEndpoint object (`spec.ipNetworks`).
pub fn workload_endpoint_from_json(value: &Value) -> Vec<InUseAddress> {
    let namespace = value["metadata"]["namespace"].as_str().unwrap_or("");
    let name = value["metadata"]["name"].as_str().unwrap_or("");
    value["spec"]["ipNetworks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().and_then(parse_address))
        .map(|address| InUseAddress {
            address,
            owner: format!("workload endpoint {namespace}/{name}"),
        })
        .collect()
}

/// Tunnel addresses of one etcd-mode Calico Node object.
pub fn node_from_json(value: &Value) -> Vec<InUseAddress> {
    let name = value["metadata"]["name"].as_str().unwrap_or("");
    let spec = &value["spec"];
    [
        (&spec["bgp"]["ipv4IPIPTunnelAddr"], "ipip"),
        (&spec["ipv4VXLANTunnelAddr"], "vxlan"),
        (&spec["ipv6VXLANTunnelAddr"], "vxlan-v6"),
        (&spec["wireguard"]["interfaceIPv4Address"], "wireguard"),
        (&spec["wireguard"]["interfaceIPv6Address"], "wireguard-v6"),
    ]
    .into_iter()
    .filter_map(|(field, kind)| {
        let address = field.as_str().and_then(parse_address)?;
        Some(InUseAddress {
            address,
            owner: format!("node {name} ({kind} tunnel)"),
        })
    })
    .collect()
}

/// A pod's addresses as its WorkloadEndpoint would hold them (reference §2.3: `status.podIPs`,
/// then the CNI annotations while the kubelet has not reported yet; none for host-network and
/// finished pods), so a pod that is still starting is not taken for a leak.
pub fn pod_addresses(pod: &Pod) -> Vec<InUseAddress> {
    match crate::syncer::convert::pod(pod) {
        Conversion::Valid(key, resource) => match *resource {
            Resource::Pod(pod) => pod
                .addresses
                .into_iter()
                .map(|address| InUseAddress {
                    address,
                    owner: format!("pod {key}"),
                })
                .collect(),
            _ => Vec::new(),
        },
        Conversion::Absent(_) | Conversion::Invalid(..) | Conversion::InvalidKept(..) => Vec::new(),
    }
}

fn unavailable(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        key: what.to_string(),
        reason: error.to_string(),
    }
}

/// Everything the datastore says is in use (the in-memory store has no workloads: empty).
pub async fn addresses_in_use(store: &AnyDatastore) -> Result<Vec<InUseAddress>, StoreError> {
    let mut in_use = Vec::new();
    match store {
        AnyDatastore::Memory(_) => {}
        AnyDatastore::Etcd(etcd) => {
            for (prefix, parse) in [
                (
                    WEP_PREFIX,
                    workload_endpoint_from_json as fn(&Value) -> Vec<InUseAddress>,
                ),
                (NODE_PREFIX, node_from_json),
            ] {
                for (key, bytes) in etcd.list_raw(prefix).await? {
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(value) => in_use.extend(parse(&value)),
                        Err(error) => tracing::warn!(key, %error, "ignoring unreadable object"),
                    }
                }
            }
        }
        AnyDatastore::Kube(kube) => {
            let pods: Api<Pod> = Api::all(kube.client());
            for pod in pods
                .list(&ListParams::default())
                .await
                .map_err(|e| unavailable("pods", e))?
            {
                in_use.extend(pod_addresses(&pod));
            }
            let nodes: Api<Node> = Api::all(kube.client());
            for node in nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| unavailable("nodes", e))?
            {
                let name = node.metadata.name.unwrap_or_default();
                let annotations = node.metadata.annotations.unwrap_or_default();
                for (annotation, kind) in TUNNEL_ANNOTATIONS {
                    if let Some(address) =
                        annotations.get(annotation).and_then(|a| parse_address(a))
                    {
                        in_use.push(InUseAddress {
                            address,
                            owner: format!("node {name} ({kind} tunnel)"),
                        });
                    }
                }
            }
        }
    }
    Ok(in_use)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_workload_endpoints_and_nodes() {
        let wep = serde_json::json!({
            "metadata": {"namespace": "default", "name": "node1-k8s-web-eth0"},
            "spec": {"ipNetworks": ["10.0.0.5/32", "fd00::5/128", "junk"]}
        });
        let found = workload_endpoint_from_json(&wep);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].address, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(
            found[0].owner,
            "workload endpoint default/node1-k8s-web-eth0"
        );
        let node = serde_json::json!({
            "metadata": {"name": "n1"},
            "spec": {"bgp": {"ipv4IPIPTunnelAddr": "10.0.0.1"}, "ipv4VXLANTunnelAddr": "10.0.0.2",
                     "wireguard": {"interfaceIPv4Address": "10.0.0.3"}}
        });
        let found = node_from_json(&node);
        assert_eq!(found.len(), 3);
        assert_eq!(found[1].owner, "node n1 (vxlan tunnel)");
        assert_eq!(found[2].owner, "node n1 (wireguard tunnel)");
        assert_eq!(found[2].address, "10.0.0.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn pods_count_with_their_annotation_until_the_kubelet_reports() {
        let pod = |phase: &str, status_ips: Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": "default", "name": "web",
                             "annotations": {"cni.projectcalico.org/podIP": "10.0.0.9/32"}},
                "spec": {"nodeName": "n1", "containers": []},
                "status": {"phase": phase, "podIPs": status_ips}
            }))
            .unwrap()
        };
        let starting = pod_addresses(&pod("Pending", serde_json::json!([])));
        assert_eq!(starting.len(), 1);
        assert_eq!(starting[0].address, "10.0.0.9".parse::<IpAddr>().unwrap());
        assert_eq!(starting[0].owner, "pod default/web");
        let running = pod_addresses(&pod("Running", serde_json::json!([{"ip": "10.0.0.8"}])));
        assert_eq!(running[0].address, "10.0.0.8".parse::<IpAddr>().unwrap());
        assert!(
            pod_addresses(&pod("Succeeded", serde_json::json!([{"ip": "10.0.0.8"}]))).is_empty()
        );
    }
}
