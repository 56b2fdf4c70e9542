//! Start-up against a real etcd (the Calico Node resource, pools, IPAM keys) and against the
//! in-memory store (NO_DEFAULT_POOLS, autodetection end to end over a fake host, AS).

#[path = "ipam_support/etcd.rs"]
mod etcd;
#[path = "support/requirements.rs"]
mod requirements;
mod startup_support;
use etcd::ETCD_BINARY;
use requirements::require_program;

use serde_json::{json, Value};
use starling::datastore::memory::MemoryStore;
use starling::datastore::{AnyDatastore, Datastore};
use starling::startup::node_store::NodeRecord;
use starling::startup::{self, StartupError};

use etcd::EtcdServer;
use startup_support::{config, FakeHost};

const NODE_KEY: &str = "/calico/resources/v3/projectcalico.org/nodes/node-a";
const POOL_KEY: &str = "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool";

async fn raw(store: &starling::datastore::etcd::EtcdStore, key: &str) -> Option<Value> {
    store
        .get_raw(key)
        .await
        .unwrap()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn start_up_against_etcd_registers_and_is_idempotent() {
    if !require_program(
        "start_up_against_etcd_registers_and_is_idempotent",
        ETCD_BINARY,
    ) {
        return;
    }
    let (server, etcd) = EtcdServer::start().await;
    // An operator-written node: labels, RR cluster ID and a field Starling does not model.
    let existing = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": { "name": "node-a", "labels": { "rack": "r1" }, "uid": "u-1" },
        "spec": {
            "bgp": { "routeReflectorClusterID": "224.0.0.1" },
            "orchRefs": [ { "nodeName": "node-a", "orchestrator": "k8s" } ],
            "futureField": { "kept": true },
        },
    });
    etcd.put_raw(NODE_KEY, existing.to_string().as_bytes())
        .await
        .unwrap();
    let store = AnyDatastore::Etcd(etcd.clone());
    let directory = tempfile::tempdir().unwrap();
    let config = config(
        directory.path(),
        &[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", server.endpoint.as_str()),
            ("NODENAME", "node-a"),
            ("IP", "10.0.0.5"),
            ("AS", "64513"),
            ("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"),
            ("CALICO_IPV4POOL_VXLAN", "CrossSubnet"),
        ],
    );
    let host = FakeHost::with_eth0("10.0.0.5/24");
    let outcome = startup::run_with(&config, &store, &host).await.unwrap();

    let node = raw(&etcd, NODE_KEY).await.unwrap();
    let spec = &node["spec"];
    assert_eq!(spec["bgp"]["ipv4Address"], "10.0.0.5/24");
    assert_eq!(spec["bgp"]["asNumber"], 64513);
    assert_eq!(spec["bgp"]["routeReflectorClusterID"], "224.0.0.1");
    assert_eq!(spec["futureField"], json!({ "kept": true }));
    assert_eq!(spec["orchRefs"][0]["nodeName"], "node-a");
    assert_eq!(node["metadata"]["labels"]["rack"], "r1");
    assert_eq!(node["metadata"]["uid"], "u-1");
    assert_eq!(
        spec["interfaces"],
        json!([{ "name": "eth0", "addresses": ["10.0.0.5"] }])
    );
    let tunnel = spec["ipv4VXLANTunnelAddr"].as_str().expect("VXLAN address");
    assert_eq!(
        outcome.node.ipv4_vxlan_tunnel_addr.unwrap().to_string(),
        tunnel
    );

    let pool = raw(&etcd, POOL_KEY).await.expect("default pool");
    assert_eq!(pool["kind"], "IPPool");
    assert_eq!(pool["spec"]["cidr"], "10.244.0.0/16");
    assert_eq!(pool["spec"]["vxlanMode"], "CrossSubnet");
    assert!(pool["metadata"]["uid"].is_string());
    assert!(raw(
        &etcd,
        "/calico/resources/v3/projectcalico.org/felixconfigurations/node.node-a"
    )
    .await
    .is_some());
    let handle = raw(&etcd, "/calico/ipam/v2/handle/vxlan-tunnel-addr-node-a")
        .await
        .expect("tunnel handle");
    assert_eq!(handle["block"].as_object().unwrap().len(), 1);
    let affinities = etcd
        .list_raw("/calico/ipam/v2/host/node-a/ipv4/block/")
        .await
        .unwrap();
    assert_eq!(affinities.len(), 1);
    assert_eq!(
        std::fs::read_to_string(directory.path().join("lib/calico/nodename")).unwrap(),
        "node-a"
    );
    // etcd has no node conditions: a no-op.
    startup::set_network_unavailable(&store, "node-a", false)
        .await
        .unwrap();

    // Idempotent: the second run rewrites nothing (same bytes, same node revision).
    let node_revision = || async {
        store
            .get::<NodeRecord>(&"node-a".to_string())
            .await
            .unwrap()
            .revision
    };
    let revision_before = node_revision().await;
    let before = etcd.list_raw("/calico/").await.unwrap();
    let again = startup::run_with(&config, &store, &host).await.unwrap();
    assert_eq!(again, outcome);
    assert_eq!(etcd.list_raw("/calico/").await.unwrap(), before);
    assert_eq!(node_revision().await, revision_before);
}

