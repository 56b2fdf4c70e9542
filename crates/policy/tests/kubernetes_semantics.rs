//! Kubernetes NetworkPolicy semantics on the conformance model (namespaces x, y, z; pods a,
//! b, c; TCP and UDP on 80 and 81), checked cell by cell over the compiled program.

mod common;

use common::{ns, Cluster, PROBES};
use serde_json::json;

#[test]
fn no_policy_allows_everything() {
    let cluster = Cluster::conformance();
    cluster.assert_matrix(&PROBES, |_, _, _| true);
}

#[test]
fn default_deny_ingress_isolates_only_the_selected_pods() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "deny", json!({"podSelector": {}}));
    cluster.assert_matrix(&PROBES, |_, d, _| ns(d) != "x");
    // Over IPv6 too.
    assert!(!cluster.reachable("fd00::2:1", "fd00::1:2", "TCP/80"));
    assert!(cluster.reachable("fd00::1:2", "fd00::2:1", "TCP/80"));
}

#[test]
fn default_deny_egress_needs_the_egress_type() {
    let mut cluster = Cluster::conformance();
    // Without policyTypes an empty egress list is an ingress default-deny.
    cluster.knp("x", "deny", json!({"podSelector": {}, "egress": []}));
    cluster.assert_matrix(&["TCP/80"], |_, d, _| ns(d) != "x");
    cluster.knp(
        "x",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    );
    cluster.assert_matrix(&PROBES, |s, _, _| ns(s) != "x");
}

#[test]
fn allow_from_the_same_namespace() {
    let mut cluster = Cluster::conformance();
    cluster.knp(
        "x",
        "same",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    cluster.assert_matrix(&PROBES, |s, d, _| ns(d) != "x" || ns(s) == "x");
}

#[test]
fn namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() {
    let mut cluster = Cluster::conformance();
    let y = json!({"matchLabels": {"kubernetes.io/metadata.name": "y"}});
    let b = json!({"matchLabels": {"pod": "b"}});
    cluster.knp(
        "x",
        "one",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": y, "podSelector": b}]}]}),
    );
    cluster.assert_matrix(&PROBES, |s, d, _| d != "x/a" || s == "y/b");
    cluster.knp(
        "x",
        "one",
        json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": y}, {"podSelector": b}]}]}),
    );
    cluster.assert_matrix(&PROBES, |s, d, _| d != "x/a" || ns(s) == "y" || s == "x/b");
}

#[test]
fn namespace_selector_matches_namespace_labels() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "ns", json!({"podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y", "z"]}]}}]}]}));
    cluster.assert_matrix(&PROBES, |s, d, _| ns(d) != "x" || ns(s) != "x");
    cluster.knp(
        "x",
        "ns",
        json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
    );
    cluster.assert_matrix(&PROBES, |_, _, _| true);
}

#[test]
fn ip_block_with_except_matches_pod_addresses() {
    let mut cluster = Cluster::conformance();
    // y's pods are 10.0.2.0/24; y/b (10.0.2.2) is excepted.
    cluster.knp(
        "x",
        "block",
        json!({"podSelector": {},
        "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.2.0/24", "except": ["10.0.2.2/32"]}}]}]}),
    );
    cluster.assert_matrix(&PROBES, |s, d, _| {
        ns(d) != "x" || (ns(s) == "y" && s != "y/b")
    });
    // The IPv4 block says nothing for IPv6: every IPv6 source is denied.
    assert!(!cluster.reachable("fd00::2:1", "x/a", "TCP/80"));
}

#[test]
fn named_ports_resolve_per_protocol_on_the_destination() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "named", json!({"podSelector": {},
        "ingress": [{"ports": [{"port": "serve-80-tcp"}, {"protocol": "UDP", "port": "serve-81-udp"}]}]}));
    cluster.assert_matrix(&PROBES, |_, d, p| {
        ns(d) != "x" || p == "TCP/80" || p == "UDP/81"
    });
    // Egress: the name resolves on the peer.
    let mut cluster = Cluster::conformance();
    cluster.knp("y", "out", json!({"podSelector": {}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": "serve-80-udp"}]}]}));
    cluster.assert_matrix(&PROBES, |s, _, p| ns(s) != "y" || p == "UDP/80");
}

#[test]
fn port_ranges_with_end_port() {
    let mut cluster = Cluster::conformance();
    cluster.knp(
        "x",
        "range",
        json!({"podSelector": {},
        "ingress": [{"ports": [{"port": 79, "endPort": 80}]}]}),
    );
    cluster.assert_matrix(&PROBES, |_, d, p| ns(d) != "x" || p == "TCP/80");
    cluster.knp(
        "x",
        "range",
        json!({"podSelector": {},
        "ingress": [{"ports": [{"port": 80, "endPort": 81, "protocol": "UDP"}]}]}),
    );
    cluster.assert_matrix(&PROBES, |_, d, p| ns(d) != "x" || p.starts_with("UDP"));
}

#[test]
fn several_policies_add_up() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "from-y", json!({"podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "y"}}}], "ports": [{"port": 80}]}]}));
    cluster.knp("x", "from-z", json!({"podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"ns": "z"}}}], "ports": [{"port": 81}]}]}));
    cluster.assert_matrix(&PROBES, |s, d, p| {
        ns(d) != "x"
            || (d == "x/a" && ns(s) == "y" && p == "TCP/80")
            || (ns(s) == "z" && p == "TCP/81")
    });
}

#[test]
fn egress_to_chosen_pods_and_ingress_must_both_allow() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "out", json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}]}));
    cluster.knp(
        "y",
        "in",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    cluster.assert_matrix(&PROBES, |s, d, _| {
        let egress = s != "x/a" || d.ends_with("/b");
        let ingress = ns(d) != "y" || ns(s) == "y";
        egress && ingress
    });
}

#[test]
fn ingress_rule_without_ports_allows_every_protocol() {
    let mut cluster = Cluster::conformance();
    cluster.knp("x", "all", json!({"podSelector": {}, "ingress": [{}]}));
    assert!(cluster.reachable("y/a", "x/a", "ICMP/8"));
    cluster.knp(
        "x",
        "all",
        json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
    );
    assert!(!cluster.reachable("y/a", "x/a", "ICMP/8"));
}
