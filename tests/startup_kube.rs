//! Start-up against the Kubernetes API test server: node annotations, the default pool, the
//! tunnel address, the nodename file, `NetworkUnavailable`, idempotence and the conflict check.

#[path = "support/kube_api.rs"]
mod kube_api;
mod startup_support;

use serde_json::{json, Value};
use starling::datastore::kube::KubeStore;
use starling::datastore::AnyDatastore;
use starling::startup::{self, StartupError};

use kube_api::KubeApiServer;
use startup_support::{config, FakeHost};

const CALICO: &str = "crd.projectcalico.org/v1";

fn node_object(name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": { "kubernetes.io/hostname": name },
            "annotations": annotations,
        },
        "spec": { "podCIDR": "10.96.0.0/24" },
        "status": {
            "addresses": [ { "type": "InternalIP", "address": "10.0.0.5" } ],
            "conditions": [ { "type": "Ready", "status": "True", "reason": "KubeletReady" } ],
        },
    })
}

async fn start(nodes: &[Value]) -> (KubeApiServer, AnyDatastore) {
    let server = KubeApiServer::start().await;
    for node in nodes {
        server.put_object("v1", "nodes", node.clone());
    }
    let store = AnyDatastore::Kube(KubeStore::new(server.client()));
    (server, store)
}

fn annotation(server: &KubeApiServer, node: &str, key: &str) -> Option<String> {
    server.get_object("v1", "nodes", None, node)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

fn condition(server: &KubeApiServer, node: &str) -> Value {
    let object = server.get_object("v1", "nodes", None, node).unwrap();
    object["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NetworkUnavailable")
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn start_up_registers_the_node_and_is_idempotent() {
    let directory = tempfile::tempdir().unwrap();
    let (server, store) = start(&[node_object("node-a", json!({}))]).await;
    let config = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("IP", "10.0.0.5"),
            ("AS", "64513"),
            ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
            ("CALICO_IPV4POOL_VXLAN", "Always"),
        ],
    );
    let host = FakeHost::with_eth0("10.0.0.5/24");

    let outcome = startup::run_with(&config, &store, &host).await.unwrap();
    assert_eq!(outcome.node_name, "node-a");
    assert_eq!(
        outcome.node.ipv4_address.unwrap().to_string(),
        "10.0.0.5/24"
    );

    // Annotations: the address with the interface's prefix, the AS, the VXLAN tunnel address.
    let get = |key: &str| annotation(&server, "node-a", key);
    assert_eq!(
        get("projectcalico.org/IPv4Address").as_deref(),
        Some("10.0.0.5/24")
    );
    assert_eq!(get("projectcalico.org/ASNumber").as_deref(), Some("64513"));
    let tunnel: std::net::Ipv4Addr = get("projectcalico.org/IPv4VXLANTunnelAddr")
        .expect("VXLAN tunnel address annotation")
        .parse()
        .unwrap();
    assert!("10.244.0.0/16"
        .parse::<ipnet::Ipv4Net>()
        .unwrap()
        .contains(&tunnel));
    assert_eq!(outcome.node.ipv4_vxlan_tunnel_addr, Some(tunnel));
    assert_eq!(get("projectcalico.org/IPv4IPIPTunnelAddr"), None);
    let interfaces: Value =
        serde_json::from_str(&get("projectcalico.org/Interfaces").unwrap()).unwrap();
    assert_eq!(
        interfaces,
        json!([{ "name": "eth0", "addresses": ["10.0.0.5"] }])
    );
    // The Node's spec and labels are untouched by the status write.
    let object = server.get_object("v1", "nodes", None, "node-a").unwrap();
    assert_eq!(object["spec"]["podCIDR"], "10.96.0.0/24");
    assert_eq!(
        object["metadata"]["labels"]["kubernetes.io/hostname"],
        "node-a"
    );

    // The default pool, as an IPPool CRD object.
    let pool = server
        .get_object(CALICO, "ippools", None, "default-ipv4-ippool")
        .expect("default pool created");
    assert_eq!(pool["spec"]["cidr"], "10.244.0.0/16");
    assert_eq!(pool["spec"]["vxlanMode"], "Always");
    assert_eq!(pool["spec"]["ipipMode"], "Never");
    assert_eq!(pool["spec"]["natOutgoing"], true);
    assert_eq!(pool["spec"]["blockSize"], 26);
    assert!(server
        .get_object(CALICO, "bgpconfigurations", None, "default")
        .is_some());
    assert_eq!(
        server
            .get_object(CALICO, "felixconfigurations", None, "default")
            .unwrap()["spec"]["reportingInterval"],
        "0s"
    );

    // IPAM: the handle and an affine block holding the tunnel address.
    assert!(server
        .get_object(CALICO, "ipamhandles", None, "vxlan-tunnel-addr-node-a")
        .is_some());
    let blocks = server.list_objects(CALICO, "ipamblocks", None);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0]["spec"]["affinity"], "host:node-a");
    let block_cidr: ipnet::Ipv4Net = blocks[0]["spec"]["cidr"].as_str().unwrap().parse().unwrap();
    assert!(block_cidr.contains(&tunnel));

    // The nodename file.
    let nodename = directory.path().join("lib/calico/nodename");
    assert_eq!(std::fs::read_to_string(&nodename).unwrap(), "node-a");

    // NetworkUnavailable=False once ready, keeping the kubelet's conditions.
    startup::set_network_unavailable(&store, "node-a", false)
        .await
        .unwrap();
    let up = condition(&server, "node-a");
    assert_eq!(up["status"], "False");
    assert_eq!(up["reason"], "CalicoIsUp");
    assert_eq!(up["message"], "Calico is running on this node");
    let conditions =
        server.get_object("v1", "nodes", None, "node-a").unwrap()["status"]["conditions"].clone();
    assert!(conditions
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready"));

    // A second start-up changes nothing.
    let version_before = server.get_object("v1", "nodes", None, "node-a").unwrap()["metadata"]
        ["resourceVersion"]
        .clone();
    let handles_before = server.list_objects(CALICO, "ipamhandles", None).len();
    let again = startup::run_with(&config, &store, &host).await.unwrap();
    assert_eq!(again, outcome);
    let version_after = server.get_object("v1", "nodes", None, "node-a").unwrap()["metadata"]
        ["resourceVersion"]
        .clone();
    assert_eq!(version_before, version_after, "the Node was rewritten");
    assert_eq!(server.list_objects(CALICO, "ippools", None).len(), 1);
    assert_eq!(server.list_objects(CALICO, "ipamblocks", None).len(), 1);
    assert_eq!(
        server.list_objects(CALICO, "ipamhandles", None).len(),
        handles_before
    );

    // Shutdown.
    startup::set_network_unavailable(&store, "node-a", true)
        .await
        .unwrap();
    let down = condition(&server, "node-a");
    assert_eq!(down["status"], "True");
    assert_eq!(down["reason"], "CalicoIsDown");
    assert_eq!(down["message"], "Calico is shutting down on this node");
}

