//! Workload endpoints (reference §2.3): what Calico's CNI plugin records about a pod's interface,
//! and the names Calico gives them.
//!
//! Contract:
//! - [`k8s_endpoint_name`] is libcalico-go's `CalculateWorkloadEndpointName` for the `k8s`
//!   orchestrator: `<node>-k8s-<pod>-<endpoint>`, every `-` inside a segment doubled, segments
//!   that are empty or begin or end with `-` refused. [`split_endpoint_name`] undoes it.
//! - [`WorkloadEndpoint::for_pod`] builds the endpoint the CNI plugin writes on ADD: labels are
//!   the pod's plus `projectcalico.org/namespace` and `projectcalico.org/orchestrator` (and
//!   `projectcalico.org/serviceaccount` when known and shorter than 63 characters), which
//!   always win over pod labels of the same key; profiles are `kns.<namespace>` then
//!   `ksa.<namespace>.<serviceaccount>` when the service account is known.
//! - [`WorkloadEndpoint::spec`] is its wire form; `validate::workload_endpoint` the way back.
//! - `ip_nats` are the endpoint's floating IPs (`spec.ipNATs`): traffic to `external` is
//!   DNATed to `internal`, an address of the endpoint of the same family.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::node::MacAddr;
use crate::wire::WorkloadEndpointSpec;

/// Calico kind name.
pub const KIND: &str = "WorkloadEndpoint";
/// etcd plural (`/calico/resources/v3/projectcalico.org/workloadendpoints/<ns>/<name>`).
pub const PLURAL: &str = "workloadendpoints";
pub const ORCHESTRATOR_K8S: &str = "k8s";
pub const LABEL_NAMESPACE: &str = "projectcalico.org/namespace";
pub const LABEL_ORCHESTRATOR: &str = "projectcalico.org/orchestrator";
pub const LABEL_SERVICE_ACCOUNT: &str = "projectcalico.org/serviceaccount";
pub const NAMESPACE_PROFILE_PREFIX: &str = "kns.";
pub const SERVICE_ACCOUNT_PROFILE_PREFIX: &str = "ksa.";
/// Longer service account names are not copied into a label (they may not fit a label value).
const SERVICE_ACCOUNT_LABEL_LIMIT: usize = 63;

/// Why a WorkloadEndpoint name cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointNameError {
    #[error("WorkloadEndpoint name: the {field} is empty")]
    Empty { field: &'static str },
    #[error("WorkloadEndpoint name: the {field} {value:?} must not begin or end with '-'")]
    EdgeDash { field: &'static str, value: String },
}

/// Joins named segments with `-`, doubling the dashes inside each (libcalico-go `escapeDashes`).
pub fn endpoint_name(segments: &[(&'static str, &str)]) -> Result<String, EndpointNameError> {
    let mut escaped = Vec::with_capacity(segments.len());
    for (field, value) in segments {
        if value.is_empty() {
            return Err(EndpointNameError::Empty { field });
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(EndpointNameError::EdgeDash {
                field,
                value: value.to_string(),
            });
        }
        escaped.push(value.replace('-', "--"));
    }
    Ok(escaped.join("-"))
}

/// `<node>-k8s-<pod>-<endpoint>`, e.g. node `node-1`, pod `web-0`, `eth0` →
/// `node--1-k8s-web--0-eth0`.
pub fn k8s_endpoint_name(
    node: &str,
    pod: &str,
    endpoint: &str,
) -> Result<String, EndpointNameError> {
    endpoint_name(&[
        ("node", node),
        ("orchestrator", ORCHESTRATOR_K8S),
        ("pod", pod),
        ("endpoint", endpoint),
    ])
}

/// The segments of a name built by [`endpoint_name`], dashes un-doubled.
pub fn split_endpoint_name(name: &str) -> Vec<String> {
    let bytes = name.as_bytes();
    let mut parts = Vec::new();
    let mut start = 0;
    // A dash at position 0 cannot be a separator (segments never start with one).
    let mut index = 1;
    while index < bytes.len() {
        if bytes[index] == b'-' {
            if bytes.get(index + 1) == Some(&b'-') {
                index += 2;
                continue;
            }
            parts.push(name[start..index].replace("--", "-"));
            start = index + 1;
        }
        index += 1;
    }
    parts.push(name[start..].replace("--", "-"));
    parts
}

/// What a CNI ADD knows about a pod's interface once it is wired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodEndpoint {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    pub container_id: String,
    /// The interface inside the pod (`CNI_IFNAME`, normally `eth0`).
    pub endpoint: String,
    /// The host side of the veth.
    pub interface_name: String,
    /// The MAC of the interface inside the pod.
    pub mac: Option<MacAddr>,
    pub networks: Vec<IpNet>,
    /// The pod's own labels (empty when the orchestrator's API is not reachable).
    pub pod_labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    /// Floating IPs (`cni.projectcalico.org/floatingIPs`, already validated).
    pub ip_nats: Vec<IpNat>,
}

/// One floating IP of an endpoint (`spec.ipNATs[]`): `external` reaches `internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNat {
    pub internal: IpAddr,
    pub external: IpAddr,
}

/// A validated WorkloadEndpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadEndpoint {
    pub namespace: String,
    pub name: String,
    pub orchestrator: String,
    pub node: String,
    pub pod: String,
    pub container_id: String,
    pub endpoint: String,
    pub interface_name: String,
    pub mac: Option<MacAddr>,
    pub networks: Vec<IpNet>,
    pub profiles: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub service_account: Option<String>,
    pub ip_nats: Vec<IpNat>,
}

