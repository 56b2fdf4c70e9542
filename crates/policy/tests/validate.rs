//! Validation of Calico policy objects: accepted objects carry cluster-wide selectors and
//! checked values; rejected ones name the object and the field.

use serde_json::json;
use starling_policy::program::{Action, Family, Icmp, PolicyKind, PortRange, TierDefault};
use starling_policy::validate::{self, Port};

fn np(spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
           "metadata": {"name": "p", "namespace": "x"}, "spec": spec})
}

fn gnp(spec: serde_json::Value) -> serde_json::Value {
    json!({"kind": "GlobalNetworkPolicy", "metadata": {"name": "g"}, "spec": spec})
}

#[test]
fn malformed_policies_name_the_object_and_field() {
    let cases = [
        (
            json!({"selector": "app ==", "ingress": []}),
            "NetworkPolicy x/p: spec.selector: \"app ==\" is not a selector: column 7: expected",
        ),
        (
            json!({"ingress": [{"action": "Allow"},
                               {"action": "Allow", "source": {"nets": ["10.0.0.0/33"]}}]}),
            "NetworkPolicy x/p: spec.ingress[1].source.nets[0]: \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            json!({"egress": [{"action": "Allow", "protocol": "TCPX"}]}),
            "NetworkPolicy x/p: spec.egress[0].protocol: \"TCPX\" is not a protocol",
        ),
        (
            json!({"ingress": [{"action": "Allow", "protocol": 256}]}),
            "spec.ingress[0].protocol: 256 is not a protocol number (1-255)",
        ),
        (
            json!({"ingress": [{"action": "Allow", "protocol": "TCP",
                                "destination": {"ports": [70000]}}]}),
            "spec.ingress[0].destination.ports[0]: 70000 is out of range (0-65535)",
        ),
        (
            json!({"ingress": [{"action": "Allow", "protocol": "TCP",
                                "destination": {"ports": ["90:80"]}}]}),
            "spec.ingress[0].destination.ports[0]: \"90:80\" is not a range (min > max)",
        ),
        (
            json!({"ingress": [{"action": "Allow", "destination": {"ports": [80]}}]}),
            "spec.ingress[0].destination.ports: ports need protocol TCP, UDP, SCTP or UDPLite",
        ),
        (
            json!({"ingress": [{"action": "Allow", "protocol": "ICMP", "icmp": {"code": 1}}]}),
            "spec.ingress[0].icmp: code needs a type",
        ),
        (
            json!({"ingress": [{"action": "Accept"}]}),
            "spec.ingress[0].action: \"Accept\" is not an action (Allow, Deny, Pass or Log)",
        ),
        (
            json!({"types": ["Inbound"]}),
            "spec.types[0]: \"Inbound\" is not a policy type (Ingress or Egress)",
        ),
        (
            json!({"ingress": [{"action": "Allow", "ipVersion": 6,
                                "source": {"nets": ["10.0.0.0/8"]}}]}),
            "spec.ingress[0].source.nets[0]: \"10.0.0.0/8\" does not match ipVersion",
        ),
        (
            json!({"ingress": [{"action": "Allow", "http": {"methods": ["GET"]}}]}),
            "spec.ingress[0].http: HTTP match needs",
        ),
        (
            json!({"ingress": [{"action": "Allow", "source": {"notSelector": "a in {"}}]}),
            "spec.ingress[0].source.notSelector: \"a in {\" is not a selector",
        ),
        (
            json!({"ingress": [{"action": "Allow", "protocol": "TCP",
                                "destination": {"ports": ["Http_1"]}}]}),
            "spec.ingress[0].destination.ports[0]: \"Http_1\" is not a port, a range or a port name",
        ),
    ];
    for (spec, expected) in cases {
        let error = validate::network_policy_json(&np(spec.clone()))
            .expect_err(&format!("{spec} must be rejected"));
        let text = error.to_string();
        assert!(
            text.contains(expected),
            "{spec}: got {text:?}, want {expected:?}"
        );
    }
}

