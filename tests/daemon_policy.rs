//! The daemon enforcing policy on the real kernel, Kubernetes datastore (the API test server),
//! inside a test network namespace: readiness waits for the first policy program, a
//! Kubernetes NetworkPolicy becomes nft chains and is explained over the control socket, and
//! malformed policies (new, or a broken edit of a valid one) are counted and change nothing in
//! the kernel; the rule counters are read. Needs root; skipped otherwise.

#[path = "support/kube_api.rs"]
mod kube_api;

#[path = "daemon_support/mod.rs"]
mod daemon_support;

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::{require_program, require_root};

use std::time::Duration;

use daemon_support::*;
use kube_api::KubeApiServer;
use serde_json::{json, Value};
use starling::daemon::control::query_policy_explain;
use starling::daemon::dataplane::KernelMode;
use starling::daemon::{DaemonOptions, StartupMode};
use starling::datastore::kube::KubeStore;
use starling::datastore::AnyDatastore;
use starling::policy::explain_view::{ExplainReply, ExplainView, ReasonView};
use starling::resources::node::annotation;
use starling::startup::StartupOutcome;
use starling_model::config::Config;

fn pod(namespace: &str, name: &str, address: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app},
            "annotations": {"cni.projectcalico.org/podIPs": format!("{address}/32")}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c",
            "ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"podIPs": [{"ip": address}]},
    })
}

/// Ingress to app=b only from app=c on TCP/80.
fn k8s_policy(port: u64) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "only-c", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "b"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "c"}}}],
                "ports": [{"protocol": "TCP", "port": port}]}]},
    })
}

