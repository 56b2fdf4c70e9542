//! `lab apply -f` / `lab delete -f`: multi-document YAML of `networking.k8s.io/v1`
//! NetworkPolicy, `projectcalico.org/v3` NetworkPolicy, GlobalNetworkPolicy and Tier, and `v1`
//! Namespace (its labels), turned into what Calico keeps in etcd.
//!
//! Contract (pure; the lab's verbs do the writing):
//! - [`parse`] reads every document (`---` separated, `kind: List` items included, empty
//!   documents skipped) and checks each fully before anything is written: Calico kinds with the
//!   policy crate's validation, Kubernetes policies through its converter. The first bad
//!   document fails the whole file, named by its position, kind and name.
//! - Calico kinds are stored as given (apiVersion, kind, metadata name/namespace/labels/
//!   annotations, spec) with `spec.types` defaulted as Calico's client does. A Kubernetes
//!   NetworkPolicy is stored as the Calico NetworkPolicy kube-controllers make of it in etcd mode,
//!   `networkpolicies/<ns>/knp.default.<name>`. Namespaced objects without a namespace go to
//!   `default`, as kubectl sends them.
//! - For `delete`, [`parse_refs`] only needs each document's kind and name.

use serde_json::{json, Map, Value};

use super::controllers::key;
use super::labels::Labels;
use super::pods::DEFAULT_NAMESPACE;
use starling_policy::{k8s, validate};

/// The prefix kube-controllers give a converted Kubernetes NetworkPolicy in etcd.
pub const KNP_PREFIX: &str = "knp.default.";

/// One document of a manifest, ready to be written.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A `v1` Namespace: its labels (the verbs add `kubernetes.io/metadata.name`).
    Namespace { name: String, labels: Labels },
    /// An object stored in etcd.
    Stored {
        /// kubectl's name for it: `networkpolicy.networking.k8s.io/x`.
        reference: String,
        /// The namespace it lives in, if namespaced (it must exist).
        namespace: Option<String>,
        key: String,
        /// The value to write (without uid and creation time); `Null` from [`parse_refs`].
        value: Value,
    },
}

