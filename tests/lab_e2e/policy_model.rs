//! The policy conformance model in the lab: namespaces x, y, z (labelled `ns=<name>`), pods a, b
//! and c in each, one per node of a 3-node VXLAN lab, every pod serving TCP and UDP on 80 and 81
//! under the named ports `serve-<port>-<proto>`. With no policy every probe matrix is complete.
//! What Calico's controllers would write is checked in etcd: each pod's WorkloadEndpoint carries
//! its labels and named ports, each namespace's `kns.<ns>` profile its labels; label edits reach
//! both, kubectl's overwrite rule holds, and `apply -f` / `delete -f` write and remove Calico's
//! objects at their keys. (Policy enforcement is policy_conformance's.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use starling::lab::serve::Protocol;
use starling::lab::workloads::{self, LabelTarget, PodRequest};
use starling::lab::{self, controllers, etcd, topology, verbs, LabState, Mode};

use super::policy_support::{build_model, PODS, PROBES};
use super::requirements::require_root;
use super::{logs, poll, Lab};

fn stored(lab: &Lab, key: &str) -> Value {
    etcd::get(&lab.names(), &lab.state.etcd_endpoints, key)
        .unwrap()
        .unwrap_or_else(|| panic!("nothing stored at {key}"))
}

fn endpoint(lab: &Lab, namespace: &str, pod: &str) -> Value {
    let state = LabState::load(&lab.options.state_dir()).unwrap();
    let pod = state
        .pods
        .iter()
        .find(|p| p.pod_namespace == namespace && p.name() == pod)
        .unwrap_or_else(|| panic!("no pod {namespace}/{pod} in the lab state"));
    stored(lab, &controllers::endpoint_key(pod).unwrap())
}

fn profile_labels(lab: &Lab, namespace: &str) -> Value {
    let key = controllers::key("profiles", None, &format!("kns.{namespace}"));
    stored(lab, &key)["spec"]["labelsToApply"].clone()
}

/// Polls one probe matrix until it is complete; the last matrix when it never is.
fn assert_complete(lab: &Lab, protocol: Protocol, port: u16) {
    let started = Instant::now();
    let mut last = None;
    let complete = poll(Duration::from_secs(30), || {
        let matrix = verbs::probe_matrix(&lab.options, protocol, port, 1000).unwrap();
        let done = matrix.unreachable().is_empty();
        last = Some(matrix);
        done
    });
    let matrix = last.expect("at least one probe matrix");
    assert!(
        complete,
        "{protocol}/{port} is not reachable everywhere:\n{}\n{}",
        matrix.render(),
        logs(&lab.options, lab.state.nodes)
    );
    assert_eq!(matrix.pairs(), 72, "{}", matrix.render());
    eprintln!(
        "{protocol}/{port}: 72 of 72 pairs after {:.1?}",
        started.elapsed()
    );
}

