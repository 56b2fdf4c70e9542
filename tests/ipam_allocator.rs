//! The allocator over the in-memory datastore: affinity, claiming, reclaiming, borrowing, caps,
//! reservations, specific addresses, release paths, and injected conflicts and failures.

use std::collections::BTreeSet;
use std::net::IpAddr;

use chrono::Duration;
use starling::datastore::memory::{FaultKind, MemoryStore, Operation};
use starling::datastore::Datastore;
use starling_ipam::allocator::{AddressRequest, Allocator, AssignRequest};
use starling_ipam::block::Block;
use starling_ipam::pools::IpFamily;
use starling_ipam::records::{Affinity, AffinityState, Handle, IpamConfig};
use starling_ipam::{check, release, IpamError};
use starling_model::store::StoreError;
use starling_model::IpPool;

mod ipam_support;
use ipam_support::{attributes, pool, t0};

fn request(node: &str, handle: &str, pools: &[IpPool], count: usize) -> AssignRequest {
    AssignRequest {
        handle_id: handle.to_string(),
        attributes: attributes(node, handle),
        family: IpFamily::of_net(&pools[0].cidr),
        count,
        pools: pools.to_vec(),
        reserved: Vec::new(),
        config: IpamConfig::default(),
        max_blocks_per_host: 0,
        now: t0(),
    }
}

async fn blocks(store: &MemoryStore) -> Vec<Block> {
    store
        .list::<Block>()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.value)
        .collect()
}

async fn problems(store: &MemoryStore, pools: &[IpPool]) -> Vec<String> {
    check::check(store, pools, None, t0())
        .await
        .unwrap()
        .problems
}

#[tokio::test]
async fn first_assignment_claims_an_affine_block() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/24", 28)];
    let alloc = Allocator::new(store.clone(), "node-a");
    let got = alloc
        .auto_assign(&request("node-a", "h1", &pools, 1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let all = blocks(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].affinity.as_deref(), Some("host:node-a"));
    assert!(all[0].cidr.contains(&got[0]));
    let affinity = store.list::<Affinity>().await.unwrap().pop().unwrap().value;
    assert_eq!(affinity.state, AffinityState::Confirmed);
    let handle = store.get::<Handle>(&"h1".to_string()).await.unwrap().value;
    assert_eq!(handle.total(), 1);
    // The second assignment reuses the same block.
    alloc
        .auto_assign(&request("node-a", "h2", &pools, 3))
        .await
        .unwrap();
    assert_eq!(blocks(&store).await.len(), 1);
    assert!(problems(&store, &pools).await.is_empty());
}

#[tokio::test]
async fn fills_blocks_then_claims_more_then_borrows() {
    let store = MemoryStore::new();
    // Two /29 blocks in the pool.
    let pools = vec![pool("p", "10.0.0.0/28", 29)];
    let a = Allocator::new(store.clone(), "a");
    let b = Allocator::new(store.clone(), "b");
    let first = a.auto_assign(&request("a", "ha", &pools, 8)).await.unwrap();
    assert_eq!(first.len(), 8);
    // b claims the other block, fills it, then borrows nothing more: pool exhausted.
    b.auto_assign(&request("b", "hb", &pools, 4)).await.unwrap();
    let b_block = blocks(&store)
        .await
        .into_iter()
        .find(|blk| blk.host() == Some("b"))
        .unwrap();
    assert_eq!(b_block.allocated_count(), 4);
    // a has no room in its own block and cannot claim: it borrows from b's block.
    let borrowed = a
        .auto_assign(&request("a", "ha2", &pools, 2))
        .await
        .unwrap();
    assert!(borrowed.iter().all(|ip| b_block.cidr.contains(ip)));
    let block_after = store.get::<Block>(&b_block.cidr).await.unwrap().value;
    let attribute = block_after.attribute_of(borrowed[0]).unwrap();
    assert_eq!(
        attribute.secondary.get("node").map(String::as_str),
        Some("a")
    );
    // Exhaustion: nothing left, and the partial request is rolled back.
    let error = a
        .auto_assign(&request("a", "ha3", &pools, 3))
        .await
        .unwrap_err();
    assert!(
        matches!(error, IpamError::Exhausted { found: 2, .. }),
        "{error}"
    );
    assert!(store.get::<Handle>(&"ha3".to_string()).await.is_err());
    assert!(problems(&store, &pools).await.is_empty());
}

