//! CNI GC on the daemon side, against the real IPAM service: on the Kubernetes API test server
//! (two nodes' services sharing one datastore, two networks) and on etcd (WorkloadEndpoints).
//! Stale handles of the network on this node are released; valid ones, young ones, other
//! networks' and other nodes' stay; a recreated pod keeps its veth and its endpoint.

mod ipam_support;
#[path = "support/kube_api.rs"]
mod kube_api;
#[path = "support/requirements.rs"]
mod requirements;

use std::sync::Arc;

use chrono::Utc;
use ipnet::IpNet;
use kube_api::KubeApiServer;
use serde_json::{json, Value};
use starling::cni::config::{FeatureControl, IpamSection};
use starling::cni::ipam_protocol::{
    AssignRequest, CheckRequest, EndpointAddRequest, GcRequest, IpamRequest, IpamResponse,
    ReleasedHandle, StalePod,
};
use starling::datastore::etcd::EtcdStore;
use starling::datastore::kube::KubeStore;
use starling::datastore::{endpoints, AnyDatastore, Datastore};
use starling::ipam::service::{IpamService, ANNOTATION_POD_IP};
use starling::metrics::Metrics;
use starling::resources::{FromResource, IPPool};
use starling_calc::spec::veth_name;
use starling_ipam::check;
use starling_model::wire::IPPoolSpec;
use starling_model::{CalicoNode, IpPool};

use ipam_support::etcd::{EtcdServer, ETCD_BINARY};
use requirements::require_program;

const NETWORK: &str = "k8s-pod-network";

fn service(store: &AnyDatastore, node: &str, kube: Option<kube::Client>) -> IpamService {
    let calico_node = CalicoNode {
        name: node.into(),
        ..CalicoNode::default()
    };
    IpamService::new(
        store.clone(),
        node,
        kube,
        Arc::new(move || calico_node.clone()),
        Metrics::new(),
    )
}

async fn assign(service: &IpamService, network: &str, container: &str, pod: &str) -> IpNet {
    assign_exactly(service, network, container, pod, None).await
}

async fn assign_exactly(
    service: &IpamService,
    network: &str,
    container: &str,
    pod: &str,
    address: Option<IpNet>,
) -> IpNet {
    let response = service
        .handle(IpamRequest::Assign(AssignRequest {
            handle: format!("{network}.{container}"),
            network_name: network.into(),
            container_id: container.into(),
            pod_namespace: "default".into(),
            pod_name: pod.into(),
            interface_name: "eth0".into(),
            ipam: IpamSection::default(),
            feature_control: FeatureControl::default(),
            requested_addresses: address.iter().map(IpNet::addr).collect(),
            pod_annotations: Default::default(),
        }))
        .await;
    match response {
        IpamResponse::Assigned { addresses, .. } => addresses[0],
        other => panic!("assigning {network}.{container} failed: {other:?}"),
    }
}

async fn gc(service: &IpamService, valid: &[&str], grace_seconds: u64) -> IpamResponse {
    service
        .handle(IpamRequest::GarbageCollect(GcRequest {
            network_name: NETWORK.into(),
            valid_handles: valid.iter().map(|c| format!("{NETWORK}.{c}")).collect(),
            grace_seconds,
        }))
        .await
}

/// The addresses a handle holds, through the service's own CHECK.
async fn holds(service: &IpamService, handle: &str, addresses: &[IpNet]) -> bool {
    let response = service
        .handle(IpamRequest::Check(CheckRequest {
            handle: handle.into(),
            addresses: addresses.to_vec(),
        }))
        .await;
    matches!(response, IpamResponse::Checked)
}

async fn check_problems(store: &AnyDatastore) -> Vec<String> {
    let pools: Vec<IpPool> = store
        .list::<IPPool>()
        .await
        .unwrap()
        .iter()
        .filter_map(|stored| IpPool::from_resource(&stored.value).ok())
        .collect();
    check::check(store, &pools, None, Utc::now())
        .await
        .unwrap()
        .problems
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": "default", "annotations": {}},
           "spec": {"containers": [{"name": "c", "image": "x"}]}})
}

fn sorted_handles(released: &[ReleasedHandle]) -> Vec<String> {
    let mut handles: Vec<String> = released.iter().map(|r| r.handle.clone()).collect();
    handles.sort();
    handles
}

