//! The daemon's watchers and computation against a real etcd (Calico's etcdv3 layout).

#[path = "ipam_support/etcd.rs"]
mod etcd_support;

#[path = "daemon_support/mod.rs"]
mod daemon_support;
#[path = "support/kube_api.rs"]
mod kube_api;
#[path = "support/requirements.rs"]
mod requirements;
use etcd_support::ETCD_BINARY;
use requirements::{require_program, require_programs};

use daemon_support::*;
use etcd_support::EtcdServer;
use ipnet::IpNet;
use serde_json::json;
use starling::datastore::etcd::EtcdStore;
use starling::datastore::{AnyDatastore, Datastore};
use starling::resources::{BGPConfiguration, BGPPeer, IPPool};
use starling_calc::spec::RouteClass;
use starling_ipam::block::Block;
use starling_model::wire::bgpconfig::ServiceCidr;
use starling_model::wire::{BGPConfigurationSpec, BGPPeerSpec, IPPoolSpec};

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

async fn put_node(store: &EtcdStore, name: &str, address: &str, vxlan_tunnel: &str) {
    let node = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": { "name": name },
        "spec": {
            "bgp": { "ipv4Address": address },
            "ipv4VXLANTunnelAddr": vxlan_tunnel,
        },
    });
    store
        .put_raw(
            &format!("/calico/resources/v3/projectcalico.org/nodes/{name}"),
            node.to_string().as_bytes(),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_pool_block_and_peer_change_the_desired_state() {
    if !require_program(
        "etcd_pool_block_and_peer_change_the_desired_state",
        ETCD_BINARY,
    ) {
        return;
    }
    let (_server, etcd) = EtcdServer::start().await;
    put_node(&etcd, "node-a", "10.0.0.1/24", "10.244.0.1").await;
    let store = AnyDatastore::Etcd(etcd.clone());
    let mut local = registered("node-a", "10.0.0.1/24");
    local.ipv4_vxlan_tunnel_addr = Some("10.244.0.1".parse().unwrap());
    let daemon = start_daemon(store.clone(), &local, "bird", &[]).await;
    wait_computed(&daemon, "initial sync", |c| {
        c.dataplane.datastore_in_sync && c.dataplane.nodes.len() == 1
    })
    .await;

    store
        .create(&IPPool::new(
            "pool-a",
            IPPoolSpec {
                cidr: "10.244.0.0/16".into(),
                vxlan_mode: Some("Always".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    // An invalid pool is ignored and counted, never half-applied.
    store
        .create(&IPPool::new(
            "broken",
            IPPoolSpec {
                cidr: "10.99.0.0/16".into(),
                block_size: Some(40),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    put_node(&etcd, "node-b", "10.0.0.2/24", "10.244.1.1").await;
    let block = Block::new(net("10.244.1.0/26"), Some("host:node-b".into()), None, 0).unwrap();
    store.create(&block).await.unwrap();
    let computed = wait_computed(&daemon, "a VXLAN route to node-b's block", |c| {
        c.desired.routes.contains_key(&net("10.244.1.0/26"))
    })
    .await;
    assert_eq!(
        computed.desired.routes[&net("10.244.1.0/26")].class,
        RouteClass::RemoteBlockVxlan,
        "VXLAN pools are routed from IPAM even with the bird backend"
    );
    assert_eq!(
        computed.dataplane.pools.len(),
        1,
        "the broken pool is absent"
    );
    assert!(
        daemon
            .handle
            .metrics
            .resources_rejected_total
            .with_label_values(&["IPPool"])
            .get()
            >= 1
    );
    assert!(computed
        .speaker
        .as_ref()
        .is_some_and(|s| s.sessions.contains_key("Mesh_10_0_0_2")));

    store
        .create(&BGPPeer::new(
            "tor",
            BGPPeerSpec {
                peer_ip: Some("10.0.0.9".into()),
                as_number: Some("64513".parse().unwrap()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    wait_computed(&daemon, "a session to the BGPPeer", |c| {
        c.speaker
            .as_ref()
            .is_some_and(|s| s.sessions.contains_key("Global_10_0_0_9"))
    })
    .await;

    // Deleting the block removes its route.
    let stored = store.get::<Block>(&net("10.244.1.0/26")).await.unwrap();
    store
        .delete::<Block>(&net("10.244.1.0/26"), &stored.revision)
        .await
        .unwrap();
    wait_computed(&daemon, "the route gone with its block", |c| {
        !c.desired.routes.contains_key(&net("10.244.1.0/26"))
    })
    .await;
    daemon.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_a_compacted_revision_reports_the_gap() {
    if !require_programs(
        "watch_from_a_compacted_revision_reports_the_gap",
        &[ETCD_BINARY, "etcdctl"],
    ) {
        return;
    }
    let (server, etcd) = EtcdServer::start().await;
    let prefix = "/calico/resources/v3/projectcalico.org/nodes/";
    put_node(&etcd, "node-a", "10.0.0.1/24", "10.244.0.1").await;
    let (items, revision) = etcd.list_raw_at(prefix).await.unwrap();
    assert_eq!(items.len(), 1);

    // Without compaction the watch continues exactly after the list.
    let mut events = etcd.watch_raw_from(prefix, revision + 1).await.unwrap();
    put_node(&etcd, "node-b", "10.0.0.2/24", "10.244.1.1").await;
    let batch = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut events))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&batch[..], [starling::datastore::etcd::RawEvent::Put { key, .. }] if key.ends_with("node-b"))
    );

    // Compact past the listed revision: a watch from it must fail so the caller relists.
    put_node(&etcd, "node-c", "10.0.0.3/24", "10.244.2.1").await;
    let (_, latest) = etcd.list_raw_at(prefix).await.unwrap();
    let compacted = std::process::Command::new("etcdctl")
        .args([
            "--endpoints",
            &server.endpoint,
            "compact",
            &latest.to_string(),
        ])
        .output()
        .unwrap_or_else(|error| panic!("running etcdctl compact: {error}"));
    assert!(compacted.status.success(), "{compacted:?}");
    let mut events = etcd.watch_raw_from(prefix, revision + 1).await.unwrap();
    let first = tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut events))
        .await
        .unwrap()
        .unwrap();
    let error = first.unwrap_err();
    assert!(error.to_string().contains("compacted"), "{error}");
}

/// With etcd as the datastore, Services and EndpointSlices still come from Kubernetes (as in
/// calico-node): from the API named by `KUBECONFIG`, while the BGPConfiguration is in etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_datastore_takes_services_from_the_kubeconfig_api() {
    if !require_program(
        "etcd_datastore_takes_services_from_the_kubeconfig_api",
        ETCD_BINARY,
    ) {
        return;
    }
    let (etcd_server, etcd) = EtcdServer::start().await;
    let kube = kube_api::KubeApiServer::start().await;
    let kubeconfig = kube.write_kubeconfig();
    put_node(&etcd, "node-a", "10.0.0.1/24", "10.244.0.1").await;
    let store = AnyDatastore::Etcd(etcd.clone());
    store
        .create(&BGPConfiguration::new(
            "default",
            BGPConfigurationSpec {
                service_cluster_ips: Some(vec![ServiceCidr {
                    cidr: "10.96.0.0/16".into(),
                }]),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    kube.put_object(
        "v1",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"namespace": "default", "name": "web"},
               "spec": {"clusterIP": "10.96.0.10", "internalTrafficPolicy": "Local"}}),
    );
    let slice = |node: &str| {
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"namespace": "default", "name": "web-x1",
                            "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.244.0.5"], "nodeName": node}]})
    };
    kube.put_object("discovery.k8s.io/v1", "endpointslices", slice("node-a"));

    let local = registered("node-a", "10.0.0.1/24");
    let kubeconfig_path = kubeconfig.path().display().to_string();
    let daemon = start_daemon(
        store,
        &local,
        "bird",
        &[
            ("DATASTORE_TYPE", "etcdv3"),
            ("ETCD_ENDPOINTS", &etcd_server.endpoint),
            ("KUBECONFIG", &kubeconfig_path),
        ],
    )
    .await;
    let metrics = daemon.handle.metrics.clone();
    let gauge = move |source: &str| metrics.service_routes.with_label_values(&[source]).get();
    let advertised = gauge.clone();
    eventually("the range and the local Service's cluster IP", move || {
        let gauge = advertised.clone();
        async move { gauge("ranges") == 1 && gauge("services") == 1 }
    })
    .await;
    assert!(
        kube.request_count("watch") >= 2,
        "Services and EndpointSlices are watched"
    );

    // The endpoint leaves node-a: its cluster IP is no longer advertised here.
    kube.put_object("discovery.k8s.io/v1", "endpointslices", slice("node-b"));
    let withdrawn = gauge.clone();
    eventually("the cluster IP withdrawn", move || {
        let gauge = withdrawn.clone();
        async move { gauge("services") == 0 }
    })
    .await;
    assert_eq!(gauge("ranges"), 1);
    daemon.handle.shutdown().await;
}