#[tokio::test]
async fn strict_affinity_never_borrows() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/28", 29)];
    let a = Allocator::new(store.clone(), "a");
    let b = Allocator::new(store.clone(), "b");
    a.auto_assign(&request("a", "ha", &pools, 8)).await.unwrap();
    b.auto_assign(&request("b", "hb", &pools, 1)).await.unwrap();
    let mut strict = request("a", "ha2", &pools, 1);
    strict.config.strict_affinity = true;
    let error = a.auto_assign(&strict).await.unwrap_err().to_string();
    assert!(error.contains("strict affinity"), "{error}");
}

#[tokio::test]
async fn block_cap_limits_claims() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/24", 29)];
    let a = Allocator::new(store.clone(), "a");
    let mut capped = request("a", "h", &pools, 20);
    capped.max_blocks_per_host = 2;
    capped.config.strict_affinity = true;
    let error = a.auto_assign(&capped).await.unwrap_err();
    assert!(
        matches!(error, IpamError::Exhausted { found: 16, .. }),
        "{error}"
    );
    // Rolled back, but the two claimed blocks stay affine (as in Calico).
    assert_eq!(blocks(&store).await.len(), 2);
    assert!(blocks(&store).await.iter().all(|b| b.is_empty()));
}

#[tokio::test]
async fn reclaims_empty_blocks_of_other_hosts_after_a_minute() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/29", 29)]; // exactly one block
    let a = Allocator::new(store.clone(), "a");
    let b = Allocator::new(store.clone(), "b");
    let got = a.auto_assign(&request("a", "ha", &pools, 1)).await.unwrap();
    release::release_addresses(&store, &got).await.unwrap();
    // Too young to reclaim and strict affinity: b gets nothing.
    let mut young = request("b", "hb", &pools, 1);
    young.now = t0() + Duration::seconds(30);
    young.config.strict_affinity = true;
    assert!(b.auto_assign(&young).await.is_err());
    // A minute later b takes the empty block over.
    let mut old = young.clone();
    old.now = t0() + Duration::seconds(61);
    b.auto_assign(&old).await.unwrap();
    let all = blocks(&store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].host(), Some("b"));
    let affinities = store.list::<Affinity>().await.unwrap();
    assert_eq!(affinities.len(), 1, "a's affinity is gone");
    assert_eq!(affinities[0].value.key.host, "b");
}

