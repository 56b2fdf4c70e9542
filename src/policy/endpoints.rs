//! Workload endpoints for the policy compiler, from the two datastores' shapes: Calico's
//! WorkloadEndpoint (etcd) and the Kubernetes Pod (the endpoint Calico derives from it).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use starling_model::endpoint::{
    LABEL_NAMESPACE, LABEL_ORCHESTRATOR, LABEL_SERVICE_ACCOUNT, NAMESPACE_PROFILE_PREFIX,
    ORCHESTRATOR_K8S,
};
use starling_policy::compile::{Endpoint, NamedPort};
use starling_policy::k8s::service_account_profile_name;
use starling_policy::validate::protocol_number;

/// Calico's annotations with a pod's addresses (written by the CNI plugin, cleared by DEL).
const POD_IPS_ANNOTATION: &str = "cni.projectcalico.org/podIPs";
const POD_IP_ANNOTATION: &str = "cni.projectcalico.org/podIP";
/// Longer service account names get no label (Calico's rule: a label value has at most 63).
const SERVICE_ACCOUNT_LABEL_LIMIT: usize = 63;

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |value, field| value.get(field))?
        .as_str()
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    value
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A host address from a CIDR (`10.0.0.1/32`) or a bare address.
fn address(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpNet>()
        .map(|net| net.addr())
        .or_else(|_| text.parse::<IpAddr>())
        .map_err(|_| format!("{text:?} is not an address"))
}

fn named_port(port: &Value, number_field: &str, field: &str) -> Result<Option<NamedPort>, String> {
    let Some(name) = port
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return Ok(None);
    };
    let protocol_text = port
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or("TCP");
    let protocol = protocol_number(protocol_text)
        .ok_or_else(|| format!("{field}.protocol: {protocol_text:?} is not a protocol"))?;
    let number = port
        .get(number_field)
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok().filter(|n| *n > 0))
        .ok_or_else(|| format!("{field}.{number_field}: not a port number"))?;
    Ok(Some(NamedPort {
        name: name.to_string(),
        protocol,
        port: number,
    }))
}

