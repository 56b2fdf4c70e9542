//! Kubernetes label and field selectors (Kubernetes syntax, not Calico's) and the `Filter` of a
//! LIST or WATCH.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::store::{api_error, ApiError, ResourceType};

#[derive(Debug, Clone)]
pub(super) enum Requirement {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
}

impl Requirement {
    pub(super) fn matches(&self, labels: &Map<String, Value>) -> bool {
        let value = |key: &String| labels.get(key).and_then(Value::as_str);
        match self {
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::NotExists(key) => !labels.contains_key(key),
            Requirement::Equals(key, wanted) => value(key) == Some(wanted.as_str()),
            Requirement::NotEquals(key, wanted) => value(key) != Some(wanted.as_str()),
            Requirement::In(key, set) => value(key).is_some_and(|actual| set.contains(actual)),
            Requirement::NotIn(key, set) => !value(key).is_some_and(|actual| set.contains(actual)),
        }
    }
}

/// Splits on commas outside parentheses.
pub(super) fn split_requirements(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect()
}

pub(super) fn parse_label_selector(text: &str) -> Result<Vec<Requirement>, ApiError> {
    let invalid = |part: &str| {
        api_error(
            400,
            "BadRequest",
            format!("unable to parse requirement {part:?} in labelSelector {text:?}"),
        )
    };
    let valid_key = |key: &str| {
        !key.is_empty()
            && key
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_./".contains(&byte))
    };
    let mut requirements = Vec::new();
    for part in split_requirements(text) {
        let requirement = if let Some(key) = part.strip_prefix('!') {
            Requirement::NotExists(key.trim().to_string())
        } else if let Some((left, values)) = part.split_once('(') {
            let values = values.strip_suffix(')').ok_or_else(|| invalid(part))?;
            let set = values
                .split(',')
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
                .collect();
            match left.split_whitespace().collect::<Vec<_>>()[..] {
                [key, "in"] => Requirement::In(key.to_string(), set),
                [key, "notin"] => Requirement::NotIn(key.to_string(), set),
                _ => return Err(invalid(part)),
            }
        } else if let Some((key, value)) = part.split_once("!=") {
            Requirement::NotEquals(key.trim().to_string(), value.trim().to_string())
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            Requirement::Equals(key.trim().to_string(), value.trim().to_string())
        } else {
            Requirement::Exists(part.to_string())
        };
        let key = match &requirement {
            Requirement::Exists(key)
            | Requirement::NotExists(key)
            | Requirement::Equals(key, _)
            | Requirement::NotEquals(key, _)
            | Requirement::In(key, _)
            | Requirement::NotIn(key, _) => key,
        };
        if !valid_key(key) {
            return Err(invalid(part));
        }
        requirements.push(requirement);
    }
    Ok(requirements)
}

/// (JSON pointer of the field, wanted value, true for `!=`)
pub(super) type FieldRequirement = (&'static str, String, bool);

pub(super) fn parse_field_selector(text: &str) -> Result<Vec<FieldRequirement>, ApiError> {
    let mut requirements = Vec::new();
    for part in split_requirements(text) {
        let (field, value, negated) = if let Some((field, value)) = part.split_once("!=") {
            (field, value, true)
        } else if let Some((field, value)) = part.split_once("==").or_else(|| part.split_once('='))
        {
            (field, value, false)
        } else {
            return Err(api_error(
                400,
                "BadRequest",
                format!("invalid fieldSelector requirement {part:?}"),
            ));
        };
        let pointer = match field.trim() {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            "spec.nodeName" => "/spec/nodeName",
            other => {
                return Err(api_error(
                    400,
                    "BadRequest",
                    format!("field label not supported: {other}"),
                ))
            }
        };
        requirements.push((pointer, value.trim().to_string(), negated));
    }
    Ok(requirements)
}

/// What a LIST or WATCH selects.
pub(super) struct Filter {
    pub(super) resource: ResourceType,
    pub(super) namespace: Option<String>,
    pub(super) labels: Vec<Requirement>,
    pub(super) fields: Vec<FieldRequirement>,
}

impl Filter {
    pub(super) fn namespace_matches(&self, namespace: &str) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|wanted| wanted == namespace)
    }

    pub(super) fn object_matches(&self, object: &Value) -> bool {
        let empty = Map::new();
        let labels = object["metadata"]["labels"].as_object().unwrap_or(&empty);
        let fields_match = self.fields.iter().all(|(pointer, wanted, negated)| {
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            (actual == wanted) != *negated
        });
        fields_match
            && self
                .labels
                .iter()
                .all(|requirement| requirement.matches(labels))
    }
}
