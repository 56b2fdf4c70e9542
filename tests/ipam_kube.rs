//! IPAM over the Kubernetes API backend (v1 CRD objects, resourceVersion CAS, deleted-then-delete
//! with a UID precondition), against the Kubernetes API test server (tests/support/kube_api.rs).

use std::collections::BTreeSet;

use chrono::Duration;
use ipnet::IpNet;
use serde_json::json;
use starling::datastore::kube::KubeStore;
use starling::datastore::Datastore;
use starling_ipam::allocator::{Allocator, AssignRequest};
use starling_ipam::block::Block;
use starling_ipam::check;
use starling_ipam::claim::{self, Claim};
use starling_ipam::pools::IpFamily;
use starling_ipam::records::{Affinity, Handle, IpamConfig};
use starling_ipam::release;
use starling_model::store::StoreError;

mod ipam_support;
#[path = "support/kube_api.rs"]
mod kube_api;
use ipam_support::{attributes, pool, t0};
use kube_api::KubeApiServer;

const GROUP_VERSION: &str = "crd.projectcalico.org/v1";

async fn start() -> (KubeApiServer, KubeStore) {
    let api = KubeApiServer::start().await;
    let store = KubeStore::new(api.client());
    (api, store)
}

#[tokio::test]
async fn cas_and_two_step_delete() {
    let (api, store) = start().await;
    let mut handle = Handle::new("K8s-Pod-Network.ABC");
    handle.blocks.insert("10.0.0.0/26".into(), 1);
    let first = store.create(&handle).await.unwrap();
    assert!(matches!(
        store.create(&handle).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    handle.blocks.insert("10.0.0.0/26".into(), 2);
    let second = store.update(&handle, &first).await.unwrap();
    assert!(matches!(
        store.update(&handle, &first).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.delete::<Handle>(&handle.id, &first).await,
        Err(StoreError::Conflict { .. })
    ));
    let read = store.get::<Handle>(&handle.id).await.unwrap();
    assert_eq!(
        read.value.id, "K8s-Pod-Network.ABC",
        "original case kept in spec"
    );
    let (updates, deletes) = (api.request_count("update"), api.request_count("delete"));
    store.delete::<Handle>(&handle.id, &second).await.unwrap();
    // First a CAS update marking it deleted, then a delete with the UID precondition.
    assert_eq!(api.request_count("update"), updates + 1);
    assert_eq!(api.request_count("delete"), deletes + 1);
    assert!(api
        .get_object(GROUP_VERSION, "ipamhandles", None, "k8s-pod-network.abc")
        .is_none());
    assert!(matches!(
        store.get::<Handle>(&handle.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // A reader that finds deleted=true finishes the delete and reports not found.
    api.put_object(
        GROUP_VERSION,
        "ipamhandles",
        json!({"apiVersion": GROUP_VERSION, "kind": "IPAMHandle",
               "metadata": {"name": "half-gone"},
               "spec": {"handleID": "half-gone", "block": {}, "deleted": true}}),
    );
    assert!(matches!(
        store.get::<Handle>(&"half-gone".to_string()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(api
        .get_object(GROUP_VERSION, "ipamhandles", None, "half-gone")
        .is_none());
    assert!(store.list::<Handle>().await.unwrap().is_empty());

    // BlockAffinity objects carry the lookup labels and a string `deleted`.
    let cidr: IpNet = "10.0.0.0/26".parse().unwrap();
    assert!(matches!(
        claim::claim_block(&store, "node-a", cidr, t0())
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    let affinity = store.list::<Affinity>().await.unwrap();
    assert_eq!(affinity.len(), 1);
    let stored = api
        .get_object(GROUP_VERSION, "blockaffinities", None, "node-a-10-0-0-0-26")
        .expect("affinity object named <node>-<block>");
    assert_eq!(stored["spec"]["deleted"], "false");
    assert_eq!(stored["spec"]["state"], "confirmed");
    let labels = &stored["metadata"]["labels"];
    assert_eq!(labels["projectcalico.org/ip-version"], "4");
    assert_eq!(labels["projectcalico.org/affinity-type"], "host");
    assert!(labels["projectcalico.org/hostname-hash"].is_string());
}

#[tokio::test]
async fn two_nodes_assign_concurrently_and_release() {
    let (_api, store) = start().await;
    // 16 blocks of 8; node c holds the last 6, empty and claimed two minutes ago. Each of a and b
    // may hold 7 blocks: 100 addresses need 13 blocks, so at least 3 of c's are reclaimed.
    let pools = vec![pool("small", "10.1.0.0/25", 29)];
    for index in 10..16u32 {
        let cidr: IpNet = format!("10.1.0.{}/29", index * 8).parse().unwrap();
        claim::claim_block(&store, "c", cidr, t0() - Duration::minutes(2))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for node in ["a", "b"] {
        let allocator = Allocator::new(store.clone(), node);
        for i in 0..50 {
            let allocator = allocator.clone();
            let request = AssignRequest {
                handle_id: format!("k8s-pod-network.{node}-{i}"),
                attributes: attributes(node, &format!("pod-{i}")),
                family: IpFamily::V4,
                count: 1,
                pools: pools.clone(),
                reserved: Vec::new(),
                config: IpamConfig::default(),
                max_blocks_per_host: 7,
                now: t0(),
            };
            tasks.push(tokio::spawn(async move {
                allocator
                    .auto_assign(&request)
                    .await
                    .map(|a| (request.handle_id, a))
            }));
        }
    }
    let mut seen = BTreeSet::new();
    let mut handles = Vec::new();
    for task in tasks {
        let (handle, addresses) = task.await.unwrap().unwrap();
        assert!(seen.insert(addresses[0]), "{} twice", addresses[0]);
        handles.push(handle);
    }
    assert_eq!(seen.len(), 100);
    let blocks: Vec<Block> = store
        .list::<Block>()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.value)
        .collect();
    let owned_by_c = blocks.iter().filter(|b| b.host() == Some("c")).count();
    assert!(
        owned_by_c <= 3,
        "{owned_by_c} blocks still c's: no reclaim?"
    );
    let report = check::check(&store, &pools, None, t0()).await.unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.allocations, 100);
    for handle in &handles {
        assert_eq!(
            release::release_by_handle(&store, handle)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    assert!(store.list::<Handle>().await.unwrap().is_empty());
    let left = store.list::<Block>().await.unwrap();
    assert!(left
        .iter()
        .all(|b| b.value.is_empty() && b.value.affinity.is_some()));
}

#[tokio::test]
async fn watch_reports_puts_and_two_step_deletes() {
    use futures::StreamExt;
    use starling::datastore::WatchEvent;
    let (_api, store) = start().await;
    let mut existing = Handle::new("before");
    existing.blocks.insert("10.0.0.0/26".into(), 1);
    store.create(&existing).await.unwrap();
    let mut watch = store.watch::<Handle>().await.unwrap();
    // The initial list comes first, as puts.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("initial event")
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, WatchEvent::Put(v) if v.value.id == "before"),
        "{first:?}"
    );
    let mut later = Handle::new("later");
    later.blocks.insert("10.0.0.0/26".into(), 1);
    let revision = store.create(&later).await.unwrap();
    store
        .delete::<Handle>(&"later".to_string(), &revision)
        .await
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
            .await
            .expect("watch event")
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    assert!(
        matches!(&seen[0], WatchEvent::Put(v) if v.value.id == "later"),
        "{seen:?}"
    );
    // The `deleted: true` update already counts as the deletion; the real delete repeats it.
    assert!(
        matches!(&seen[1], WatchEvent::Deleted(id) if id == "later"),
        "{seen:?}"
    );
    assert!(
        matches!(&seen[2], WatchEvent::Deleted(id) if id == "later"),
        "{seen:?}"
    );
}