/// The installed tables without counter values (which traffic may change).
fn tables(namespace: &str) -> String {
    let output = std::process::Command::new("ip")
        .args([
            "netns", "exec", namespace, "nft", "list", "table", "ip", "starling",
        ])
        .output()
        .expect("running nft");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| match line.find("counter packets") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn explain(socket: &std::path::Path, from: &str, to: &str) -> ExplainView {
    match query_policy_explain(socket, from, to, "TCP/80").await {
        Ok(ExplainReply::Answer(view)) => *view,
        Ok(ExplainReply::Error { error }) => panic!("explain {from} -> {to}: {error}"),
        Err(error) => panic!("explain {from} -> {to}: {error}"),
    }
}

#[test]
fn kubernetes_policy_is_enforced_explained_and_malformed_policy_changes_nothing() {
    let test = "kubernetes_policy_is_enforced_explained_and_malformed_policy_changes_nothing";
    if !require_root(test) || !require_program(test, "nft") {
        return;
    }
    let name = starling::netns::unique_name("sp");
    let _guard = starling::netns::create(&name).unwrap();
    netns_test::node_eth0(&name, "10.0.0.1/24");

    let namespace = name.clone();
    starling::netns::run_async_in(&name, move || async move {
        let server = KubeApiServer::start().await;
        let store = AnyDatastore::Kube(KubeStore::new(server.client()));
        server.put_object(
            "v1",
            "nodes",
            k8s_node("node-a", &[(annotation::IPV4_ADDRESS, "10.0.0.1/24")]),
        );
        server.put_object(
            "v1",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "x", "labels": {"kubernetes.io/metadata.name": "x"}}}),
        );
        for (pod_name, address) in [("a", "10.65.0.1"), ("b", "10.65.0.2")] {
            server.put_object("v1", "pods", pod("x", pod_name, address, pod_name));
        }

        let directory = tempfile::tempdir().unwrap();
        let socket = directory.path().join("starling.sock");
        let variables = environment("node-a", "none", &socket);
        let config = Config::from_env(&variables).unwrap();
        let options = DaemonOptions {
            startup: StartupMode::Given(StartupOutcome {
                node_name: "node-a".into(),
                node: registered("node-a", "10.0.0.1/24"),
            }),
            kernel: KernelMode::Netlink,
            mtu_file: Some(directory.path().join("mtu")),
            sysctl_root: None,
            manage_nat: false,
            bgp_grace: Duration::from_secs(30),
            policy: true,
        };
        let handle = starling::daemon::start(config, store, options)
            .await
            .unwrap();
        let health = handle.health_address;
        eventually(
            "the daemon ready (the first policy program committed)",
            || async move { http_get(health, "/readiness").await.0 == 200 },
        )
        .await;
        let metrics = handle.metrics.clone();
        assert_eq!(metrics.policy_engine.in_sync.get(), 1);
        assert!(
            metrics
                .policy_nft
                .transactions_total
                .with_label_values(&["resync"])
                .get()
                >= 1,
            "ready before any policy transaction"
        );
        let interface_b = starling_calc::spec::veth_name("cali", "x", "b");
        assert!(
            tables(&namespace).contains(&format!("chain tw-{interface_b}")),
            "no ingress chain for x/b:\n{}",
            tables(&namespace)
        );
        assert_eq!(explain(&socket, "x/a", "x/b").await.verdict, "allow");

        server.put_object("networking.k8s.io/v1", "networkpolicies", k8s_policy(80));
        let socket_ref = &socket;
        eventually(
            "x/a -> x/b denied by the Kubernetes policy",
            || async move { explain(socket_ref, "x/a", "x/b").await.verdict == "deny" },
        )
        .await;
        let denied = explain(&socket, "x/a", "x/b").await;
        let ingress = denied
            .ingress
            .expect("x/b's ingress is decided on this node");
        assert_eq!(ingress.node, "node-a");
        assert_eq!(
            ingress.reason,
            ReasonView::TierDefault {
                tier: "default".into()
            },
            "{}",
            denied.text
        );
        assert_eq!(explain(&socket, "x/b", "x/a").await.verdict, "allow");
        let transactions = || {
            metrics
                .policy_nft
                .transactions_total
                .with_label_values(&["incremental"])
                .get()
        };
        eventually("the policy committed", || async {
            tables(&namespace).contains("pi-")
        })
        .await;
        let committed = tables(&namespace);
        let incremental_before = transactions();

        // A new malformed Calico policy, then a broken edit of the valid Kubernetes one.
        server.put_object(
            "crd.projectcalico.org/v1",
            "networkpolicies",
            json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "bad-selector", "namespace": "x"},
                "spec": {"selector": "app == ", "types": ["Ingress"]}}),
        );
        server.put_object("networking.k8s.io/v1", "networkpolicies", k8s_policy(70000));
        let rejected = |kind: &str| {
            metrics
                .policy_engine
                .rejected_total
                .with_label_values(&[kind])
                .get()
        };
        eventually("both malformed policies rejected", || async {
            rejected("NetworkPolicy") == 1 && rejected("KubernetesNetworkPolicy") == 1
        })
        .await;
        assert_eq!(
            tables(&namespace),
            committed,
            "a malformed policy changed the ruleset"
        );
        assert_eq!(
            transactions(),
            incremental_before,
            "a malformed policy was committed"
        );
        let still = explain(&socket, "x/a", "x/b").await;
        assert_eq!(
            still.verdict, "deny",
            "the last valid version is no longer in force"
        );
        let rendered = metrics.render();
        assert!(rendered.contains("starling_policy_rejected_total{kind=\"NetworkPolicy\"} 1"));
        // The thread reads the rule counters on its own interval (10 s).
        eventually("the policy counters read", || async {
            metrics.policy_nft.counters_read_seconds.get_sample_count() > 0
        })
        .await;
        assert_eq!(
            metrics
                .policy_nft
                .failures_total
                .with_label_values(&["counters"])
                .get(),
            0
        );

        // Deleting the policy opens x/b again.
        server.delete_object(
            "networking.k8s.io/v1",
            "networkpolicies",
            Some("x"),
            "only-c",
        );
        eventually("x/a -> x/b allowed after the delete", || async move {
            explain(socket_ref, "x/a", "x/b").await.verdict == "allow"
        })
        .await;
        eventually("the policy chain removed", || async {
            !tables(&namespace).contains("pi-")
        })
        .await;
        handle.shutdown().await;
    })
    .unwrap();
}
