//! Kubernetes objects in Calico's model: NetworkPolicy conversion (rules per protocol × peer,
//! port grouping, selectors, policyTypes), its validation, and the namespace and
//! service-account profiles.

use serde_json::{json, Value};
use starling_policy::k8s;
use starling_policy::model;
use starling_policy::program::PolicyKind;

fn knp(spec: Value) -> model::KubeNetworkPolicy {
    model::decode(
        "KubernetesNetworkPolicy",
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "web", "namespace": "x"}, "spec": spec}),
    )
    .expect("decodes")
}

fn converted(spec: Value) -> Value {
    let calico = k8s::to_calico(&knp(spec)).expect("converts");
    serde_json::to_value(calico.spec).expect("serialises")
}

#[test]
fn policy_shape_and_selector() {
    let spec = converted(
        json!({"podSelector": {"matchLabels": {"app": "web", "a": "b"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]},
                             {"key": "x", "operator": "NotIn", "values": ["1"]},
                             {"key": "y", "operator": "Exists"},
                             {"key": "z", "operator": "DoesNotExist"}]}}),
    );
    assert_eq!(
        spec,
        json!({"tier": "default", "order": 1000.0, "types": ["Ingress"],
               "selector": "projectcalico.org/orchestrator == \"k8s\" && a == \"b\" && app == \"web\" && tier in {\"be\", \"fe\"} && x not in {\"1\"} && has(y) && !has(z)"})
    );
    let policy = k8s::network_policy(&knp(json!({"podSelector": {}}))).expect("valid");
    assert_eq!(policy.id.kind, PolicyKind::KubernetesNetworkPolicy);
    assert_eq!(policy.id.to_string(), "knp/x/web");
    assert_eq!(
        policy.selector.to_string(),
        "projectcalico.org/orchestrator == \"k8s\" && projectcalico.org/namespace == \"x\""
    );
    assert_eq!(policy.order, Some(1000.0));
}

#[test]
fn policy_types_default_like_the_api_server() {
    let cases = [
        (json!({"podSelector": {}}), json!(["Ingress"])),
        (
            json!({"podSelector": {}, "egress": [{}]}),
            json!(["Ingress", "Egress"]),
        ),
        (
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
            json!(["Egress"]),
        ),
        (
            json!({"podSelector": {}, "policyTypes": ["Egress", "Ingress"]}),
            json!(["Ingress", "Egress"]),
        ),
    ];
    for (input, types) in cases {
        assert_eq!(converted(input.clone())["types"], types, "{input}");
    }
}

#[test]
fn one_rule_per_protocol_and_peer_with_ports_grouped() {
    let spec = converted(json!({"podSelector": {}, "ingress": [{
        "from": [{"podSelector": {"matchLabels": {"app": "a"}}},
                 {"namespaceSelector": {}},
                 {"namespaceSelector": {"matchLabels": {"team": "t"}}, "podSelector": {}},
                 {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.1.0/24"]}}],
        "ports": [{"port": 81}, {"protocol": "UDP", "port": 53}, {"port": 80},
                  {"protocol": "TCP", "port": "http"}, {"port": 1000, "endPort": 2000},
                  {"protocol": "SCTP"}]
    }]}));
    let tcp_ports = json!(["http", "80:81", "1000:2000"]);
    let peers = [
        json!({"selector": "projectcalico.org/orchestrator == \"k8s\" && app == \"a\""}),
        json!({"selector": "projectcalico.org/orchestrator == \"k8s\"", "namespaceSelector": "all()"}),
        json!({"selector": "projectcalico.org/orchestrator == \"k8s\"", "namespaceSelector": "team == \"t\""}),
        json!({"nets": ["10.0.0.0/16"], "notNets": ["10.0.1.0/24"]}),
    ];
    let mut expected = Vec::new();
    for (protocol, ports) in [
        ("SCTP", None),
        ("TCP", Some(tcp_ports)),
        ("UDP", Some(json!([53]))),
    ] {
        for peer in &peers {
            let mut rule = json!({"action": "Allow", "protocol": protocol, "source": peer});
            if let Some(ports) = &ports {
                rule["destination"] = json!({"ports": ports});
            }
            expected.push(rule);
        }
    }
    assert_eq!(spec["ingress"], Value::Array(expected));
}

#[test]
fn egress_puts_peer_and_ports_in_the_destination() {
    let spec = converted(
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"podSelector": {}}], "ports": [{"port": 80}, {"port": 80, "protocol": "TCP"}]},
            {}
        ]}),
    );
    assert_eq!(
        spec["egress"],
        json!([
            {"action": "Allow", "protocol": "TCP", "destination": {
                "selector": "projectcalico.org/orchestrator == \"k8s\"", "ports": [80]}},
            {"action": "Allow"}
        ])
    );
}