impl WorkloadEndpoint {
    /// The endpoint Calico's CNI plugin writes for a Kubernetes pod.
    pub fn for_pod(pod: PodEndpoint) -> Result<WorkloadEndpoint, EndpointNameError> {
        let name = k8s_endpoint_name(&pod.node, &pod.pod, &pod.endpoint)?;
        let service_account = pod.service_account.filter(|sa| !sa.is_empty());
        let mut labels = pod.pod_labels;
        labels.insert(LABEL_NAMESPACE.to_string(), pod.namespace.clone());
        labels.insert(LABEL_ORCHESTRATOR.to_string(), ORCHESTRATOR_K8S.to_string());
        let mut profiles = vec![format!("{NAMESPACE_PROFILE_PREFIX}{}", pod.namespace)];
        if let Some(account) = &service_account {
            if account.len() < SERVICE_ACCOUNT_LABEL_LIMIT {
                labels.insert(LABEL_SERVICE_ACCOUNT.to_string(), account.clone());
            }
            profiles.push(format!(
                "{SERVICE_ACCOUNT_PROFILE_PREFIX}{}.{account}",
                pod.namespace
            ));
        }
        Ok(WorkloadEndpoint {
            namespace: pod.namespace,
            name,
            orchestrator: ORCHESTRATOR_K8S.to_string(),
            node: pod.node,
            pod: pod.pod,
            container_id: pod.container_id,
            endpoint: pod.endpoint,
            interface_name: pod.interface_name,
            mac: pod.mac,
            networks: pod.networks,
            profiles,
            labels,
            service_account,
            ip_nats: pod.ip_nats,
        })
    }

