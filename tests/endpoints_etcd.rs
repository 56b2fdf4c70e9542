//! WorkloadEndpoints against a real etcd: the IPAM service writes Calico's endpoint after a CNI
//! ADD and removes it on DEL (never another sandbox's), `ipam check` counts endpoints as users
//! (a healthy pod is no problem, a pod whose endpoint vanished is a leak naming its handle),
//! and the daemon's watcher keeps every endpoint in the cluster state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ipnet::IpNet;
use tokio::sync::mpsc;

use starling::cni::config::{FeatureControl, IpamSection};
use starling::cni::ipam_protocol::{
    AssignRequest, EndpointAddRequest, FloatingIp, IpamRequest, IpamResponse, ReleaseRequest,
};
use starling::datastore::etcd::EtcdStore;
use starling::datastore::{endpoints, AnyDatastore, Datastore};
use starling::ipam::service::IpamService;
use starling::ipam::{cli, cli_usage};
use starling::metrics::Metrics;
use starling::resources::{FromResource, IPPool};
use starling::syncer::{Syncer, SyncerContext};
use starling_calc::spec::veth_name;
use starling_calc::state::{ClusterState, Kind};
use starling_ipam::check;
use starling_model::wire::IPPoolSpec;
use starling_model::{CalicoNode, IpPool, PodEndpoint, WorkloadEndpoint};

mod ipam_support;
#[path = "support/requirements.rs"]
mod requirements;
use ipam_support::etcd::{EtcdServer, ETCD_BINARY};
use requirements::require_program;

const NODE: &str = "node-1";