#[tokio::test]
async fn operator_fields_survive_and_ipip_pool_gives_an_ipip_address() {
    let directory = tempfile::tempdir().unwrap();
    let (server, store) = start(&[node_object(
        "node-a",
        json!({
            "projectcalico.org/ASNumber": "65001",
            "projectcalico.org/RouteReflectorClusterID": "224.0.0.1",
            "projectcalico.org/labels": "{\"rack\":\"r1\"}",
        }),
    )])
    .await;
    let config = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("IP", "autodetect"),
            ("IP_AUTODETECTION_METHOD", "kubernetes-internal-ip"),
            ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
            ("CALICO_IPV4POOL_IPIP", "Always"),
        ],
    );
    let outcome = startup::run_with(&config, &store, &FakeHost::with_eth0("10.0.0.5/24"))
        .await
        .unwrap();
    let get = |key: &str| annotation(&server, "node-a", key);
    assert_eq!(
        get("projectcalico.org/IPv4Address").as_deref(),
        Some("10.0.0.5/24")
    );
    // AS unset in the environment: the node's own AS stays; so do the RR cluster ID and labels.
    assert_eq!(get("projectcalico.org/ASNumber").as_deref(), Some("65001"));
    assert_eq!(
        get("projectcalico.org/RouteReflectorClusterID").as_deref(),
        Some("224.0.0.1")
    );
    assert_eq!(
        get("projectcalico.org/labels").as_deref(),
        Some("{\"rack\":\"r1\"}")
    );
    assert!(get("projectcalico.org/IPv4IPIPTunnelAddr").is_some());
    assert!(outcome.node.ipv4_ipip_tunnel_addr.is_some());
    assert_eq!(outcome.node.labels["rack"], "r1");
    assert!(server
        .get_object(CALICO, "ipamhandles", None, "ipip-tunnel-addr-node-a")
        .is_some());
}

