//! PATCH bodies: JSON merge patch (RFC 7386) and JSON patch (RFC 6902).

use serde_json::{json, Value};

use super::store::{api_error, ApiError};

/// RFC 7386 JSON merge patch.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(target_map) = target.as_object_mut() {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Splits a JSON pointer into its parent pointer and unescaped last token.
pub(super) fn split_pointer(path: &str) -> Option<(String, String)> {
    let (parent, last) = path.rsplit_once('/')?;
    Some((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

pub(super) fn json_patch_remove(document: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, token) = split_pointer(path).ok_or_else(|| format!("invalid path {path:?}"))?;
    match document.pointer_mut(&parent) {
        Some(Value::Object(map)) => map
            .remove(&token)
            .ok_or_else(|| format!("no value at {path:?}")),
        Some(Value::Array(items)) => match token.parse::<usize>() {
            Ok(index) if index < items.len() => Ok(items.remove(index)),
            _ => Err(format!("no array element at {path:?}")),
        },
        _ => Err(format!("no container at {parent:?}")),
    }
}

pub(super) fn json_patch_add(document: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *document = value;
        return Ok(());
    }
    let (parent, token) = split_pointer(path).ok_or_else(|| format!("invalid path {path:?}"))?;
    match document.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(token, value);
            Ok(())
        }
        Some(Value::Array(items)) if token == "-" => {
            items.push(value);
            Ok(())
        }
        Some(Value::Array(items)) => match token.parse::<usize>() {
            Ok(index) if index <= items.len() => {
                items.insert(index, value);
                Ok(())
            }
            _ => Err(format!("array index out of range at {path:?}")),
        },
        _ => Err(format!("no container at {parent:?}")),
    }
}

/// RFC 6902 JSON patch (add, remove, replace, test, copy, move).
pub(super) fn json_patch(document: &mut Value, operations: &Value) -> Result<(), String> {
    let operations = operations
        .as_array()
        .ok_or("a JSON patch must be an array")?;
    for operation in operations {
        let path = operation["path"].as_str().ok_or("operation without path")?;
        let from = operation["from"].as_str();
        let value = operation.get("value").cloned();
        match (operation["op"].as_str(), value, from) {
            (Some("add"), Some(value), _) => json_patch_add(document, path, value)?,
            (Some("remove"), _, _) => drop(json_patch_remove(document, path)?),
            (Some("replace"), Some(value), _) => {
                let target = document
                    .pointer_mut(path)
                    .ok_or_else(|| format!("no value at {path:?}"))?;
                *target = value;
            }
            (Some("test"), Some(value), _) => {
                if document.pointer(path) != Some(&value) {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            (Some("copy"), _, Some(from)) => {
                let value = document
                    .pointer(from)
                    .cloned()
                    .ok_or_else(|| format!("no value at {from:?}"))?;
                json_patch_add(document, path, value)?;
            }
            (Some("move"), _, Some(from)) => {
                let value = json_patch_remove(document, from)?;
                json_patch_add(document, path, value)?;
            }
            (operation, _, _) => {
                return Err(format!("unsupported or incomplete operation {operation:?}"))
            }
        }
    }
    Ok(())
}

/// Media types accepted on PATCH (apply is approximated by a merge patch).
const ACCEPTED_PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, \
     application/strategic-merge-patch+json, application/apply-patch+yaml";

pub(super) fn apply_patch(
    content_type: &str,
    existing: &Value,
    body: &Value,
) -> Result<Value, ApiError> {
    let mut patched = existing.clone();
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    let invalid = |message: String| api_error(422, "Invalid", message);
    match media_type {
        "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/apply-patch+yaml" => merge_patch(&mut patched, body),
        "application/json-patch+json" => json_patch(&mut patched, body)
            .map_err(|message| invalid(format!("json patch: {message}")))?,
        other => {
            let message =
                format!("unsupported patch media type {other:?}; accepted: {ACCEPTED_PATCH_TYPES}");
            return Err(api_error(415, "UnsupportedMediaType", message));
        }
    }
    if !patched.is_object() || !patched["metadata"].is_object() {
        return Err(invalid(
            "the patched object is not an object with object metadata".into(),
        ));
    }
    // A patch naming a resourceVersion is a conditional write, like PUT; otherwise it applies to
    // whatever is current.
    let wanted = match media_type {
        "application/json-patch+json" => patched["metadata"]["resourceVersion"].clone(),
        _ => body["metadata"]["resourceVersion"].clone(),
    };
    patched["metadata"]["resourceVersion"] = if wanted.is_string() {
        wanted
    } else {
        existing["metadata"]["resourceVersion"].clone()
    };
    Ok(patched)
}
