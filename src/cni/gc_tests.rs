//! GC tests: the selection rule (`gc::plan`) on its own, and the command with the counting
//! allocator and the in-memory dataplane of `plugin_tests`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::backend::IpamBackend;
use super::fake_ipam::CountingAllocator;
use super::gc::{self, Allocation};
use super::ipam_protocol::{GcRequest, IpamRequest, IpamResponse, PodRef, StalePod};
use super::plugin;
use super::plugin_tests::{config, environment, settings, AbsentDaemon, FakeDataplane};
use super::result::{code, CniError};

const NETWORK: &str = "k8s-pod-network";

fn address(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn attachments(containers: &[&str]) -> String {
    let entries: Vec<String> = containers
        .iter()
        .map(|id| format!(r#"{{"containerID":"{id}","ifname":"eth0"}}"#))
        .collect();
    format!(r#","cni.dev/valid-attachments":[{}]"#, entries.join(","))
}

async fn add(ipam: &CountingAllocator, dataplane: &FakeDataplane, container: &str, pod: &str) {
    plugin::add(
        &config(""),
        &environment("ADD", container, pod),
        &settings(),
        ipam,
        dataplane,
    )
    .await
    .unwrap();
}

fn veth(pod: &str) -> String {
    starling_calc::spec::veth_name("cali", "default", pod)
}

#[tokio::test]
async fn gc_releases_stale_handles_of_this_network_on_this_node_only() {
    let ipam = CountingAllocator::new("10.9.0.0/28".parse().unwrap(), None);
    let dataplane = FakeDataplane::default();
    add(&ipam, &dataplane, "c-stale", "web-0").await;
    add(&ipam, &dataplane, "c-valid", "web-1").await;
    // web-2 was recreated: the old sandbox's allocation leaked, the new one reuses the veth name.
    add(&ipam, &dataplane, "c-old", "web-2").await;
    add(&ipam, &dataplane, "c-new", "web-2").await;
    let foreign = [
        ("10.9.0.11", "other-net.c-x", "node-a", "web-3"),
        ("10.9.0.12", "k8s-pod-network.c-far", "node-b", "far-0"),
        ("10.9.0.13", "k8s-pod-network.sub.c-1", "node-a", "sub-0"),
    ];
    for (ip, handle, node, pod) in foreign {
        ipam.insert(address(ip), handle, node, "default", pod);
    }
    let before = ipam.allocations();
    let stale_address = *before
        .iter()
        .find(|(_, handle)| *handle == "k8s-pod-network.c-stale")
        .unwrap()
        .0;

    gc::garbage_collect(
        &config(&attachments(&["c-valid", "c-new"])),
        &settings(),
        &ipam,
        &dataplane,
    )
    .await
    .unwrap();

    let Some(IpamRequest::GarbageCollect(request)) = ipam.requests().last().cloned() else {
        panic!("no GC request: {:?}", ipam.requests());
    };
    assert_eq!(request.network_name, NETWORK);
    assert_eq!(
        request.valid_handles,
        ["k8s-pod-network.c-valid", "k8s-pod-network.c-new"]
    );
    assert_eq!(request.grace_seconds, gc::DEFAULT_GRACE_SECONDS);
    let mut left: Vec<String> = ipam.allocations().into_values().collect();
    left.sort();
    assert_eq!(
        left,
        [
            "k8s-pod-network.c-far",
            "k8s-pod-network.c-new",
            "k8s-pod-network.c-valid",
            "k8s-pod-network.sub.c-1",
            "other-net.c-x",
        ]
    );
    assert!(!ipam.allocations().contains_key(&stale_address));
    let wired = dataplane.wired.lock().unwrap();
    assert!(!wired.contains_key(&veth("web-0")), "stale pod's veth left");
    assert!(
        wired.contains_key(&veth("web-1")),
        "valid pod's veth removed"
    );
    // The recreated pod keeps its veth: its new sandbox still holds an address.
    let (_, web2_addresses) = wired.get(&veth("web-2")).expect("recreated pod's veth");
    let new_address = ipam
        .allocations()
        .into_iter()
        .find(|(_, handle)| handle == "k8s-pod-network.c-new")
        .unwrap()
        .0;
    assert_eq!(web2_addresses, &vec![new_address]);
}

#[tokio::test]
async fn gc_needs_the_valid_attachments() {
    let ipam = CountingAllocator::new("10.9.0.0/29".parse().unwrap(), None);
    let dataplane = FakeDataplane::default();
    add(&ipam, &dataplane, "c1", "web-0").await;
    let error = gc::garbage_collect(&config(""), &settings(), &ipam, &dataplane)
        .await
        .unwrap_err();
    assert_eq!(error.code, code::INVALID_NETWORK_CONFIG);
    assert!(
        error.msg.contains("cni.dev/valid-attachments"),
        "{}",
        error.msg
    );
    assert!(!ipam
        .requests()
        .iter()
        .any(|r| matches!(r, IpamRequest::GarbageCollect(_))));
    assert_eq!(ipam.allocations().len(), 1);
}

#[test]
fn gc_through_execute_names_the_missing_field() {
    // The dispatch reaches GC, which fails before any socket is tried.
    let (_, outcome) = super::execute(
        br#"{"name":"n","cniVersion":"1.1.0","type":"starling"}"#,
        |name| (name == "CNI_COMMAND").then(|| "GC".to_string()),
    );
    let error = outcome.unwrap_err();
    assert_eq!(error.code, code::INVALID_NETWORK_CONFIG);
    assert!(
        error.msg.contains("cni.dev/valid-attachments"),
        "{}",
        error.msg
    );
}

#[tokio::test]
async fn gc_without_the_daemon_is_try_again_later() {
    let error = gc::garbage_collect(
        &config(&attachments(&[])),
        &settings(),
        &AbsentDaemon,
        &FakeDataplane::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::TRY_AGAIN_LATER);
    assert!(error.msg.contains("not running"), "{}", error.msg);
}

/// Answers GC with a fixed response.
struct Scripted(IpamResponse);

impl IpamBackend for Scripted {
    async fn exchange(&self, _request: IpamRequest) -> Result<IpamResponse, CniError> {
        Ok(self.0.clone())
    }
}

fn stale(pod: &str, addresses: &[&str]) -> StalePod {
    StalePod {
        namespace: "default".into(),
        name: pod.into(),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

#[tokio::test]
async fn a_veth_routing_other_addresses_stays_and_problems_are_reported() {
    let ipam = CountingAllocator::new("10.9.0.0/29".parse().unwrap(), None);
    let dataplane = FakeDataplane::default();
    add(&ipam, &dataplane, "c1", "web-0").await;
    add(&ipam, &dataplane, "c2", "web-1").await;
    // web-0's veth routes 10.9.0.1, which this GC did not release (a newer sandbox has it).
    let answer = IpamResponse::GarbageCollected {
        released: Vec::new(),
        stale_pods: vec![
            stale("web-0", &["10.9.0.99/32"]),
            stale("web-1", &["10.9.0.2/32"]),
        ],
        problems: vec!["releasing k8s-pod-network.c9: etcd is unavailable".into()],
    };
    let error = gc::garbage_collect(
        &config(&attachments(&[])),
        &settings(),
        &Scripted(answer),
        &dataplane,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::IPAM_INTERNAL);
    assert!(error.msg.contains(NETWORK), "{}", error.msg);
    assert!(
        error.details.contains("k8s-pod-network.c9") && error.details.contains("unavailable"),
        "{}",
        error.details
    );
    let wired = dataplane.wired.lock().unwrap();
    assert!(wired.contains_key(&veth("web-0")), "in-use veth removed");
    // The rest was still done.
    assert!(!wired.contains_key(&veth("web-1")), "stale veth left");
}

#[tokio::test]
async fn daemon_errors_keep_their_codes() {
    let answer = IpamResponse::error(
        super::ipam_protocol::IpamErrorKind::Unavailable,
        "listing the IPAM blocks for GC: etcd is unavailable",
    );
    let error = gc::garbage_collect(
        &config(&attachments(&[])),
        &settings(),
        &Scripted(answer),
        &FakeDataplane::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(error.code, code::TRY_AGAIN_LATER);
    assert!(error.msg.contains("blocks"), "{}", error.msg);
}

fn attributes(node: Option<&str>, pod: &str, timestamp: Option<&str>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::from([
        ("namespace".to_string(), "default".to_string()),
        ("pod".to_string(), pod.to_string()),
    ]);
    if let Some(node) = node {
        map.insert("node".into(), node.into());
    }
    if let Some(timestamp) = timestamp {
        map.insert("timestamp".into(), timestamp.into());
    }
    map
}

#[test]
fn plan_rules() {
    let now = chrono::DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let request = GcRequest {
        network_name: NETWORK.into(),
        valid_handles: vec!["k8s-pod-network.valid".into()],
        grace_seconds: 60,
    };
    let old = Some("2025-03-01 11:00:00.123456789 +0000 UTC");
    let young = Some("2025-03-01 11:59:30.5 +0000 UTC");
    let ours_old = attributes(Some("node-a"), "p-old", old);
    let ours_young = attributes(Some("node-a"), "p-young", young);
    let ours_garbled = attributes(Some("node-a"), "p-garbled", Some("yesterday"));
    let unmarked = attributes(None, "p-unmarked", None);
    let unmarked_foreign_block = attributes(None, "p-elsewhere", None);
    let split = attributes(Some("node-a"), "p-split", old);
    let split_far = attributes(Some("node-b"), "p-split", old);
    let valid = attributes(Some("node-a"), "p-shared", old);
    let same_pod_stale = attributes(Some("node-a"), "p-shared", old);
    let allocations = [
        ("k8s-pod-network.old", &ours_old, None),
        ("k8s-pod-network.young", &ours_young, None),
        ("k8s-pod-network.garbled", &ours_garbled, None),
        ("k8s-pod-network.unmarked", &unmarked, Some("node-a")),
        (
            "k8s-pod-network.elsewhere",
            &unmarked_foreign_block,
            Some("node-b"),
        ),
        ("k8s-pod-network.split", &split, None),
        ("k8s-pod-network.split", &split_far, None),
        ("k8s-pod-network.valid", &valid, None),
        ("other.stale", &same_pod_stale, None),
        ("k8s-pod-network.shared-old", &same_pod_stale, None),
    ];
    let plan = gc::plan(
        &request,
        "node-a",
        now,
        allocations
            .iter()
            .map(|(handle, attributes, block_host)| Allocation {
                handle,
                attributes,
                block_host: *block_host,
            }),
    );
    let stale_handles: Vec<&str> = plan.stale.keys().map(String::as_str).collect();
    // Young ones wait; a handle with an address on another node, another node's block and
    // other networks are never touched; an unreadable timestamp counts as old.
    assert_eq!(
        stale_handles,
        [
            "k8s-pod-network.garbled",
            "k8s-pod-network.old",
            "k8s-pod-network.shared-old",
            "k8s-pod-network.unmarked",
        ]
    );
    let pod = |name: &str| PodRef {
        namespace: "default".into(),
        name: name.into(),
    };
    assert!(plan.kept_pods.contains(&pod("p-young")));
    assert!(plan.kept_pods.contains(&pod("p-shared")));
    assert!(!plan.kept_pods.contains(&pod("p-elsewhere")));
    // A released pod that keeps an address (here another network's) keeps its veth.
    let released = vec![
        (
            "k8s-pod-network.old".to_string(),
            vec!["10.0.0.1/32".parse().unwrap()],
        ),
        (
            "k8s-pod-network.shared-old".to_string(),
            vec!["10.0.0.2/32".parse().unwrap()],
        ),
    ];
    assert_eq!(
        plan.stale_pods(&released),
        vec![stale("p-old", &["10.0.0.1/32"])]
    );

    assert_eq!(
        gc::container_of(NETWORK, "k8s-pod-network.abc"),
        Some("abc")
    );
    assert_eq!(gc::container_of(NETWORK, "k8s-pod-network.a.b"), None);
    assert_eq!(gc::container_of(NETWORK, "k8s-pod-networkx.abc"), None);
    assert_eq!(gc::container_of(NETWORK, "k8s-pod-network."), None);
}
