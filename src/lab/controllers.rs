//! What Calico's kube-controllers write in etcd mode, done by the lab (it has no Kubernetes API
//! for them to watch): the `kns.<ns>` Profile of each namespace and `ksa.<ns>.<sa>` of each
//! service account, and each pod's labels, service account and named container ports on the
//! WorkloadEndpoint the CNI plugin wrote.
//!
//! Contract: every write keeps the stored object's `uid` and `creationTimestamp`, as an update
//! through Calico's client does; labels Calico owns on an endpoint
//! (`projectcalico.org/namespace`, `orchestrator`, `serviceaccount`) win over the pod's.

use serde_json::{json, Value};

use super::etcd;
use super::labels::{Labels, NAMESPACE_NAME_LABEL};
use super::pods::LabPod;
use super::topology::{node_name, LabNames};
use crate::datastore::endpoints;
use starling_model::endpoint::{
    k8s_endpoint_name, LABEL_NAMESPACE, LABEL_ORCHESTRATOR, LABEL_SERVICE_ACCOUNT, ORCHESTRATOR_K8S,
};
use starling_policy::k8s;
use starling_policy::model::{MetadataOnly, ObjectMeta};

use anyhow::{Context, Result};

/// `/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>`.
pub fn key(plural: &str, namespace: Option<&str>, name: &str) -> String {
    let prefix = crate::datastore::v3::v3_prefix(plural);
    match namespace {
        Some(namespace) => format!("{prefix}{namespace}/{name}"),
        None => format!("{prefix}{name}"),
    }
}

/// A namespace's labels as the API server keeps them: `kubernetes.io/metadata.name` is always
/// the namespace's name.
pub fn namespace_labels(name: &str, labels: &Labels) -> Labels {
    let mut labels = labels.clone();
    labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
    labels
}

fn metadata_only(name: &str, namespace: Option<&str>, labels: &Labels) -> MetadataOnly {
    MetadataOnly {
        metadata: ObjectMeta {
            name: name.to_string(),
            namespace: namespace.map(str::to_string),
            labels: labels.clone(),
            ..ObjectMeta::default()
        },
        ..MetadataOnly::default()
    }
}

/// The `kns.<ns>` Profile at its key (labels as given: see [`namespace_labels`]).
pub fn namespace_profile(name: &str, labels: &Labels) -> Result<(String, Value)> {
    let profile = k8s::namespace_profile_object(&metadata_only(name, None, labels));
    let key = key("profiles", None, &profile.metadata.name);
    Ok((
        key,
        serde_json::to_value(&profile).context("encoding a namespace profile")?,
    ))
}

/// The `ksa.<ns>.<sa>` Profile at its key (the lab's service accounts carry no labels).
pub fn service_account_profile(namespace: &str, account: &str) -> Result<(String, Value)> {
    let profile = k8s::service_account_profile_object(&metadata_only(
        account,
        Some(namespace),
        &Labels::new(),
    ));
    let key = key("profiles", None, &profile.metadata.name);
    Ok((
        key,
        serde_json::to_value(&profile).context("encoding a service account profile")?,
    ))
}

/// Gives `value` the stored object's uid and creation time, or new ones.
pub fn with_server_metadata(mut value: Value, stored: Option<&Value>) -> Value {
    let old = |field: &str| {
        stored
            .and_then(|stored| stored["metadata"].get(field))
            .filter(|v| v.is_string())
            .cloned()
    };
    let uid = old("uid").unwrap_or_else(|| json!(crate::resources::meta::new_uid()));
    let created = old("creationTimestamp").unwrap_or_else(|| {
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    });
    if let Some(metadata) = value
        .as_object_mut()
        .map(|object| object.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        metadata.insert("uid".to_string(), uid);
        metadata.insert("creationTimestamp".to_string(), created);
        metadata.remove("resourceVersion");
    }
    value
}

/// Writes each `(key, object)`, keeping what the stored objects' server fields were.
pub fn put_objects(names: &LabNames, endpoints: &str, objects: Vec<(String, Value)>) -> Result<()> {
    let mut entries = Vec::with_capacity(objects.len());
    for (key, value) in objects {
        let stored = etcd::get(names, endpoints, &key).with_context(|| format!("reading {key}"))?;
        entries.push((key, with_server_metadata(value, stored.as_ref())));
    }
    etcd::put_all(names, endpoints, entries)
}

/// The etcd key of `pod`'s WorkloadEndpoint (the one the CNI plugin writes).
pub fn endpoint_key(pod: &LabPod) -> Result<String> {
    let name = k8s_endpoint_name(&node_name(pod.node), &pod.name(), "eth0")
        .with_context(|| format!("naming the WorkloadEndpoint of pod {}", pod.qualified()))?;
    Ok(endpoints::key(&pod.pod_namespace, &name))
}

/// `endpoint` with `pod`'s labels, service account and named ports, as Calico records them.
pub fn endpoint_with_pod(mut endpoint: Value, pod: &LabPod) -> Value {
    let mut labels = pod.labels.clone();
    labels.insert(LABEL_NAMESPACE.to_string(), pod.pod_namespace.clone());
    labels.insert(LABEL_ORCHESTRATOR.to_string(), ORCHESTRATOR_K8S.to_string());
    let mut profiles = vec![format!(
        "{}{}",
        k8s::NAMESPACE_PROFILE_PREFIX,
        pod.pod_namespace
    )];
    if let Some(account) = &pod.service_account {
        if account.len() < 63 {
            labels.insert(LABEL_SERVICE_ACCOUNT.to_string(), account.clone());
        }
        profiles.push(k8s::service_account_profile_name(
            &pod.pod_namespace,
            account,
        ));
    }
    endpoint["metadata"]["labels"] = json!(labels);
    let spec = &mut endpoint["spec"];
    spec["profiles"] = json!(profiles);
    match &pod.service_account {
        Some(account) => spec["serviceAccountName"] = json!(account),
        None => {
            if let Some(spec) = spec.as_object_mut() {
                spec.remove("serviceAccountName");
            }
        }
    }
    // Calico records only named container ports (and host ports, which the lab has none of).
    let ports: Vec<Value> = pod
        .ports
        .iter()
        .filter_map(|port| {
            port.name.as_ref().map(
                |name| json!({"name": name, "protocol": port.protocol.as_str(), "port": port.port}),
            )
        })
        .collect();
    if ports.is_empty() {
        if let Some(spec) = spec.as_object_mut() {
            spec.remove("ports");
        }
    } else {
        spec["ports"] = json!(ports);
    }
    endpoint
}

