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

/// Calico's annotation with a pod's addresses (written by the CNI plugin).
const POD_IPS_ANNOTATION: &str = "cni.projectcalico.org/podIPs";

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

/// A Kubernetes Pod as Calico sees it: `None` for pods that are no endpoint (host network,
/// not scheduled, no address yet).
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
    let from_annotation = value
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(POD_IPS_ANNOTATION))
        .and_then(Value::as_str)
        .map(|ips| {
            ips.split(',')
                .map(str::trim)
                .filter(|ip| !ip.is_empty())
                .map(address)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|e| format!("metadata.annotations[{POD_IPS_ANNOTATION}]: {e}"))?;
    let addresses = match from_annotation {
        Some(addresses) if !addresses.is_empty() => addresses,
        _ => value
            .pointer("/status/podIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.get("ip").and_then(Value::as_str))
            .map(address)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("status.podIPs: {e}"))?,
    };
    if addresses.is_empty() {
        return Ok(None);
    }
    let service_account = text(spec, &["serviceAccountName"]).unwrap_or("default");
    let mut labels = labels(value);
    labels.insert(LABEL_NAMESPACE.to_string(), namespace.to_string());
    labels.insert(LABEL_ORCHESTRATOR.to_string(), ORCHESTRATOR_K8S.to_string());
    labels.insert(
        LABEL_SERVICE_ACCOUNT.to_string(),
        service_account.to_string(),
    );
    let mut named_ports = Vec::new();
    for (c, container) in spec
        .get("containers")
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
            let field = format!("spec.containers[{c}].ports[{p}]");
            named_ports.extend(named_port(port, "containerPort", &field)?);
        }
    }
    Ok(Some(Endpoint {
        key: key.to_string(),
        node: node.to_string(),
        interface: starling_calc::spec::veth_name(interface_prefix, namespace, name),
        addresses,
        labels,
        profiles: vec![
            format!("{NAMESPACE_PROFILE_PREFIX}{namespace}"),
            service_account_profile_name(namespace, service_account),
        ],
        named_ports,
    }))
}