#[test]
fn every_problem_is_reported() {
    let error = validate::network_policy_json(&np(json!({
        "selector": "(",
        "ingress": [{"action": "Nope", "source": {"nets": ["bad"]}}]
    })))
    .expect_err("invalid");
    let fields: Vec<&str> = error.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.selector",
            "spec.ingress[0].action",
            "spec.ingress[0].source.nets[0]"
        ]
    );
}

#[test]
fn a_json_shape_error_names_the_object() {
    let error = validate::network_policy_json(&np(json!({"order": "first"}))).expect_err("shape");
    assert!(
        error.to_string().starts_with("NetworkPolicy x/p: "),
        "{error}"
    );
}

#[test]
fn namespaced_selectors_become_cluster_wide() {
    let policy = validate::network_policy_json(&np(json!({
        "selector": "app == 'db'",
        "serviceAccountSelector": "role == 'x'",
        "ingress": [
            {"action": "Allow", "source": {"selector": "app == 'web'"}},
            {"action": "Allow", "source": {"namespaceSelector": "team == 'a'"}},
            {"action": "Allow", "source": {"namespaceSelector": "all()"}},
            {"action": "Allow", "source": {"namespaceSelector": "global()"}},
            {"action": "Allow", "source": {"notSelector": "app == 'bad'"}},
            {"action": "Allow", "source": {"serviceAccounts": {"names": ["sa1"], "selector": "k == 'v'"}}},
            {"action": "Allow", "source": {"nets": ["10.1.2.3"]}}
        ]
    })))
    .expect("valid");
    assert_eq!(policy.id.kind, PolicyKind::NetworkPolicy);
    assert_eq!(policy.tier, "default");
    assert_eq!(
        policy.selector.to_string(),
        "app == \"db\" && projectcalico.org/namespace == \"x\" && pcsa.role == \"x\""
    );
    let sources: Vec<Option<String>> = policy
        .ingress
        .iter()
        .map(|rule| rule.source.selector.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(
        sources,
        [
            Some("projectcalico.org/namespace == \"x\" && app == \"web\"".to_string()),
            Some("pcns.team == \"a\"".to_string()),
            Some("has(projectcalico.org/namespace)".to_string()),
            Some("!has(projectcalico.org/namespace)".to_string()),
            Some("projectcalico.org/namespace == \"x\"".to_string()),
            Some(
                "projectcalico.org/namespace == \"x\" && pcsa.k == \"v\" && \
                 projectcalico.org/serviceaccount in {\"sa1\"}"
                    .to_string()
            ),
            None,
        ]
    );
    assert_eq!(
        policy.ingress[4]
            .source
            .not_selector
            .as_ref()
            .map(ToString::to_string),
        Some("app == \"bad\"".to_string())
    );
    assert_eq!(
        policy.ingress[6].source.nets,
        ["10.1.2.3/32".parse().unwrap()]
    );
    // No types: Ingress only (there are no egress rules).
    assert!(policy.ingress_type && !policy.egress_type);
}

#[test]
fn calico_types_defaulting() {
    let cases = [
        (json!({}), (true, false)),
        (json!({"egress": [{"action": "Allow"}]}), (false, true)),
        (
            json!({"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}),
            (true, true),
        ),
        (
            json!({"types": ["Egress"], "ingress": [{"action": "Allow"}]}),
            (false, true),
        ),
    ];
    for (spec, (ingress, egress)) in cases {
        let policy = validate::network_policy_json(&np(spec.clone())).expect("valid");
        assert_eq!(
            (policy.ingress_type, policy.egress_type),
            (ingress, egress),
            "{spec}"
        );
    }
}

#[test]
fn rule_values_are_checked_and_kept() {
    let policy = validate::global_network_policy_json(&gnp(json!({
        "tier": "security", "order": 10.5, "namespaceSelector": "team == 'a'",
        "selector": "all()",
        "egress": [{"action": "Deny", "protocol": "udp", "notProtocol": 17, "ipVersion": 4,
                    "destination": {"ports": [53, "1000:2000", "dns"], "notPorts": ["5:6"],
                                    "nets": ["10.0.0.1/8"]}},
                   {"action": "Pass", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
                   {"action": "Log", "protocol": 132}]
    })))
    .expect("valid");
    assert_eq!(policy.tier, "security");
    assert_eq!(policy.order, Some(10.5));
    assert_eq!(policy.selector.to_string(), "pcns.team == \"a\"");
    assert!(!policy.ingress_type && policy.egress_type);
    let rule = &policy.egress[0];
    assert_eq!(rule.action, Action::Deny);
    assert_eq!(
        (rule.protocol, rule.not_protocol, rule.ip_version),
        (Some(17), Some(17), Some(Family::V4))
    );
    assert_eq!(
        rule.destination.ports,
        [
            Port::Range(PortRange {
                first: 53,
                last: 53
            }),
            Port::Range(PortRange {
                first: 1000,
                last: 2000
            }),
            Port::Named("dns".to_string())
        ]
    );
    assert_eq!(rule.destination.nets, ["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(rule.destination.selector, None);
    assert_eq!(
        policy.egress[1].icmp,
        Some(Icmp {
            icmp_type: 8,
            code: Some(0)
        })
    );
    assert_eq!(policy.egress[1].action, Action::Pass);
    assert_eq!(policy.egress[2].protocol, Some(132));
    assert!(!policy.host_only);
}

#[test]
fn host_endpoint_flags_only_in_their_combinations() {
    let error = validate::global_network_policy_json(&gnp(json!({"preDNAT": true})))
        .expect_err("preDNAT without applyOnForward");
    assert!(
        error
            .to_string()
            .contains("spec.preDNAT: needs applyOnForward: true"),
        "{error}"
    );
    let error = validate::global_network_policy_json(&gnp(json!({
        "preDNAT": true, "doNotTrack": true, "applyOnForward": true})))
    .expect_err("both");
    assert!(
        error
            .to_string()
            .contains("cannot be combined with doNotTrack"),
        "{error}"
    );
    let policy = validate::global_network_policy_json(&gnp(json!({
        "doNotTrack": true, "applyOnForward": true})))
    .expect("valid");
    assert!(policy.host_only && policy.apply_on_forward);
}

#[test]
fn tiers_and_profiles() {
    let tier = validate::tier_json(
        &json!({"metadata": {"name": "t"}, "spec": {"order": 100, "defaultAction": "Pass"}}),
    )
    .expect("valid");
    assert_eq!(
        (tier.order, tier.default_action),
        (Some(100.0), TierDefault::Pass)
    );
    let tier = validate::tier_json(&json!({"metadata": {"name": "t"}})).expect("valid");
    assert_eq!((tier.order, tier.default_action), (None, TierDefault::Deny));
    let error = validate::tier_json(
        &json!({"metadata": {"name": "t"}, "spec": {"defaultAction": "Allow"}}),
    )
    .expect_err("invalid");
    assert_eq!(
        error.to_string(),
        "Tier t: spec.defaultAction: \"Allow\" is not a tier default action (Deny or Pass)"
    );
    let profile = validate::profile_json(&json!({"metadata": {"name": "kns.x"}, "spec": {
        "ingress": [{"action": "Allow", "source": {"selector": "a == 'b'"}}],
        "labelsToApply": {"pcns.team": "a"}}}))
    .expect("valid");
    // Profiles are global: a rule selector is not namespaced.
    assert_eq!(
        profile.ingress[0]
            .source
            .selector
            .as_ref()
            .map(ToString::to_string),
        Some("a == \"b\"".to_string())
    );
    assert_eq!(profile.labels_to_apply["pcns.team"], "a");
}
