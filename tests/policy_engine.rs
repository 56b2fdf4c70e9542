//! The policy engine between the datastore inputs and the compiler: invalid objects rejected
//! with the field named and the rest (or their last valid version) kept, `Replace` applying
//! only differences, nothing programmed before every kind is listed, and WorkloadEndpoints
//! keyed by their pod.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use starling::policy::engine::Engine;
use starling::policy::inputs::{InputKind, InputUpdate};
use starling_policy::explain::{explain, Packet, Verdict};

const NODE: &str = "node-a";

fn wep(namespace: &str, pod: &str, address: &str, labels: Value) -> (String, Value) {
    let name = format!("{NODE}-k8s-{pod}-eth0");
    let key = format!("{namespace}/{name}");
    let object = json!({
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "node": NODE, "orchestrator": "k8s", "pod": pod, "endpoint": "eth0",
            "interfaceName": format!("cali{pod}{namespace}"),
            "ipNetworks": [format!("{address}/32")],
            "profiles": [format!("kns.{namespace}")],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80}],
        }
    });
    (key, object)
}

fn allow_all_profile(name: &str) -> (String, Value) {
    let object = json!({
        "kind": "Profile", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}
    });
    (name.to_string(), object)
}

fn deny_ingress_policy(namespace: &str, name: &str, selector: &str) -> (String, Value) {
    let object = json!({
        "kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": selector, "types": ["Ingress"], "ingress": []}
    });
    (format!("{namespace}/{name}"), object)
}

fn replace(kind: InputKind, objects: Vec<(String, Value)>) -> InputUpdate {
    InputUpdate::Replace {
        kind,
        objects: objects.into_iter().collect::<BTreeMap<_, _>>(),
    }
}

fn put(kind: InputKind, (key, object): (String, Value)) -> InputUpdate {
    InputUpdate::Put { kind, key, object }
}

/// An engine with two pods x/a and x/b and the allow-all namespace profile, every kind listed.
fn engine_with_two_pods() -> Engine {
    let mut engine = Engine::new(NODE, &InputKind::ETCD, "cali");
    let pods = vec![
        wep("x", "a", "10.65.0.1", json!({"app": "a"})),
        wep("x", "b", "10.65.0.2", json!({"app": "b"})),
    ];
    assert!(engine
        .handle(replace(InputKind::WorkloadEndpoint, pods))
        .is_empty());
    let profiles = vec![allow_all_profile("kns.x")];
    assert!(engine
        .handle(replace(InputKind::Profile, profiles))
        .is_empty());
    for kind in [
        InputKind::NetworkPolicy,
        InputKind::GlobalNetworkPolicy,
        InputKind::Tier,
    ] {
        assert!(engine.handle(replace(kind, Vec::new())).is_empty());
    }
    assert!(engine.in_sync());
    engine.take_changes();
    engine
}

fn verdict(engine: &Engine, from: &str, to: &str) -> Verdict {
    let packet = Packet::parse("TCP/80").unwrap();
    explain(engine.compiler(), from, to, packet)
        .unwrap_or_else(|error| panic!("explain {from} -> {to}: {error}"))
        .verdict
}

#[test]
fn in_sync_only_once_every_kind_is_listed_and_lost_on_out_of_sync() {
    let mut engine = Engine::new(NODE, &InputKind::ETCD, "cali");
    for kind in &InputKind::ETCD[..4] {
        engine.handle(replace(*kind, Vec::new()));
        assert!(
            !engine.in_sync(),
            "in sync before {:?} was listed",
            InputKind::ETCD[4]
        );
    }
    engine.handle(replace(InputKind::ETCD[4], Vec::new()));
    assert!(engine.in_sync());
    engine.handle(InputUpdate::OutOfSync {
        kind: InputKind::Tier,
    });
    assert!(!engine.in_sync());
    engine.handle(replace(InputKind::Tier, Vec::new()));
    assert!(engine.in_sync());
}

