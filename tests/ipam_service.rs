//! The daemon's CNI address service end to end against the Kubernetes API test server: pool
//! choice from pod and namespace annotations, specific addresses, disabled pools, reservations,
//! exhaustion, the pod IP annotations, and release.

#[path = "support/kube_api.rs"]
mod kube_api;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use kube_api::KubeApiServer;
use serde_json::{json, Value};
use starling::cni::config::{FeatureControl, IpamSection};
use starling::cni::ipam_protocol::{
    AssignRequest, CheckRequest, IpamErrorKind, IpamRequest, IpamResponse, ReleaseRequest,
};
use starling::datastore::kube::KubeStore;
use starling::datastore::AnyDatastore;
use starling::ipam::service::{IpamService, ANNOTATION_CONTAINER_ID, ANNOTATION_POD_IP};
use starling::metrics::Metrics;
use starling_model::CalicoNode;

const NODE: &str = "node-a";

fn pool(name: &str, cidr: &str, block_size: u8, extra: Value) -> Value {
    let mut spec = json!({"cidr": cidr, "blockSize": block_size, "nodeSelector": "all()"});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
           "metadata": {"name": name}, "spec": spec})
}

fn namespace(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "annotations": annotations}})
}

fn pod(namespace: &str, name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
           "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": "x"}]}})
}

struct Fixture {
    server: KubeApiServer,
    service: IpamService,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = KubeApiServer::start().await;
        let client = server.client();
        let store = AnyDatastore::Kube(KubeStore::new(client.clone()));
        let node = CalicoNode {
            name: NODE.into(),
            labels: [("rack".to_string(), "0".to_string())].into(),
            ..CalicoNode::default()
        };
        let service = IpamService::new(
            store,
            NODE,
            Some(client),
            Arc::new(move || node.clone()),
            Metrics::new(),
        );
        Fixture { server, service }
    }

    fn put(&self, api_version: &str, plural: &str, object: Value) {
        self.server.put_object(api_version, plural, object);
    }

    async fn add(&self, namespace: &str, pod: &str, container: &str) -> IpamResponse {
        self.service
            .handle(IpamRequest::Assign(AssignRequest {
                handle: format!("k8s-pod-network.{container}"),
                network_name: "k8s-pod-network".into(),
                container_id: container.into(),
                pod_namespace: namespace.into(),
                pod_name: pod.into(),
                interface_name: "eth0".into(),
                ipam: IpamSection::default(),
                feature_control: FeatureControl::default(),
                requested_addresses: Vec::new(),
                pod_annotations: Default::default(),
            }))
            .await
    }

    async fn del(&self, namespace: &str, pod: &str, container: &str) -> IpamResponse {
        self.service
            .handle(IpamRequest::ReleaseByHandle(ReleaseRequest {
                handle: format!("k8s-pod-network.{container}"),
                network_name: "k8s-pod-network".into(),
                container_id: container.into(),
                pod_namespace: Some(namespace.into()),
                pod_name: Some(pod.into()),
                interface_name: Some("eth0".into()),
            }))
            .await
    }

    fn pod_annotation(&self, namespace: &str, pod: &str, key: &str) -> Option<String> {
        self.server
            .get_object("v1", "pods", Some(namespace), pod)
            .and_then(|p| {
                p["metadata"]["annotations"][key]
                    .as_str()
                    .map(str::to_string)
            })
    }
}

fn addresses(response: &IpamResponse) -> Vec<IpNet> {
    match response {
        IpamResponse::Assigned { addresses, .. } => addresses.clone(),
        other => panic!("expected an assignment, got {other:?}"),
    }
}