#[tokio::test]
async fn gc_releases_only_this_nodes_stale_handles_of_the_network() {
    let server = KubeApiServer::start().await;
    let client = server.client();
    let store = AnyDatastore::Kube(KubeStore::new(client.clone()));
    server.put_object(
        "crd.projectcalico.org/v1",
        "ippools",
        json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
               "metadata": {"name": "default"},
               "spec": {"cidr": "10.70.0.0/16", "blockSize": 26, "nodeSelector": "all()"}}),
    );
    for name in ["web-0", "web-1", "web-2", "web-3", "far-0"] {
        server.put_object("v1", "pods", pod(name));
    }
    let node_a = service(&store, "node-a", Some(client.clone()));
    let node_b = service(&store, "node-b", Some(client));

    let stale = assign(&node_a, NETWORK, "c-stale", "web-0").await;
    let valid = assign(&node_a, NETWORK, "c-valid", "web-1").await;
    // web-2 was recreated without a DEL for its first sandbox.
    let old = assign(&node_a, NETWORK, "c-old", "web-2").await;
    let new = assign(&node_a, NETWORK, "c-new", "web-2").await;
    let other_network = assign(&node_a, "other-net", "c-x", "web-3").await;
    let far = assign(&node_b, NETWORK, "c-far", "far-0").await;

    // Everything is younger than an hour: a GC with that grace releases nothing.
    let young = gc(&node_a, &["c-valid", "c-new"], 3600).await;
    assert!(
        matches!(&young, IpamResponse::GarbageCollected { released, .. } if released.is_empty()),
        "{young:?}"
    );
    assert!(holds(&node_a, "k8s-pod-network.c-stale", &[stale]).await);

    let IpamResponse::GarbageCollected {
        released,
        stale_pods,
        problems,
    } = gc(&node_a, &["c-valid", "c-new"], 0).await
    else {
        panic!("GC failed");
    };
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        sorted_handles(&released),
        ["k8s-pod-network.c-old", "k8s-pod-network.c-stale"]
    );
    let old_release = released
        .iter()
        .find(|r| r.handle == "k8s-pod-network.c-old")
        .unwrap();
    assert_eq!(old_release.addresses, vec![old]);
    // web-2 still holds c-new's address, so only web-0's veth may go.
    assert_eq!(
        stale_pods,
        vec![StalePod {
            namespace: "default".into(),
            name: "web-0".into(),
            addresses: vec![stale],
        }]
    );

    assert!(holds(&node_a, "k8s-pod-network.c-stale", &[]).await);
    assert!(holds(&node_a, "k8s-pod-network.c-old", &[]).await);
    assert!(holds(&node_a, "k8s-pod-network.c-valid", &[valid]).await);
    assert!(holds(&node_a, "k8s-pod-network.c-new", &[new]).await);
    assert!(holds(&node_a, "other-net.c-x", &[other_network]).await);
    assert!(holds(&node_b, "k8s-pod-network.c-far", &[far]).await);
    assert_eq!(check_problems(&store).await, Vec::<String>::new());

    // The stale pod's IP annotation is cleared; the recreated pod's names its new sandbox.
    let annotation = |pod: &str| {
        server
            .get_object("v1", "pods", Some("default"), pod)
            .and_then(|p| {
                p["metadata"]["annotations"][ANNOTATION_POD_IP]
                    .as_str()
                    .map(str::to_string)
            })
    };
    assert_eq!(annotation("web-0").as_deref(), Some(""));
    assert_eq!(annotation("web-2"), Some(new.to_string()));

    // The freed address can be had again; GC again finds nothing.
    let reused = assign_exactly(&node_a, NETWORK, "c-next", "web-0", Some(stale)).await;
    assert_eq!(reused, stale);
    let again = gc(&node_a, &["c-valid", "c-new", "c-next"], 0).await;
    assert!(
        matches!(&again, IpamResponse::GarbageCollected { released, .. } if released.is_empty()),
        "{again:?}"
    );
}

async fn record(service: &IpamService, container: &str, pod: &str, address: IpNet) {
    let response = service
        .handle(IpamRequest::EndpointAdd(EndpointAddRequest {
            handle: format!("{NETWORK}.{container}"),
            container_id: container.into(),
            pod_namespace: "default".into(),
            pod_name: pod.into(),
            interface_name: "eth0".into(),
            host_interface: veth_name("cali", "default", pod),
            mac: None,
            addresses: vec![address],
            floating_ips: Vec::new(),
        }))
        .await;
    assert!(
        matches!(response, IpamResponse::EndpointRecorded { name: Some(_) }),
        "{response:?}"
    );
}

#[tokio::test]
async fn gc_on_etcd_removes_the_stale_endpoint_and_keeps_the_new_sandboxs() {
    if !require_program(
        "gc_on_etcd_removes_the_stale_endpoint_and_keeps_the_new_sandboxs",
        ETCD_BINARY,
    ) {
        return;
    }
    let (_server, etcd): (EtcdServer, EtcdStore) = EtcdServer::start().await;
    let store = AnyDatastore::Etcd(etcd.clone());
    store
        .create(&IPPool::new(
            "default-ipv4-ippool",
            IPPoolSpec {
                cidr: "10.66.0.0/16".into(),
                block_size: Some(26),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let node = service(&store, "node-1", None);
    let stale = assign(&node, NETWORK, "c-stale", "web-0").await;
    record(&node, "c-stale", "web-0", stale).await;
    let old = assign(&node, NETWORK, "c-old", "web-2").await;
    record(&node, "c-old", "web-2", old).await;
    let new = assign(&node, NETWORK, "c-new", "web-2").await;
    record(&node, "c-new", "web-2", new).await;

    let response = gc(&node, &["c-new"], 0).await;
    let IpamResponse::GarbageCollected {
        released, problems, ..
    } = &response
    else {
        panic!("GC failed: {response:?}");
    };
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        sorted_handles(released),
        ["k8s-pod-network.c-old", "k8s-pod-network.c-stale"]
    );
    let stale_key = endpoints::key("default", "node--1-k8s-web--0-eth0");
    assert_eq!(etcd.get_raw(&stale_key).await.unwrap(), None);
    let kept_key = endpoints::key("default", "node--1-k8s-web--2-eth0");
    let kept: Value =
        serde_json::from_slice(&etcd.get_raw(&kept_key).await.unwrap().unwrap()).unwrap();
    assert_eq!(kept["spec"]["containerID"], "c-new");
    assert!(holds(&node, "k8s-pod-network.c-new", &[new]).await);
    assert_eq!(check_problems(&store).await, Vec::<String>::new());
}