#[test]
fn workload_endpoints_are_keyed_by_pod_and_policies_apply() {
    let mut engine = engine_with_two_pods();
    assert!(engine.compiler().endpoint("x/a").is_some());
    assert_eq!(verdict(&engine, "x/a", "x/b"), Verdict::Allow);
    let rejected = engine.handle(put(
        InputKind::NetworkPolicy,
        deny_ingress_policy("x", "default.deny-b", "app == 'b'"),
    ));
    assert!(rejected.is_empty());
    assert_eq!(verdict(&engine, "x/a", "x/b"), Verdict::Deny);
    assert_eq!(verdict(&engine, "x/b", "x/a"), Verdict::Allow);
    let changes = engine.take_changes();
    assert!(
        !changes.is_empty(),
        "a new policy selecting a local endpoint changes the program"
    );
}

#[test]
fn an_unchanged_object_and_an_unchanged_replace_change_nothing() {
    let mut engine = engine_with_two_pods();
    let policy = deny_ingress_policy("x", "default.deny-b", "app == 'b'");
    engine.handle(put(InputKind::NetworkPolicy, policy.clone()));
    engine.take_changes();
    engine.handle(put(InputKind::NetworkPolicy, policy.clone()));
    assert!(engine.take_changes().is_empty());
    engine.handle(replace(InputKind::NetworkPolicy, vec![policy]));
    assert!(engine.take_changes().is_empty());
    // A Replace without the policy deletes it.
    engine.handle(replace(InputKind::NetworkPolicy, Vec::new()));
    assert!(!engine.take_changes().is_empty());
    assert_eq!(verdict(&engine, "x/a", "x/b"), Verdict::Allow);
}

/// Each malformed policy is rejected with a message naming the field and changes nothing.
#[test]
fn malformed_policies_are_rejected_naming_the_field_and_change_nothing() {
    let mut engine = engine_with_two_pods();
    engine.handle(put(
        InputKind::NetworkPolicy,
        deny_ingress_policy("x", "default.deny-b", "app == 'b'"),
    ));
    engine.take_changes();
    let before = engine.compiler().program().clone();
    let spec_with = |name: &str, spec: Value| {
        let object = json!({
            "kind": "NetworkPolicy", "apiVersion": "projectcalico.org/v3",
            "metadata": {"name": name, "namespace": "x"}, "spec": spec
        });
        (format!("x/{name}"), object)
    };
    let cases = [
        (
            spec_with(
                "default.bad-selector",
                json!({"selector": "app == ", "types": ["Ingress"]}),
            ),
            "selector",
        ),
        (
            spec_with(
                "default.bad-cidr",
                json!({"selector": "all()", "ingress": [{"action": "Allow", "source": {"nets": ["10.0.0.0/33"]}}]}),
            ),
            "nets",
        ),
        (
            spec_with(
                "default.bad-protocol",
                json!({"selector": "all()", "ingress": [{"action": "Allow", "protocol": "TCPX"}]}),
            ),
            "protocol",
        ),
        (
            spec_with(
                "default.bad-port",
                json!({"selector": "all()", "ingress": [{"action": "Allow", "protocol": "TCP",
                    "destination": {"ports": [70000]}}]}),
            ),
            "ports",
        ),
    ];
    for ((key, object), field) in cases {
        let rejected = engine.handle(put(InputKind::NetworkPolicy, (key.clone(), object)));
        assert_eq!(
            rejected,
            vec![InputKind::NetworkPolicy],
            "{key} was accepted"
        );
        let message = engine
            .rejected()
            .find(|(_, rejected_key, _)| *rejected_key == key)
            .map(|(_, _, message)| message.to_string())
            .unwrap_or_else(|| panic!("no rejection recorded for {key}"));
        assert!(
            message.contains(field),
            "{key}: {message:?} does not name {field}"
        );
        assert!(
            engine.take_changes().is_empty(),
            "{key} changed the program"
        );
        assert_eq!(
            *engine.compiler().program(),
            before,
            "{key} changed the program"
        );
    }
    assert_eq!(engine.rejections(), 4);
}

