//! WorkloadEndpoint rules (reference §2.3) for objects read from etcd: a node, addresses that
//! parse (a bare address means /32 or /128) and a MAC in `aa:bb:cc:dd:ee:ff` form when set.
//! Everything else is taken as written: the name was Calico's (or our) writer's business.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{Subject, ValidationError};
use crate::endpoint::{IpNat, WorkloadEndpoint, KIND};
use crate::node::MacAddr;
use crate::wire::WorkloadEndpointSpec;

/// The endpoint `namespace/name` with `labels` (from the object's metadata) and `spec`.
pub fn validate_workload_endpoint(
    namespace: &str,
    name: &str,
    labels: BTreeMap<String, String>,
    spec: &WorkloadEndpointSpec,
) -> Result<WorkloadEndpoint, ValidationError> {
    let qualified = format!("{namespace}/{name}");
    let subject = Subject {
        kind: KIND,
        name: &qualified,
    };
    if spec.node.is_empty() {
        return Err(subject.error("spec.node", "is empty"));
    }
    let mut networks = Vec::with_capacity(spec.ip_networks.len());
    for (index, text) in spec.ip_networks.iter().enumerate() {
        let text = text.trim();
        let network = match text.parse::<IpAddr>() {
            Ok(address) => IpNet::from(address),
            Err(_) => text.parse::<IpNet>().map_err(|_| {
                subject.error(
                    format!("spec.ipNetworks[{index}]"),
                    format!("{text:?} is not an address or CIDR"),
                )
            })?,
        };
        networks.push(network);
    }
    let mut ip_nats = Vec::with_capacity(spec.ip_nats.len());
    for (index, nat) in spec.ip_nats.iter().enumerate() {
        let parse = |field: &str, text: &str| {
            text.trim().parse::<IpAddr>().map_err(|_| {
                subject.error(
                    format!("spec.ipNATs[{index}].{field}"),
                    format!("{text:?} is not an IP address"),
                )
            })
        };
        let internal = parse("internalIP", &nat.internal_ip)?;
        let external = parse("externalIP", &nat.external_ip)?;
        if internal.is_ipv4() != external.is_ipv4() {
            return Err(subject.error(
                format!("spec.ipNATs[{index}]"),
                format!(
                    "externalIP {external} and internalIP {internal} are of different families"
                ),
            ));
        }
        ip_nats.push(IpNat { internal, external });
    }
    let mac = match spec.mac.trim() {
        "" => None,
        text => Some(
            text.parse::<MacAddr>()
                .map_err(|error| subject.error("spec.mac", error))?,
        ),
    };
    Ok(WorkloadEndpoint {
        namespace: namespace.to_string(),
        name: name.to_string(),
        orchestrator: spec.orchestrator.clone(),
        node: spec.node.clone(),
        pod: spec.pod.clone(),
        container_id: spec.container_id.clone(),
        endpoint: spec.endpoint.clone(),
        interface_name: spec.interface_name.clone(),
        mac,
        networks,
        profiles: spec.profiles.clone(),
        labels,
        service_account: Some(spec.service_account_name.clone()).filter(|sa| !sa.is_empty()),
        ip_nats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::PodEndpoint;

    #[test]
    fn round_trip_through_the_wire_spec() {
        let endpoint = WorkloadEndpoint::for_pod(PodEndpoint {
            node: "n1".into(),
            namespace: "default".into(),
            pod: "web".into(),
            container_id: "abc".into(),
            endpoint: "eth0".into(),
            interface_name: "calia".into(),
            mac: Some(MacAddr([2, 1, 2, 3, 4, 5])),
            networks: vec!["10.0.0.1/32".parse().unwrap()],
            service_account: Some("sa".into()),
            ip_nats: vec![IpNat {
                internal: "10.0.0.1".parse().unwrap(),
                external: "192.0.2.7".parse().unwrap(),
            }],
            ..PodEndpoint::default()
        })
        .unwrap();
        let back = validate_workload_endpoint(
            &endpoint.namespace,
            &endpoint.name,
            endpoint.labels.clone(),
            &endpoint.spec(),
        )
        .unwrap();
        assert_eq!(back, endpoint);
    }

    #[test]
    fn errors_name_the_object_and_the_field() {
        let spec = WorkloadEndpointSpec {
            node: "n1".into(),
            ip_networks: vec!["10.0.0.1".into(), "10.0.0.300/32".into()],
            ..WorkloadEndpointSpec::default()
        };
        let error = validate_workload_endpoint("ns", "w", BTreeMap::new(), &spec).unwrap_err();
        assert_eq!(
            error.to_string(),
            "WorkloadEndpoint \"ns/w\": spec.ipNetworks[1] \"10.0.0.300/32\" is not an address or CIDR"
        );
        let spec = WorkloadEndpointSpec {
            node: "n1".into(),
            mac: "02:00".into(),
            ..WorkloadEndpointSpec::default()
        };
        let error = validate_workload_endpoint("ns", "w", BTreeMap::new(), &spec).unwrap_err();
        assert_eq!(error.field, "spec.mac");
        let nat = |internal: &str, external: &str| crate::wire::IpNat {
            internal_ip: internal.into(),
            external_ip: external.into(),
            source: String::new(),
        };
        let spec = WorkloadEndpointSpec {
            node: "n1".into(),
            ip_nats: vec![nat("10.0.0.1", "192.0.2.1"), nat("10.0.0.1", "x")],
            ..WorkloadEndpointSpec::default()
        };
        let error = validate_workload_endpoint("ns", "w", BTreeMap::new(), &spec).unwrap_err();
        assert_eq!(error.field, "spec.ipNATs[1].externalIP");
        let spec = WorkloadEndpointSpec {
            node: "n1".into(),
            ip_nats: vec![nat("10.0.0.1", "fd00::1")],
            ..WorkloadEndpointSpec::default()
        };
        let error = validate_workload_endpoint("ns", "w", BTreeMap::new(), &spec).unwrap_err();
        assert_eq!(error.field, "spec.ipNATs[0]");
        let error = validate_workload_endpoint(
            "ns",
            "w",
            BTreeMap::new(),
            &WorkloadEndpointSpec::default(),
        )
        .unwrap_err();
        assert_eq!(error.field, "spec.node");
        // A bare address is a host network.
        let spec = WorkloadEndpointSpec {
            node: "n1".into(),
            ip_networks: vec!["fd00::1".into()],
            ..WorkloadEndpointSpec::default()
        };
        let endpoint = validate_workload_endpoint("ns", "w", BTreeMap::new(), &spec).unwrap();
        assert_eq!(
            endpoint.networks,
            vec!["fd00::1/128".parse::<IpNet>().unwrap()]
        );
    }
}