#[test]
fn conformance_model_is_reachable_and_recorded_like_calico() {
    if !require_root("conformance_model_is_reachable_and_recorded_like_calico") {
        return;
    }
    let lab = Lab::up("e2epol", Mode::Vxlan, 3, 0);
    assert!(lab.state.pods.is_empty(), "--pods-per-node 0 made pods");
    let options = &lab.options;
    build_model(&lab);
    let error = workloads::add_namespace(options, "x", &BTreeMap::new()).unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error:#}");
    let unknown = PodRequest {
        namespace: "w".into(),
        name: "a".into(),
        ..PodRequest::default()
    };
    let error = workloads::add_pod(options, &unknown).unwrap_err();
    assert!(error.to_string().contains("not found"), "{error:#}");

    // `status --json`: every pod with its namespace, name, node and address.
    let status = verbs::status_json(options).unwrap();
    let pods = status["pods"].as_array().unwrap();
    assert_eq!(pods.len(), 9, "{status:#}");
    for (index, pod) in PODS.into_iter().enumerate() {
        let entry = pods
            .iter()
            .find(|p| p["namespace"] == "y" && p["name"] == pod)
            .unwrap_or_else(|| panic!("y/{pod} missing: {status:#}"));
        assert_eq!(entry["node"], topology::node_name(index + 1));
        assert_eq!(entry["labels"], json!({"pod": pod}));
        assert!(entry["addresses"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("10.244.")));
    }

    for (protocol, port) in PROBES {
        assert_complete(&lab, protocol, port);
    }

    // What kube-controllers would have written.
    let wep = endpoint(&lab, "x", "a");
    assert_eq!(
        wep["metadata"]["labels"],
        json!({"pod": "a", "projectcalico.org/namespace": "x",
               "projectcalico.org/orchestrator": "k8s"})
    );
    assert_eq!(wep["spec"]["profiles"], json!(["kns.x"]));
    assert_eq!(
        wep["spec"]["ports"],
        json!([
            {"name": "serve-80-tcp", "protocol": "TCP", "port": 80},
            {"name": "serve-80-udp", "protocol": "UDP", "port": 80},
            {"name": "serve-81-tcp", "protocol": "TCP", "port": 81},
            {"name": "serve-81-udp", "protocol": "UDP", "port": 81},
        ])
    );
    assert_eq!(
        profile_labels(&lab, "y"),
        json!({"pcns.ns": "y", "pcns.kubernetes.io/metadata.name": "y",
               "pcns.projectcalico.org/name": "y"})
    );

    // Labels: kubectl's rules, and the endpoint and profile follow.
    let change = |target, name: &str, changes: &[&str], overwrite| {
        let changes: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        workloads::label(options, target, name, &changes, overwrite)
    };
    let refused = change(LabelTarget::Pod, "x/a", &["pod=z"], false).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "'pod' already has a value (a), and --overwrite is false"
    );
    assert_eq!(endpoint(&lab, "x", "a")["metadata"]["labels"]["pod"], "a");
    let out = change(LabelTarget::Pod, "x/a", &["pod=z", "role=web"], true).unwrap();
    assert_eq!(out, "pod/a labeled\n");
    let wep = endpoint(&lab, "x", "a");
    assert_eq!(wep["metadata"]["labels"]["pod"], "z");
    assert_eq!(wep["metadata"]["labels"]["role"], "web");
    assert_eq!(wep["spec"]["ports"].as_array().map(Vec::len), Some(4));
    let out = change(LabelTarget::Pod, "x/a", &["role-", "pod=a"], true).unwrap();
    assert_eq!(out, "pod/a labeled\n");
    assert_eq!(endpoint(&lab, "x", "a")["metadata"]["labels"]["pod"], "a");
    assert!(endpoint(&lab, "x", "a")["metadata"]["labels"]
        .get("role")
        .is_none());

    change(LabelTarget::Namespace, "y", &["ns=w", "team=blue"], true).unwrap();
    let profile = profile_labels(&lab, "y");
    assert_eq!(
        (&profile["pcns.ns"], &profile["pcns.team"]),
        (&json!("w"), &json!("blue"))
    );
    let out = change(LabelTarget::Namespace, "y", &["team-"], false).unwrap();
    assert_eq!(out, "namespace/y unlabeled\n");
    // The API server keeps a namespace's name label whatever the edit.
    change(
        LabelTarget::Namespace,
        "y",
        &["ns=y", "kubernetes.io/metadata.name-"],
        true,
    )
    .unwrap();
    assert_eq!(
        profile_labels(&lab, "y"),
        json!({"pcns.ns": "y", "pcns.kubernetes.io/metadata.name": "y",
               "pcns.projectcalico.org/name": "y"})
    );

    // apply -f / delete -f: Calico's objects at Calico's keys.
    let manifest = std::env::temp_dir().join("starling-e2epol-policies.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-from-y, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {ns: y}}}]
    ports: [{port: serve-80-tcp}]
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: pass-all}
spec: {tier: security, order: 1, selector: all(), ingress: [{action: Pass}], egress: [{action: Pass}]}
"#,
    )
    .unwrap();
    let out = workloads::apply(options, &manifest).unwrap();
    assert_eq!(
        out,
        "networkpolicy.networking.k8s.io/allow-from-y created\n\
         tier.projectcalico.org/security created\n\
         globalnetworkpolicy.projectcalico.org/pass-all created\n"
    );
    let knp_key = controllers::key("networkpolicies", Some("x"), "knp.default.allow-from-y");
    let knp = stored(&lab, &knp_key);
    assert_eq!(knp["kind"], "NetworkPolicy");
    assert_eq!(knp["spec"]["order"], json!(1000.0));
    assert_eq!(knp["spec"]["types"], json!(["Ingress"]));
    let gnp = stored(
        &lab,
        &controllers::key("globalnetworkpolicies", None, "pass-all"),
    );
    assert_eq!(gnp["spec"]["types"], json!(["Ingress", "Egress"]));
    let uid = gnp["metadata"]["uid"].clone();
    assert!(uid.as_str().is_some_and(|uid| !uid.is_empty()), "{gnp}");
    let again = workloads::apply(options, &manifest).unwrap();
    assert!(
        again.lines().all(|line| line.ends_with(" unchanged")),
        "{again}"
    );
    assert_eq!(
        stored(
            &lab,
            &controllers::key("globalnetworkpolicies", None, "pass-all")
        )["metadata"]["uid"],
        uid
    );
    let (out, all_found) = workloads::delete(options, &manifest).unwrap();
    assert!(all_found, "{out}");
    let names = lab.names();
    for key in [
        knp_key,
        controllers::key("tiers", None, "security"),
        controllers::key("globalnetworkpolicies", None, "pass-all"),
    ] {
        assert_eq!(
            etcd::get(&names, &lab.state.etcd_endpoints, &key).unwrap(),
            None,
            "{key}"
        );
    }
    // A file naming a namespace that does not exist writes nothing, not even what comes first.
    std::fs::write(
        &manifest,
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: early}\n\
         spec: {selector: all()}\n---\napiVersion: projectcalico.org/v3\nkind: NetworkPolicy\n\
         metadata: {name: p, namespace: nope}\nspec: {selector: all()}\n",
    )
    .unwrap();
    let error = workloads::apply(options, &manifest).unwrap_err();
    assert_eq!(
        error.to_string(),
        "networkpolicy.projectcalico.org/p: namespaces \"nope\" not found"
    );
    let early = controllers::key("globalnetworkpolicies", None, "early");
    assert_eq!(
        etcd::get(&names, &lab.state.etcd_endpoints, &early).unwrap(),
        None
    );
    let _ = std::fs::remove_file(&manifest);

    // Probes run in parallel: a pod nobody reaches (its link is down) costs about one timeout
    // for the whole matrix, not one per pair.
    let dead = workloads::add_pod(
        options,
        &PodRequest {
            namespace: "z".into(),
            name: "d".into(),
            ..PodRequest::default()
        },
    )
    .unwrap();
    topology::ip(&["-n", &dead.namespace, "link", "set", "eth0", "down"]).unwrap();
    let timeout_ms = 2000;
    let started = Instant::now();
    let matrix = verbs::probe_matrix(options, Protocol::Tcp, 80, timeout_ms).unwrap();
    let took = started.elapsed();
    let unreachable = matrix.unreachable();
    assert_eq!(unreachable.len(), 18, "{}", matrix.render());
    assert!(unreachable
        .iter()
        .all(|(from, to)| from == "z/d" || to == "z/d"));
    // Serially the 9 probes towards z/d alone would take 18 s.
    assert!(
        took < Duration::from_millis(4 * timeout_ms),
        "a 90-pair matrix took {took:?}"
    );
    eprintln!("90-pair matrix with 9 timeouts in {took:.1?}");

    let wep_key = controllers::endpoint_key(&dead).unwrap();
    workloads::delete_pod(options, "z/d").unwrap();
    assert_eq!(
        etcd::get(&names, &lab.state.etcd_endpoints, &wep_key).unwrap(),
        None
    );
    assert!(!topology::namespaces_with_prefix(&names.prefix())
        .unwrap()
        .contains(&dead.namespace));
    let error = workloads::delete_pod(options, "z/d").unwrap_err();
    assert!(error.to_string().contains("not found"), "{error:#}");
    for (protocol, port) in PROBES {
        assert_complete(&lab, protocol, port);
    }

    // `lab down` stops the pods' servers too.
    let servers: Vec<u32> = LabState::load(&options.state_dir())
        .unwrap()
        .pods
        .iter()
        .filter_map(|pod| pod.server_pid)
        .collect();
    assert_eq!(servers.len(), 9);
    lab::down(options).unwrap();
    assert!(
        poll(Duration::from_secs(10), || !servers
            .iter()
            .any(|pid| lab::daemons::alive(*pid))),
        "servers still running after lab down: {servers:?}"
    );
}
