//! Calico policy semantics on the conformance model: order and Deny inside a tier, Pass
//! between tiers, tier default actions, GlobalNetworkPolicy with namespaceSelector, notNets,
//! notSelector, ICMP, and the pipeline order the compiler writes.

mod common;

use common::{ns, Cluster, PROBES};
use serde_json::json;
use starling_policy::explain::{self, Packet, Reason, Step, Verdict};
use starling_policy::program::{Action, PolicyId, PolicyKind, TierDefault};

fn id(kind: PolicyKind, namespace: Option<&str>, name: &str) -> PolicyId {
    PolicyId {
        kind,
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
    }
}

#[test]
fn order_decides_between_deny_and_allow() {
    let mut cluster = Cluster::conformance();
    cluster.knp(
        "x",
        "allow-all-ns",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    // Order 10 runs before the Kubernetes policy (1000): y/a is denied first.
    cluster.np("x", "deny-ya", json!({"order": 10, "selector": "all()", "types": ["Ingress"],
        "ingress": [{"action": "Deny", "source": {"namespaceSelector": "ns == 'y'", "selector": "pod == 'a'"}}]}));
    cluster.assert_matrix(&PROBES, |s, d, _| ns(d) != "x" || s != "y/a");
    // Order 2000 runs after it: the allow wins.
    cluster.np("x", "deny-ya", json!({"order": 2000, "selector": "all()", "types": ["Ingress"],
        "ingress": [{"action": "Deny", "source": {"namespaceSelector": "ns == 'y'", "selector": "pod == 'a'"}}]}));
    cluster.assert_matrix(&PROBES, |_, _, _| true);
}

#[test]
fn first_matching_rule_wins_inside_a_policy() {
    let mut cluster = Cluster::conformance();
    cluster.np(
        "x",
        "rules",
        json!({"selector": "pod == 'a'", "ingress": [
            {"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}},
            {"action": "Deny", "protocol": "TCP"},
            {"action": "Allow"}
        ]}),
    );
    cluster.assert_matrix(&PROBES, |_, d, p| d != "x/a" || p != "TCP/81");
}

#[test]
fn pass_hands_over_to_the_next_tier() {
    let mut cluster = Cluster::conformance();
    cluster.tier("security", json!({"order": 100}));
    cluster.gnp(
        "guard",
        json!({"tier": "security", "order": 1, "selector": "projectcalico.org/namespace == 'x'",
        "ingress": [{"action": "Pass", "source": {"namespaceSelector": "ns == 'y'"}},
                    {"action": "Deny"}]}),
    );
    cluster.knp("x", "only-ya", json!({"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "a"}}}]}]}));
    cluster.assert_matrix(&PROBES, |s, d, _| ns(d) != "x" || s == "y/a");
    let packet = Packet::parse("TCP/80").expect("packet");
    let denied = explain::explain(&cluster.compiler, "y/b", "x/a", packet).expect("explains");
    let ingress = denied.ingress.expect("x/a is local");
    assert_eq!(
        ingress.reason,
        Reason::TierDefault {
            tier: "default".to_string()
        }
    );
    assert_eq!(
        ingress.steps,
        [Step::Passed {
            tier: "security".to_string(),
            policy: id(PolicyKind::GlobalNetworkPolicy, None, "guard"),
            index: 0
        }]
    );
    let from_z = explain::explain(&cluster.compiler, "z/a", "x/a", packet).expect("explains");
    assert_eq!(
        from_z.ingress.expect("local").reason,
        Reason::Rule {
            tier: "security".to_string(),
            policy: id(PolicyKind::GlobalNetworkPolicy, None, "guard"),
            index: 1,
            action: Action::Deny
        }
    );
}

#[test]
fn tier_default_pass_falls_through_to_the_profiles() {
    let mut cluster = Cluster::conformance();
    cluster.tier("audit", json!({"order": 1, "defaultAction": "Pass"}));
    cluster.gnp(
        "log",
        json!({"tier": "audit", "selector": "all()", "ingress": [
        {"action": "Log"}, {"action": "Deny", "source": {"selector": "pod == 'c'"}}]}),
    );
    cluster.assert_matrix(&PROBES, |s, _, _| !s.ends_with("/c"));
    let packet = Packet::parse("UDP/81").expect("packet");
    let allowed = explain::explain(&cluster.compiler, "y/a", "x/b", packet).expect("explains");
    let ingress = allowed.ingress.expect("local");
    assert_eq!(
        ingress.reason,
        Reason::Profile {
            profile: "kns.x".to_string(),
            index: 0
        }
    );
    assert_eq!(ingress.steps.len(), 2, "{:?}", ingress.steps);
    // With the default Deny the tier ends evaluation.
    cluster.tier("audit", json!({"order": 1}));
    cluster.assert_matrix(&PROBES, |_, _, _| false);
}

#[test]
fn global_policy_with_namespace_selector() {
    let mut cluster = Cluster::conformance();
    cluster.gnp("deny-yz-egress", json!({"namespaceSelector": "ns in {'y', 'z'}", "selector": "pod != 'a'",
        "types": ["Egress"], "egress": [{"action": "Allow", "destination": {"namespaceSelector": "ns == 'x'"}}]}));
    cluster.assert_matrix(&PROBES, |s, d, _| {
        ns(s) == "x" || s.ends_with("/a") || ns(d) == "x"
    });
}

#[test]
fn not_nets_not_selector_and_protocols() {
    let mut cluster = Cluster::conformance();
    cluster.np("x", "rules", json!({"selector": "all()", "ingress": [
        {"action": "Allow", "source": {"notNets": ["10.0.2.0/24"], "notSelector": "pod == 'c'"}, "protocol": "UDP"},
        {"action": "Allow", "notProtocol": "UDP", "source": {"nets": ["10.0.2.0/24"]}},
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}
    ]}));
    cluster.assert_matrix(&PROBES, |s, d, p| {
        if ns(d) != "x" {
            return true;
        }
        if p.starts_with("UDP") {
            // notSelector without a namespace selector: the positive side is scoped to x.
            ns(s) == "x" && !s.ends_with("/c")
        } else {
            ns(s) == "y"
        }
    });
    assert!(cluster.reachable("z/a", "x/a", "ICMP/8"));
    assert!(!cluster.reachable("z/a", "x/a", "ICMP/0"));
    // ICMP (v4) says nothing for ICMPv6.
    assert!(!cluster.reachable("fd00::3:1", "fd00::1:1", "ICMPv6/128"));
}

#[test]
fn pipeline_order_tiers_and_policies() {
    let mut cluster = Cluster::conformance();
    cluster.tier("b-first", json!({"order": 10, "defaultAction": "Pass"}));
    cluster.tier("a-second", json!({"order": 10}));
    cluster.gnp(
        "later",
        json!({"tier": "b-first", "selector": "all()", "ingress": []}),
    );
    cluster.gnp(
        "z-ordered",
        json!({"tier": "b-first", "order": 5, "selector": "all()", "ingress": []}),
    );
    cluster.np(
        "x",
        "a-same-order",
        json!({"tier": "b-first", "order": 5, "selector": "all()"}),
    );
    cluster.gnp("second", json!({"tier": "a-second", "selector": "all()"}));
    cluster.gnp(
        "unknown-tier",
        json!({"tier": "nowhere", "selector": "all()"}),
    );
    cluster.knp("x", "k", json!({"podSelector": {}}));
    let program = cluster.compiler.program();
    let endpoint = program.endpoints.get("calixa").expect("x/a is local");
    let tiers: Vec<(&str, TierDefault, Vec<String>)> = endpoint
        .ingress
        .tiers
        .iter()
        .map(|step| {
            (
                step.tier.as_str(),
                step.default_action,
                step.policies.iter().map(ToString::to_string).collect(),
            )
        })
        .collect();
    assert_eq!(
        tiers,
        [
            (
                "a-second",
                TierDefault::Deny,
                vec!["gnp/second".to_string()]
            ),
            (
                "b-first",
                TierDefault::Pass,
                vec![
                    "np/x/a-same-order".to_string(),
                    "gnp/z-ordered".to_string(),
                    "gnp/later".to_string()
                ]
            ),
            ("default", TierDefault::Deny, vec!["knp/x/k".to_string()]),
            (
                "nowhere",
                TierDefault::Deny,
                vec!["gnp/unknown-tier".to_string()]
            ),
        ]
    );
    assert_eq!(endpoint.ingress.profiles, ["kns.x", "ksa.x.default"]);
    // Egress: no policy governs it, only the profiles.
    assert!(endpoint.egress.tiers.is_empty());
    let other = program.endpoints.get("caliya").expect("y/a is local");
    assert_eq!(
        other
            .ingress
            .tiers
            .iter()
            .map(|t| t.tier.as_str())
            .collect::<Vec<_>>(),
        ["a-second", "b-first", "nowhere"]
    );
}

#[test]
fn host_endpoint_only_policies_never_apply_to_workloads() {
    let mut cluster = Cluster::conformance();
    cluster.gnp(
        "untracked",
        json!({"selector": "all()", "doNotTrack": true, "applyOnForward": true, "ingress": []}),
    );
    cluster.assert_matrix(&PROBES, |_, _, _| true);
    assert!(cluster.compiler.program().policies.is_empty());
}

#[test]
fn explain_names_the_deciding_rule() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "web", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [
        {"from": [{"podSelector": {}}], "ports": [{"port": 80}]},
        {"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}], "ports": [{"port": 81}, {"protocol": "UDP", "port": 81}]}
    ]}));
    let packet = |text: &str| Packet::parse(text).expect("packet");
    let web = id(PolicyKind::KubernetesNetworkPolicy, Some("x"), "web");
    let cases = [
        (
            "x/b",
            "x/a",
            "TCP/80",
            Verdict::Allow,
            Some(Reason::Rule {
                tier: "default".into(),
                policy: web.clone(),
                index: 0,
                action: Action::Allow,
            }),
        ),
        (
            "z/c",
            "x/a",
            "TCP/81",
            Verdict::Allow,
            Some(Reason::Rule {
                tier: "default".into(),
                policy: web.clone(),
                index: 1,
                action: Action::Allow,
            }),
        ),
        (
            "z/c",
            "x/a",
            "UDP/81",
            Verdict::Allow,
            Some(Reason::Rule {
                tier: "default".into(),
                policy: web.clone(),
                index: 2,
                action: Action::Allow,
            }),
        ),
        (
            "y/b",
            "x/a",
            "TCP/80",
            Verdict::Deny,
            Some(Reason::TierDefault {
                tier: "default".into(),
            }),
        ),
        (
            "y/b",
            "x/b",
            "TCP/80",
            Verdict::Allow,
            Some(Reason::Profile {
                profile: "kns.x".into(),
                index: 0,
            }),
        ),
    ];
    for (source, destination, probe, verdict, reason) in cases {
        let explanation = explain::explain(&cluster.compiler, source, destination, packet(probe))
            .expect("explains");
        assert_eq!(
            explanation.verdict, verdict,
            "{source} -> {destination} {probe}"
        );
        assert_eq!(
            explanation.ingress.map(|d| d.reason),
            reason,
            "{source} -> {destination} {probe}"
        );
        let egress = explanation.egress.expect("source is local");
        assert_eq!(
            egress.reason,
            Reason::Profile {
                profile: format!("kns.{}", ns(source)),
                index: 0
            }
        );
    }
    let text = explain::explain(&cluster.compiler, "y/b", "x/a", packet("TCP/80"))
        .expect("explains")
        .to_string();
    assert!(
        text.contains("y/b (10.0.2.2) -> x/a (10.0.1.1) TCP/80: denied"),
        "{text}"
    );
    assert!(
        text.contains("ingress of x/a: denied by tier default: no rule matched"),
        "{text}"
    );
    // An address outside the cluster is not policed; a remote endpoint is named as such.
    let external = explain::explain(&cluster.compiler, "192.0.2.1", "x/b", packet("TCP/80"))
        .expect("explains");
    assert!(external.egress.is_none() && external.source.endpoint.is_none());
    assert_eq!(external.verdict, Verdict::Allow);
}
