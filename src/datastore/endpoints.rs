//! WorkloadEndpoints in etcd (reference §2.3, §3): the whole `projectcalico.org/v3` object at
//! `/calico/resources/v3/projectcalico.org/workloadendpoints/<namespace>/<name>`.
//!
//! Contract:
//! - [`write`] creates or replaces the endpoint, as Calico's CNI plugin does on ADD
//!   (`CreateOrUpdate`): a replaced object keeps its uid and creation time. Every write is
//!   compare-and-swap on the key's revision, retried a bounded number of times.
//! - [`delete_for_container`] removes it on DEL only when its `containerID` is the DEL's (or
//!   empty), so a DEL for an old sandbox of a pod leaves the new sandbox's endpoint alone
//!   (Calico's `CmdDelK8s`). An absent endpoint is success.
//! - [`decode`] turns a stored value into a validated endpoint; errors name the key.

use chrono::{DateTime, SecondsFormat, Utc};

use super::etcd::EtcdStore;
use crate::resources::meta::new_uid;
use starling_model::endpoint::KIND;
use starling_model::store::StoreError;
use starling_model::validate::endpoint::validate_workload_endpoint;
use starling_model::wire::{V3Metadata, V3Object, WorkloadEndpointSpec, V3_API_VERSION};
use starling_model::WorkloadEndpoint;

/// Prefix of every endpoint (namespaces below it).
pub const PREFIX: &str = "/calico/resources/v3/projectcalico.org/workloadendpoints/";

/// Compare-and-swap attempts before a write gives up (a conflict means another writer of the
/// same pod's endpoint; a handful of rounds settles any real race).
const ATTEMPTS: usize = 5;

pub fn key(namespace: &str, name: &str) -> String {
    format!("{PREFIX}{namespace}/{name}")
}

/// `(namespace, name)` of an endpoint key; `None` for other keys under the prefix.
pub fn parse_key(path: &str) -> Option<(&str, &str)> {
    let (namespace, name) = path.strip_prefix(PREFIX)?.split_once('/')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains('/')).then_some((namespace, name))
}

fn object(endpoint: &WorkloadEndpoint, metadata: V3Metadata) -> V3Object<WorkloadEndpointSpec> {
    V3Object {
        api_version: V3_API_VERSION.to_string(),
        kind: KIND.to_string(),
        metadata: V3Metadata {
            name: endpoint.name.clone(),
            namespace: Some(endpoint.namespace.clone()),
            labels: Some(endpoint.labels.clone()),
            ..metadata
        },
        spec: endpoint.spec(),
        status: None,
    }
}

/// The stored value of a new endpoint.
pub fn encode(
    endpoint: &WorkloadEndpoint,
    uid: String,
    created: DateTime<Utc>,
) -> Result<Vec<u8>, StoreError> {
    let fresh = V3Object::<()>::new(KIND, &endpoint.name, (), uid, created).metadata;
    serialize(
        &key(&endpoint.namespace, &endpoint.name),
        &object(endpoint, fresh),
    )
}

fn serialize(path: &str, value: &V3Object<WorkloadEndpointSpec>) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|error| StoreError::Invalid {
        key: path.to_string(),
        reason: error.to_string(),
    })
}

/// A stored endpoint, validated.
pub fn decode(path: &str, bytes: &[u8]) -> Result<WorkloadEndpoint, String> {
    let (namespace, name) =
        parse_key(path).ok_or_else(|| format!("{path} is not a WorkloadEndpoint key"))?;
    let object: V3Object<WorkloadEndpointSpec> =
        serde_json::from_slice(bytes).map_err(|error| format!("{path}: {error}"))?;
    if object.metadata.name != name {
        return Err(format!(
            "{path}: metadata.name {:?} does not match the key's name {name:?}",
            object.metadata.name
        ));
    }
    if let Some(stored) = object.metadata.namespace.as_deref() {
        if stored != namespace {
            return Err(format!(
                "{path}: metadata.namespace {stored:?} does not match the key's {namespace:?}"
            ));
        }
    }
    validate_workload_endpoint(namespace, name, object.labels(), &object.spec)
        .map_err(|error| error.to_string())
}

