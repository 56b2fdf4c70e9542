//! One cluster written to both datastores: as Kubernetes (and Calico CRD) objects to the API
//! test server, and as the Calico v3 objects Calico's components store in etcd for the same
//! cluster (CNI plugin: WorkloadEndpoints; kube-controllers: `kns.`/`ksa.` profiles, endpoint
//! labels and Kubernetes policies converted to `knp.default.<name>`; calicoctl: Calico kinds).
//! Every `Datastores` method writes both sides, so a test changes "the cluster", not a side.
#![allow(dead_code)]

pub mod scenario;

use std::collections::BTreeMap;

use chrono::Utc;
use ipnet::IpNet;
use serde_json::{json, Value};
use starling::datastore::endpoints;
use starling::datastore::etcd::EtcdStore;
use starling_calc::spec::veth_name;
use starling_model::{PodEndpoint, WorkloadEndpoint};
use starling_policy::{k8s, model};

use crate::kube_api::KubeApiServer;

pub const LOCAL_NODE: &str = "node-a";
pub const REMOTE_NODE: &str = "node-b";
pub const INTERFACE_PREFIX: &str = "cali";
/// How kube-controllers (v3.28–v3.31) name a converted Kubernetes policy in etcd.
pub const KNP_PREFIX: &str = "knp.default.";
const V3: &str = "/calico/resources/v3/projectcalico.org/";

pub type Labels = BTreeMap<String, String>;

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A container port: name (unnamed ports are not recorded by Calico), protocol (`None`: the
/// field left out, TCP), number.
#[derive(Debug, Clone)]
pub struct Port(pub Option<&'static str>, pub Option<&'static str>, pub u16);

/// Where the API has a pod's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// Calico's `podIPs` annotation and the kubelet's `status.podIPs`.
    Both,
    /// Only `status.podIPs`.
    Status,
    /// Only `status.podIP` (single stack, as older kubelets report).
    PodIp,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub namespace: &'static str,
    pub name: &'static str,
    pub node: &'static str,
    /// Host networks (`/32`, `/128`).
    pub networks: Vec<&'static str>,
    pub labels: Labels,
    /// `None`: no `serviceAccountName` (no admission set it).
    pub account: Option<&'static str>,
    pub ports: Vec<Port>,
    /// Ports of a sidecar (an init container with `restartPolicy: Always`).
    pub sidecar_ports: Vec<Port>,
    pub addresses: Addresses,
}

fn container_ports(ports: &[Port]) -> Vec<Value> {
    ports
        .iter()
        .map(|Port(name, protocol, number)| {
            let mut port = json!({"containerPort": number});
            if let Some(name) = name {
                port["name"] = json!(name);
            }
            if let Some(protocol) = protocol {
                port["protocol"] = json!(protocol);
            }
            port
        })
        .collect()
}

impl Pod {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn interface(&self) -> String {
        veth_name(INTERFACE_PREFIX, self.namespace, self.name)
    }