#[tokio::test]
async fn address_conflict_names_both_nodes_unless_disabled() {
    let directory = tempfile::tempdir().unwrap();
    let (server, store) = start(&[
        node_object("node-a", json!({})),
        node_object(
            "node-b",
            json!({ "projectcalico.org/IPv4Address": "10.0.0.5/24" }),
        ),
    ])
    .await;
    let host = FakeHost::with_eth0("10.0.0.5/24");
    let pairs = [
        ("NODENAME", "node-a"),
        ("IP", "10.0.0.5"),
        ("NO_DEFAULT_POOLS", "true"),
    ];
    let error = startup::run_with(&config(directory.path(), &pairs), &store, &host)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StartupError::AddressConflict { other_node, .. } if other_node == "node-b"),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("node-a") && message.contains("node-b") && message.contains("10.0.0.5"),
        "{message}"
    );
    // Nothing was written for node-a, and no nodename file appeared.
    assert_eq!(
        annotation(&server, "node-a", "projectcalico.org/IPv4Address"),
        None
    );
    assert!(!directory.path().join("lib/calico/nodename").exists());

    let mut disabled = pairs.to_vec();
    disabled.push(("DISABLE_NODE_IP_CHECK", "true"));
    startup::run_with(&config(directory.path(), &disabled), &store, &host)
        .await
        .unwrap();
    assert_eq!(
        annotation(&server, "node-a", "projectcalico.org/IPv4Address").as_deref(),
        Some("10.0.0.5/24")
    );
}

#[tokio::test]
async fn missing_kubernetes_node_is_a_clear_error() {
    let directory = tempfile::tempdir().unwrap();
    let (_server, store) = start(&[]).await;
    let config = config(
        directory.path(),
        &[("NODENAME", "ghost"), ("IP", "10.0.0.5")],
    );
    let error = startup::run_with(&config, &store, &FakeHost::with_eth0("10.0.0.5/24"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StartupError::KubernetesNodeMissing { node } if node == "ghost"),
        "{error:?}"
    );
}

#[tokio::test]
async fn wait_for_datastore_returns_once_the_server_answers() {
    let directory = tempfile::tempdir().unwrap();
    let (server, store) = start(&[node_object("node-a", json!({}))]).await;
    server.set_unavailable(true);
    let config = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("IP", "10.0.0.5"),
            ("WAIT_FOR_DATASTORE", "true"),
            ("NO_DEFAULT_POOLS", "true"),
        ],
    );
    let host = FakeHost::with_eth0("10.0.0.5/24");
    let run = startup::run_with(&config, &store, &host);
    tokio::pin!(run);
    // Start-up must still be waiting after several failed polls.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        tokio::select! {
            result = &mut run => panic!("start-up finished while the datastore was down: {result:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
        if server.request_count("get") >= 3 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no polls seen");
    }
    server.set_unavailable(false);
    run.await.unwrap();
    assert_eq!(
        annotation(&server, "node-a", "projectcalico.org/IPv4Address").as_deref(),
        Some("10.0.0.5/24")
    );
}

#[tokio::test]
async fn automatic_pool_cidr_comes_from_kubeadm() {
    let directory = tempfile::tempdir().unwrap();
    let (server, store) = start(&[node_object("node-a", json!({}))]).await;
    server.put_object(
        "v1",
        "configmaps",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "kubeadm-config", "namespace": "kube-system" },
            "data": { "ClusterConfiguration":
                "kind: ClusterConfiguration\nnetworking:\n  podSubnet: 10.85.0.0/16\n" },
        }),
    );
    let config = config(
        directory.path(),
        &[("NODENAME", "node-a"), ("IP", "10.0.0.5")],
    );
    startup::run_with(&config, &store, &FakeHost::with_eth0("10.0.0.5/24"))
        .await
        .unwrap();
    let pool = server
        .get_object(CALICO, "ippools", None, "default-ipv4-ippool")
        .unwrap();
    assert_eq!(pool["spec"]["cidr"], "10.85.0.0/16");
    // No encapsulation asked for: no tunnel address, and no IPAM objects at all.
    assert!(server.list_objects(CALICO, "ipamblocks", None).is_empty());
    assert_eq!(
        annotation(&server, "node-a", "projectcalico.org/IPv4VXLANTunnelAddr"),
        None
    );
}
