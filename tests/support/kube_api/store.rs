//! The object store: every write goes through `Store::record`, which assigns the next
//! resourceVersion and appends to the history that watches replay.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::Filter;

/// Identifies a resource type: API group ("" for core), version and plural name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceType {
    /// `api_version` as in objects: "v1" for core, "group/version" otherwise.
    pub fn new(api_version: &str, plural: &str) -> Self {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ResourceType {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        }
    }

    pub(super) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub(super) type ObjectKey = (ResourceType, String, String);

/// A failed request, answered as a Kubernetes `Status`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

pub(super) fn api_error(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        reason,
        message: message.into(),
    }
}

pub(super) fn not_found(resource: &ResourceType, name: &str) -> ApiError {
    api_error(
        404,
        "NotFound",
        format!("{} \"{name}\" not found", resource.plural),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, kept so watches can resume from any retained resourceVersion.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub(super) resource_version: u64,
    pub(super) resource: ResourceType,
    pub(super) namespace: String,
    pub(super) event: EventType,
    pub(super) previous: Option<Value>,
    pub(super) object: Value,
}

#[derive(Default)]
pub(super) struct Store {
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    pub(super) resource_version: u64,
    /// Changes with resourceVersion > `compacted_through`, oldest first.
    pub(super) history: Vec<Change>,
    pub(super) compacted_through: u64,
    pub(super) kinds: BTreeMap<ResourceType, String>,
    pub(super) status_subresources: BTreeSet<ResourceType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    /// PUT/PATCH on the resource: `status` is kept when the type has a status subresource.
    Main,
    /// PUT/PATCH on `/status`: only `status` changes (Nodes: `metadata` too).
    Status,
    /// Test set-up (`put_object`): everything the caller sent, status included.
    Whole,
}

pub(super) fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(super) fn random_uid() -> String {
    let bytes: [u8; 16] = rand::random();
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

/// Everything outside metadata and status: what bumps `metadata.generation` when it changes.
pub(super) fn spec_part(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

impl Store {
    pub(super) fn record(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        event: EventType,
        previous: Option<Value>,
        mut object: Value,
    ) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        if let Some(kind) = object["kind"].as_str() {
            self.kinds.insert(resource.clone(), kind.to_string());
        }
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let key = (resource.clone(), namespace.to_string(), name);
        if event == EventType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key, object.clone());
        }
        self.history.push(Change {
            resource_version: self.resource_version,
            resource: resource.clone(),
            namespace: namespace.to_string(),
            event,
            previous,
            object: object.clone(),
        });
        object
    }

    pub(super) fn get(
        &self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        let key = (resource.clone(), namespace.to_string(), name.to_string());
        self.objects
            .get(&key)
            .cloned()
            .ok_or_else(|| not_found(resource, name))
    }

    pub(super) fn list(&self, filter: &Filter) -> Vec<Value> {
        let objects = self.objects.iter().filter(|((resource, namespace, _), _)| {
            resource == &filter.resource && filter.namespace_matches(namespace)
        });
        objects
            .map(|(_, object)| object)
            .filter(|object| filter.object_matches(object))
            .cloned()
            .collect()
    }

    pub(super) fn create(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        if !object.is_object() || !object["metadata"].is_object() && !object["metadata"].is_null() {
            return Err(api_error(
                400,
                "BadRequest",
                "the body must be a JSON object with object metadata",
            ));
        }
        check_namespace(&object, namespace)?;
        let metadata = &mut object["metadata"];
        if metadata["name"].as_str().unwrap_or_default().is_empty() {
            let Some(prefix) = metadata["generateName"].as_str() else {
                return Err(api_error(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ));
            };
            let suffix: String = (0..5)
                .map(|_| (b'a' + rand::random_range(0..26u8)) as char)
                .collect();
            metadata["name"] = json!(format!("{prefix}{suffix}"));
        }
        let name = metadata["name"].as_str().unwrap_or_default().to_string();
        if self
            .objects
            .contains_key(&(resource.clone(), namespace.to_string(), name.clone()))
        {
            return Err(api_error(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource.plural),
            ));
        }
        if !namespace.is_empty() {
            metadata["namespace"] = json!(namespace);
        }
        metadata["uid"] = json!(random_uid());
        metadata["creationTimestamp"] = json!(now_timestamp());
        metadata["generation"] = json!(1);
        Ok(self.record(resource, namespace, EventType::Added, None, object))
    }

    /// PUT semantics (also the last step of PATCH): optimistic concurrency on the body's
    /// resourceVersion, server-owned metadata kept, status/spec split per `write`.
    pub(super) fn update(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        write: Write,
    ) -> Result<Value, ApiError> {
        let existing = self.get(resource, namespace, name)?;
        if !object.is_object() {
            return Err(api_error(
                400,
                "BadRequest",
                "the body must be a JSON object",
            ));
        }
        check_namespace(&object, namespace)?;
        match object["metadata"]["name"].as_str() {
            Some(body_name) if body_name != name => {
                return Err(api_error(400, "BadRequest", format!("the name of the object ({body_name}) does not match the name on the URL ({name})")))
            }
            _ => {}
        }
        if let Some(version) = object["metadata"]["resourceVersion"].as_str() {
            if version
                != existing["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            {
                return Err(api_error(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", resource.plural),
                ));
            }
        }
        let has_status_subresource = self.status_subresources.contains(resource);
        let mut result = match write {
            Write::Status => {
                let mut result = existing.clone();
                // Kubernetes' node and pod status strategies keep the new metadata (Calico writes
                // Node annotations and the CNI writes pod IP annotations through /status).
                let keeps_metadata = resource.group.is_empty()
                    && (resource.plural == "nodes" || resource.plural == "pods");
                if keeps_metadata {
                    result["metadata"] = object["metadata"].take();
                }
                match object.get("status") {
                    Some(status) => result["status"] = status.clone(),
                    None => {
                        result.as_object_mut().map(|map| map.remove("status"));
                    }
                }
                result
            }
            Write::Whole => object,
            Write::Main => {
                if has_status_subresource {
                    match existing.get("status") {
                        Some(status) => object["status"] = status.clone(),
                        None => {
                            object.as_object_mut().map(|map| map.remove("status"));
                        }
                    }
                }
                object
            }
        };
        if !result["metadata"].is_object() {
            result["metadata"] = json!({});
        }
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
        ] {
            match existing["metadata"].get(field) {
                Some(value) => result["metadata"][field] = value.clone(),
                None => {
                    result["metadata"]
                        .as_object_mut()
                        .map(|metadata| metadata.remove(field));
                }
            }
        }
        if spec_part(&result) != spec_part(&existing) {
            let generation = existing["metadata"]["generation"].as_i64().unwrap_or(0);
            result["metadata"]["generation"] = json!(generation + 1);
        }
        Ok(self.record(
            resource,
            namespace,
            EventType::Modified,
            Some(existing),
            result,
        ))
    }

    pub(super) fn delete(
        &mut self,
        resource: &ResourceType,
        namespace: &str,
        name: &str,
        options: &Value,
    ) -> Result<Value, ApiError> {
        let existing = self.get(resource, namespace, name)?;
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            if let Some(wanted) = options["preconditions"][field].as_str() {
                let actual = existing["metadata"][field].as_str().unwrap_or_default();
                if wanted != actual {
                    return Err(api_error(
                        409,
                        "Conflict",
                        format!("Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"),
                    ));
                }
            }
        }
        Ok(self.record(
            resource,
            namespace,
            EventType::Deleted,
            Some(existing.clone()),
            existing,
        ))
    }
}

pub(super) fn check_namespace(object: &Value, namespace: &str) -> Result<(), ApiError> {
    match object["metadata"]["namespace"].as_str() {
        Some(body) if !body.is_empty() && body != namespace => Err(api_error(
            400,
            "BadRequest",
            format!("the namespace of the provided object ({body}) does not match the namespace sent on the request ({namespace})"),
        )),
        _ => Ok(()),
    }
}
