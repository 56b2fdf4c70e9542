//! `projectcalico.org/v3` objects as Calico stores them in etcd (reference §1.0, §3): the whole
//! object is the value of its key, with `uid` and `creationTimestamp` set by the writer and no
//! `resourceVersion` (the etcd ModRevision is the version).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// `apiVersion` of objects stored in etcd.
pub const V3_API_VERSION: &str = "projectcalico.org/v3";

/// Metadata of a `projectcalico.org/v3` object stored in etcd.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct V3Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Anything else (generation, ownerReferences, ...), kept verbatim.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A `projectcalico.org/v3` object as stored under `/calico/resources/v3/projectcalico.org/...`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct V3Object<Spec, Status = serde_json::Value> {
    pub api_version: String,
    pub kind: String,
    pub metadata: V3Metadata,
    #[serde(default)]
    pub spec: Spec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl<Spec, Status> V3Object<Spec, Status> {
    /// A new object as a client creates it: the given uid and creation time, no resourceVersion.
    pub fn new(kind: &str, name: &str, spec: Spec, uid: String, created: DateTime<Utc>) -> Self {
        V3Object {
            api_version: V3_API_VERSION.to_string(),
            kind: kind.to_string(),
            metadata: V3Metadata {
                name: name.to_string(),
                uid: Some(uid),
                creation_timestamp: Some(created.to_rfc3339_opts(SecondsFormat::Secs, true)),
                ..V3Metadata::default()
            },
            spec,
            status: None,
        }
    }

    /// The object as written to etcd: the fields the datastore owns are removed.
    pub fn without_server_fields(mut self) -> Self {
        for field in ["resourceVersion", "selfLink"] {
            self.metadata.other.remove(field);
        }
        self
    }

    /// The labels of the object (etcd objects carry them directly).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.metadata.labels.clone().unwrap_or_default()
    }
}
