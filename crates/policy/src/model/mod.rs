//! Policy objects on the wire: Calico's `projectcalico.org/v3` NetworkPolicy,
//! GlobalNetworkPolicy, Tier and Profile ([`calico`]) and Kubernetes' `networking.k8s.io/v1`
//! NetworkPolicy, Namespace and ServiceAccount ([`kube`]), as serde types with the JSON names
//! of the APIs. No Kubernetes client types: the edge deserialises raw JSON into these.
//!
//! Contract: these types accept what the datastores hold and nothing is checked here beyond
//! JSON shapes (numbers or strings where the API allows both); `validate` and `k8s` turn them
//! into the checked model. Every list and map defaults to empty, every scalar to absent.
//! [`decode`] reads a whole object from JSON with an error naming the object.

pub mod calico;
pub mod kube;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use calico::*;
pub use kube::*;

/// The metadata fields the policy engine reads; anything else is ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A whole API object: `apiVersion`, `kind`, `metadata`, `spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Object<Spec> {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Spec,
}

/// Which object a message is about: kind, namespace (if any) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, metadata: &ObjectMeta) -> ObjectRef {
        ObjectRef {
            kind: kind.to_string(),
            namespace: metadata.namespace.clone().filter(|ns| !ns.is_empty()),
            name: metadata.name.clone(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{} {}/{}", self.kind, namespace, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Why a JSON value is not an object of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: {message}")]
pub struct DecodeError {
    pub object: ObjectRef,
    pub message: String,
}

/// Reads a whole object of `kind` from JSON; the error names the object as far as its
/// metadata can be read.
pub fn decode<T: serde::de::DeserializeOwned>(
    kind: &str,
    value: &serde_json::Value,
) -> Result<T, DecodeError> {
    T::deserialize(value).map_err(|error| {
        let text = |field: &str| {
            value
                .get("metadata")
                .and_then(|metadata| metadata.get(field))
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        DecodeError {
            object: ObjectRef {
                kind: kind.to_string(),
                namespace: text("namespace").filter(|ns| !ns.is_empty()),
                name: text("name").unwrap_or_else(|| "<unnamed>".to_string()),
            },
            message: error.to_string(),
        }
    })
}

/// A JSON number or string (Calico's `numorstring`, Kubernetes' `IntOrString`). Numbers are
/// kept as `i64` so that out-of-range values reach validation and get a proper message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NumOrString {
    Number(i64),
    Text(String),
}

impl From<i64> for NumOrString {
    fn from(number: i64) -> Self {
        NumOrString::Number(number)
    }
}

impl From<&str> for NumOrString {
    fn from(text: &str) -> Self {
        NumOrString::Text(text.to_string())
    }
}

impl fmt::Display for NumOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumOrString::Number(number) => write!(f, "{number}"),
            NumOrString::Text(text) => write!(f, "{text:?}"),
        }
    }
}

impl Serialize for NumOrString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            NumOrString::Number(number) => serializer.serialize_i64(*number),
            NumOrString::Text(text) => serializer.serialize_str(text),
        }
    }
}

impl<'de> Deserialize<'de> for NumOrString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumOrStringVisitor;
        impl Visitor<'_> for NumOrStringVisitor {
            type Value = NumOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<NumOrString, E> {
                Ok(NumOrString::Number(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<NumOrString, E> {
                // Anything above i64 is out of every range this is used for; keep it visible.
                Ok(NumOrString::Number(
                    i64::try_from(value).unwrap_or(i64::MAX),
                ))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<NumOrString, E> {
                Ok(NumOrString::Text(value.to_string()))
            }
        }
        deserializer.deserialize_any(NumOrStringVisitor)
    }
}
