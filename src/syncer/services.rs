//! Services and EndpointSlices from the Kubernetes API, for service advertisement. They are read
//! from Kubernetes whatever the datastore (as calico-node does), reduced on the way in to what
//! advertisement needs: a Service's addresses and traffic policies, and per EndpointSlice only
//! whether it holds a ready endpoint on this node, by family.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use tokio::task::JoinHandle;

use super::convert::Conversion;
use super::SyncerContext;
use starling_calc::services::{LocalEndpoints, ServiceFacts, ServiceType, SliceFacts};
use starling_calc::state::{Kind, Resource};

/// The label tying an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn object_key(namespace: Option<&String>, name: Option<&String>) -> String {
    format!(
        "{}/{}",
        namespace.map_or("", String::as_str),
        name.map_or("", String::as_str)
    )
}

fn addresses<'a>(
    texts: impl IntoIterator<Item = (String, &'a str)>,
) -> Result<Vec<IpAddr>, String> {
    let mut addresses = Vec::new();
    for (field, text) in texts {
        let address = text
            .parse::<IpAddr>()
            .map_err(|_| format!("{field} {text:?} is not an IP address"))?;
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    Ok(addresses)
}

/// A Service as advertisement sees it; an unparsable address makes it invalid, naming the field.
pub fn service(service: &Service) -> Conversion {
    let key = object_key(
        service.metadata.namespace.as_ref(),
        service.metadata.name.as_ref(),
    );
    match service_facts(service) {
        Ok(facts) => Conversion::Valid(key, Box::new(Resource::Service(Box::new(facts)))),
        Err(reason) => Conversion::Invalid(key, reason),
    }
}

fn service_facts(service: &Service) -> Result<ServiceFacts, String> {
    let spec = service.spec.clone().unwrap_or_default();
    let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" => ServiceType::ClusterIp,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        _ => ServiceType::Other,
    };
    let cluster_texts: Vec<(String, &str)> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(index, ip)| (format!("spec.clusterIPs[{index}]"), ip.as_str()))
            .collect(),
        _ => spec
            .cluster_ip
            .iter()
            .map(|ip| ("spec.clusterIP".to_string(), ip.as_str()))
            .collect(),
    };
    // Headless Services have no address to advertise.
    let cluster_ips = addresses(
        cluster_texts
            .into_iter()
            .filter(|(_, text)| !text.is_empty() && *text != "None"),
    )?;
    let external_ips = addresses(
        spec.external_ips
            .iter()
            .flatten()
            .enumerate()
            .map(|(index, ip)| (format!("spec.externalIPs[{index}]"), ip.as_str())),
    )?;
    let ingress = service
        .status
        .as_ref()
        .and_then(|status| status.load_balancer.as_ref())
        .and_then(|balancer| balancer.ingress.as_ref());
    let mut load_balancer_texts: Vec<(String, &str)> = ingress
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, entry)| {
            let ip = entry.ip.as_deref().filter(|ip| !ip.is_empty())?;
            Some((format!("status.loadBalancer.ingress[{index}].ip"), ip))
        })
        .collect();
    if let Some(ip) = spec.load_balancer_ip.as_deref().filter(|ip| !ip.is_empty()) {
        load_balancer_texts.push(("spec.loadBalancerIP".to_string(), ip));
    }
    let load_balancer_ips = addresses(load_balancer_texts)?;
    Ok(ServiceFacts {
        service_type,
        cluster_ips,
        external_ips,
        load_balancer_ips,
        external_traffic_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        internal_traffic_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
    })
}

/// An EndpointSlice reduced to this node's ready endpoints; one without a Service is absent.
pub fn endpoint_slice(slice: &EndpointSlice, node_name: &str) -> Conversion {
    let key = object_key(
        slice.metadata.namespace.as_ref(),
        slice.metadata.name.as_ref(),
    );
    let Some(service) = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
    else {
        return Conversion::Absent(key);
    };
    // Kubernetes: an unknown readiness counts as ready.
    let local_ready = slice.endpoints.iter().any(|endpoint| {
        endpoint.node_name.as_deref() == Some(node_name)
            && endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true)
    });
    let local = LocalEndpoints {
        ipv4: local_ready && slice.address_type == "IPv4",
        ipv6: local_ready && slice.address_type == "IPv6",
    };
    let facts = SliceFacts {
        service: object_key(slice.metadata.namespace.as_ref(), Some(service)),
        local,
    };
    Conversion::Valid(key, Box::new(Resource::EndpointSlice(facts)))
}

