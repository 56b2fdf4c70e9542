//! Object metadata as Calico stores it (reference §1.0, §3).
//!
//! * KDD: a v3 object kept in a v1 CRD carries most of its v3 metadata in the JSON annotation
//!   `projectcalico.org/metadata`; the user's labels are the native labels merged with the ones in
//!   that annotation (the annotation wins). [`effective_labels`] does that merge.
//! * etcd: the whole `projectcalico.org/v3` object is the value of the key
//!   (`starling_model::wire::V3Object`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// Annotation holding the JSON-serialised v3 metadata of a CRD-backed object.
pub const METADATA_ANNOTATION: &str = "projectcalico.org/metadata";

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
