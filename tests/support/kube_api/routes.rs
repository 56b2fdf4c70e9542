//! HTTP routing and the non-watch handlers; errors become Kubernetes `Status` objects.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};

use super::patch::apply_patch;
use super::selectors::{parse_field_selector, parse_label_selector, Filter};
use super::store::{api_error, ApiError, ResourceType, Store, Write};
use super::watching::start_watch;
use super::Shared;

/// A parsed resource path.
pub(super) struct Route {
    pub(super) resource: ResourceType,
    /// None when the path has no namespace (cluster-scoped, or a LIST across namespaces).
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) status: bool,
}

pub(super) fn parse_route(path: &str) -> Option<Route> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // `/namespaces/{name}/status` is the Namespace's own status, not a resource called "status".
        ["namespaces", _, "status" | "finalize"] => (None, rest),
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => {
            (Some(namespace.to_string()), rest)
        }
        _ => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => return None,
    };
    let resource = ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
    };
    Some(Route {
        resource,
        namespace,
        name,
        status,
    })
}

pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                index += 1;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

pub(super) fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    let pairs = query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

pub(super) fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

pub(super) fn status_object(error: &ApiError, route: Option<&Route>) -> Value {
    let mut details = json!({});
    if let Some(route) = route {
        details = json!({ "group": route.resource.group, "kind": route.resource.plural });
        if let Some(name) = &route.name {
            details["name"] = json!(name);
        }
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": error.message,
        "reason": error.reason,
        "details": details,
        "code": error.code,
    })
}

pub(super) fn error_response(error: ApiError, route: Option<&Route>) -> Response {
    json_response(error.code, &status_object(&error, route))
}

pub(super) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|error| {
        api_error(
            400,
            "BadRequest",
            format!("the request body is not JSON: {error}"),
        )
    })
}

pub(super) fn filter_from(
    route: &Route,
    query: &BTreeMap<String, String>,
) -> Result<Filter, ApiError> {
    Ok(Filter {
        resource: route.resource.clone(),
        namespace: route.namespace.clone(),
        labels: parse_label_selector(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        fields: parse_field_selector(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
    })
}

pub(super) fn list_body(store: &Store, resource: &ResourceType, items: Vec<Value>) -> Value {
    let kind = store
        .kinds
        .get(resource)
        .map_or("List".to_string(), |kind| format!("{kind}List"));
    json!({
        "apiVersion": resource.api_version(),
        "kind": kind,
        "metadata": { "resourceVersion": store.resource_version.to_string() },
        "items": items,
    })
}

pub(super) async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/version" {
        return json_response(
            200,
            &json!({ "major": "1", "minor": "33", "gitVersion": "v1.33.0-starling-test" }),
        );
    }
    let query = parse_query(uri.query());
    let route = parse_route(uri.path());
    let watching = matches!(query.get("watch").map(String::as_str), Some("1" | "true"));
    let verb = match (
        &method,
        route.as_ref().and_then(|route| route.name.as_ref()),
    ) {
        (&Method::GET, Some(_)) => "get",
        (&Method::GET, None) if watching => "watch",
        (&Method::GET, None) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, Some(_)) => "delete",
        (&Method::DELETE, None) => "deletecollection",
        _ => "other",
    };
    *shared
        .requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(verb.to_string())
        .or_default() += 1;
    if shared.unavailable.load(Ordering::SeqCst) {
        return error_response(
            api_error(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            route.as_ref(),
        );
    }
    let Some(route) = route else {
        return error_response(
            api_error(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({})",
                    uri.path()
                ),
            ),
            None,
        );
    };
    if verb == "watch" {
        return match start_watch(&shared, &route, &query) {
            Ok(response) => response,
            Err(error) => error_response(error, Some(&route)),
        };
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let result = parse_body(&body)
        .and_then(|body| serve(&shared, &route, verb, &query, &content_type, body));
    match result {
        Ok((code, body)) => json_response(code, &body),
        Err(error) => error_response(error, Some(&route)),
    }
}

/// Every non-watch request: returns (HTTP code, JSON body).
pub(super) fn serve(
    shared: &Shared,
    route: &Route,
    verb: &str,
    query: &BTreeMap<String, String>,
    content_type: &str,
    body: Value,
) -> Result<(u16, Value), ApiError> {
    let resource = &route.resource;
    let namespace = route.namespace.clone().unwrap_or_default();
    let name = route.name.clone().unwrap_or_default();
    let mut store = shared.store();
    if route.status && !store.status_subresources.contains(resource) {
        return Err(api_error(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({}/status)",
                resource.plural
            ),
        ));
    }
    let write = if route.status {
        Write::Status
    } else {
        Write::Main
    };
    let answer = match verb {
        "get" => (200, store.get(resource, &namespace, &name)?),
        "list" => {
            let items = store.list(&filter_from(route, query)?);
            (200, list_body(&store, resource, items))
        }
        "create" if route.name.is_none() => (201, store.create(resource, &namespace, body)?),
        "update" => (200, store.update(resource, &namespace, &name, body, write)?),
        "patch" => {
            let media_type = content_type.split(';').next().unwrap_or_default().trim();
            match store.get(resource, &namespace, &name) {
                Err(_) if media_type == "application/apply-patch+yaml" && !route.status => {
                    let mut object = body;
                    if object.is_object() && object["metadata"].is_object() {
                        object["metadata"]["name"] = json!(name);
                    }
                    (201, store.create(resource, &namespace, object)?)
                }
                existing => {
                    let patched = apply_patch(content_type, &existing?, &body)?;
                    (
                        200,
                        store.update(resource, &namespace, &name, patched, write)?,
                    )
                }
            }
        }
        "delete" => (200, store.delete(resource, &namespace, &name, &body)?),
        "deletecollection" => {
            let filter = filter_from(route, query)?;
            let mut deleted = Vec::new();
            for object in store.list(&filter) {
                let object_namespace = object["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let object_name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                deleted.push(store.delete(
                    resource,
                    &object_namespace,
                    &object_name,
                    &Value::Null,
                )?);
            }
            (200, list_body(&store, resource, deleted))
        }
        _ => {
            return Err(api_error(
                405,
                "MethodNotAllowed",
                format!("{verb} is not supported on this path"),
            ))
        }
    };
    let version = store.resource_version;
    drop(store);
    shared.changes.send_replace(version);
    Ok(answer)
}