    fn kube_object(&self) -> Value {
        let ips: Vec<String> = self.networks.iter().map(|net| host(net)).collect();
        let mut metadata = json!({"name": self.name, "namespace": self.namespace,
            "labels": self.labels});
        let mut status = json!({"phase": "Running"});
        match self.addresses {
            Addresses::Both | Addresses::Status => {
                status["podIP"] = json!(ips[0]);
                status["podIPs"] = ips.iter().map(|ip| json!({"ip": ip})).collect();
            }
            Addresses::PodIp => status["podIP"] = json!(ips[0]),
        }
        if self.addresses == Addresses::Both {
            metadata["annotations"] = json!({"cni.projectcalico.org/podIPs": self.networks.join(","),
                "cni.projectcalico.org/podIP": self.networks[0]});
        }
        let mut spec = json!({"nodeName": self.node,
            "containers": [{"name": "main", "image": "registry.example/app:1",
                "ports": container_ports(&self.ports)}]});
        if let Some(account) = self.account {
            spec["serviceAccountName"] = json!(account);
        }
        if !self.sidecar_ports.is_empty() {
            spec["initContainers"] = json!([{"name": "proxy", "image": "registry.example/proxy:1",
                "restartPolicy": "Always", "ports": container_ports(&self.sidecar_ports)}]);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": status})
    }

    fn endpoint(&self) -> WorkloadEndpoint {
        WorkloadEndpoint::for_pod(PodEndpoint {
            node: self.node.to_string(),
            namespace: self.namespace.to_string(),
            pod: self.name.to_string(),
            container_id: format!("container-{}", self.name),
            endpoint: "eth0".to_string(),
            interface_name: self.interface(),
            mac: None,
            networks: self
                .networks
                .iter()
                .map(|net| net.parse::<IpNet>().unwrap())
                .collect(),
            pod_labels: self.labels.clone(),
            service_account: self.account.map(str::to_string),
            ip_nats: Vec::new(),
        })
        .unwrap()
    }

    /// The WorkloadEndpoint as the CNI plugin writes it, with the named ports Calico records.
    fn etcd_object(&self) -> (String, Value) {
        let endpoint = self.endpoint();
        let bytes = endpoints::encode(&endpoint, format!("uid-{}", self.name), Utc::now()).unwrap();
        let mut value: Value = serde_json::from_slice(&bytes).unwrap();
        let ports: Vec<Value> = self
            .ports
            .iter()
            .chain(&self.sidecar_ports)
            .filter_map(|Port(name, protocol, number)| {
                Some(
                    json!({"name": (*name)?, "protocol": protocol.unwrap_or("TCP"),
                    "port": number}),
                )
            })
            .collect();
        value["spec"]["ports"] = json!(ports);
        (endpoints::key(self.namespace, &endpoint.name), value)
    }
}

fn host(net: &str) -> String {
    net.split('/').next().unwrap_or(net).to_string()
}

/// A namespace's labels as the API server keeps them (with `kubernetes.io/metadata.name`).
pub fn namespace_object(name: &str, own: &Labels) -> Value {
    let mut labels = own.clone();
    labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}})
}

pub fn service_account_object(namespace: &str, name: &str, labels: &Labels) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace, "labels": labels}})
}

/// The `kns.<ns>` profile kube-controllers write for `namespace` (a Namespace object).
pub fn namespace_profile(namespace: &Value) -> Value {
    let decoded: model::Namespace = serde_json::from_value(namespace.clone()).unwrap();
    serde_json::to_value(k8s::namespace_profile_object(&decoded)).unwrap()
}

/// The `ksa.<ns>.<sa>` profile kube-controllers write for `account`.
pub fn service_account_profile(account: &Value) -> Value {
    let decoded: model::ServiceAccount = serde_json::from_value(account.clone()).unwrap();
    serde_json::to_value(k8s::service_account_profile_object(&decoded)).unwrap()
}

/// A Kubernetes NetworkPolicy converted as kube-controllers store it in etcd: Calico's
/// conversion under the name `knp.default.<name>`.
pub fn converted_policy(object: &Value) -> (String, Value) {
    let decoded: model::KubeNetworkPolicy =
        model::decode(model::KIND_KUBERNETES_NETWORK_POLICY, object).unwrap();
    let converted = k8s::to_calico(&decoded).unwrap();
    let mut value = serde_json::to_value(converted).unwrap();
    let namespace = decoded.metadata.namespace.unwrap_or_default();
    let name = format!("{KNP_PREFIX}{}", decoded.metadata.name);
    value["metadata"] = json!({"name": name, "namespace": namespace});
    (format!("{V3}networkpolicies/{namespace}/{name}"), value)
}

fn calico_plural(kind: &str) -> &'static str {
    match kind {
        "NetworkPolicy" => "networkpolicies",
        "GlobalNetworkPolicy" => "globalnetworkpolicies",
        "Tier" => "tiers",
        other => panic!("not a Calico policy kind: {other}"),
    }
}

fn calico_key(plural: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{V3}{plural}/{namespace}/{name}"),
        None => format!("{V3}{plural}/{name}"),
    }
}

/// The two datastores of the same cluster.
pub struct Datastores {
    pub kube: KubeApiServer,
    pub etcd: EtcdStore,
}