/// An edit that breaks a valid policy keeps the last valid version; fixing it applies the fix;
/// deleting the broken object removes the kept version.
#[test]
fn a_broken_edit_keeps_the_last_valid_version() {
    let mut engine = engine_with_two_pods();
    let (key, valid) = deny_ingress_policy("x", "default.deny-b", "app == 'b'");
    engine.handle(put(InputKind::NetworkPolicy, (key.clone(), valid)));
    engine.take_changes();
    let (_, broken) = deny_ingress_policy("x", "default.deny-b", "app == ");
    let rejected = engine.handle(put(InputKind::NetworkPolicy, (key.clone(), broken)));
    assert_eq!(rejected, vec![InputKind::NetworkPolicy]);
    assert_eq!(
        verdict(&engine, "x/a", "x/b"),
        Verdict::Deny,
        "the valid version was dropped"
    );
    assert!(engine.take_changes().is_empty());

    let (_, fixed) = deny_ingress_policy("x", "default.deny-b", "app == 'a'");
    assert!(engine
        .handle(put(InputKind::NetworkPolicy, (key.clone(), fixed)))
        .is_empty());
    assert_eq!(engine.rejected().count(), 0);
    assert_eq!(verdict(&engine, "x/a", "x/b"), Verdict::Allow);
    assert_eq!(verdict(&engine, "x/b", "x/a"), Verdict::Deny);

    let (_, broken) = deny_ingress_policy("x", "default.deny-b", "app == ");
    engine.handle(put(InputKind::NetworkPolicy, (key.clone(), broken)));
    engine.handle(InputUpdate::Delete {
        kind: InputKind::NetworkPolicy,
        key,
    });
    assert_eq!(verdict(&engine, "x/b", "x/a"), Verdict::Allow);
    assert_eq!(engine.rejected().count(), 0);
}

#[test]
fn a_malformed_workload_endpoint_is_rejected_naming_the_field() {
    let mut engine = engine_with_two_pods();
    let (key, mut object) = wep("x", "c", "10.65.0.3", json!({}));
    object["spec"]["ipNetworks"] = json!(["not-an-address"]);
    let rejected = engine.handle(put(InputKind::WorkloadEndpoint, (key.clone(), object)));
    assert_eq!(rejected, vec![InputKind::WorkloadEndpoint]);
    let (_, _, message) = engine.rejected().next().unwrap();
    assert!(message.contains("spec.ipNetworks[0]"), "{message}");
    assert!(engine.compiler().endpoint("x/c").is_none());
}

#[test]
fn pods_become_endpoints_with_namespace_profiles_in_the_kubernetes_datastore() {
    let mut engine = Engine::new(NODE, &InputKind::KUBE, "cali");
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "a", "namespace": "x", "labels": {"app": "a"},
            "annotations": {"cni.projectcalico.org/podIPs": "10.65.0.1/32"}},
        "spec": {"nodeName": NODE, "serviceAccountName": "robot",
            "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 80}]}]},
    });
    let host_network = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "h", "namespace": "x"},
        "spec": {"nodeName": NODE, "hostNetwork": true},
        "status": {"podIPs": [{"ip": "192.0.2.1"}]},
    });
    engine.handle(replace(
        InputKind::Pod,
        vec![("x/a".into(), pod), ("x/h".into(), host_network)],
    ));
    let endpoint = engine
        .compiler()
        .endpoint("x/a")
        .expect("pod x/a is an endpoint");
    assert_eq!(endpoint.profiles, vec!["kns.x", "ksa.x.robot"]);
    assert_eq!(
        endpoint
            .labels
            .get("projectcalico.org/namespace")
            .map(String::as_str),
        Some("x")
    );
    assert!(endpoint.interface.starts_with("cali"));
    assert!(
        engine.compiler().endpoint("x/h").is_none(),
        "host-network pods are no endpoints"
    );
}

/// etcd holds a converted Kubernetes policy as the Calico NetworkPolicy `knp.default.<name>`;
/// the engine gives it the Kubernetes kind and name, as the Kubernetes datastore path does.
#[test]
fn a_stored_kubernetes_policy_gets_the_kubernetes_id() {
    let mut engine = engine_with_two_pods();
    let (key, mut object) = deny_ingress_policy("x", "knp.default.deny-b", "app == 'b'");
    object["spec"]["order"] = json!(1000);
    engine.handle(put(InputKind::NetworkPolicy, (key, object)));
    let explanation = explain(
        engine.compiler(),
        "x/a",
        "x/b",
        Packet::parse("TCP/80").unwrap(),
    )
    .unwrap();
    assert_eq!(explanation.verdict, Verdict::Deny);
    let ids: Vec<String> = engine
        .compiler()
        .policies()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(ids, vec!["knp/x/deny-b"]);
}