/// A Calico WorkloadEndpoint (etcd v3 JSON) as the compiler's endpoint; `key` is the
/// datastore's `<namespace>/<name>`. The endpoint is keyed `<namespace>/<pod>` when the WEP
/// names its pod (as the CNI plugin's do), so that explain and counters speak of pods in both
/// datastore modes.
pub fn from_workload_endpoint(key: &str, value: &Value) -> Result<Endpoint, String> {
    let spec = value.get("spec").ok_or("no spec")?;
    let key = match (key.split_once('/'), text(spec, &["pod"])) {
        (Some((namespace, _)), Some(pod)) if !pod.is_empty() => format!("{namespace}/{pod}"),
        _ => key.to_string(),
    };
    let node = text(spec, &["node"]).ok_or("spec.node is missing")?;
    let interface = text(spec, &["interfaceName"]).ok_or("spec.interfaceName is missing")?;
    let addresses = spec
        .get("ipNetworks")
        .and_then(Value::as_array)
        .map(|nets| {
            nets.iter()
                .enumerate()
                .map(|(index, net)| {
                    net.as_str()
                        .ok_or_else(|| format!("spec.ipNetworks[{index}] is not a string"))
                        .and_then(|net| {
                            address(net).map_err(|e| format!("spec.ipNetworks[{index}]: {e}"))
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let profiles = spec
        .get("profiles")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(|p| p.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut named_ports = Vec::new();
    for (index, port) in spec
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        named_ports.extend(named_port(port, "port", &format!("spec.ports[{index}]"))?);
    }
    // The CNI plugin writes the namespace label; a WEP written by hand may lack it, and
    // namespaced policies select through it.
    let mut labels = labels(value);
    if let Some(namespace) = text(value, &["metadata", "namespace"]) {
        labels
            .entry(LABEL_NAMESPACE.to_string())
            .or_insert_with(|| namespace.to_string());
    }
    Ok(Endpoint {
        key,
        node: node.to_string(),
        interface: interface.to_string(),
        addresses,
        labels,
        profiles,
        named_ports,
    })
}

/// Whether a pod no longer owns its addresses (reference calico.md §2.3): it ran to completion,
/// or it is being deleted and the CNI plugin's DEL has cleared its podIP annotation. Its
/// addresses may already be another pod's, and in etcd mode its WorkloadEndpoint is gone.
fn finished(value: &Value) -> bool {
    let phase = text(value, &["status", "phase"]).unwrap_or_default();
    let deleting = value
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|time| !time.is_null());
    matches!(phase, "Failed" | "Succeeded" | "Completed")
        || (deleting && annotation(value, POD_IP_ANNOTATION) == Some(""))
}

fn annotation<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(name))
        .and_then(Value::as_str)
}

/// A pod's addresses from the first source that has any, in Calico's order (also
/// `crate::syncer::convert::pod`'s, so policy and routing agree): the kubelet's
/// `status.podIPs`, `status.podIP`, then the CNI plugin's annotations until the kubelet reports.
fn pod_addresses(value: &Value) -> Result<Vec<IpAddr>, String> {
    let status_ips = value
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.get("ip").and_then(Value::as_str))
        .collect();
    let sources: [(String, Vec<&str>); 4] = [
        ("status.podIPs".to_string(), status_ips),
        (
            "status.podIP".to_string(),
            text(value, &["status", "podIP"]).into_iter().collect(),
        ),
        (
            format!("metadata.annotations[{POD_IPS_ANNOTATION}]"),
            annotation(value, POD_IPS_ANNOTATION)
                .map(|ips| ips.split(',').collect())
                .unwrap_or_default(),
        ),
        (
            format!("metadata.annotations[{POD_IP_ANNOTATION}]"),
            annotation(value, POD_IP_ANNOTATION).into_iter().collect(),
        ),
    ];
    for (field, texts) in sources {
        let addresses = texts
            .into_iter()
            .map(str::trim)
            .filter(|ip| !ip.is_empty())
            .map(address)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{field}: {e}"))?;
        if !addresses.is_empty() {
            return Ok(addresses);
        }
    }
    Ok(Vec::new())
}

/// A Kubernetes Pod as Calico sees it: `None` for pods that are no endpoint (host network,
/// not scheduled, no address yet, finished).
pub fn from_pod(
    key: &str,
    value: &Value,
    interface_prefix: &str,
) -> Result<Option<Endpoint>, String> {
    let spec = value.get("spec").ok_or("no spec")?;
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    let Some(node) = text(spec, &["nodeName"]) else {
        return Ok(None);
    };
    let (namespace, name) = key.split_once('/').ok_or("not a namespaced key")?;
    if finished(value) {
        return Ok(None);
    }
    let addresses = pod_addresses(value)?;
    if addresses.is_empty() {
        return Ok(None);
    }
    let mut labels = labels(value);
    labels.insert(LABEL_NAMESPACE.to_string(), namespace.to_string());
    labels.insert(LABEL_ORCHESTRATOR.to_string(), ORCHESTRATOR_K8S.to_string());
    let mut profiles = vec![format!("{NAMESPACE_PROFILE_PREFIX}{namespace}")];
    // As Calico (and its CNI plugin in etcd mode): no account, no account label or profile.
    if let Some(account) = text(spec, &["serviceAccountName"]).filter(|sa| !sa.is_empty()) {
        if account.len() < SERVICE_ACCOUNT_LABEL_LIMIT {
            labels.insert(LABEL_SERVICE_ACCOUNT.to_string(), account.to_string());
        }
        profiles.push(service_account_profile_name(namespace, account));
    }
    let mut named_ports = Vec::new();
    // Init containers too: a sidecar (restartPolicy Always) serves on its ports.
    for containers in ["containers", "initContainers"] {
        for (c, container) in spec
            .get(containers)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            for (p, port) in container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let field = format!("spec.{containers}[{c}].ports[{p}]");
                named_ports.extend(named_port(port, "containerPort", &field)?);
            }
        }
    }
    Ok(Some(Endpoint {
        key: key.to_string(),
        node: node.to_string(),
        interface: starling_calc::spec::veth_name(interface_prefix, namespace, name),
        addresses,
        labels,
        profiles,
        named_ports,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(extra_spec: Value, metadata: Value, status: Value) -> Value {
        let mut spec = json!({"nodeName": "node-a", "containers": [{"name": "main"}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
            spec.extend(extra.clone());
        }
        let mut metadata_full = json!({"name": "web", "namespace": "x"});
        if let (Some(full), Some(extra)) = (metadata_full.as_object_mut(), metadata.as_object()) {
            full.extend(extra.clone());
        }
        json!({"metadata": metadata_full, "spec": spec, "status": status})
    }

    fn endpoint(value: &Value) -> Option<Endpoint> {
        from_pod("x/web", value, "cali").unwrap()
    }

    fn running(ips: &[&str]) -> Value {
        let ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        json!({"phase": "Running", "podIPs": ips})
    }

    #[test]
    fn a_pod_without_service_account_has_no_account_label_or_profile() {
        let endpoint = endpoint(&pod(json!({}), json!({}), running(&["10.0.0.1"]))).unwrap();
        assert_eq!(endpoint.profiles, ["kns.x"]);
        assert!(!endpoint.labels.contains_key(LABEL_SERVICE_ACCOUNT));
        let named = pod(
            json!({"serviceAccountName": "robot"}),
            json!({}),
            running(&["10.0.0.1"]),
        );
        let endpoint = from_pod("x/web", &named, "cali").unwrap().unwrap();
        assert_eq!(endpoint.profiles, ["kns.x", "ksa.x.robot"]);
        assert_eq!(endpoint.labels[LABEL_SERVICE_ACCOUNT], "robot");
        // A name too long for a label value keeps its profile only.
        let long = "a".repeat(63);
        let endpoint = endpoint_of_account(&long);
        assert_eq!(endpoint.profiles[1], format!("ksa.x.{long}"));
        assert!(!endpoint.labels.contains_key(LABEL_SERVICE_ACCOUNT));
        assert!(endpoint_of_account(&"a".repeat(62))
            .labels
            .contains_key(LABEL_SERVICE_ACCOUNT));
    }

    fn endpoint_of_account(account: &str) -> Endpoint {
        let value = pod(
            json!({"serviceAccountName": account}),
            json!({}),
            running(&["10.0.0.1"]),
        );
        endpoint(&value).unwrap()
    }

    #[test]
    fn addresses_come_from_status_then_the_cni_annotations() {
        let ips = |value: &Value| endpoint(value).map(|e| e.addresses);
        let annotated = json!({"annotations": {POD_IPS_ANNOTATION: "10.0.0.9/32,fd00::9/128",
            POD_IP_ANNOTATION: "10.0.0.8/32"}});
        // The kubelet's report wins over the annotation.
        let both = pod(json!({}), annotated.clone(), running(&["10.0.0.1"]));
        assert_eq!(ips(&both), Some(vec!["10.0.0.1".parse().unwrap()]));
        let pod_ip = pod(
            json!({}),
            json!({}),
            json!({"phase": "Running", "podIP": "10.0.0.2"}),
        );
        assert_eq!(ips(&pod_ip), Some(vec!["10.0.0.2".parse().unwrap()]));
        let starting = pod(json!({}), annotated, json!({"phase": "Pending"}));
        assert_eq!(
            ips(&starting),
            Some(vec![
                "10.0.0.9".parse().unwrap(),
                "fd00::9".parse().unwrap()
            ])
        );
        let single = pod(
            json!({}),
            json!({"annotations": {POD_IP_ANNOTATION: "10.0.0.8/32"}}),
            json!({}),
        );
        assert_eq!(ips(&single), Some(vec!["10.0.0.8".parse().unwrap()]));
        assert_eq!(ips(&pod(json!({}), json!({}), json!({}))), None);
        let bad = pod(json!({}), json!({}), running(&["10.0.0.300"]));
        let error = from_pod("x/web", &bad, "cali").unwrap_err();
        assert!(error.starts_with("status.podIPs: "), "{error}");
    }

    #[test]
    fn finished_pods_are_no_endpoints() {
        for phase in ["Succeeded", "Failed"] {
            let status = json!({"phase": phase, "podIPs": [{"ip": "10.0.0.1"}]});
            assert_eq!(
                endpoint(&pod(json!({}), json!({}), status)),
                None,
                "{phase}"
            );
        }
        // Being deleted, after the CNI DEL cleared the annotation (the status still lists it).
        let released = json!({"deletionTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {POD_IP_ANNOTATION: "", POD_IPS_ANNOTATION: ""}});
        let deleting = pod(json!({}), released, running(&["10.0.0.1"]));
        assert_eq!(endpoint(&deleting), None);
        // Being deleted but still wired: an endpoint until the DEL.
        let grace = json!({"deletionTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {POD_IP_ANNOTATION: "10.0.0.1/32"}});
        assert!(endpoint(&pod(json!({}), grace, running(&["10.0.0.1"]))).is_some());
    }

    #[test]
    fn named_ports_of_containers_and_init_containers() {
        let spec = json!({
            "containers": [{"name": "main", "ports": [
                {"name": "http", "containerPort": 8080},
                {"containerPort": 22},
            ]}],
            "initContainers": [{"name": "proxy", "restartPolicy": "Always", "ports": [
                {"name": "admin", "containerPort": 9901, "protocol": "UDP"},
            ]}],
        });
        let endpoint = endpoint(&pod(spec, json!({}), running(&["10.0.0.1"]))).unwrap();
        let port = |name: &str, protocol, port| NamedPort {
            name: name.to_string(),
            protocol,
            port,
        };
        assert_eq!(
            endpoint.named_ports,
            [port("http", 6, 8080), port("admin", 17, 9901)]
        );
        let bad = json!({"initContainers": [{"name": "proxy",
            "ports": [{"name": "admin", "containerPort": 0}]}]});
        let error = from_pod(
            "x/web",
            &pod(bad, json!({}), running(&["10.0.0.1"])),
            "cali",
        )
        .unwrap_err();
        assert!(
            error.starts_with("spec.initContainers[0].ports[0].containerPort"),
            "{error}"
        );
    }
}