impl Datastores {
    async fn etcd_put(&self, key: &str, value: &Value) {
        self.etcd
            .put_raw(key, &serde_json::to_vec(value).unwrap())
            .await
            .unwrap_or_else(|error| panic!("writing {key}: {error}"));
    }

    async fn etcd_delete(&self, key: &str) {
        let (_, revision) = self
            .etcd
            .get_raw_versioned(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} is not in etcd"));
        self.etcd.delete_raw(key, &revision).await.unwrap();
    }

    /// A namespace; in etcd its `kns.<ns>` profile.
    pub async fn namespace(&self, name: &str, own: &Labels) {
        let object = namespace_object(name, own);
        self.kube.put_object("v1", "namespaces", object.clone());
        let profile = namespace_profile(&object);
        let key = calico_key(
            "profiles",
            None,
            profile["metadata"]["name"].as_str().unwrap(),
        );
        self.etcd_put(&key, &profile).await;
    }

    /// A service account; in etcd its `ksa.<ns>.<sa>` profile.
    pub async fn service_account(&self, namespace: &str, name: &str, own: &Labels) {
        let object = service_account_object(namespace, name, own);
        self.kube
            .put_object("v1", "serviceaccounts", object.clone());
        let profile = service_account_profile(&object);
        let key = calico_key(
            "profiles",
            None,
            profile["metadata"]["name"].as_str().unwrap(),
        );
        self.etcd_put(&key, &profile).await;
    }

    /// A running pod; in etcd its WorkloadEndpoint.
    pub async fn pod(&self, pod: &Pod) {
        self.kube.put_object("v1", "pods", pod.kube_object());
        let (key, value) = pod.etcd_object();
        self.etcd_put(&key, &value).await;
    }

    pub async fn delete_pod(&self, pod: &Pod) {
        self.kube
            .delete_object("v1", "pods", Some(pod.namespace), pod.name)
            .unwrap_or_else(|| panic!("pod {} is not in the API", pod.key()));
        self.etcd_delete(&pod.etcd_object().0).await;
    }

    /// A pod the CNI plugin never sees (host network, or not scheduled): only in the API.
    pub fn pod_without_endpoint(&self, object: Value) {
        self.kube.put_object("v1", "pods", object);
    }

    /// A `networking.k8s.io/v1` NetworkPolicy; in etcd its converted Calico policy.
    pub async fn kubernetes_policy(&self, object: &Value) {
        self.kube
            .put_object("networking.k8s.io/v1", "networkpolicies", object.clone());
        let (key, value) = converted_policy(object);
        self.etcd_put(&key, &value).await;
    }

    pub async fn delete_kubernetes_policy(&self, namespace: &str, name: &str) {
        self.kube
            .delete_object(
                "networking.k8s.io/v1",
                "networkpolicies",
                Some(namespace),
                name,
            )
            .unwrap_or_else(|| panic!("policy {namespace}/{name} is not in the API"));
        let key = calico_key(
            "networkpolicies",
            Some(namespace),
            &format!("{KNP_PREFIX}{name}"),
        );
        self.etcd_delete(&key).await;
    }

    /// A Calico object given as `projectcalico.org/v3`: the same spec as a
    /// `crd.projectcalico.org/v1` object in the API, at its v3 key in etcd.
    pub async fn calico(&self, object: &Value) {
        let kind = object["kind"].as_str().unwrap();
        let mut crd = object.clone();
        crd["apiVersion"] = json!("crd.projectcalico.org/v1");
        self.kube
            .put_object("crd.projectcalico.org/v1", calico_plural(kind), crd);
        let metadata = &object["metadata"];
        let key = calico_key(
            calico_plural(kind),
            metadata["namespace"].as_str(),
            metadata["name"].as_str().unwrap(),
        );
        self.etcd_put(&key, object).await;
    }

    pub async fn delete_calico(&self, kind: &str, namespace: Option<&str>, name: &str) {
        self.kube
            .delete_object(
                "crd.projectcalico.org/v1",
                calico_plural(kind),
                namespace,
                name,
            )
            .unwrap_or_else(|| panic!("{kind} {name} is not in the API"));
        self.etcd_delete(&calico_key(calico_plural(kind), namespace, name))
            .await;
    }
}