#[tokio::test]
async fn reservations_are_never_handed_out_automatically() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/28", 28)];
    let a = Allocator::new(store.clone(), "a");
    let mut r = request("a", "h", &pools, 12);
    r.reserved = vec!["10.0.0.0/30".parse().unwrap()];
    let got = a.auto_assign(&r).await.unwrap();
    assert!(got.iter().all(|ip| !r.reserved[0].contains(ip)));
    let mut more = r.clone();
    more.handle_id = "h2".into();
    more.count = 1;
    assert!(a.auto_assign(&more).await.is_err(), "only reserved left");
    // Explicit assignment ignores reservations, like Calico's AssignIP.
    a.assign_address(&AddressRequest {
        address: "10.0.0.1".parse().unwrap(),
        handle_id: "h3".into(),
        attributes: attributes("a", "x"),
        pools: pools.clone(),
        config: IpamConfig::default(),
        now: t0(),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn specific_addresses_and_their_errors() {
    let store = MemoryStore::new();
    let mut pools = vec![pool("p", "10.0.0.0/24", 26), pool("off", "10.9.0.0/24", 26)];
    pools[1].disabled = true;
    let a = Allocator::new(store.clone(), "a");
    let ask = |address: &str, handle: &str| AddressRequest {
        address: address.parse().unwrap(),
        handle_id: handle.into(),
        attributes: attributes("a", handle),
        pools: pools.clone(),
        config: IpamConfig::default(),
        now: t0(),
    };
    a.assign_address(&ask("10.0.0.77", "pod1")).await.unwrap();
    let block = store
        .get::<Block>(&"10.0.0.64/26".parse().unwrap())
        .await
        .unwrap()
        .value;
    assert_eq!(block.host(), Some("a"), "the missing block was claimed");
    let taken = a
        .assign_address(&ask("10.0.0.77", "pod2"))
        .await
        .unwrap_err();
    let text = taken.to_string();
    assert!(
        text.contains("10.0.0.77") && text.contains("pod1") && text.contains("default/pod1"),
        "{text}"
    );
    let outside = a
        .assign_address(&ask("10.9.0.1", "pod3"))
        .await
        .unwrap_err();
    assert!(
        matches!(outside, IpamError::AddressNotInPool { .. }),
        "{outside}"
    );
}

#[tokio::test]
async fn release_paths_are_idempotent() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/24", 28)];
    let a = Allocator::new(store.clone(), "a");
    let b = Allocator::new(store.clone(), "b");
    let ha = a.auto_assign(&request("a", "ha", &pools, 3)).await.unwrap();
    a.auto_assign(&request("a", "hx", &pools, 1)).await.unwrap();
    let released = release::release_by_handle(&store, "ha").await.unwrap();
    assert_eq!(
        released.iter().collect::<BTreeSet<_>>(),
        ha.iter().collect()
    );
    assert!(release::release_by_handle(&store, "ha")
        .await
        .unwrap()
        .is_empty());
    assert!(store.get::<Handle>(&"ha".to_string()).await.is_err());
    let again = release::release_addresses(&store, &ha).await.unwrap();
    assert!(again.released.is_empty());
    assert_eq!(again.not_allocated.len(), 3);
    // Affinity release of a non-empty block leaves it non-affine; b can then borrow from it.
    let cidr = blocks(&store).await[0].cidr;
    release::release_affinity(&store, "a", cidr).await.unwrap();
    release::release_affinity(&store, "a", cidr).await.unwrap();
    let block = store.get::<Block>(&cidr).await.unwrap().value;
    assert_eq!(block.affinity, None);
    assert_eq!(block.allocated_count(), 1);
    assert!(store.list::<Affinity>().await.unwrap().is_empty());
    // Releasing the last address of a non-affine block deletes the block.
    release::release_by_handle(&store, "hx").await.unwrap();
    assert!(blocks(&store).await.is_empty());
    let _ = b;
    assert!(problems(&store, &pools).await.is_empty());
}

#[tokio::test]
async fn conflicts_are_retried_and_handles_stay_consistent() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/24", 28)];
    let a = Allocator::new(store.clone(), "a");
    a.auto_assign(&request("a", "h0", &pools, 1)).await.unwrap();
    store.inject(
        Operation::Update,
        "/calico/ipam/v2/assignment/",
        FaultKind::ConcurrentWrite,
        3,
    );
    let got = a.auto_assign(&request("a", "h1", &pools, 2)).await.unwrap();
    assert_eq!(got.len(), 2);
    let handle = store.get::<Handle>(&"h1".to_string()).await.unwrap().value;
    assert_eq!(handle.total(), 2, "decrements undid the failed attempts");
    assert!(problems(&store, &pools).await.is_empty());
}

#[tokio::test]
async fn an_unavailable_datastore_is_reported_and_leaves_no_trace() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/24", 28)];
    let a = Allocator::new(store.clone(), "a");
    a.auto_assign(&request("a", "h0", &pools, 1)).await.unwrap();
    store.inject(
        Operation::Update,
        "/calico/ipam/v2/assignment/",
        FaultKind::Unavailable,
        1,
    );
    let error = a
        .auto_assign(&request("a", "h1", &pools, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(error, IpamError::Store(StoreError::Unavailable { .. })),
        "{error}"
    );
    assert!(store.get::<Handle>(&"h1".to_string()).await.is_err());
    assert!(problems(&store, &pools).await.is_empty());
}

#[tokio::test]
async fn ipv6_assignment() {
    let store = MemoryStore::new();
    let pools = vec![pool("v6", "fd00:10::/64", 122)];
    let a = Allocator::new(store.clone(), "a");
    let got = a.auto_assign(&request("a", "h", &pools, 2)).await.unwrap();
    assert!(got.iter().all(|ip| matches!(ip, IpAddr::V6(_))));
    assert_eq!(blocks(&store).await[0].cidr.prefix_len(), 122);
}