/// Splits a YAML stream into JSON documents, flattening `kind: List`. Booleans are YAML 1.2's
/// only (`true`/`false`): kubectl reads `name: y` or `ns: y` as the string "y" (it decodes
/// towards the API's string fields), and so must the lab, whose namespaces are x, y and z.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let options = serde_saphyr::options! { strict_booleans: true };
    let parsed: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|error| error.to_string())?;
    let mut out = Vec::new();
    for document in parsed {
        match document {
            Value::Null => {}
            Value::Object(ref object) if object.get("kind") == Some(&json!("List")) => {
                if let Some(items) = object.get("items").and_then(Value::as_array) {
                    out.extend(items.iter().cloned());
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// Kubernetes' DNS subdomain: what names of the objects here must be.
fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// What kind of object a document is: (kubectl resource name, etcd plural, namespaced).
fn classify(document: &Value) -> Result<(&'static str, &'static str, bool), String> {
    let api_version = text(document, "/apiVersion").unwrap_or_default();
    let kind = text(document, "/kind").unwrap_or_default();
    Ok(match (api_version, kind) {
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            ("networkpolicy.networking.k8s.io", "networkpolicies", true)
        }
        ("projectcalico.org/v3", "NetworkPolicy") => {
            ("networkpolicy.projectcalico.org", "networkpolicies", true)
        }
        ("projectcalico.org/v3", "GlobalNetworkPolicy") => (
            "globalnetworkpolicy.projectcalico.org",
            "globalnetworkpolicies",
            false,
        ),
        ("projectcalico.org/v3", "Tier") => ("tier.projectcalico.org", "tiers", false),
        ("v1", "Namespace") => ("namespace", "", false),
        _ => {
            return Err(format!(
                "apiVersion {api_version:?} kind {kind:?} is not one the lab takes \
                 (networking.k8s.io/v1 NetworkPolicy, projectcalico.org/v3 NetworkPolicy, \
                 GlobalNetworkPolicy, Tier, v1 Namespace)"
            ))
        }
    })
}

/// Calico's client default for `types` when a policy leaves it out.
fn default_types(spec: &mut Map<String, Value>) {
    let present = |field: &str| {
        spec.get(field)
            .and_then(Value::as_array)
            .is_some_and(|rules| !rules.is_empty())
    };
    let empty = spec
        .get("types")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if empty {
        let types = match (present("ingress"), present("egress")) {
            (_, false) => json!(["Ingress"]),
            (false, true) => json!(["Egress"]),
            (true, true) => json!(["Ingress", "Egress"]),
        };
        spec.insert("types".to_string(), types);
    }
}

/// The metadata fields a client sends (the server sets uid and creation time).
fn client_metadata(document: &Value, name: &str, namespace: Option<&str>) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".to_string(), json!(name));
    if let Some(namespace) = namespace {
        metadata.insert("namespace".to_string(), json!(namespace));
    }
    for field in ["labels", "annotations"] {
        if let Some(value) = document.pointer(&format!("/metadata/{field}")) {
            if value.as_object().is_some_and(|map| !map.is_empty()) {
                metadata.insert(field.to_string(), value.clone());
            }
        }
    }
    Value::Object(metadata)
}

fn identify(
    document: &Value,
) -> Result<(&'static str, &'static str, bool, String, Option<String>), String> {
    let (resource, plural, namespaced) = classify(document)?;
    let name = text(document, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    if !is_dns_subdomain(&name) {
        return Err(format!(
            "metadata.name {name:?} must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
        ));
    }
    let namespace = namespaced.then(|| {
        text(document, "/metadata/namespace")
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE)
            .to_string()
    });
    Ok((resource, plural, namespaced, name, namespace))
}

fn convert(document: &Value) -> Result<Document, String> {
    let (resource, plural, _, name, namespace) = identify(document)?;
    let reference = format!("{resource}/{name}");
    if resource == "namespace" {
        let mut labels = Labels::new();
        match document.pointer("/metadata/labels") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    // An unquoted `1` or `true` is the string kubectl would send.
                    let value = match value {
                        Value::String(text) => text.clone(),
                        Value::Number(_) | Value::Bool(_) => value.to_string(),
                        _ => return Err(format!("metadata.labels.{key}: not a string")),
                    };
                    if !k8s::is_label_key(key) || !k8s::is_label_value(&value) {
                        return Err(format!(
                            "metadata.labels: {key}={value:?} is not a valid label"
                        ));
                    }
                    labels.insert(key.clone(), value);
                }
            }
            Some(_) => return Err("metadata.labels: must be a mapping".to_string()),
        }
        return Ok(Document::Namespace { name, labels });
    }
    let mut document = document.clone();
    document["metadata"]["namespace"] = namespace.as_ref().map_or(Value::Null, |ns| json!(ns));
    if let Some(metadata) = document["metadata"].as_object_mut() {
        metadata.retain(|_, value| !value.is_null());
    }
    let (key, value) = if resource == "networkpolicy.networking.k8s.io" {
        let object = starling_policy::model::decode(
            starling_policy::model::KIND_KUBERNETES_NETWORK_POLICY,
            &document,
        )
        .map_err(|error| error.to_string())?;
        let converted = k8s::to_calico(&object).map_err(|error| error.to_string())?;
        let mut value = serde_json::to_value(&converted).map_err(|error| error.to_string())?;
        let stored_name = format!("{KNP_PREFIX}{name}");
        value["metadata"] = client_metadata(&json!({}), &stored_name, namespace.as_deref());
        (key(plural, namespace.as_deref(), &stored_name), value)
    } else {
        let checked = match resource {
            "networkpolicy.projectcalico.org" => validate::network_policy_json(&document).map(drop),
            "globalnetworkpolicy.projectcalico.org" => {
                validate::global_network_policy_json(&document).map(drop)
            }
            _ => validate::tier_json(&document).map(drop),
        };
        checked.map_err(|error| error.to_string())?;
        let mut spec = match document.get("spec") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(spec)) => spec.clone(),
            Some(_) => return Err("spec: must be a mapping".to_string()),
        };
        if plural != "tiers" {
            default_types(&mut spec);
        }
        let value = json!({
            "apiVersion": "projectcalico.org/v3",
            "kind": text(&document, "/kind").unwrap_or_default(),
            "metadata": client_metadata(&document, &name, namespace.as_deref()),
            "spec": spec,
        });
        (key(plural, namespace.as_deref(), &name), value)
    };
    Ok(Document::Stored {
        reference,
        namespace,
        key,
        value,
    })
}

fn describe(index: usize, document: &Value) -> String {
    format!(
        "document {} ({} {:?})",
        index + 1,
        text(document, "/kind").unwrap_or("without kind"),
        text(document, "/metadata/name").unwrap_or_default()
    )
}

/// Every document of `text`, checked and converted (see the module's contract).
pub fn parse(text: &str) -> Result<Vec<Document>, String> {
    documents(text)?
        .iter()
        .enumerate()
        .map(|(index, document)| {
            convert(document).map_err(|error| format!("{}: {error}", describe(index, document)))
        })
        .collect()
}

