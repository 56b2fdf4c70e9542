//! The cluster of tests/policy_datastores.rs: namespaces, service accounts, pods (running,
//! and ones that are no endpoint), Kubernetes and Calico policies, in their Kubernetes form
//! (`Datastores` writes the etcd form of each).

use serde_json::{json, Value};

use super::*;

fn pod(
    namespace: &'static str,
    name: &'static str,
    node: &'static str,
    networks: &[&'static str],
    own: &[(&str, &str)],
    account: &'static str,
    ports: Vec<Port>,
) -> Pod {
    Pod {
        namespace,
        name,
        node,
        networks: networks.to_vec(),
        labels: labels(own),
        account: Some(account),
        ports,
        sidecar_ports: Vec::new(),
        addresses: Addresses::Both,
    }
}

/// The pods with endpoints; the tests name them by index: 0 shop/web-1, 1 shop/db-1,
/// 2 shop/cache-1, 3 tools/probe-1, 4 shop/web-2 (remote), 5 tools/dns-1 (remote),
/// 6 tools/legacy-1.
pub fn pods() -> Vec<Pod> {
    let tcp = |name, number| Port(Some(name), Some("TCP"), number);
    let web = [("app", "web"), ("version", "v1")];
    vec![
        Pod {
            sidecar_ports: vec![tcp("admin", 9901)],
            ..pod(
                "shop",
                "web-1",
                LOCAL_NODE,
                &["10.65.0.1/32"],
                &web,
                "frontend",
                vec![
                    tcp("http", 8080),
                    // Protocol left out: TCP on both paths.
                    Port(Some("metrics"), None, 9090),
                    // Unnamed: not recorded.
                    Port(None, Some("TCP"), 22),
                ],
            )
        },
        Pod {
            addresses: Addresses::Status,
            ..pod(
                "shop",
                "db-1",
                LOCAL_NODE,
                &["10.65.0.2/32"],
                &[("app", "db")],
                "backend",
                vec![tcp("sql", 5432)],
            )
        },
        pod(
            "shop",
            "cache-1",
            LOCAL_NODE,
            &["10.65.0.3/32"],
            &[("app", "cache")],
            "backend",
            vec![tcp("cache", 6379)],
        ),
        pod(
            "tools",
            "probe-1",
            LOCAL_NODE,
            &["10.65.0.4/32", "fd00:65::4/128"],
            &[("app", "probe")],
            "monitor",
            vec![tcp("metrics", 9100)],
        ),
        pod(
            "shop",
            "web-2",
            REMOTE_NODE,
            &["10.65.1.1/32"],
            &[("app", "web"), ("version", "v2")],
            "frontend",
            vec![tcp("http", 8080), tcp("metrics", 9090)],
        ),
        Pod {
            addresses: Addresses::Status,
            ..pod(
                "tools",
                "dns-1",
                REMOTE_NODE,
                &["10.65.1.2/32"],
                &[("app", "dns")],
                "default",
                vec![Port(Some("dns"), Some("UDP"), 53), tcp("dns-tcp", 53)],
            )
        },
        // No service account (kns. profile only) and only status.podIP.
        Pod {
            account: None,
            addresses: Addresses::PodIp,
            ..pod(
                "tools",
                "legacy-1",
                LOCAL_NODE,
                &["10.65.0.5/32"],
                &[("app", "legacy")],
                "",
                Vec::new(),
            )
        },
    ]
}

pub fn kubernetes_policy(namespace: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec})
}

pub fn db_from_web(extra_peers: Vec<Value>, extra_ports: Vec<Value>) -> Value {
    let mut from = vec![json!({"podSelector": {"matchLabels": {"app": "web"}}})];
    from.extend(extra_peers);
    let mut ports = vec![json!({"port": "sql"})];
    ports.extend(extra_ports);
    // No policyTypes: Ingress only.
    kubernetes_policy(
        "shop",
        "db-from-web",
        json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": from, "ports": ports}],
        }),
    )
}