#[test]
fn all_ports_of_a_protocol_wins_over_listed_ones() {
    let spec = converted(json!({"podSelector": {}, "ingress": [
        {"ports": [{"port": 80}, {"protocol": "TCP"}, {"port": 81}]}]}));
    assert_eq!(
        spec["ingress"],
        json!([{"action": "Allow", "protocol": "TCP"}])
    );
}

#[test]
fn rule_selectors_are_namespaced_after_conversion() {
    let policy = k8s::network_policy(&knp(json!({"podSelector": {}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "a"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}, "podSelector": {"matchLabels": {"app": "b"}}},
        {"namespaceSelector": {}}
    ]}]})))
    .expect("valid");
    let selectors: Vec<String> = policy
        .ingress
        .iter()
        .map(|rule| {
            rule.source
                .selector
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        selectors,
        [
            "projectcalico.org/namespace == \"x\" && projectcalico.org/orchestrator == \"k8s\" && app == \"a\"",
            "pcns.kubernetes.io/metadata.name == \"y\" && projectcalico.org/orchestrator == \"k8s\" && app == \"b\"",
            "has(projectcalico.org/namespace) && projectcalico.org/orchestrator == \"k8s\"",
        ]
    );
}

#[test]
fn invalid_kubernetes_policies_name_the_field() {
    let cases = [
        (json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}),
         "KubernetesNetworkPolicy x/web: spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR"),
        (json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24"]}}]}]}),
         "spec.ingress[0].from[0].ipBlock.except[0]: \"10.1.0.0/24\" is not a strict subset of cidr"),
        (json!({"ingress": [{"ports": [{"port": 80, "endPort": 79}]}]}),
         "spec.ingress[0].ports[0].endPort: 79 is below port 80"),
        (json!({"ingress": [{"ports": [{"port": "http", "endPort": 90}]}]}),
         "spec.ingress[0].ports[0].endPort: cannot be used with a named port"),
        (json!({"ingress": [{"ports": [{"port": 0}]}]}),
         "spec.ingress[0].ports[0].port: 0 is out of range (1-65535)"),
        (json!({"egress": [{"ports": [{"port": 70000}]}]}),
         "spec.egress[0].ports[0].port: 70000 is out of range (1-65535)"),
        (json!({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
         "spec.ingress[0].ports[0].protocol: \"ICMP\" is not a protocol (TCP, UDP or SCTP)"),
        (json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}),
         "spec.podSelector: matchExpressions[0].values: In needs values"),
        (json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}),
         "spec.podSelector: matchExpressions[0].operator: \"Has\" is not an operator"),
        (json!({"podSelector": {"matchLabels": {"bad key": "v"}}}),
         "spec.podSelector: matchLabels[\"bad key\"]: \"bad key\" is not a label key"),
        (json!({"ingress": [{"from": [{}]}]}),
         "spec.ingress[0].from[0]: a peer needs podSelector, namespaceSelector or ipBlock"),
        (json!({"ingress": [{"from": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
         "spec.ingress[0].from[0].ipBlock: cannot be combined with podSelector or namespaceSelector"),
        (json!({"policyTypes": ["Both"]}),
         "spec.policyTypes[0]: \"Both\" is not a policy type (Ingress or Egress)"),
    ];
    for (spec, expected) in cases {
        let error = k8s::network_policy(&knp(spec.clone())).expect_err(&format!("{spec}"));
        let text = error.to_string();
        assert!(
            text.contains(expected),
            "{spec}: got {text:?}, want {expected:?}"
        );
    }
}

#[test]
fn namespace_and_service_account_profiles() {
    let namespace: model::Namespace = model::decode(
        "Namespace",
        &json!({"metadata": {"name": "x", "labels": {"team": "a", "kubernetes.io/metadata.name": "x"}}}),
    )
    .expect("decodes");
    let object = k8s::namespace_profile_object(&namespace);
    assert_eq!(
        serde_json::to_value(&object).expect("serialises"),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Profile",
               "metadata": {"name": "kns.x"},
               "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                        "labelsToApply": {"pcns.team": "a", "pcns.kubernetes.io/metadata.name": "x",
                                          "pcns.projectcalico.org/name": "x"}}})
    );
    let profile = k8s::namespace_profile(&namespace);
    let checked = starling_policy::validate::profile(&object).expect("valid");
    assert_eq!(profile, checked);

    let account: model::ServiceAccount = model::decode(
        "ServiceAccount",
        &json!({"metadata": {"name": "sa", "namespace": "x", "labels": {"role": "db"}}}),
    )
    .expect("decodes");
    let profile = k8s::service_account_profile(&account);
    assert_eq!(profile.name, "ksa.x.sa");
    assert!(profile.ingress.is_empty() && profile.egress.is_empty());
    assert_eq!(
        profile.labels_to_apply.into_iter().collect::<Vec<_>>(),
        [
            ("pcsa.projectcalico.org/name".to_string(), "sa".to_string()),
            ("pcsa.role".to_string(), "db".to_string())
        ]
    );
}