/// Creates or replaces `endpoint`.
pub async fn write(store: &EtcdStore, endpoint: &WorkloadEndpoint) -> Result<(), StoreError> {
    let path = key(&endpoint.namespace, &endpoint.name);
    for _ in 0..ATTEMPTS {
        let outcome = match store.get_raw_versioned(&path).await? {
            None => {
                let bytes = encode(endpoint, new_uid(), Utc::now())?;
                store.create_raw(&path, bytes).await
            }
            Some((bytes, revision)) => {
                // Keep what the first writer set (uid, creation time, annotations); an
                // unreadable old value is simply replaced.
                let mut metadata = serde_json::from_slice::<V3Object<serde_json::Value>>(&bytes)
                    .map(|old| old.metadata)
                    .unwrap_or_default();
                if metadata.uid.is_none() {
                    metadata.uid = Some(new_uid());
                }
                if metadata.creation_timestamp.is_none() {
                    metadata.creation_timestamp =
                        Some(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true));
                }
                let value = serialize(&path, &object(endpoint, metadata).without_server_fields())?;
                store.update_raw(&path, value, &revision).await
            }
        };
        match outcome {
            Ok(_) => return Ok(()),
            Err(
                StoreError::AlreadyExists { .. }
                | StoreError::Conflict { .. }
                | StoreError::NotFound { .. },
            ) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::Conflict { key: path })
}

/// Deletes the endpoint `namespace/name` unless it belongs to another container; true when it
/// was deleted.
pub async fn delete_for_container(
    store: &EtcdStore,
    namespace: &str,
    name: &str,
    container_id: &str,
) -> Result<bool, StoreError> {
    let path = key(namespace, name);
    for _ in 0..ATTEMPTS {
        let Some((bytes, revision)) = store.get_raw_versioned(&path).await? else {
            return Ok(false);
        };
        let owner = serde_json::from_slice::<V3Object<WorkloadEndpointSpec>>(&bytes)
            .map(|object| object.spec.container_id)
            .unwrap_or_default();
        if !owner.is_empty() && owner != container_id {
            tracing::info!(
                endpoint = %path, owner, container_id,
                "keeping the WorkloadEndpoint: it belongs to a newer sandbox"
            );
            return Ok(false);
        }
        match store.delete_raw(&path, &revision).await {
            Ok(()) => return Ok(true),
            Err(StoreError::NotFound { .. }) => return Ok(false),
            Err(StoreError::Conflict { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(StoreError::Conflict { key: path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_model::PodEndpoint;

    fn endpoint() -> WorkloadEndpoint {
        WorkloadEndpoint::for_pod(PodEndpoint {
            node: "node1".into(),
            namespace: "default".into(),
            pod: "node1-p1".into(),
            container_id: "lab-node1-p1".into(),
            endpoint: "eth0".into(),
            interface_name: "cali0123456789a".into(),
            networks: vec!["10.65.0.3/32".parse().unwrap()],
            ..PodEndpoint::default()
        })
        .unwrap()
    }

    #[test]
    fn keys_and_the_stored_object() {
        assert_eq!(
            PREFIX,
            super::super::v3::v3_prefix(starling_model::endpoint::PLURAL)
        );
        let endpoint = endpoint();
        let path = key(&endpoint.namespace, &endpoint.name);
        assert_eq!(
            path,
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node1-k8s-node1--p1-eth0"
        );
        assert_eq!(
            parse_key(&path),
            Some(("default", "node1-k8s-node1--p1-eth0"))
        );
        assert_eq!(parse_key(&format!("{PREFIX}default")), None);
        assert_eq!(parse_key(&format!("{PREFIX}a/b/c")), None);
        let created = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let bytes = encode(&endpoint, "uid-1".into(), created).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["apiVersion"], "projectcalico.org/v3");
        assert_eq!(json["kind"], "WorkloadEndpoint");
        assert_eq!(json["metadata"]["name"], "node1-k8s-node1--p1-eth0");
        assert_eq!(json["metadata"]["namespace"], "default");
        assert_eq!(json["metadata"]["uid"], "uid-1");
        assert_eq!(
            json["metadata"]["creationTimestamp"],
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            json["metadata"]["labels"],
            serde_json::json!({"projectcalico.org/namespace": "default",
                               "projectcalico.org/orchestrator": "k8s"})
        );
        assert_eq!(json["spec"]["ipNetworks"][0], "10.65.0.3/32");
        assert_eq!(decode(&path, &bytes).unwrap(), endpoint);
        // The value must be the key's object.
        let elsewhere = key("other", &endpoint.name);
        let error = decode(&elsewhere, &bytes).unwrap_err();
        assert!(error.contains("metadata.namespace"), "{error}");
        let error = decode(&path, b"{").unwrap_err();
        assert!(error.starts_with(&path), "{error}");
    }
}