async fn service(etcd: &EtcdStore) -> IpamService {
    let store = AnyDatastore::Etcd(etcd.clone());
    store
        .create(&IPPool::new(
            "default-ipv4-ippool",
            IPPoolSpec {
                cidr: "10.65.0.0/16".into(),
                block_size: Some(26),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let node = CalicoNode {
        name: NODE.into(),
        ..CalicoNode::default()
    };
    IpamService::new(
        store,
        NODE,
        None,
        Arc::new(move || node.clone()),
        Metrics::new(),
    )
}

async fn add(service: &IpamService, pod: &str, container: &str) -> IpNet {
    let handle = format!("k8s-pod-network.{container}");
    let assigned = service
        .handle(IpamRequest::Assign(AssignRequest {
            handle: handle.clone(),
            network_name: "k8s-pod-network".into(),
            container_id: container.into(),
            pod_namespace: "default".into(),
            pod_name: pod.into(),
            interface_name: "eth0".into(),
            ipam: IpamSection::default(),
            feature_control: FeatureControl::default(),
            requested_addresses: Vec::new(),
            pod_annotations: Default::default(),
        }))
        .await;
    let IpamResponse::Assigned { addresses, .. } = assigned else {
        panic!("assignment failed: {assigned:?}");
    };
    let recorded = record(service, pod, container, &addresses).await;
    assert!(
        matches!(&recorded, IpamResponse::EndpointRecorded { name: Some(_) }),
        "{recorded:?}"
    );
    addresses[0]
}

async fn record(
    service: &IpamService,
    pod: &str,
    container: &str,
    addresses: &[IpNet],
) -> IpamResponse {
    service
        .handle(IpamRequest::EndpointAdd(EndpointAddRequest {
            handle: format!("k8s-pod-network.{container}"),
            container_id: container.into(),
            pod_namespace: "default".into(),
            pod_name: pod.into(),
            interface_name: "eth0".into(),
            host_interface: veth_name("cali", "default", pod),
            mac: Some("02:00:00:00:00:01".into()),
            addresses: addresses.to_vec(),
            floating_ips: Vec::new(),
        }))
        .await
}

async fn del(service: &IpamService, pod: &str, container: &str) -> IpamResponse {
    service
        .handle(IpamRequest::ReleaseByHandle(ReleaseRequest {
            handle: format!("k8s-pod-network.{container}"),
            network_name: "k8s-pod-network".into(),
            container_id: container.into(),
            pod_namespace: Some("default".into()),
            pod_name: Some(pod.into()),
            interface_name: Some("eth0".into()),
        }))
        .await
}

/// The problems `starling ipam check` reports, computed as the command does.
async fn check_problems(etcd: &EtcdStore) -> Vec<String> {
    let store = AnyDatastore::Etcd(etcd.clone());
    let in_use = cli_usage::addresses_in_use(&store).await.unwrap();
    let pools: Vec<IpPool> = store
        .list::<IPPool>()
        .await
        .unwrap()
        .iter()
        .map(|stored| IpPool::from_resource(&stored.value).unwrap())
        .collect();
    let report = check::check(&store, &pools, Some(&in_use), Utc::now())
        .await
        .unwrap();
    let (_, count) = cli::check(&store, Some(&in_use), Utc::now()).await.unwrap();
    assert_eq!(count, report.problems.len());
    report.problems
}

fn json(bytes: Option<Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(&bytes.expect("the endpoint exists")).unwrap()
}

#[tokio::test]
async fn add_writes_calicos_endpoint_and_check_sees_it_used() {
    if !require_program(
        "add_writes_calicos_endpoint_and_check_sees_it_used",
        ETCD_BINARY,
    ) {
        return;
    }
    let (_server, etcd) = EtcdServer::start().await;
    let service = service(&etcd).await;
    let address = add(&service, "web-0", "c1").await;
    let key = endpoints::key("default", "node--1-k8s-web--0-eth0");
    let stored = json(etcd.get_raw(&key).await.unwrap());
    assert_eq!(stored["apiVersion"], "projectcalico.org/v3");
    assert_eq!(stored["kind"], "WorkloadEndpoint");
    assert_eq!(stored["metadata"]["name"], "node--1-k8s-web--0-eth0");
    assert_eq!(stored["metadata"]["namespace"], "default");
    assert_eq!(
        stored["metadata"]["labels"],
        serde_json::json!({"projectcalico.org/namespace": "default",
                           "projectcalico.org/orchestrator": "k8s"})
    );
    let uid = stored["metadata"]["uid"].as_str().unwrap().to_string();
    assert_eq!(uid.len(), 36, "{uid}");
    assert!(stored["metadata"]["creationTimestamp"].is_string());
    assert_eq!(
        stored["spec"],
        serde_json::json!({
            "orchestrator": "k8s",
            "node": NODE,
            "pod": "web-0",
            "containerID": "c1",
            "endpoint": "eth0",
            "interfaceName": veth_name("cali", "default", "web-0"),
            "mac": "02:00:00:00:00:01",
            "ipNetworks": [address.to_string()],
            "profiles": ["kns.default"],
        })
    );
    // A retried ADD rewrites the endpoint and keeps its identity.
    record(&service, "web-0", "c1", &[address]).await;
    let again = json(etcd.get_raw(&key).await.unwrap());
    assert_eq!(again["metadata"]["uid"], uid.as_str());

    assert_eq!(check_problems(&etcd).await, Vec::<String>::new());

    // The endpoint deleted behind Starling's back: exactly that address is a leak, by handle.
    let (_, revision) = etcd.get_raw_versioned(&key).await.unwrap().unwrap();
    etcd.delete_raw(&key, &revision).await.unwrap();
    assert_eq!(
        check_problems(&etcd).await,
        vec![format!(
            "{} is allocated to handle k8s-pod-network.c1 but nothing uses it (leaked address)",
            address.addr()
        )]
    );
}

#[tokio::test]
async fn del_removes_only_its_own_sandboxs_endpoint() {
    if !require_program("del_removes_only_its_own_sandboxs_endpoint", ETCD_BINARY) {
        return;
    }
    let (_server, etcd) = EtcdServer::start().await;
    let service = service(&etcd).await;
    let key = endpoints::key("default", "node--1-k8s-web--0-eth0");
    // Sandbox c1, then its replacement c2 for the same pod (same endpoint name).
    let first = add(&service, "web-0", "c1").await;
    let second = add(&service, "web-0", "c2").await;
    assert_ne!(first, second);
    let stored = json(etcd.get_raw(&key).await.unwrap());
    assert_eq!(stored["spec"]["containerID"], "c2");
    // The late DEL of c1 frees c1's address and leaves c2's endpoint.
    let released = del(&service, "web-0", "c1").await;
    assert_eq!(
        released,
        IpamResponse::Released {
            addresses: vec![first]
        }
    );
    assert!(etcd.get_raw(&key).await.unwrap().is_some());
    assert_eq!(check_problems(&etcd).await, Vec::<String>::new());
    // c2's DEL removes it; a repeated DEL is still success.
    assert_eq!(
        del(&service, "web-0", "c2").await,
        IpamResponse::Released {
            addresses: vec![second]
        }
    );
    assert_eq!(etcd.get_raw(&key).await.unwrap(), None);
    assert_eq!(
        del(&service, "web-0", "c2").await,
        IpamResponse::Released { addresses: vec![] }
    );
    assert_eq!(check_problems(&etcd).await, Vec::<String>::new());
}

fn assign_with(pod: &str, container: &str, floating: &str, enabled: bool) -> IpamRequest {
    IpamRequest::Assign(AssignRequest {
        handle: format!("k8s-pod-network.{container}"),
        network_name: "k8s-pod-network".into(),
        container_id: container.into(),
        pod_namespace: "default".into(),
        pod_name: pod.into(),
        interface_name: "eth0".into(),
        ipam: IpamSection::default(),
        feature_control: FeatureControl {
            floating_ips: enabled,
            ..FeatureControl::default()
        },
        requested_addresses: Vec::new(),
        pod_annotations: [(
            "cni.projectcalico.org/floatingIPs".to_string(),
            floating.to_string(),
        )]
        .into(),
    })
}

#[tokio::test]
async fn floating_ips_are_validated_and_recorded_as_ip_nats() {
    if !require_program(
        "floating_ips_are_validated_and_recorded_as_ip_nats",
        ETCD_BINARY,
    ) {
        return;
    }
    let (_server, etcd) = EtcdServer::start().await;
    let service = service(&etcd).await;
    // Feature off, outside every pool, a family the pod lacks: refused, nothing kept.
    for (floating, enabled, expected) in [
        (r#"["10.65.200.1"]"#, false, "feature_control.floating_ips"),
        (
            r#"["192.0.2.1"]"#,
            true,
            "192.0.2.1 is outside every IP pool",
        ),
        (
            r#"["fd00::1"]"#,
            true,
            "fd00::1 is an IPv6 address and the pod has none",
        ),
    ] {
        let answer = service
            .handle(assign_with("web-0", "c0", floating, enabled))
            .await;
        let IpamResponse::Error(error) = &answer else {
            panic!("{floating} accepted: {answer:?}");
        };
        assert!(
            error.message.contains("cni.projectcalico.org/floatingIPs")
                && error.message.contains(expected),
            "{}",
            error.message
        );
    }
    assert_eq!(check_problems(&etcd).await, Vec::<String>::new());

    let answer = service
        .handle(assign_with("web-0", "c1", r#"["10.65.200.1"]"#, true))
        .await;
    let IpamResponse::Assigned {
        addresses,
        floating_ips,
        ..
    } = answer
    else {
        panic!("assignment failed: {answer:?}");
    };
    assert_eq!(
        floating_ips,
        vec![FloatingIp {
            internal: addresses[0].addr(),
            external: "10.65.200.1".parse().unwrap(),
        }]
    );
    let recorded = service
        .handle(IpamRequest::EndpointAdd(EndpointAddRequest {
            handle: "k8s-pod-network.c1".into(),
            container_id: "c1".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            interface_name: "eth0".into(),
            host_interface: veth_name("cali", "default", "web-0"),
            mac: None,
            addresses: addresses.clone(),
            floating_ips,
        }))
        .await;
    assert!(matches!(
        recorded,
        IpamResponse::EndpointRecorded { name: Some(_) }
    ));
    let key = endpoints::key("default", "node--1-k8s-web--0-eth0");
    let stored = json(etcd.get_raw(&key).await.unwrap());
    assert_eq!(
        stored["spec"]["ipNATs"],
        serde_json::json!([{"internalIP": addresses[0].addr().to_string(),
                            "externalIP": "10.65.200.1", "source": ""}])
    );
    // And it reads back as the endpoint the daemon's calculation uses.
    let endpoint = endpoints::decode(&key, &serde_json::to_vec(&stored).unwrap()).unwrap();
    assert_eq!(endpoint.ip_nats[0].external.to_string(), "10.65.200.1");
}

fn endpoint(pod: &str, address: &str) -> WorkloadEndpoint {
    WorkloadEndpoint::for_pod(PodEndpoint {
        node: NODE.into(),
        namespace: "default".into(),
        pod: pod.into(),
        container_id: format!("c-{pod}"),
        endpoint: "eth0".into(),
        interface_name: veth_name("cali", "default", pod),
        networks: vec![address.parse().unwrap()],
        ..PodEndpoint::default()
    })
    .unwrap()
}

/// Applies updates until `done` holds for the state, or fails after a deadline.
async fn until(
    updates: &mut mpsc::Receiver<starling_calc::state::Update>,
    state: &mut ClusterState,
    what: &str,
    done: impl Fn(&ClusterState) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(state) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, updates.recv()).await {
            Ok(Some(update)) => {
                state.apply(update);
            }
            Ok(None) => panic!("the syncer stopped while waiting for {what}"),
            Err(_) => panic!("no {what} within 20 s; state has {state:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_watches_endpoints() {
    if !require_program("the_daemon_watches_endpoints", ETCD_BINARY) {
        return;
    }
    let (_server, etcd) = EtcdServer::start().await;
    let listed = endpoint("web-0", "10.65.0.1/32");
    endpoints::write(&etcd, &listed).await.unwrap();
    let (sender, mut updates) = mpsc::channel(256);
    let metrics = Metrics::new();
    let context = SyncerContext {
        updates: sender,
        metrics: metrics.clone(),
    };
    let _syncer = Syncer::spawn(
        &AnyDatastore::Etcd(etcd.clone()),
        None,
        NODE,
        "calico-system",
        context,
    );
    let mut state = ClusterState::new();
    until(&mut updates, &mut state, "the initial list", |s| {
        s.is_in_sync(Kind::WorkloadEndpoint)
    })
    .await;
    assert_eq!(
        state.workload_endpoint("default/node--1-k8s-web--0-eth0"),
        Some(&listed)
    );

    let watched = endpoint("db-0", "10.65.0.2/32");
    endpoints::write(&etcd, &watched).await.unwrap();
    until(&mut updates, &mut state, "the new endpoint", |s| {
        s.workload_endpoint(&watched.key()) == Some(&watched)
    })
    .await;
    // An endpoint that does not validate is absent and counted.
    etcd.put_raw(
        &endpoints::key("default", "broken"),
        br#"{"apiVersion":"projectcalico.org/v3","kind":"WorkloadEndpoint",
             "metadata":{"name":"broken","namespace":"default"},
             "spec":{"node":"node-1","ipNetworks":["not-an-address"]}}"#,
    )
    .await
    .unwrap();
    assert!(
        endpoints::delete_for_container(&etcd, "default", &listed.name, "c-web-0")
            .await
            .unwrap()
    );
    until(&mut updates, &mut state, "the deletion", |s| {
        s.workload_endpoint(&listed.key()).is_none()
    })
    .await;
    assert_eq!(state.workload_endpoints().count(), 1);
    let rejected = || {
        metrics
            .resources_rejected_total
            .with_label_values(&["WorkloadEndpoint"])
            .get()
    };
    // The broken put was sent before the deletion, so it has been counted by now.
    assert_eq!(rejected(), 1);
    assert!(state.workload_endpoint("default/broken").is_none());
}
