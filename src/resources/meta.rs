//! Object metadata as Calico stores it (reference §1.0, §3).
//!
//! * KDD: a v3 object kept in a v1 CRD carries most of its v3 metadata in the JSON annotation
//!   `projectcalico.org/metadata`; the user's labels are the native labels merged with the ones in
//!   that annotation (the annotation wins). [`effective_labels`] does that merge.
//! * etcd: the whole `projectcalico.org/v3` object is the value of the key, with `uid` and
//!   `creationTimestamp` set by the writer and no `resourceVersion` (the etcd ModRevision is the
//!   version). [`V3Object`] is that shape.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// Annotation holding the JSON-serialised v3 metadata of a CRD-backed object.
pub const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";
/// `apiVersion` of objects stored in etcd.
pub const V3_API_VERSION: &str = "projectcalico.org/v3";

/// The parts of the `projectcalico.org/metadata` annotation Starling reads.
#[derive(Deserialize, Default)]
struct EmbeddedMetadata {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn embedded_metadata(meta: &ObjectMeta) -> EmbeddedMetadata {
    let Some(raw) = meta
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(METADATA_ANNOTATION))
    else {
        return EmbeddedMetadata::default();
    };
    serde_json::from_str(raw).unwrap_or_else(|error| {
        tracing::warn!(
            object = meta.name.as_deref().unwrap_or(""),
            %error,
            "ignoring unparsable {METADATA_ANNOTATION} annotation"
        );
        EmbeddedMetadata::default()
    })
}

/// The object's labels: native labels overlaid with those of `projectcalico.org/metadata`.
pub fn effective_labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.extend(embedded_metadata(meta).labels.unwrap_or_default());
    labels
}

/// The object's annotations: native ones (without the metadata annotation itself) overlaid with
/// those embedded in `projectcalico.org/metadata`.
pub fn effective_annotations(meta: &ObjectMeta) -> BTreeMap<String, String> {
    let mut annotations = meta.annotations.clone().unwrap_or_default();
    annotations.remove(METADATA_ANNOTATION);
    annotations.extend(embedded_metadata(meta).annotations.unwrap_or_default());
    annotations
}

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

    /// The object's metadata in Kubernetes form, so one validation path serves both datastores.
    pub fn object_meta(&self) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.metadata.name.clone()),
            namespace: self.metadata.namespace.clone(),
            uid: self.metadata.uid.clone(),
            labels: self.metadata.labels.clone(),
            annotations: self.metadata.annotations.clone(),
            ..ObjectMeta::default()
        }
    }
}

/// A random (version 4) UUID in its canonical text form, as Calico's client sets on create.
pub fn new_uid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], metadata_annotation: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some("pool".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            annotations: metadata_annotation
                .map(|raw| [(METADATA_ANNOTATION.to_string(), raw.to_string())].into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn annotation_labels_win_over_native_ones() {
        let m = meta(
            &[("a", "native"), ("b", "native")],
            Some(r#"{"labels":{"b":"annotation","c":"annotation"},"creationTimestamp":null}"#),
        );
        let labels = effective_labels(&m);
        assert_eq!(labels["a"], "native");
        assert_eq!(labels["b"], "annotation");
        assert_eq!(labels["c"], "annotation");
    }

    #[test]
    fn bad_metadata_annotation_falls_back_to_native_labels() {
        let m = meta(&[("a", "1")], Some("{not json"));
        assert_eq!(effective_labels(&m), [("a".into(), "1".into())].into());
        assert!(effective_annotations(&m).is_empty());
    }

    #[test]
    fn uid_is_a_version_4_uuid() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert!(matches!(&uid[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(uid, new_uid());
    }
}