/// The Service and EndpointSlice watchers; without a Kubernetes API both are in sync and empty.
pub(super) fn spawn(
    client: Option<Client>,
    node_name: &str,
    context: &SyncerContext,
) -> Vec<JoinHandle<()>> {
    let Some(client) = client else {
        return vec![super::report_empty(&Kind::SERVICES, context)];
    };
    let node_name = node_name.to_string();
    vec![
        tokio::spawn(super::kube::watch_kind(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            Kind::Service,
            service,
            context.clone(),
        )),
        tokio::spawn(super::kube::watch_kind(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
            Kind::EndpointSlice,
            move |slice: &EndpointSlice| endpoint_slice(slice, &node_name),
            context.clone(),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_from(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn services_keep_their_addresses_and_policies_and_name_a_bad_field() {
        let web = service_from(json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "externalIPs": ["192.0.2.5"], "externalTrafficPolicy": "Local"},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}, {"hostname": "lb.example"}]}}
        }));
        let Conversion::Valid(key, resource) = service(&web) else {
            panic!("a valid Service was refused");
        };
        assert_eq!(key, "default/web");
        let Resource::Service(facts) = *resource else {
            panic!("not a Service resource");
        };
        assert_eq!(facts.service_type, ServiceType::LoadBalancer);
        assert_eq!(
            facts.cluster_ips,
            vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(facts.load_balancer_ips.len(), 1);
        assert!(facts.external_traffic_local && !facts.internal_traffic_local);

        let headless = service_from(json!({
            "metadata": {"namespace": "default", "name": "db"},
            "spec": {"clusterIP": "None"}
        }));
        let Conversion::Valid(_, resource) = service(&headless) else {
            panic!("a headless Service was refused");
        };
        assert!(matches!(*resource, Resource::Service(facts) if facts.cluster_ips.is_empty()));

        let broken = service_from(json!({
            "metadata": {"namespace": "default", "name": "bad"},
            "spec": {"clusterIP": "10.96.0.11", "externalIPs": ["192.0.2.5", "not-an-ip"]}
        }));
        match service(&broken) {
            Conversion::Invalid(key, reason) => {
                assert_eq!(key, "default/bad");
                assert!(reason.contains("spec.externalIPs[1]"), "{reason}");
            }
            other => panic!("a bad external IP was accepted: {other:?}"),
        }
    }

    #[test]
    fn slices_say_whether_this_node_has_a_ready_endpoint() {
        let slice = |address_type: &str, endpoints: serde_json::Value| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": "web-x1",
                             "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": address_type,
                "endpoints": endpoints
            }))
            .unwrap()
        };
        let local = |slice: &EndpointSlice| match endpoint_slice(slice, "node-a") {
            Conversion::Valid(key, resource) => match *resource {
                Resource::EndpointSlice(facts) => {
                    assert_eq!(
                        (key.as_str(), facts.service.as_str()),
                        ("default/web-x1", "default/web")
                    );
                    facts.local
                }
                _ => panic!("not an EndpointSlice resource"),
            },
            other => panic!("slice refused: {other:?}"),
        };
        let here_ready = slice(
            "IPv4",
            json!([{"addresses": ["10.65.0.4"], "nodeName": "node-a"}]),
        );
        assert_eq!(
            local(&here_ready),
            LocalEndpoints {
                ipv4: true,
                ipv6: false
            }
        );
        let here_unready = slice(
            "IPv6",
            json!([{"addresses": ["fd00::4"], "nodeName": "node-a", "conditions": {"ready": false}},
                   {"addresses": ["fd00::5"], "nodeName": "node-b", "conditions": {"ready": true}}]),
        );
        assert_eq!(local(&here_unready), LocalEndpoints::default());
        let unowned: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": "orphan"},
            "addressType": "IPv4", "endpoints": []
        }))
        .unwrap();
        assert!(matches!(
            endpoint_slice(&unowned, "node-a"),
            Conversion::Absent(_)
        ));
    }
}
