//! A cluster for policy tests: the conformance model (namespaces x, y, z; pods a, b, c in
//! each, serving TCP and UDP on 80 and 81 with named ports), fed to a compiler, and a
//! reachability matrix computed with `explain` from the compiled program.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;
use starling_policy::compile::{Compiler, Endpoint, NamedPort};
use starling_policy::explain::{self, Packet, Verdict};
use starling_policy::{k8s, model, validate};

pub const NODE: &str = "node1";
pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

pub fn pod_address(namespace: usize, pod: usize) -> IpAddr {
    format!("10.0.{}.{}", namespace + 1, pod + 1)
        .parse()
        .expect("address")
}

pub fn pod_address_v6(namespace: usize, pod: usize) -> IpAddr {
    format!("fd00::{}:{}", namespace + 1, pod + 1)
        .parse()
        .expect("address")
}

pub fn namespace_object(name: &str, labels: &[(&str, &str)]) -> model::Namespace {
    let mut namespace = model::Namespace::default();
    namespace.metadata.name = name.to_string();
    namespace
        .metadata
        .labels
        .insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    for (key, value) in labels {
        namespace
            .metadata
            .labels
            .insert(key.to_string(), value.to_string());
    }
    namespace
}

/// A pod endpoint as Calico builds it from a pod.
pub fn pod(
    namespace: &str,
    name: &str,
    node: &str,
    addresses: Vec<IpAddr>,
    labels: &[(&str, &str)],
) -> Endpoint {
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    all.insert(
        "projectcalico.org/namespace".to_string(),
        namespace.to_string(),
    );
    all.insert(
        "projectcalico.org/orchestrator".to_string(),
        "k8s".to_string(),
    );
    all.insert(
        "projectcalico.org/serviceaccount".to_string(),
        "default".to_string(),
    );
    let named_ports = [
        ("serve-80-tcp", 6, 80),
        ("serve-80-udp", 17, 80),
        ("serve-81-tcp", 6, 81),
        ("serve-81-udp", 17, 81),
    ]
    .into_iter()
    .map(|(name, protocol, port)| NamedPort {
        name: name.to_string(),
        protocol,
        port,
    })
    .collect();
    Endpoint {
        key: format!("{namespace}/{name}"),
        node: node.to_string(),
        interface: format!("cali{namespace}{name}"),
        addresses,
        labels: all,
        profiles: vec![
            format!("kns.{namespace}"),
            format!("ksa.{namespace}.default"),
        ],
        named_ports,
    }
}

pub struct Cluster {
    pub compiler: Compiler,
}

impl Cluster {
    /// The conformance model, every pod on this node.
    pub fn conformance() -> Cluster {
        let mut compiler = Compiler::new(NODE);
        for (n, namespace) in NAMESPACES.iter().enumerate() {
            compiler.upsert_profile(k8s::namespace_profile(&namespace_object(
                namespace,
                &[("ns", namespace)],
            )));
            let mut account = model::ServiceAccount::default();
            account.metadata.name = "default".to_string();
            account.metadata.namespace = Some(namespace.to_string());
            compiler.upsert_profile(k8s::service_account_profile(&account));
            for (p, name) in PODS.iter().enumerate() {
                compiler.upsert_endpoint(pod(
                    namespace,
                    name,
                    NODE,
                    vec![pod_address(n, p), pod_address_v6(n, p)],
                    &[("pod", name)],
                ));
            }
        }
        Cluster { compiler }
    }

    pub fn knp(&mut self, namespace: &str, name: &str, spec: Value) {
        let object =
            serde_json::json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec});
        let policy = k8s::network_policy_json(&object).expect("valid Kubernetes policy");
        self.compiler.upsert_policy(policy);
    }

    pub fn np(&mut self, namespace: &str, name: &str, spec: Value) {
        let object =
            serde_json::json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec});
        let policy = validate::network_policy_json(&object).expect("valid NetworkPolicy");
        self.compiler.upsert_policy(policy);
    }

    pub fn gnp(&mut self, name: &str, spec: Value) {
        let object = serde_json::json!({"metadata": {"name": name}, "spec": spec});
        let policy =
            validate::global_network_policy_json(&object).expect("valid GlobalNetworkPolicy");
        self.compiler.upsert_policy(policy);
    }

    pub fn tier(&mut self, name: &str, spec: Value) {
        let object = serde_json::json!({"metadata": {"name": name}, "spec": spec});
        self.compiler
            .upsert_tier(validate::tier_json(&object).expect("valid Tier"));
    }

    pub fn reachable(&self, source: &str, destination: &str, packet: &str) -> bool {
        let packet = Packet::parse(packet).expect("packet");
        let explanation =
            explain::explain(&self.compiler, source, destination, packet).expect("explains");
        explanation.verdict == Verdict::Allow
    }

    /// Pairs (source, destination) of distinct pods whose reachability differs from
    /// `expected`.
    pub fn mismatches(&self, packet: &str, expected: impl Fn(&str, &str) -> bool) -> Vec<String> {
        let pods: Vec<String> = NAMESPACES
            .iter()
            .flat_map(|namespace| PODS.iter().map(move |pod| format!("{namespace}/{pod}")))
            .collect();
        let mut wrong = Vec::new();
        for source in &pods {
            for destination in &pods {
                if source == destination {
                    continue;
                }
                let actual = self.reachable(source, destination, packet);
                if actual != expected(source, destination) {
                    wrong.push(format!("{source} -> {destination} {packet}: {actual}"));
                }
            }
        }
        wrong
    }

    /// Asserts the whole matrix for every probe given.
    pub fn assert_matrix(&self, packets: &[&str], expected: impl Fn(&str, &str, &str) -> bool) {
        let mut wrong = Vec::new();
        for packet in packets {
            wrong.extend(self.mismatches(packet, |s, d| expected(s, d, packet)));
        }
        assert!(
            wrong.is_empty(),
            "unexpected reachability:\n{}",
            wrong.join("\n")
        );
    }
}

pub const PROBES: [&str; 4] = ["TCP/80", "TCP/81", "UDP/80", "UDP/81"];

pub fn ns(pod: &str) -> &str {
    pod.split('/').next().unwrap_or_default()
}