/// Each document's identity only (what `delete -f` needs): values are `Null`, namespace labels
/// empty.
pub fn parse_refs(text: &str) -> Result<Vec<Document>, String> {
    documents(text)?
        .iter()
        .enumerate()
        .map(|(index, document)| {
            let (resource, plural, _, name, namespace) = identify(document)
                .map_err(|error| format!("{}: {error}", describe(index, document)))?;
            if resource == "namespace" {
                return Ok(Document::Namespace {
                    name,
                    labels: Labels::new(),
                });
            }
            let stored_name = if resource == "networkpolicy.networking.k8s.io" {
                format!("{KNP_PREFIX}{name}")
            } else {
                name.clone()
            };
            Ok(Document::Stored {
                reference: format!("{resource}/{name}"),
                key: key(plural, namespace.as_deref(), &stored_name),
                namespace,
                value: Value::Null,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: y
  labels: {team: a, ok: yes, n: 1}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-from-y
  namespace: x
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {ns: y}}
    ports:
    - {port: 80, protocol: TCP}
---
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-egress, uid: ignored}
spec:
  tier: security
  order: 10
  selector: all()
  egress: [{action: Deny}]
---
apiVersion: v1
kind: List
items:
- apiVersion: projectcalico.org/v3
  kind: Tier
  metadata: {name: security}
  spec: {order: 100}
- apiVersion: projectcalico.org/v3
  kind: NetworkPolicy
  metadata: {name: local}
  spec:
    selector: pod == 'b'
    ingress: [{action: Allow}]
"#;

    fn stored(document: &Document) -> (&str, &Value) {
        match document {
            Document::Stored { key, value, .. } => (key.as_str(), value),
            other => panic!("not stored: {other:?}"),
        }
    }

    #[test]
    fn every_kind_becomes_what_calico_stores() {
        let documents = parse(MANIFEST).unwrap();
        assert_eq!(documents.len(), 5);
        assert_eq!(
            documents[0],
            Document::Namespace {
                name: "y".into(),
                labels: [
                    ("team".to_string(), "a".to_string()),
                    ("ok".to_string(), "yes".to_string()),
                    ("n".to_string(), "1".to_string())
                ]
                .into()
            }
        );
        let (key, knp) = stored(&documents[1]);
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/networkpolicies/x/knp.default.allow-from-y"
        );
        assert_eq!(knp["kind"], "NetworkPolicy");
        assert_eq!(knp["apiVersion"], "projectcalico.org/v3");
        assert_eq!(
            knp["metadata"],
            json!({"name": "knp.default.allow-from-y", "namespace": "x"})
        );
        assert_eq!(knp["spec"]["order"], json!(1000.0));
        assert_eq!(knp["spec"]["tier"], "default");
        assert_eq!(knp["spec"]["types"], json!(["Ingress"]));
        // What is stored is a valid Calico NetworkPolicy.
        validate::network_policy_json(knp).unwrap();

        let (key, gnp) = stored(&documents[2]);
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/deny-egress"
        );
        assert_eq!(gnp["metadata"], json!({"name": "deny-egress"}));
        assert_eq!(gnp["spec"]["types"], json!(["Egress"]));
        assert_eq!(gnp["spec"]["order"], json!(10));
        let (key, tier) = stored(&documents[3]);
        assert_eq!(key, "/calico/resources/v3/projectcalico.org/tiers/security");
        assert_eq!(tier["spec"], json!({"order": 100}));
        let (key, np) = stored(&documents[4]);
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/networkpolicies/default/local"
        );
        assert_eq!(np["metadata"]["namespace"], "default");
        assert_eq!(np["spec"]["types"], json!(["Ingress"]));

        let refs = parse_refs(MANIFEST).unwrap();
        let keys: Vec<&str> = refs.iter().skip(1).map(|d| stored(d).0).collect();
        let parsed: Vec<&str> = documents.iter().skip(1).map(|d| stored(d).0).collect();
        assert_eq!(keys, parsed);
    }

    #[test]
    fn bad_documents_are_named_with_the_field() {
        let bad_selector = "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: {selector: \"pod ==\"}\n";
        let error = parse(bad_selector).unwrap_err();
        assert!(
            error.starts_with("document 1 (NetworkPolicy \"p\")"),
            "{error}"
        );
        assert!(error.contains("spec.selector"), "{error}");
        let bad_port = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: k}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]\n";
        let error = parse(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n{bad_port}"
        ))
        .unwrap_err();
        assert!(
            error.starts_with("document 2 (NetworkPolicy \"k\")"),
            "{error}"
        );
        assert!(error.contains("spec.ingress[0].ports[0]"), "{error}");
        let error =
            parse("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n").unwrap_err();
        assert!(error.contains("not one the lab takes"), "{error}");
        let error =
            parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: Bad_Name}\n").unwrap_err();
        assert!(error.contains("metadata.name"), "{error}");
        let error =
            parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {\"-a\": b}}\n")
                .unwrap_err();
        assert!(error.contains("metadata.labels"), "{error}");
        assert!(parse("a: [").is_err());
    }
}
