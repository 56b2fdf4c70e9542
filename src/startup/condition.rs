//! The Kubernetes Node condition `NetworkUnavailable` (reference §2.1, §8.1 step 15): `False`
//! with reason `CalicoIsUp` once the node is ready, `True` with `CalicoIsDown` on shutdown.
//!
//! Contract: [`condition_patch`] is pure (the node's current conditions and the time in, the
//! patch out). The write is a strategic merge patch of `status.conditions` on `nodes/<name>/status`
//! that carries the whole condition list and the resourceVersion it was computed from, so it is
//! right both where conditions merge by `type` (a real API server) and where lists are replaced,
//! and a concurrent kubelet update makes it retry instead of being overwritten.

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

use super::StartupError;

pub const CONDITION_TYPE: &str = "NetworkUnavailable";
pub const REASON_UP: &str = "CalicoIsUp";
pub const REASON_DOWN: &str = "CalicoIsDown";
pub const MESSAGE_UP: &str = "Calico is running on this node";
pub const MESSAGE_DOWN: &str = "Calico is shutting down on this node";

const ATTEMPTS: usize = 10;

/// The `status.conditions` patch for `node`, or `None` when the condition already says so
/// (only the heartbeat would change). `lastTransitionTime` moves only when the status flips.
pub fn condition_patch(node: &Node, unavailable: bool, now: DateTime<Utc>) -> Option<Value> {
    let status = if unavailable { "True" } else { "False" };
    let (reason, message) = if unavailable {
        (REASON_DOWN, MESSAGE_DOWN)
    } else {
        (REASON_UP, MESSAGE_UP)
    };
    let timestamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let existing: Vec<Value> = node
        .status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|condition| serde_json::to_value(condition).ok())
        .collect();
    let current = existing
        .iter()
        .find(|condition| condition["type"] == CONDITION_TYPE);
    if let Some(current) = current {
        if current["status"] == status && current["reason"] == reason {
            return None;
        }
    }
    let transition = match current {
        Some(current) if current["status"] == status => current["lastTransitionTime"].clone(),
        _ => Value::String(timestamp.clone()),
    };
    let ours = json!({
        "type": CONDITION_TYPE,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "lastHeartbeatTime": timestamp,
    });
    let mut conditions: Vec<Value> = existing
        .into_iter()
        .filter(|condition| condition["type"] != CONDITION_TYPE)
        .collect();
    conditions.push(ours);
    let mut metadata = json!({});
    if let Some(version) = &node.metadata.resource_version {
        metadata["resourceVersion"] = json!(version);
    }
    Some(json!({ "metadata": metadata, "status": { "conditions": conditions } }))
}

/// Sets the condition on the Kubernetes Node `name`, retrying when the Node changed meanwhile.
pub async fn set_condition(
    client: kube::Client,
    name: &str,
    unavailable: bool,
) -> Result<(), StartupError> {
    let api: Api<Node> = Api::all(client);
    let failure = |reason: String| StartupError::Kubernetes {
        action: format!("setting {CONDITION_TYPE} on node {name}"),
        reason,
    };
    for _ in 0..ATTEMPTS {
        let node = match api.get(name).await {
            Ok(node) => node,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(StartupError::KubernetesNodeMissing {
                    node: name.to_string(),
                })
            }
            Err(error) => return Err(failure(error.to_string())),
        };
        let Some(patch) = condition_patch(&node, unavailable, Utc::now()) else {
            return Ok(());
        };
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(
                    node = name,
                    unavailable,
                    "set the {CONDITION_TYPE} node condition"
                );
                return Ok(());
            }
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(failure(error.to_string())),
        }
    }
    Err(failure(format!(
        "gave up after {ATTEMPTS} conflicting writes"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn node(conditions: Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": "n1", "resourceVersion": "7" },
            "status": { "conditions": conditions }
        }))
        .unwrap()
    }

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
    }

    #[test]
    fn up_keeps_other_conditions_and_sets_ours() {
        let ready = json!({"type": "Ready", "status": "True", "reason": "KubeletReady"});
        let patch = condition_patch(&node(json!([ready.clone()])), false, at(1)).unwrap();
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions[0]["type"], "Ready");
        let ours = &conditions[1];
        assert_eq!(ours["status"], "False");
        assert_eq!(ours["reason"], "CalicoIsUp");
        assert_eq!(ours["message"], "Calico is running on this node");
        assert_eq!(ours["lastTransitionTime"], "2026-01-01T00:00:01Z");
        assert_eq!(patch["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn unchanged_condition_needs_no_write_and_flip_moves_transition() {
        let up = json!({"type": CONDITION_TYPE, "status": "False", "reason": "CalicoIsUp",
                        "lastTransitionTime": "2026-01-01T00:00:01Z"});
        assert!(condition_patch(&node(json!([up.clone()])), false, at(5)).is_none());
        let patch = condition_patch(&node(json!([up])), true, at(9)).unwrap();
        let ours = &patch["status"]["conditions"][0];
        assert_eq!(ours["status"], "True");
        assert_eq!(ours["reason"], "CalicoIsDown");
        assert_eq!(ours["message"], "Calico is shutting down on this node");
        assert_eq!(ours["lastTransitionTime"], "2026-01-01T00:00:09Z");
    }

    #[test]
    fn other_reason_with_same_status_is_rewritten_keeping_transition_time() {
        let route_controller = json!({"type": CONDITION_TYPE, "status": "False",
            "reason": "RouteCreated", "lastTransitionTime": "2025-01-01T00:00:00Z"});
        let patch = condition_patch(&node(json!([route_controller])), false, at(3)).unwrap();
        let ours = &patch["status"]["conditions"][0];
        assert_eq!(ours["reason"], "CalicoIsUp");
        assert_eq!(ours["lastTransitionTime"], "2025-01-01T00:00:00Z");
        assert_eq!(ours["lastHeartbeatTime"], "2026-01-01T00:00:03Z");
    }
}