pub fn kubernetes_policies() -> Vec<Value> {
    vec![
        db_from_web(Vec::new(), Vec::new()),
        kubernetes_policy(
            "shop",
            "web-ingress",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    // Both selectors in one peer (AND), a named port.
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "red"}},
                               "podSelector": {"matchLabels": {"app": "probe"}}}],
                     "ports": [{"port": "metrics"}, {"port": "admin"}]},
                    {"from": [{"namespaceSelector": {"matchExpressions":
                        [{"key": "env", "operator": "In", "values": ["prod", "staging"]}]}}],
                     "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8090}]},
                    {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                     "ports": [{"port": 443}, {"port": 8443}]},
                ],
            }),
        ),
        // Egress rules and no policyTypes: Ingress and Egress.
        kubernetes_policy(
            "shop",
            "web-egress",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "egress": [
                    {"to": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 5432}]},
                    {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "dns"}}}],
                     "ports": [{"protocol": "UDP", "port": "dns"}, {"protocol": "TCP", "port": "dns-tcp"}]},
                ],
            }),
        ),
        kubernetes_policy(
            "shop",
            "cache",
            json!({
                "podSelector": {"matchLabels": {"app": "cache"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8",
                    "except": ["10.65.0.0/16", "10.96.0.0/12"]}}]}],
            }),
        ),
        // Nothing but a selector: an ingress default deny for the namespace.
        kubernetes_policy("tools", "deny-ingress", json!({"podSelector": {}})),
    ]
}

/// Order 100: off the Kubernetes policies' 1000 (see `as_kube_id`).
pub fn ops_to_db() -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
    "metadata": {"name": "ops-to-db", "namespace": "shop"},
    "spec": {"order": 100, "selector": "app == 'db'", "types": ["Ingress"], "ingress": [
        // Namespace and service-account labels reach the endpoints through the profiles.
        {"action": "Allow", "protocol": "TCP",
         "source": {"namespaceSelector": "team == 'red'",
                    "serviceAccounts": {"selector": "role == 'ops'"}},
         "destination": {"ports": [5432]}},
        {"action": "Deny", "protocol": "TCP", "destination": {"notPorts": [5432]}},
    ]}})
}

pub fn security_tier(default_action: &str) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
        "metadata": {"name": "security"},
        "spec": {"order": 100, "defaultAction": default_action}})
}

pub fn pass_known() -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
        "metadata": {"name": "security.pass-known"},
        "spec": {"tier": "security", "order": 10, "selector": "all()",
            "namespaceSelector": "team in {'blue', 'red'}", "types": ["Ingress", "Egress"],
            "ingress": [{"action": "Deny", "source": {"nets": ["198.51.100.0/24"]}},
                        {"action": "Pass"}],
            "egress": [{"action": "Deny", "protocol": "TCP",
                        "destination": {"nets": ["203.0.113.0/24"], "ports": [25]}},
                       {"action": "Pass"}]}})
}

pub async fn write_cluster(stores: &Datastores, pods: &[Pod]) {
    stores
        .namespace("shop", &labels(&[("team", "blue"), ("env", "prod")]))
        .await;
    stores.namespace("tools", &labels(&[("team", "red")])).await;
    for (namespace, account, own) in [
        ("shop", "default", labels(&[])),
        ("shop", "frontend", labels(&[("tier", "web")])),
        ("shop", "backend", labels(&[])),
        ("tools", "default", labels(&[])),
        ("tools", "monitor", labels(&[("role", "ops")])),
    ] {
        stores.service_account(namespace, account, &own).await;
    }
    for pod in pods {
        stores.pod(pod).await;
    }
    // Pods that are no endpoint: never wired by the CNI plugin (host network, not scheduled),
    // or unwired by its DEL (finished; being deleted, podIP annotation cleared) while the API
    // still lists their addresses. In etcd they have no WorkloadEndpoint.
    let unwired = |name: &str, spec: Value, metadata: Value, status: Value| {
        let mut object = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"nodeName": LOCAL_NODE, "serviceAccountName": "frontend",
                "containers": [{"name": "main", "image": "registry.example/app:1"}]},
            "status": status});
        for (part, extra) in [("spec", spec), ("metadata", metadata)] {
            if let (Some(object), Some(extra)) = (object[part].as_object_mut(), extra.as_object()) {
                object.extend(extra.clone());
            }
        }
        stores.pod_without_endpoint(object);
    };
    let ips = |ip: &str| json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]});
    unwired(
        "node-agent",
        json!({"hostNetwork": true}),
        json!({}),
        ips("192.0.2.10"),
    );
    unwired(
        "pending-1",
        json!({"nodeName": null}),
        json!({}),
        json!({"phase": "Pending"}),
    );
    unwired(
        "job-1",
        json!({}),
        json!({}),
        json!({"phase": "Succeeded", "podIP": "10.65.0.9", "podIPs": [{"ip": "10.65.0.9"}]}),
    );
    unwired(
        "leaving-1",
        json!({}),
        json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "annotations":
            {"cni.projectcalico.org/podIP": "", "cni.projectcalico.org/podIPs": ""}}),
        ips("10.65.0.10"),
    );
    for policy in kubernetes_policies() {
        stores.kubernetes_policy(&policy).await;
    }
    stores.calico(&ops_to_db()).await;
    stores.calico(&security_tier("Deny")).await;
    stores.calico(&pass_known()).await;
}