fn memory() -> (MemoryStore, AnyDatastore) {
    let memory = MemoryStore::new();
    (memory.clone(), AnyDatastore::Memory(memory))
}

#[tokio::test]
async fn no_default_pools_creates_no_pool_and_no_tunnel_address() {
    let (memory, store) = memory();
    let directory = tempfile::tempdir().unwrap();
    let config = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("IP", "10.0.0.5/24"),
            ("NO_DEFAULT_POOLS", "true"),
        ],
    );
    let outcome = startup::run_with(&config, &store, &FakeHost::with_eth0("10.0.0.5/24"))
        .await
        .unwrap();
    assert!(memory
        .keys()
        .iter()
        .all(|key| !key.contains("/ippools/") && !key.starts_with("/calico/ipam/")));
    assert_eq!(outcome.node.ipv4_vxlan_tunnel_addr, None);
    assert_eq!(outcome.node.ipv4_ipip_tunnel_addr, None);
    assert!(memory.get_raw(NODE_KEY).is_some());
}

#[tokio::test]
async fn autodetection_runs_over_the_host_interfaces() {
    let (memory, store) = memory();
    let directory = tempfile::tempdir().unwrap();
    let mut host = FakeHost::with_eth0("10.0.0.5/24");
    host.interfaces.push(starling::startup::HostInterface {
        name: "eth1".into(),
        index: 3,
        up: true,
        addresses: vec!["192.0.2.10/25".parse().unwrap()],
    });
    // IP unset and no address yet: first-found picks the highest-index interface.
    let config_first = config(
        directory.path(),
        &[("NODENAME", "node-a"), ("NO_DEFAULT_POOLS", "true")],
    );
    let outcome = startup::run_with(&config_first, &store, &host)
        .await
        .unwrap();
    assert_eq!(
        outcome.node.ipv4_address.unwrap().to_string(),
        "192.0.2.10/25"
    );
    // IP unset with an address already registered: kept, even when another method would differ.
    host.reach_source = Some("10.0.0.5".parse().unwrap());
    let config_reach = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("NO_DEFAULT_POOLS", "true"),
            ("IP_AUTODETECTION_METHOD", "can-reach=198.51.100.1"),
        ],
    );
    let kept = startup::run_with(&config_reach, &store, &host)
        .await
        .unwrap();
    assert_eq!(kept.node.ipv4_address, outcome.node.ipv4_address);
    // IP=autodetect re-detects on every start.
    let config_redetect = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("IP", "autodetect"),
            ("NO_DEFAULT_POOLS", "true"),
            ("IP_AUTODETECTION_METHOD", "can-reach=198.51.100.1"),
        ],
    );
    let moved = startup::run_with(&config_redetect, &store, &host)
        .await
        .unwrap();
    assert_eq!(moved.node.ipv4_address.unwrap().to_string(), "10.0.0.5/24");
    let stored: Value = serde_json::from_slice(&memory.get_raw(NODE_KEY).unwrap()).unwrap();
    assert_eq!(stored["spec"]["bgp"]["ipv4Address"], "10.0.0.5/24");
}

#[tokio::test]
async fn failed_autodetection_without_an_address_is_fatal() {
    let (_memory, store) = memory();
    let directory = tempfile::tempdir().unwrap();
    let config = config(
        directory.path(),
        &[
            ("NODENAME", "node-a"),
            ("NO_DEFAULT_POOLS", "true"),
            ("IP_AUTODETECTION_METHOD", "interface=wlan0"),
        ],
    );
    let error = startup::run_with(&config, &store, &FakeHost::with_eth0("10.0.0.5/24"))
        .await
        .unwrap_err();
    assert!(matches!(error, StartupError::Autodetect(_)), "{error:?}");
    assert!(error.to_string().contains("interface=wlan0"), "{error}");
}

#[tokio::test]
async fn conflict_on_etcd_layout_and_networking_none_skips_addresses() {
    let (memory, store) = memory();
    let other = json!({
        "apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": { "name": "node-b" },
        "spec": { "bgp": { "ipv4Address": "10.0.0.5/24" } },
    });
    memory.put_raw(
        "/calico/resources/v3/projectcalico.org/nodes/node-b",
        other.to_string().as_bytes(),
    );
    let directory = tempfile::tempdir().unwrap();
    let pairs = [
        ("NODENAME", "node-a"),
        ("IP", "10.0.0.5"),
        ("NO_DEFAULT_POOLS", "true"),
    ];
    let error = startup::run_with(
        &config(directory.path(), &pairs),
        &store,
        &FakeHost::with_eth0("10.0.0.5/24"),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("node-b"), "{error}");
    assert!(memory.get_raw(NODE_KEY).is_none());

    let mut policy_only = pairs.to_vec();
    policy_only.push(("CALICO_NETWORKING_BACKEND", "none"));
    let outcome = startup::run_with(
        &config(directory.path(), &policy_only),
        &store,
        &FakeHost::with_eth0("10.0.0.5/24"),
    )
    .await
    .unwrap();
    assert_eq!(outcome.node.ipv4_address, None);
}
