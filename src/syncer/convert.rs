//! Per-kind conversion of stored objects into validated [`Resource`]s, shared by the etcd and
//! Kubernetes watchers.
//!
//! Contract: a conversion names the object's key even when it fails, so an invalid object can
//! be made absent (one log line and `starling_resources_rejected_total{kind}` per rejection,
//! counted by the caller). Keys: the object name in Kubernetes, the full key in etcd; pods and
//! secrets (Kubernetes only) are keyed `namespace/name` and `name`, workload endpoints (etcd
//! only) `namespace/name` once the watcher strips the prefix.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, Secret};

use crate::datastore::StoredKind;
use crate::resources::FromResource;
use crate::resources::{BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool};
use starling_calc::state::{Kind, LocalPod, Resource, SecretData};
use starling_ipam::block::Block;
use starling_ipam::records::{Affinity, IpamConfig, Reservation};
use starling_model::bgp::BgpConfigLayer;
use starling_model::felix::FelixLayer;
use starling_model::{BgpFilter, BgpPeer, IpPool, IpReservation};

/// What one stored object means for the state.
#[derive(Debug, Clone, PartialEq)]
pub enum Conversion {
    Valid(String, Box<Resource>),
    /// Not ours to show (a delete in progress, a host-network pod): absent, silently.
    Absent(String),
    /// Broken: absent, logged and counted.
    Invalid(String, String),
    /// Broken: logged and counted like `Invalid`, but this stand-in takes its place in the state
    /// so that objects naming it can tell "invalid" from "missing" (BGPFilters).
    InvalidKept(String, String, Box<Resource>),
}

impl Conversion {
    pub fn key(&self) -> &str {
        match self {
            Conversion::Valid(key, _)
            | Conversion::Absent(key)
            | Conversion::Invalid(key, _)
            | Conversion::InvalidKept(key, _, _) => key,
        }
    }
}

/// A StoredKind with its conversion into a state resource.
pub trait WatchedKind: StoredKind {
    const KIND: Kind;
    fn into_resource(self) -> Result<Resource, String>;
    /// What stays in the state in place of an invalid object stored under `key` (default:
    /// nothing, the object is absent).
    fn invalid_stand_in(_key: &str, _reason: &str) -> Option<Resource> {
        None
    }
}

impl WatchedKind for IPPool {
    const KIND: Kind = Kind::IpPool;
    fn into_resource(self) -> Result<Resource, String> {
        IpPool::from_resource(&self)
            .map(Resource::IpPool)
            .map_err(|e| e.to_string())
    }
}

impl WatchedKind for Block {
    const KIND: Kind = Kind::IpamBlock;
    fn into_resource(self) -> Result<Resource, String> {
        Ok(Resource::IpamBlock(self))
    }
}

impl WatchedKind for Affinity {
    const KIND: Kind = Kind::BlockAffinity;
    fn into_resource(self) -> Result<Resource, String> {
        Ok(Resource::BlockAffinity(self))
    }
}

impl WatchedKind for BGPConfiguration {
    const KIND: Kind = Kind::BgpConfiguration;
    fn into_resource(self) -> Result<Resource, String> {
        BgpConfigLayer::from_resource(&self)
            .map(|layer| Resource::BgpConfiguration(Box::new(layer)))
            .map_err(|e| e.to_string())
    }
}

impl WatchedKind for BGPPeer {
    const KIND: Kind = Kind::BgpPeer;
    fn into_resource(self) -> Result<Resource, String> {
        BgpPeer::from_resource(&self)
            .map(Resource::BgpPeer)
            .map_err(|e| e.to_string())
    }
}

