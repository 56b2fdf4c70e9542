//! `projectcalico.org/v3` configuration kinds through the same datastore interface as IPAM:
//! IPPool, BGPConfiguration, BGPPeer and FelixConfiguration.
//!
//! The stored value is the crd.projectcalico.org/v1 object itself (so both datastores yield the
//! same type). In etcd it is kept as the v3 object at
//! `/calico/resources/v3/projectcalico.org/<plural>/<name>` (reference §3), its metadata carried
//! over (labels, annotations, uid, creation time); Kubernetes keeps its own object unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use super::StoredKind;
use crate::resources::{BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool};
use starling_model::wire::{V3Metadata, V3Object, V3_API_VERSION};

/// etcd prefix of a v3 kind.
pub fn v3_prefix(plural: &str) -> String {
    format!("/calico/resources/v3/projectcalico.org/{plural}/")
}

fn to_v3_metadata(meta: &ObjectMeta) -> V3Metadata {
    V3Metadata {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        creation_timestamp: meta
            .creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok())
            .and_then(|v| v.as_str().map(str::to_string)),
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        other: Default::default(),
    }
}

fn from_v3_metadata(meta: &V3Metadata) -> ObjectMeta {
    ObjectMeta {
        name: Some(meta.name.clone()),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        creation_timestamp: meta
            .creation_timestamp
            .as_ref()
            .and_then(|t| serde_json::from_value(serde_json::Value::String(t.clone())).ok()),
        labels: meta.labels.clone(),
        annotations: meta.annotations.clone(),
        ..ObjectMeta::default()
    }
}

macro_rules! v3_kind {
    ($crd:ty, $spec:ty, $kind:literal, $plural:literal, $prefix:ident) => {
        static $prefix: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| v3_prefix($plural));

        impl StoredKind for $crd {
            type Key = String;
            type Crd = $crd;

            fn key(&self) -> String {
                self.meta().name.clone().unwrap_or_default()
            }
            fn etcd_key(key: &String) -> String {
                format!("{}{key}", *$prefix)
            }
            fn etcd_prefix() -> &'static str {
                $prefix.as_str()
            }
            fn etcd_parse_key(path: &str) -> Option<String> {
                path.strip_prefix($prefix.as_str())
                    .filter(|name| !name.is_empty() && !name.contains('/'))
                    .map(str::to_string)
            }
            fn etcd_encode(&self) -> Result<Vec<u8>, String> {
                let object: V3Object<$spec> = V3Object {
                    api_version: V3_API_VERSION.to_string(),
                    kind: $kind.to_string(),
                    metadata: to_v3_metadata(self.meta()),
                    spec: self.spec.clone(),
                    status: None,
                };
                serde_json::to_vec(&object).map_err(|e| e.to_string())
            }
            fn etcd_decode(key: &String, bytes: &[u8]) -> Result<Self, String> {
                let object: V3Object<$spec> =
                    serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
                if object.metadata.name != *key {
                    return Err(format!(
                        "metadata.name {:?} does not match the key's name {key:?}",
                        object.metadata.name
                    ));
                }
                let mut value = <$crd>::new(key, object.spec);
                value.metadata = from_v3_metadata(&object.metadata);
                Ok(value)
            }
            fn kube_name(key: &String) -> String {
                key.clone()
            }
            fn to_crd(&self) -> $crd {
                let mut crd = self.clone();
                crd.metadata.resource_version = None;
                crd
            }
            fn from_crd(crd: &$crd) -> Result<Self, String> {
                Ok(crd.clone())
            }
            fn crd_deleted(_: &$crd) -> bool {
                false
            }
            fn crd_mark_deleted(_: &mut $crd) -> bool {
                false
            }
        }
    };
}

v3_kind!(
    IPPool,
    starling_model::wire::IPPoolSpec,
    "IPPool",
    "ippools",
    IPPOOL_PREFIX
);
v3_kind!(
    BGPConfiguration,
    starling_model::wire::BGPConfigurationSpec,
    "BGPConfiguration",
    "bgpconfigurations",
    BGPCONFIG_PREFIX
);
v3_kind!(
    BGPPeer,
    starling_model::wire::BGPPeerSpec,
    "BGPPeer",
    "bgppeers",
    BGPPEER_PREFIX
);
v3_kind!(
    BGPFilter,
    starling_model::wire::BGPFilterSpec,
    "BGPFilter",
    "bgpfilters",
    BGPFILTER_PREFIX
);
v3_kind!(
    FelixConfiguration,
    starling_model::wire::FelixConfigurationSpec,
    "FelixConfiguration",
    "felixconfigurations",
    FELIXCONFIG_PREFIX
);

#[cfg(test)]
mod tests {
    use super::*;
    use starling_model::wire::IPPoolSpec;

    #[test]
    fn etcd_round_trip_keeps_labels_and_spec() {
        let mut pool = IPPool::new(
            "rack0",
            IPPoolSpec {
                cidr: "10.244.0.0/16".into(),
                ..Default::default()
            },
        );
        pool.metadata.labels = Some([("rack".to_string(), "0".to_string())].into());
        let key = StoredKind::key(&pool);
        assert_eq!(
            <IPPool as StoredKind>::etcd_key(&key),
            "/calico/resources/v3/projectcalico.org/ippools/rack0"
        );
        let bytes = pool.etcd_encode().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["apiVersion"], "projectcalico.org/v3");
        assert_eq!(json["kind"], "IPPool");
        assert_eq!(json["spec"]["cidr"], "10.244.0.0/16");
        let back = <IPPool as StoredKind>::etcd_decode(&key, &bytes).unwrap();
        assert_eq!(back.spec, pool.spec);
        assert_eq!(back.metadata.labels, pool.metadata.labels);
        assert_eq!(
            <IPPool as StoredKind>::etcd_parse_key(
                "/calico/resources/v3/projectcalico.org/ippools/a"
            ),
            Some("a".to_string())
        );
        assert!(<IPPool as StoredKind>::etcd_decode(&"other".to_string(), &bytes).is_err());
    }
}