    /// `<namespace>/<name>`: unique across the cluster (the key under the etcd prefix).
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.networks.iter().map(IpNet::addr)
    }

    /// The wire spec.
    pub fn spec(&self) -> WorkloadEndpointSpec {
        WorkloadEndpointSpec {
            orchestrator: self.orchestrator.clone(),
            node: self.node.clone(),
            container_id: self.container_id.clone(),
            pod: self.pod.clone(),
            endpoint: self.endpoint.clone(),
            service_account_name: self.service_account.clone().unwrap_or_default(),
            ip_networks: self.networks.iter().map(IpNet::to_string).collect(),
            ip_nats: self
                .ip_nats
                .iter()
                .map(|nat| crate::wire::IpNat {
                    internal_ip: nat.internal.to_string(),
                    external_ip: nat.external.to_string(),
                    source: String::new(),
                })
                .collect(),
            profiles: self.profiles.clone(),
            interface_name: self.interface_name.clone(),
            mac: self.mac.map(|mac| mac.to_string()).unwrap_or_default(),
            ..WorkloadEndpointSpec::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_double_inner_dashes_and_refuse_edge_dashes() {
        assert_eq!(
            k8s_endpoint_name("node1", "web", "eth0").unwrap(),
            "node1-k8s-web-eth0"
        );
        assert_eq!(
            k8s_endpoint_name("node-1", "web-0-abc", "eth0").unwrap(),
            "node--1-k8s-web--0--abc-eth0"
        );
        // Dots and other characters are kept as they are.
        assert_eq!(
            k8s_endpoint_name("ip-10-0-0-1.ec2.internal", "db.0", "eth0").unwrap(),
            "ip--10--0--0--1.ec2.internal-k8s-db.0-eth0"
        );
        assert_eq!(
            k8s_endpoint_name("", "web", "eth0"),
            Err(EndpointNameError::Empty { field: "node" })
        );
        assert_eq!(
            k8s_endpoint_name("n1", "web-", "eth0"),
            Err(EndpointNameError::EdgeDash {
                field: "pod",
                value: "web-".into()
            })
        );
        assert!(k8s_endpoint_name("-n1", "web", "eth0").is_err());
        let error = k8s_endpoint_name("n1", "web", "").unwrap_err();
        assert!(error.to_string().contains("endpoint is empty"), "{error}");
    }

    #[test]
    fn split_undoes_the_escaping() {
        for (node, pod) in [
            ("node1", "node1-p1"),
            ("a-b-c", "x--y"),
            ("n", "p"),
            ("ip-10-0-0-1", "web-7d9f-xk2"),
        ] {
            let name = k8s_endpoint_name(node, pod, "eth0").unwrap();
            assert_eq!(
                split_endpoint_name(&name),
                vec![node, "k8s", pod, "eth0"],
                "{name}"
            );
        }
        assert_eq!(split_endpoint_name("nodash"), vec!["nodash"]);
    }

    fn pod(service_account: Option<&str>) -> PodEndpoint {
        PodEndpoint {
            node: "node-1".into(),
            namespace: "shop".into(),
            pod: "web-0".into(),
            container_id: "c0ffee".into(),
            endpoint: "eth0".into(),
            interface_name: "cali1234567890a".into(),
            mac: Some(MacAddr([0x02, 0, 0, 0, 0, 0x0a])),
            networks: vec![
                "10.0.0.5/32".parse().unwrap(),
                "fd00::5/128".parse().unwrap(),
            ],
            pod_labels: [
                ("app".to_string(), "web".to_string()),
                // A pod cannot override the labels Calico owns.
                (LABEL_NAMESPACE.to_string(), "elsewhere".to_string()),
            ]
            .into(),
            service_account: service_account.map(str::to_string),
            ip_nats: Vec::new(),
        }
    }

    #[test]
    fn for_pod_builds_calicos_endpoint() {
        let endpoint = WorkloadEndpoint::for_pod(pod(None)).unwrap();
        assert_eq!(endpoint.name, "node--1-k8s-web--0-eth0");
        assert_eq!(endpoint.key(), "shop/node--1-k8s-web--0-eth0");
        assert_eq!(endpoint.profiles, vec!["kns.shop"]);
        let labels: Vec<(&str, &str)> = endpoint
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("app", "web"),
                (LABEL_NAMESPACE, "shop"),
                (LABEL_ORCHESTRATOR, "k8s")
            ]
        );
        let spec = serde_json::to_value(endpoint.spec()).unwrap();
        assert_eq!(
            spec,
            serde_json::json!({
                "orchestrator": "k8s",
                "node": "node-1",
                "pod": "web-0",
                "containerID": "c0ffee",
                "endpoint": "eth0",
                "interfaceName": "cali1234567890a",
                "mac": "02:00:00:00:00:0a",
                "ipNetworks": ["10.0.0.5/32", "fd00::5/128"],
                "profiles": ["kns.shop"],
            })
        );
        let addresses: Vec<IpAddr> = endpoint.addresses().collect();
        assert_eq!(addresses[0], "10.0.0.5".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn service_account_adds_a_profile_and_a_short_label() {
        let endpoint = WorkloadEndpoint::for_pod(pod(Some("frontend"))).unwrap();
        assert_eq!(endpoint.profiles, vec!["kns.shop", "ksa.shop.frontend"]);
        assert_eq!(
            endpoint
                .labels
                .get(LABEL_SERVICE_ACCOUNT)
                .map(String::as_str),
            Some("frontend")
        );
        assert_eq!(endpoint.spec().service_account_name, "frontend");
        let long = "s".repeat(63);
        let endpoint = WorkloadEndpoint::for_pod(pod(Some(&long))).unwrap();
        assert!(!endpoint.labels.contains_key(LABEL_SERVICE_ACCOUNT));
        assert_eq!(endpoint.profiles[1], format!("ksa.shop.{long}"));
        // An empty account is no account.
        let endpoint = WorkloadEndpoint::for_pod(pod(Some(""))).unwrap();
        assert_eq!(endpoint.profiles, vec!["kns.shop"]);
        assert_eq!(endpoint.service_account, None);
    }
}