impl WatchedKind for BGPFilter {
    const KIND: Kind = Kind::BgpFilter;
    fn into_resource(self) -> Result<Resource, String> {
        BgpFilter::from_resource(&self)
            .map(|filter| Resource::BgpFilter(Box::new(filter)))
            .map_err(|e| e.to_string())
    }
    /// The key is the name (Kubernetes) or a path ending in it (etcd).
    fn invalid_stand_in(key: &str, reason: &str) -> Option<Resource> {
        let name = key.rsplit('/').next().unwrap_or(key);
        Some(Resource::InvalidBgpFilter {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    }
}

impl WatchedKind for Reservation {
    const KIND: Kind = Kind::IpReservation;
    fn into_resource(self) -> Result<Resource, String> {
        Ok(Resource::IpReservation(IpReservation {
            name: self.name,
            cidrs: self.reserved_cidrs,
        }))
    }
}

impl WatchedKind for FelixConfiguration {
    const KIND: Kind = Kind::FelixConfiguration;
    fn into_resource(self) -> Result<Resource, String> {
        FelixLayer::from_resource(&self)
            .map(|layer| Resource::FelixConfiguration(Box::new(layer)))
            .map_err(|e| e.to_string())
    }
}

impl WatchedKind for IpamConfig {
    const KIND: Kind = Kind::IpamConfig;
    fn into_resource(self) -> Result<Resource, String> {
        Ok(Resource::IpamConfig(self))
    }
}

fn finish(key: String, result: Result<Resource, String>) -> Conversion {
    match result {
        Ok(resource) => Conversion::Valid(key, Box::new(resource)),
        Err(reason) => Conversion::Invalid(key, reason),
    }
}

/// [`finish`] with `K`'s stand-in for an invalid object.
fn finish_kind<K: WatchedKind>(key: String, result: Result<Resource, String>) -> Conversion {
    match result {
        Err(reason) => match K::invalid_stand_in(&key, &reason) {
            Some(stand_in) => Conversion::InvalidKept(key, reason, Box::new(stand_in)),
            None => Conversion::Invalid(key, reason),
        },
        result => finish(key, result),
    }
}

/// A Kubernetes CRD object of kind `K`.
pub fn from_crd<K: WatchedKind>(name: String, crd: &K::Crd) -> Conversion {
    if K::crd_deleted(crd) {
        return Conversion::Absent(name);
    }
    let result = K::from_crd(crd).and_then(K::into_resource);
    finish_kind::<K>(name, result)
}

/// An etcd key/value under `K`'s prefix; `None` for keys of other shapes.
pub fn from_etcd<K: WatchedKind>(path: &str, bytes: &[u8]) -> Option<Conversion> {
    let key = K::etcd_parse_key(path)?;
    let result = K::etcd_decode(&key, bytes).and_then(K::into_resource);
    Some(finish_kind::<K>(path.to_string(), result))
}

/// The etcd-mode Calico Node resource.
pub fn node_from_etcd(path: &str, bytes: &[u8]) -> Option<Conversion> {
    let name = path.strip_prefix(NODE_PREFIX)?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let result = serde_json::from_slice::<crate::resources::CalicoNodeResource>(bytes)
        .map(|resource| Resource::Node(crate::resources::node::calico_node_from_v3(&resource)))
        .map_err(|e| format!("Node {name:?}: {e}"));
    Some(finish(path.to_string(), result))
}

/// etcd prefix of Calico Node resources.
pub const NODE_PREFIX: &str = "/calico/resources/v3/projectcalico.org/nodes/";

/// etcd prefix of WorkloadEndpoints (state keys are `namespace/name`).
pub const WORKLOAD_ENDPOINT_PREFIX: &str = crate::datastore::endpoints::PREFIX;

/// An etcd-mode WorkloadEndpoint; `None` for keys that are not `<namespace>/<name>`.
pub fn workload_endpoint_from_etcd(path: &str, bytes: &[u8]) -> Option<Conversion> {
    crate::datastore::endpoints::parse_key(path)?;
    let result = crate::datastore::endpoints::decode(path, bytes)
        .map(|endpoint| Resource::WorkloadEndpoint(Box::new(endpoint)));
    Some(finish(path.to_string(), result))
}

/// A pod's workload view (§2.3): no addresses for finished pods; host-network pods are absent.
pub fn pod(pod: &Pod) -> Conversion {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let key = format!("{namespace}/{name}");
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false)
        || spec
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("")
            .is_empty()
    {
        return Conversion::Absent(key);
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    let empty = BTreeMap::new();
    let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let finished = matches!(phase, "Failed" | "Succeeded" | "Completed")
        || (pod.metadata.deletion_timestamp.is_some()
            && annotations
                .get("cni.projectcalico.org/podIP")
                .is_some_and(|ip| ip.is_empty()));
    let mut texts: Vec<String> = Vec::new();
    if let Some(ips) = status.and_then(|s| s.pod_ips.as_ref()) {
        texts.extend(ips.iter().map(|ip| ip.ip.clone()));
    }
    if texts.is_empty() {
        texts.extend(status.and_then(|s| s.pod_ip.clone()));
    }
    for annotation in [
        "cni.projectcalico.org/podIPs",
        "cni.projectcalico.org/podIP",
    ] {
        if texts.is_empty() {
            if let Some(value) = annotations.get(annotation) {
                texts.extend(value.split(',').map(|s| s.trim().to_string()));
            }
        }
    }
    let addresses: Vec<IpAddr> = if finished {
        Vec::new()
    } else {
        texts
            .iter()
            .filter(|text| !text.is_empty())
            .filter_map(|text| {
                text.parse::<IpAddr>()
                    .ok()
                    .or_else(|| text.parse::<ipnet::IpNet>().ok().map(|net| net.addr()))
            })
            .collect()
    };
    let ip_nats = match annotations.get(starling_ipam::request::ANNOTATION_FLOATING_IPS) {
        None => Vec::new(),
        Some(text) => match serde_json::from_str::<Vec<String>>(text) {
            Ok(list) => {
                let mut externals = Vec::new();
                for entry in &list {
                    match entry.trim().parse::<IpAddr>() {
                        Ok(address) => externals.push(address),
                        Err(_) => tracing::warn!(
                            pod = %key,
                            entry = %entry,
                            "floatingIPs annotation: not an IP address; entry ignored"
                        ),
                    }
                }
                starling_calc::floating::pair_with_pod(&addresses, &externals)
            }
            // The pod keeps its routes; only its floating IPs are dropped (Calico refuses the
            // whole endpoint, which would cut the pod off).
            Err(error) => {
                tracing::warn!(pod = %key, %error, "floatingIPs annotation is not a JSON list of strings; ignored");
                Vec::new()
            }
        },
    };
    Conversion::Valid(
        key,
        Box::new(Resource::Pod(LocalPod {
            namespace,
            name,
            addresses,
            ip_nats,
        })),
    )
}

/// A Secret's data as UTF-8 text (values that are not text are skipped).
pub fn secret(secret: &Secret) -> Conversion {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let mut data = BTreeMap::new();
    for (key, value) in secret.data.iter().flatten() {
        if let Ok(text) = String::from_utf8(value.0.clone()) {
            data.insert(key.clone(), text);
        }
    }
    for (key, value) in secret.string_data.iter().flatten() {
        data.insert(key.clone(), value.clone());
    }
    Conversion::Valid(name, Box::new(Resource::Secret(SecretData { data })))
}
