//! What the policy engine reads from the datastores, as raw JSON objects per kind: the policy
//! task decodes and validates them (an invalid object is absent), so the watchers stay the same
//! for every kind and know nothing of the policy model.
//!
//! Keys: `<namespace>/<name>` for namespaced kinds, `<name>` otherwise, on both datastores.

use std::collections::BTreeMap;

use serde_json::Value;

/// One kind of policy input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InputKind {
    /// `projectcalico.org/v3` NetworkPolicy (etcd) / `crd.projectcalico.org/v1` (Kubernetes).
    NetworkPolicy,
    GlobalNetworkPolicy,
    Tier,
    /// etcd only: Kubernetes' namespace and service-account profiles are written there by
    /// Calico's controllers; in the Kubernetes datastore they are derived from the objects.
    Profile,
    /// etcd only: in the Kubernetes datastore the pods are the endpoints.
    WorkloadEndpoint,
    /// `networking.k8s.io/v1` NetworkPolicy (Kubernetes datastore only; in etcd mode Calico's
    /// controllers store them converted, as NetworkPolicies).
    KubernetesNetworkPolicy,
    Namespace,
    ServiceAccount,
    /// Every pod of the cluster (selector sets need remote pods' addresses too).
    Pod,
}

/// Where a kind lives in the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeResource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

impl InputKind {
    pub const ETCD: [InputKind; 5] = [
        InputKind::NetworkPolicy,
        InputKind::GlobalNetworkPolicy,
        InputKind::Tier,
        InputKind::Profile,
        InputKind::WorkloadEndpoint,
    ];
    pub const KUBE: [InputKind; 7] = [
        InputKind::NetworkPolicy,
        InputKind::GlobalNetworkPolicy,
        InputKind::Tier,
        InputKind::KubernetesNetworkPolicy,
        InputKind::Namespace,
        InputKind::ServiceAccount,
        InputKind::Pod,
    ];

    /// Name for logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::NetworkPolicy => "NetworkPolicy",
            InputKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
            InputKind::Tier => "Tier",
            InputKind::Profile => "Profile",
            InputKind::WorkloadEndpoint => "WorkloadEndpoint",
            InputKind::KubernetesNetworkPolicy => "KubernetesNetworkPolicy",
            InputKind::Namespace => "Namespace",
            InputKind::ServiceAccount => "ServiceAccount",
            InputKind::Pod => "Pod",
        }
    }

    /// The etcd prefix of Calico's v3 layout, for kinds stored in etcd.
    pub fn etcd_prefix(self) -> Option<&'static str> {
        Some(match self {
            InputKind::NetworkPolicy => "/calico/resources/v3/projectcalico.org/networkpolicies/",
            InputKind::GlobalNetworkPolicy => {
                "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"
            }
            InputKind::Tier => "/calico/resources/v3/projectcalico.org/tiers/",
            InputKind::Profile => "/calico/resources/v3/projectcalico.org/profiles/",
            InputKind::WorkloadEndpoint => {
                "/calico/resources/v3/projectcalico.org/workloadendpoints/"
            }
            _ => return None,
        })
    }

    /// The API resource of kinds the Kubernetes datastore holds.
    pub fn kube_resource(self) -> Option<KubeResource> {
        let calico = |kind, plural, namespaced| KubeResource {
            group: "crd.projectcalico.org",
            version: "v1",
            kind,
            plural,
            namespaced,
        };
        let core = |kind, plural| KubeResource {
            group: "",
            version: "v1",
            kind,
            plural,
            namespaced: kind != "Namespace",
        };
        Some(match self {
            InputKind::NetworkPolicy => calico("NetworkPolicy", "networkpolicies", true),
            InputKind::GlobalNetworkPolicy => {
                calico("GlobalNetworkPolicy", "globalnetworkpolicies", false)
            }
            InputKind::Tier => calico("Tier", "tiers", false),
            InputKind::KubernetesNetworkPolicy => KubeResource {
                group: "networking.k8s.io",
                version: "v1",
                kind: "NetworkPolicy",
                plural: "networkpolicies",
                namespaced: true,
            },
            InputKind::Namespace => core("Namespace", "namespaces"),
            InputKind::ServiceAccount => core("ServiceAccount", "serviceaccounts"),
            InputKind::Pod => core("Pod", "pods"),
            InputKind::Profile | InputKind::WorkloadEndpoint => return None,
        })
    }
}

/// A change of one kind, in the syncer's shape (the first message of a kind is a `Replace`).
#[derive(Debug, Clone, PartialEq)]
pub enum InputUpdate {
    Replace {
        kind: InputKind,
        objects: BTreeMap<String, Value>,
    },
    Put {
        kind: InputKind,
        key: String,
        object: Value,
    },
    Delete {
        kind: InputKind,
        key: String,
    },
    OutOfSync {
        kind: InputKind,
    },
}

/// The key of a Kubernetes object from its metadata.
pub fn kube_key(object: &Value) -> Option<String> {
    let metadata = object.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    Some(match metadata.get("namespace").and_then(Value::as_str) {
        Some(namespace) if !namespace.is_empty() => format!("{namespace}/{name}"),
        _ => name.to_string(),
    })
}