#[tokio::test]
async fn concurrent_assignments_on_two_hosts_never_collide() {
    let store = MemoryStore::new();
    let pools = vec![pool("p", "10.0.0.0/26", 29)];
    let mut tasks = Vec::new();
    for host in ["a", "b"] {
        let alloc = Allocator::new(store.clone(), host);
        for i in 0..30 {
            let alloc = alloc.clone();
            let req = request(host, &format!("{host}-{i}"), &pools, 1);
            tasks.push(tokio::spawn(async move { alloc.auto_assign(&req).await }));
        }
    }
    let mut seen = BTreeSet::new();
    for task in tasks {
        for ip in task.await.unwrap().unwrap() {
            assert!(seen.insert(ip), "{ip} assigned twice");
        }
    }
    assert_eq!(seen.len(), 60);
    assert!(problems(&store, &pools).await.is_empty());
}

#[tokio::test]
async fn cleanup_of_handles_blocks_and_unused_affinities() {
    use starling_ipam::store::read_ipam_config;
    let store = MemoryStore::new();
    assert_eq!(
        read_ipam_config(&store).await.unwrap(),
        IpamConfig::default()
    );
    let pools = vec![pool("p", "10.0.0.0/24", 28), pool("q", "10.1.0.0/24", 28)];
    let a = Allocator::new(store.clone(), "a");
    let got = a
        .auto_assign(&request("a", "h1", &pools[..1], 2))
        .await
        .unwrap();
    let in_q = a
        .auto_assign(&request("a", "h2", &pools[1..], 1))
        .await
        .unwrap();
    let q_block = ipnet::IpNet::new(in_q[0], 28).unwrap().trunc();
    let p_block = ipnet::IpNet::new(got[0], 28).unwrap().trunc().to_string();
    // A leaked handle (no addresses) and a wrong count are repaired.
    let mut leaked = Handle::new("leaked");
    leaked.blocks.insert(p_block.clone(), 3);
    store.create(&leaked).await.unwrap();
    let mut h1 = store.get::<Handle>(&"h1".to_string()).await.unwrap();
    h1.value.blocks.insert(p_block.clone(), 5);
    store.update(&h1.value, &h1.revision).await.unwrap();
    assert_eq!(problems(&store, &pools).await.len(), 2);
    assert_eq!(release::cleanup_handles(&store).await.unwrap(), 2);
    assert!(problems(&store, &pools).await.is_empty());
    // Pool q stops selecting the node: its empty affine block goes, the full one stays.
    release::release_by_handle(&store, "h2").await.unwrap();
    let released = release::release_unused_affinities(&store, "a", &pools[..1])
        .await
        .unwrap();
    assert_eq!(released, vec![q_block]);
    assert_eq!(blocks(&store).await.len(), 1);
    // An empty block left without affinity is swept.
    let cidr = blocks(&store).await[0].cidr;
    let mut block = store.get::<Block>(&cidr).await.unwrap();
    block.value.affinity = None;
    store.update(&block.value, &block.revision).await.unwrap();
    assert!(
        release::delete_empty_unowned_blocks(&store)
            .await
            .unwrap()
            .is_empty(),
        "not empty yet"
    );
    release::release_addresses(&store, &got).await.unwrap();
    assert!(
        blocks(&store).await.is_empty(),
        "released the last address of a non-affine block"
    );
}

#[tokio::test]
async fn memory_store_watch_reports_changes() {
    use futures::StreamExt;
    use starling::datastore::WatchEvent;
    let store = MemoryStore::new();
    let mut watch = store.watch::<Handle>().await.unwrap();
    let handle = Handle::new("w");
    let revision = store.create(&handle).await.unwrap();
    store
        .delete::<Handle>(&"w".to_string(), &revision)
        .await
        .unwrap();
    assert!(matches!(watch.next().await, Some(Ok(WatchEvent::Put(v))) if v.value.id == "w"));
    assert!(matches!(watch.next().await, Some(Ok(WatchEvent::Deleted(id))) if id == "w"));
}
