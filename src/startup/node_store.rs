//! The node's registration in either datastore, read and written with compare-and-swap.
//!
//! * etcd (and the in-memory store): the `projectcalico.org/v3` Node resource at
//!   `/calico/resources/v3/projectcalico.org/nodes/<name>` through [`NodeRecord`], a `StoredKind`,
//!   so create-if-absent and update-if-revision come from the datastore layer.
//! * Kubernetes: the core Node. Reads go through the same `NodeRecord` (converted from the
//!   annotations, labels and InternalIPs); writes are a JSON merge patch of the `projectcalico.org/*`
//!   annotations on `nodes/<name>/status` carrying the read resourceVersion (409 on a race). The
//!   status subresource is what Calico writes through (its RBAC grants `nodes/status` update and
//!   patch, not `nodes` patch), and Kubernetes persists metadata on Node status writes.
//!
//! Never `Datastore::update` a `NodeRecord` on the Kubernetes backend: that PUTs the Node
//! built by `to_crd` (metadata only) over the real one.

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams};

use super::StartupError;
use crate::datastore::v3::v3_prefix;
use crate::datastore::{AnyDatastore, Datastore, StoredKind};
use crate::resources::meta::new_uid;
use crate::resources::node::{
    apply_annotation_changes, calico_node_from_k8s, calico_node_from_v3, k8s_annotation_changes,
    update_v3_node, NodeAddress, NodeInterface, NODE_KIND,
};
use crate::resources::{CalicoNodeResource, NodeSpec};
use starling_model::store::{Revision, StoreError, Versioned};
use starling_model::wire::{V3Metadata, V3_API_VERSION};
use starling_model::CalicoNode;

/// Annotation holding `spec.interfaces` on a Kubernetes Node (reference §2.1).
pub const INTERFACES_ANNOTATION: &str = "projectcalico.org/Interfaces";

static NODE_PREFIX: LazyLock<String> = LazyLock::new(|| v3_prefix("nodes"));

/// The Calico Node resource as a datastore kind.
#[derive(Debug, Clone)]
pub struct NodeRecord(pub CalicoNodeResource);

impl NodeRecord {
    /// A new, empty registration for `name`.
    pub fn new(name: &str) -> NodeRecord {
        NodeRecord(CalicoNodeResource {
            api_version: V3_API_VERSION.to_string(),
            kind: NODE_KIND.to_string(),
            metadata: V3Metadata {
                name: name.to_string(),
                ..V3Metadata::default()
            },
            spec: NodeSpec::default(),
            status: None,
        })
    }

    pub fn node(&self) -> CalicoNode {
        calico_node_from_v3(&self.0)
    }

    pub fn interfaces(&self) -> Vec<NodeInterface> {
        self.0.spec.interfaces.clone().unwrap_or_default()
    }
}

impl StoredKind for NodeRecord {
    type Key = String;
    type Crd = Node;

    fn key(&self) -> String {
        self.0.metadata.name.clone()
    }
    fn etcd_key(key: &String) -> String {
        format!("{}{key}", *NODE_PREFIX)
    }
    fn etcd_prefix() -> &'static str {
        NODE_PREFIX.as_str()
    }
    fn etcd_parse_key(path: &str) -> Option<String> {
        path.strip_prefix(NODE_PREFIX.as_str())
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .map(str::to_string)
    }
    fn etcd_encode(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(&self.0.clone().without_server_fields()).map_err(|e| e.to_string())
    }
    fn etcd_decode(key: &String, bytes: &[u8]) -> Result<Self, String> {
        let resource: CalicoNodeResource =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if resource.metadata.name != *key {
            return Err(format!(
                "metadata.name {:?} does not match the key's name {key:?}",
                resource.metadata.name
            ));
        }
        Ok(NodeRecord(resource))
    }
    fn kube_name(key: &String) -> String {
        key.clone()
    }
    fn to_crd(&self) -> Node {
        let mut annotations = Default::default();
        apply_annotation_changes(&mut annotations, &k8s_annotation_changes(&self.node()));
        Node {
            metadata: ObjectMeta {
                name: Some(self.0.metadata.name.clone()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..Node::default()
        }
    }
    fn from_crd(crd: &Node) -> Result<Self, String> {
        let node = calico_node_from_k8s(crd);
        let mut record = NodeRecord::new(&node.name);
        update_v3_node(&mut record.0, &node);
        record.0.metadata.uid = crd.metadata.uid.clone();
        if !node.internal_ips.is_empty() {
            record.0.spec.addresses = Some(
                node.internal_ips
                    .iter()
                    .map(|address| NodeAddress {
                        address: address.to_string(),
                        address_type: Some("InternalIP".to_string()),
                    })
                    .collect(),
            );
        }
        if let Some(raw) = crd
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(INTERFACES_ANNOTATION))
        {
            match serde_json::from_str::<Vec<NodeInterface>>(raw) {
                Ok(interfaces) => record.0.spec.interfaces = Some(interfaces),
                Err(error) => {
                    tracing::warn!(node = %node.name, %error, "ignoring unparsable {INTERFACES_ANNOTATION} annotation")
                }
            }
        }
        Ok(record)
    }
    fn crd_deleted(_: &Node) -> bool {
        false
    }
    fn crd_mark_deleted(_: &mut Node) -> bool {
        false
    }
}