/// Brings `pod`'s WorkloadEndpoint in line with the pod (labels, service account, ports).
pub fn sync_endpoint(names: &LabNames, endpoints: &str, pod: &LabPod) -> Result<()> {
    let key = endpoint_key(pod)?;
    let stored = etcd::get(names, endpoints, &key)?.with_context(|| {
        format!(
            "pod {} has no WorkloadEndpoint at {key} (did CNI ADD record it?)",
            pod.qualified()
        )
    })?;
    etcd::put_all(
        names,
        endpoints,
        vec![(key, endpoint_with_pod(stored, pod))],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::serve::parse_list;

    #[test]
    fn namespace_profile_is_what_kube_controllers_write() {
        let labels = namespace_labels("x", &[("team".to_string(), "a".to_string())].into());
        let (key, profile) = namespace_profile("x", &labels).unwrap();
        assert_eq!(key, "/calico/resources/v3/projectcalico.org/profiles/kns.x");
        assert_eq!(profile["apiVersion"], "projectcalico.org/v3");
        assert_eq!(profile["kind"], "Profile");
        assert_eq!(profile["metadata"]["name"], "kns.x");
        assert_eq!(profile["spec"]["ingress"], json!([{"action": "Allow"}]));
        assert_eq!(profile["spec"]["egress"], json!([{"action": "Allow"}]));
        assert_eq!(
            profile["spec"]["labelsToApply"],
            json!({"pcns.kubernetes.io/metadata.name": "x", "pcns.team": "a",
                   "pcns.projectcalico.org/name": "x"})
        );
        let (key, profile) = service_account_profile("x", "robot").unwrap();
        assert_eq!(
            key,
            "/calico/resources/v3/projectcalico.org/profiles/ksa.x.robot"
        );
        assert_eq!(
            profile["spec"]["labelsToApply"],
            json!({"pcsa.projectcalico.org/name": "robot"})
        );
        assert!(profile["spec"].get("ingress").is_none());
    }

    #[test]
    fn server_metadata_is_kept_across_updates() {
        let stored = json!({"metadata": {"name": "kns.x", "uid": "u-1",
                                         "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let value = with_server_metadata(json!({"metadata": {"name": "kns.x"}}), Some(&stored));
        assert_eq!(value["metadata"]["uid"], "u-1");
        assert_eq!(
            value["metadata"]["creationTimestamp"],
            "2026-01-01T00:00:00Z"
        );
        let fresh = with_server_metadata(json!({"metadata": {"name": "kns.x"}}), None);
        assert!(fresh["metadata"]["uid"]
            .as_str()
            .is_some_and(|uid| !uid.is_empty()));
    }

    #[test]
    fn endpoint_gets_pod_labels_ports_and_account() {
        let names = LabNames::new("t");
        let mut pod = LabPod::named(&names, 2, "x", "a");
        pod.labels = [
            ("pod".to_string(), "a".to_string()),
            (LABEL_NAMESPACE.to_string(), "elsewhere".to_string()),
        ]
        .into();
        pod.ports = parse_list("serve-80-tcp=tcp/80,udp/81").unwrap();
        pod.service_account = Some("robot".into());
        assert_eq!(
            endpoint_key(&pod).unwrap(),
            "/calico/resources/v3/projectcalico.org/workloadendpoints/x/node2-k8s-a-eth0"
        );
        let stored = json!({"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                            "metadata": {"name": "node2-k8s-a-eth0", "namespace": "x",
                                         "uid": "u", "labels": {}},
                            "spec": {"node": "node2", "profiles": ["kns.x"],
                                     "ipNetworks": ["10.244.1.2/32"]}});
        let endpoint = endpoint_with_pod(stored, &pod);
        assert_eq!(
            endpoint["metadata"]["labels"],
            json!({"pod": "a", "projectcalico.org/namespace": "x",
                   "projectcalico.org/orchestrator": "k8s",
                   "projectcalico.org/serviceaccount": "robot"})
        );
        assert_eq!(endpoint["metadata"]["uid"], "u");
        assert_eq!(
            endpoint["spec"]["ports"],
            json!([{"name": "serve-80-tcp", "protocol": "TCP", "port": 80}])
        );
        assert_eq!(
            endpoint["spec"]["profiles"],
            json!(["kns.x", "ksa.x.robot"])
        );
        assert_eq!(endpoint["spec"]["serviceAccountName"], "robot");
        assert_eq!(endpoint["spec"]["ipNetworks"], json!(["10.244.1.2/32"]));
        // And it is still an endpoint the daemon accepts.
        let bytes = serde_json::to_vec(&endpoint).unwrap();
        let decoded = endpoints::decode(&endpoint_key(&pod).unwrap(), &bytes).unwrap();
        assert_eq!(decoded.service_account.as_deref(), Some("robot"));
    }
}
