//! CustomResourceDefinition manifests for the `crd.projectcalico.org/v1` kinds Starling reads,
//! generated from the wire types in `crate::resources` so the manifests cannot drift from the code.
//!
//! `deploy/crds/crd.projectcalico.org_<plural>.yaml` holds one file per kind; a test compares
//! them with [`all`] (regenerate with `cargo run -- crds --write deploy/crds`).

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::resources::{
    BGPConfiguration, BGPFilter, BGPPeer, FelixConfiguration, IPPool, IPReservation,
};

/// Why manifests could not be rendered or written.
#[derive(Debug, thiserror::Error)]
pub enum CrdError {
    #[error("rendering CRD {name} as YAML: {message}")]
    Render { name: String, message: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Every CRD Starling defines, in a stable order (sorted by plural name).
pub fn all() -> Vec<CustomResourceDefinition> {
    let mut crds: Vec<CustomResourceDefinition> = [
        IPPool::crd(),
        IPReservation::crd(),
        BGPConfiguration::crd(),
        BGPPeer::crd(),
        BGPFilter::crd(),
        FelixConfiguration::crd(),
        crate::resources::ipam::IPAMBlock::crd(),
        crate::resources::ipam::BlockAffinity::crd(),
        crate::resources::ipam::IPAMHandle::crd(),
        crate::resources::ipam::IPAMConfig::crd(),
    ]
    .into_iter()
    .map(finish)
    .collect();
    crds.sort_by(|a, b| a.spec.names.plural.cmp(&b.spec.names.plural));
    crds
}

/// Adjusts a derived CRD to Calico's conventions: `spec` is optional (Calico writes objects such
/// as an empty BGPConfiguration `default` without one) and has no default (a reader treats a
/// missing spec as empty; the API server stores what was written).
fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
        {
            schema.required = None;
            if let Some(spec) = schema
                .properties
                .as_mut()
                .and_then(|properties| properties.get_mut("spec"))
            {
                spec.default = None;
            }
        }
    }
    crd
}

/// `crd.projectcalico.org_<plural>.yaml`, the file name Calico uses for the same CRD.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as a YAML document.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, CrdError> {
    serde_saphyr::to_string(crd).map_err(|error| CrdError::Render {
        name: crd.metadata.name.clone().unwrap_or_default(),
        message: error.to_string(),
    })
}

/// Every CRD as one multi-document YAML stream (what `starling crds` prints).
pub fn all_yaml() -> Result<String, CrdError> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

/// Writes one file per CRD into `dir` (created if missing); returns the paths written.
pub fn write_all(dir: &Path) -> Result<Vec<PathBuf>, CrdError> {
    std::fs::create_dir_all(dir).map_err(|source| CrdError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for crd in all() {
        let path = dir.join(file_name(&crd));
        let text = to_yaml(&crd)?;
        std::fs::write(&path, text).map_err(|source| CrdError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Places where a schema breaks the Kubernetes structural-schema rules, as JSON paths.
///
/// Checked: every property schema has a `type` (or is `x-kubernetes-int-or-string` /
/// `x-kubernetes-preserve-unknown-fields`); `anyOf`/`oneOf`/`allOf` only under int-or-string;
/// objects with `additionalProperties` declare no `properties`; arrays declare `items`.
pub fn structural_problems(crd: &CustomResourceDefinition) -> Vec<String> {
    let mut problems = Vec::new();
    for version in &crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_ref()
            .and_then(|validation| validation.open_api_v3_schema.as_ref())
        else {
            problems.push(format!("version {}: no openAPIV3Schema", version.name));
            continue;
        };
        match serde_json::to_value(schema) {
            Ok(value) => check_node(&value, "$", &mut problems),
            Err(error) => problems.push(format!("version {}: {error}", version.name)),
        }
    }
    problems
}

fn check_node(schema: &serde_json::Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = schema.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    let flag = |name: &str| object.get(name) == Some(&serde_json::Value::Bool(true));
    let int_or_string = flag("x-kubernetes-int-or-string");
    let preserve_unknown = flag("x-kubernetes-preserve-unknown-fields");
    if !object.contains_key("type") && !int_or_string && !preserve_unknown {
        problems.push(format!("{path}: no type"));
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if object.contains_key(combinator) && !int_or_string {
            problems.push(format!(
                "{path}: {combinator} without x-kubernetes-int-or-string"
            ));
        }
    }
    if object.contains_key("$ref") || object.contains_key("definitions") {
        problems.push(format!("{path}: references are not allowed"));
    }
    let properties = object.get("properties").and_then(|p| p.as_object());
    if let Some(properties) = properties {
        for (name, child) in properties {
            check_node(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(additional) = object.get("additionalProperties") {
        if properties.is_some() {
            problems.push(format!("{path}: both properties and additionalProperties"));
        }
        if additional.is_object() {
            check_node(additional, &format!("{path}.*"), problems);
        }
    }
    if object.get("type").and_then(|t| t.as_str()) == Some("array") {
        match object.get("items") {
            Some(items) => check_node(items, &format!("{path}[]"), problems),
            None => problems.push(format!("{path}: array without items")),
        }
    }
}