fn error_of(response: &IpamResponse) -> (IpamErrorKind, String) {
    match response {
        IpamResponse::Error(error) => (error.kind, error.message.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn inside(address: &IpNet, cidr: &str) -> bool {
    cidr.parse::<IpNet>().unwrap().contains(&address.addr())
}

#[tokio::test]
async fn pod_annotation_beats_namespace_annotation_beats_selector() {
    let f = Fixture::new().await;
    let v1 = "crd.projectcalico.org/v1";
    f.put(v1, "ippools", pool("default", "10.1.0.0/16", 26, json!({})));
    // Pools named explicitly are used as they are, whatever their nodeSelector says.
    let other_rack = json!({"nodeSelector": "rack == '1'"});
    f.put(
        v1,
        "ippools",
        pool("team-pool", "10.2.0.0/16", 26, other_rack.clone()),
    );
    f.put(
        v1,
        "ippools",
        pool("special", "10.3.0.0/16", 26, other_rack),
    );
    f.put(
        "v1",
        "namespaces",
        namespace(
            "team",
            json!({"cni.projectcalico.org/ipv4pools": "[\"team-pool\"]"}),
        ),
    );
    f.put("v1", "namespaces", namespace("plain", json!({})));
    f.put("v1", "pods", pod("team", "from-namespace", json!({})));
    f.put(
        "v1",
        "pods",
        pod(
            "team",
            "from-pod",
            json!({"cni.projectcalico.org/ipv4pools": "[\"10.3.0.0/16\"]"}),
        ),
    );
    f.put("v1", "pods", pod("plain", "by-selector", json!({})));

    let namespace_choice = addresses(&f.add("team", "from-namespace", "c1").await);
    assert!(
        inside(&namespace_choice[0], "10.2.0.0/16"),
        "{namespace_choice:?}"
    );
    let pod_choice = addresses(&f.add("team", "from-pod", "c2").await);
    assert!(inside(&pod_choice[0], "10.3.0.0/16"), "{pod_choice:?}");
    // No annotation anywhere: only pools whose nodeSelector matches this node.
    let selector_choice = addresses(&f.add("plain", "by-selector", "c3").await);
    assert!(
        inside(&selector_choice[0], "10.1.0.0/16"),
        "{selector_choice:?}"
    );

    // The pod records its address and container.
    assert_eq!(
        f.pod_annotation("team", "from-pod", ANNOTATION_POD_IP),
        Some(pod_choice[0].to_string())
    );
    assert_eq!(
        f.pod_annotation("team", "from-pod", ANNOTATION_CONTAINER_ID),
        Some("c2".to_string())
    );
}

#[tokio::test]
async fn specific_address_is_exclusive_and_says_who_has_it() {
    let f = Fixture::new().await;
    f.put(
        "crd.projectcalico.org/v1",
        "ippools",
        pool("default", "192.168.0.0/16", 26, json!({})),
    );
    f.put("v1", "namespaces", namespace("web", json!({})));
    for name in ["web-0", "web-1"] {
        f.put(
            "v1",
            "pods",
            pod(
                "web",
                name,
                json!({"cni.projectcalico.org/ipAddrs": "[\"192.168.3.100\"]"}),
            ),
        );
    }
    let first = addresses(&f.add("web", "web-0", "a0").await);
    assert_eq!(first, vec!["192.168.3.100/32".parse::<IpNet>().unwrap()]);
    let (kind, message) = error_of(&f.add("web", "web-1", "a1").await);
    assert_eq!(kind, IpamErrorKind::AddressInUse);
    assert!(message.contains("192.168.3.100"), "{message}");
    assert!(message.contains("web/web-0"), "names the owner: {message}");
    // The failed pod has no annotation and nothing allocated under its handle.
    assert_eq!(f.pod_annotation("web", "web-1", ANNOTATION_POD_IP), None);
    let check = f
        .service
        .handle(IpamRequest::Check(CheckRequest {
            handle: "k8s-pod-network.a1".into(),
            addresses: Vec::new(),
        }))
        .await;
    assert_eq!(check, IpamResponse::Checked);
}

#[tokio::test]
async fn disabled_pools_reservations_and_exhaustion() {
    let f = Fixture::new().await;
    let v1 = "crd.projectcalico.org/v1";
    f.put(
        v1,
        "ippools",
        pool("a-disabled", "10.9.0.0/16", 26, json!({"disabled": true})),
    );
    // Three addresses; two of them reserved.
    f.put(v1, "ippools", pool("tiny", "10.8.0.0/30", 30, json!({})));
    f.put(
        v1,
        "ipreservations",
        json!({"apiVersion": v1, "kind": "IPReservation", "metadata": {"name": "outside"},
               "spec": {"reservedCIDRs": ["10.8.0.0/31", "10.8.0.3/32"]}}),
    );
    f.put("v1", "namespaces", namespace("ns", json!({})));
    for name in ["p0", "p1"] {
        f.put("v1", "pods", pod("ns", name, json!({})));
    }
    let first = addresses(&f.add("ns", "p0", "x0").await);
    assert_eq!(first, vec!["10.8.0.2/32".parse::<IpNet>().unwrap()]);
    let (kind, message) = error_of(&f.add("ns", "p1", "x1").await);
    assert_eq!(kind, IpamErrorKind::Exhausted);
    assert!(message.contains("tiny"), "names the pool: {message}");
    assert!(!message.contains("a-disabled"), "{message}");

    // Asking for the disabled pool by name is refused, clearly.
    f.put(
        "v1",
        "pods",
        pod(
            "ns",
            "wants-disabled",
            json!({"cni.projectcalico.org/ipv4pools": "[\"a-disabled\"]"}),
        ),
    );
    let (kind, message) = error_of(&f.add("ns", "wants-disabled", "x2").await);
    assert_eq!(kind, IpamErrorKind::Invalid);
    assert!(
        message.contains("a-disabled") && message.contains("disabled"),
        "{message}"
    );
}

#[tokio::test]
async fn release_is_idempotent_and_clears_annotations() {
    let f = Fixture::new().await;
    f.put(
        "crd.projectcalico.org/v1",
        "ippools",
        pool("default", "10.1.0.0/24", 26, json!({})),
    );
    f.put("v1", "namespaces", namespace("ns", json!({})));
    f.put("v1", "pods", pod("ns", "p", json!({})));
    let assigned = addresses(&f.add("ns", "p", "c").await);
    // A retried ADD answers the same address.
    assert_eq!(addresses(&f.add("ns", "p", "c").await), assigned);

    let released = f.del("ns", "p", "c").await;
    assert_eq!(
        released,
        IpamResponse::Released {
            addresses: assigned.clone()
        }
    );
    assert_eq!(
        f.pod_annotation("ns", "p", ANNOTATION_POD_IP),
        Some(String::new())
    );
    assert_eq!(
        f.del("ns", "p", "c").await,
        IpamResponse::Released {
            addresses: Vec::new()
        }
    );
    // Many pods get distinct addresses.
    let mut seen = BTreeSet::new();
    for i in 0..20 {
        let name = format!("q{i}");
        f.put("v1", "pods", pod("ns", &name, json!({})));
        let got = addresses(&f.add("ns", &name, &format!("k{i}")).await);
        let address: IpAddr = got[0].addr();
        assert!(seen.insert(address), "{address} handed out twice");
    }
}

#[tokio::test]
async fn missing_pod_is_a_clear_error() {
    let f = Fixture::new().await;
    f.put(
        "crd.projectcalico.org/v1",
        "ippools",
        pool("default", "10.1.0.0/24", 26, json!({})),
    );
    let (kind, message) = error_of(&f.add("nowhere", "ghost", "g").await);
    assert_eq!(kind, IpamErrorKind::Invalid);
    assert!(message.contains("nowhere/ghost"), "{message}");
}