/// The node as read, with what a write needs (`None` revision: not registered yet).
#[derive(Debug, Clone)]
pub struct StoredNode {
    pub record: NodeRecord,
    pub revision: Option<Revision>,
}

fn store_error(action: &str, source: StoreError) -> StartupError {
    StartupError::Store {
        action: action.to_string(),
        source,
    }
}

/// Reads the node's registration. On etcd a missing node reads as a new empty one; on
/// Kubernetes the Node must exist (Calico cannot create Kubernetes Nodes).
pub async fn read_node(store: &AnyDatastore, name: &str) -> Result<StoredNode, StartupError> {
    match store.get::<NodeRecord>(&name.to_string()).await {
        Ok(Versioned { value, revision }) => Ok(StoredNode {
            record: value,
            revision: Some(revision),
        }),
        Err(StoreError::NotFound { .. }) if matches!(store, AnyDatastore::Kube(_)) => {
            Err(StartupError::KubernetesNodeMissing {
                node: name.to_string(),
            })
        }
        Err(StoreError::NotFound { .. }) => Ok(StoredNode {
            record: NodeRecord::new(name),
            revision: None,
        }),
        Err(error) => Err(store_error(&format!("reading node {name}"), error)),
    }
}

/// Every registered node (for the address conflict check).
pub async fn list_nodes(store: &AnyDatastore) -> Result<Vec<CalicoNode>, StartupError> {
    Ok(store
        .list::<NodeRecord>()
        .await
        .map_err(|error| store_error("listing nodes", error))?
        .into_iter()
        .map(|record| record.value.node())
        .collect())
}

/// Outcome of one write attempt.
enum WriteOutcome {
    Written,
    Conflict,
}

async fn write_node(
    store: &AnyDatastore,
    stored: &StoredNode,
    node: &CalicoNode,
    interfaces: Option<&[NodeInterface]>,
) -> Result<WriteOutcome, StartupError> {
    let name = node.name.as_str();
    let action = format!("writing node {name}");
    let result = match store {
        AnyDatastore::Kube(kube) => {
            let mut annotations = serde_json::Map::new();
            for (key, value) in k8s_annotation_changes(node) {
                annotations.insert(
                    key.to_string(),
                    value.map_or(serde_json::Value::Null, Into::into),
                );
            }
            if let Some(interfaces) = interfaces {
                let encoded =
                    serde_json::to_string(interfaces).map_err(|error| StartupError::Invalid {
                        reason: format!("cannot encode the interfaces of node {name}: {error}"),
                    })?;
                annotations.insert(INTERFACES_ANNOTATION.to_string(), encoded.into());
            }
            let mut metadata = serde_json::json!({ "annotations": annotations });
            if let Some(revision) = &stored.revision {
                metadata["resourceVersion"] = revision.0.clone().into();
            }
            let patch = serde_json::json!({ "metadata": metadata });
            let api: Api<Node> = Api::all(kube.client());
            return match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => Ok(WriteOutcome::Written),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(WriteOutcome::Conflict),
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    Err(StartupError::KubernetesNodeMissing {
                        node: name.to_string(),
                    })
                }
                Err(error) => Err(StartupError::Kubernetes {
                    action,
                    reason: error.to_string(),
                }),
            };
        }
        _ => {
            let mut record = stored.record.clone();
            update_v3_node(&mut record.0, node);
            if let Some(interfaces) = interfaces {
                record.0.spec.interfaces = (!interfaces.is_empty()).then(|| interfaces.to_vec());
            }
            match &stored.revision {
                Some(revision) => store.update(&record, revision).await,
                None => {
                    // The client sets these on create, as Calico's does (reference §3).
                    record.0.metadata.uid = Some(new_uid());
                    record.0.metadata.creation_timestamp =
                        Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    store.create(&record).await
                }
            }
        }
    };
    match result {
        Ok(_) => Ok(WriteOutcome::Written),
        Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => {
            Ok(WriteOutcome::Conflict)
        }
        Err(error) => Err(store_error(&action, error)),
    }
}

/// How many times a node write is retried after losing a race.
const NODE_WRITE_ATTEMPTS: usize = 10;

/// Read-modify-write of the node with retry on conflict. `change` edits the node (and may set
/// `spec.interfaces` by returning `Some`); it runs again on every retry, so it must be a pure
/// function of its input. Returns the node as written (or as read when nothing changed).
pub async fn update_node<F>(
    store: &AnyDatastore,
    name: &str,
    change: F,
) -> Result<CalicoNode, StartupError>
where
    F: Fn(&mut CalicoNode) -> Option<Vec<NodeInterface>>,
{
    for _ in 0..NODE_WRITE_ATTEMPTS {
        let stored = read_node(store, name).await?;
        let before = stored.record.node();
        let mut after = before.clone();
        let interfaces = change(&mut after);
        let interfaces_changed = interfaces
            .as_ref()
            .is_some_and(|wanted| *wanted != stored.record.interfaces());
        if after == before && !interfaces_changed && stored.revision.is_some() {
            return Ok(after);
        }
        match write_node(store, &stored, &after, interfaces.as_deref()).await? {
            WriteOutcome::Written => return Ok(after),
            WriteOutcome::Conflict => {
                tracing::debug!(node = name, "node changed while writing it; retrying");
            }
        }
    }
    Err(StartupError::Invalid {
        reason: format!(
            "gave up writing node {name} after {NODE_WRITE_ATTEMPTS} conflicting writes"
        ),
    })
}
