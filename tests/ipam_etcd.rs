//! IPAM against a real etcd: the CAS primitives, two contending nodes with 500 concurrent
//! assignments each (claims, reclaims and borrowing forced by a small pool and a block cap),
//! full accounting and `ipam check`, release of everything, and Calico fixtures through etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::Duration;
use ipnet::IpNet;
use starling::datastore::etcd::EtcdStore;
use starling::datastore::AnyDatastore;
use starling::datastore::{Datastore, WatchEvent};
use starling::ipam::{cli, cli_usage};
use starling_ipam::allocator::{Allocator, AssignRequest};
use starling_ipam::block::Block;
use starling_ipam::check::{self, InUseAddress};
use starling_ipam::claim::{self, Claim};
use starling_ipam::pools::IpFamily;
use starling_ipam::records::{Affinity, Handle, IpamConfig, Reservation};
use starling_ipam::release;
use starling_model::store::StoreError;
use starling_model::IpPool;

mod ipam_support;
#[path = "support/requirements.rs"]
mod requirements;
use futures::StreamExt;
use ipam_support::etcd::EtcdServer;
use ipam_support::etcd::ETCD_BINARY;
use ipam_support::{attributes, pool, t0};
use requirements::require_program;

#[tokio::test]
async fn cas_primitives_on_etcd() {
    if !require_program("cas_primitives_on_etcd", ETCD_BINARY) {
        return;
    }
    let (_server, store) = EtcdServer::start().await;
    let mut watch = store.watch::<Handle>().await.unwrap();
    let mut handle = Handle::new("h1");
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
        store.delete::<Handle>(&"h1".to_string(), &first).await,
        Err(StoreError::Conflict { .. })
    ));
    let read = store.get::<Handle>(&"h1".to_string()).await.unwrap();
    assert_eq!(read.revision, second);
    assert_eq!(read.value.blocks.get("10.0.0.0/26"), Some(&2));
    store
        .delete::<Handle>(&"h1".to_string(), &second)
        .await
        .unwrap();
    assert!(matches!(
        store.get::<Handle>(&"h1".to_string()).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.update(&handle, &second).await,
        Err(StoreError::NotFound { .. })
    ));
    // The watch saw create, update and delete in order.
    let mut events = Vec::new();
    while events.len() < 3 {
        events.push(watch.next().await.unwrap().unwrap());
    }
    assert!(matches!(&events[0], WatchEvent::Put(v) if v.revision == first));
    assert!(matches!(&events[1], WatchEvent::Put(v) if v.revision == second));
    assert!(matches!(&events[2], WatchEvent::Deleted(id) if id == "h1"));
    // Invalid data is reported with its key.
    store
        .put_raw("/calico/ipam/v2/handle/broken", b"{not json")
        .await
        .unwrap();
    let (valid, invalid) = store.list_reporting::<Handle>().await.unwrap();
    assert!(valid.is_empty());
    assert_eq!(invalid[0].key(), "/calico/ipam/v2/handle/broken");
}

fn request(node: &str, handle: &str, pools: &[IpPool], now_offset: i64) -> AssignRequest {
    AssignRequest {
        handle_id: handle.to_string(),
        attributes: attributes(node, handle),
        family: IpFamily::V4,
        count: 1,
        pools: pools.to_vec(),
        reserved: Vec::new(),
        config: IpamConfig::default(),
        max_blocks_per_host: 14,
        now: t0() + Duration::seconds(now_offset),
    }
}

async fn all_blocks(store: &EtcdStore) -> Vec<Block> {
    store
        .list::<Block>()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.value)
        .collect()
}

/// Pool 10.0.0.0/22 in /27 blocks = 32 blocks, 1024 addresses. Node c claimed the last 8 blocks
/// two minutes ago and left them empty. Nodes a and b may each hold 14 blocks (28 in all): they
/// claim the 24 free blocks, must reclaim 4 of c's, and must borrow 104+ addresses to reach 1000.
#[tokio::test]
async fn two_nodes_five_hundred_concurrent_assignments_each() {
    if !require_program(
        "two_nodes_five_hundred_concurrent_assignments_each",
        ETCD_BINARY,
    ) {
        return;
    }
    let (_server, store) = EtcdServer::start().await;
    let pools = vec![pool("small", "10.0.0.0/22", 27)];
    // The CLI's check reads pools from the datastore.
    let stored_pool = starling::resources::IPPool::new(
        "small",
        starling_model::wire::IPPoolSpec {
            cidr: "10.0.0.0/22".into(),
            block_size: Some(27),
            ..Default::default()
        },
    );
    store.create(&stored_pool).await.unwrap();
    let old = t0() - Duration::minutes(2);
    for index in 24..32u32 {
        let cidr: IpNet = format!("10.0.{}.{}/27", index / 8, (index % 8) * 32)
            .parse()
            .unwrap();
        assert!(matches!(
            claim::claim_block(&store, "c", cidr, old).await.unwrap(),
            Claim::Claimed(_)
        ));
    }
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for node in ["a", "b"] {
        let allocator = Allocator::new(store.clone(), node);
        for i in 0..500 {
            let allocator = allocator.clone();
            let req = request(node, &format!("k8s-pod-network.{node}-{i}"), &pools, i);
            tasks.push(tokio::spawn(async move {
                let got = allocator.auto_assign(&req).await;
                (req.handle_id, got)
            }));
        }
    }
    let mut by_handle: BTreeMap<String, IpAddr> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for task in tasks {
        let (handle, got) = task.await.unwrap();
        let got = got.unwrap_or_else(|e| panic!("{handle}: {e}"));
        assert_eq!(got.len(), 1);
        assert!(seen.insert(got[0]), "{} handed out twice", got[0]);
        by_handle.insert(handle, got[0]);
    }
    assert_eq!(seen.len(), 1000);
    eprintln!("1000 assignments took {:?}", started.elapsed());

    // Every address is in exactly one block, under the handle that asked for it.
    let blocks = all_blocks(&store).await;
    let mut holders: BTreeMap<IpAddr, Vec<(IpNet, Option<String>)>> = BTreeMap::new();
    for block in &blocks {
        for (address, attribute) in block.allocated() {
            holders
                .entry(address)
                .or_default()
                .push((block.cidr, attribute.handle_id.clone()));
        }
    }
    assert_eq!(holders.len(), 1000);
    let handles = store.list::<Handle>().await.unwrap();
    assert_eq!(handles.len(), 1000);
    for handle in &handles {
        let address = by_handle[&handle.value.id];
        let holder = &holders[&address];
        assert_eq!(holder.len(), 1, "{address} in several blocks");
        assert_eq!(holder[0].1.as_deref(), Some(handle.value.id.as_str()));
        let expected: BTreeMap<String, u64> = [(holder[0].0.to_string(), 1)].into_iter().collect();
        assert_eq!(handle.value.blocks, expected, "handle {}", handle.value.id);
    }

    // Claims, reclaims and borrowing all happened.
    let owners: BTreeMap<&str, usize> = blocks.iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(b.host().unwrap_or("-")).or_default() += 1;
        m
    });
    assert_eq!(blocks.len(), 32);
    assert_eq!(owners.get("a"), Some(&14), "{owners:?}");
    assert_eq!(owners.get("b"), Some(&14), "{owners:?}");
    assert_eq!(
        owners.get("c"),
        Some(&4),
        "c lost 4 blocks to reclaim: {owners:?}"
    );
    let borrowed = blocks
        .iter()
        .map(|b| {
            b.allocated()
                .into_iter()
                .filter(|(_, attribute)| {
                    attribute.secondary.get("node").map(String::as_str) != b.host()
                })
                .count()
        })
        .sum::<usize>();
    assert!(borrowed >= 104, "only {borrowed} borrowed addresses");

    let in_use: Vec<InUseAddress> = by_handle
        .iter()
        .map(|(handle, address)| InUseAddress {
            address: *address,
            owner: handle.clone(),
        })
        .collect();
    let report = check::check(&store, &pools, Some(&in_use), t0())
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.allocations, 1000);
    let (text, problems) = cli::check(&store, Some(&in_use), t0()).await.unwrap();
    assert_eq!(problems, 0);
    assert!(
        text.ends_with("Check complete; found 0 problems.\n"),
        "{text}"
    );

    eprintln!("verification done at {:?}", started.elapsed());
    // Release everything: each node releases its own pods (serially, like CNI DELs on one host),
    // the two nodes concurrently.
    let mut releases = Vec::new();
    for node in ["a", "b"] {
        let store = store.clone();
        let handles: Vec<String> = by_handle
            .keys()
            .filter(|h| h.starts_with(&format!("k8s-pod-network.{node}-")))
            .cloned()
            .collect();
        releases.push(tokio::spawn(async move {
            let mut released = 0;
            for handle in handles {
                released += release::release_by_handle(&store, &handle).await?.len();
            }
            Ok::<usize, starling_ipam::IpamError>(released)
        }));
    }
    let mut released = 0;
    for task in releases {
        released += task.await.unwrap().unwrap();
    }
    assert_eq!(released, 1000);
    eprintln!("release done at {:?}", started.elapsed());
    assert!(store.list::<Handle>().await.unwrap().is_empty());
    let left = all_blocks(&store).await;
    assert!(left.iter().all(|b| b.is_empty()));
    assert!(
        left.iter().all(|b| b.affinity.is_some()),
        "no non-affine empty blocks remain"
    );
    let report = check::check(&store, &pools, Some(&[]), t0()).await.unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    // Affinities match the surviving blocks one to one.
    let affinities = store.list::<Affinity>().await.unwrap();
    assert_eq!(affinities.len(), left.len());
}

#[tokio::test]
async fn calico_fixtures_through_etcd_and_cli_commands() {
    if !require_program("calico_fixtures_through_etcd_and_cli_commands", ETCD_BINARY) {
        return;
    }
    let (_server, store) = EtcdServer::start().await;
    store
        .put_raw(
            "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-29",
            include_bytes!("fixtures/ipam/etcd_block_holes.json"),
        )
        .await
        .unwrap();
    store
        .put_raw(
            "/calico/ipam/v2/assignment/ipv4/block/10.65.0.8-29",
            include_bytes!("fixtures/ipam/etcd_block_legacy.json"),
        )
        .await
        .unwrap();
    store
        .put_raw(
            "/calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool",
            br#"{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool","uid":"x","creationTimestamp":"2025-06-01T10:00:00Z"},"spec":{"cidr":"10.65.0.0/16","vxlanMode":"Always","natOutgoing":true,"blockSize":29,"nodeSelector":"all()"}}"#,
        )
        .await
        .unwrap();
    let blocks = all_blocks(&store).await;
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[1].host(), Some("node-old"));

    let show = cli::show(
        &store,
        &cli::ShowArgs {
            show_blocks: true,
            show_borrowed: false,
            ip: None,
        },
    )
    .await
    .unwrap();
    assert!(
        show.contains(
            "| IP Pool  | 10.65.0.0/16 |     65536 | 5 (0%)     | 0 (0%)       | 65531 (100%) |"
        ),
        "{show}"
    );
    assert!(
        show.contains(
            "| Block    | 10.65.0.0/29 |         8 | 4 (50%)    | 0 (0%)       | 4 (50%)      |"
        ),
        "{show}"
    );
    let who = cli::show(
        &store,
        &cli::ShowArgs {
            show_blocks: false,
            show_borrowed: false,
            ip: Some("10.65.0.2".parse().unwrap()),
        },
    )
    .await
    .unwrap();
    assert!(who.starts_with("IP 10.65.0.2 is in use\nHandle ID: k8s-pod-network.bbb\nActive Owner Attributes:\n  namespace: kube-system\n  node: node-b\n"), "{who}");

    // The fixtures have no handle records: check reports them (class f) and a non-zero count.
    let (text, problems) = cli::check(&store, None, t0()).await.unwrap();
    assert_eq!(problems, 3, "{text}");
    assert!(text.contains("has no handle record"), "{text}");
    assert!(text.ends_with("Check complete; found 3 problems.\n"));
    // With workload endpoints and nodes, the leak classes run too.
    store
        .put_raw(
            "/calico/resources/v3/projectcalico.org/workloadendpoints/default/node--a-k8s-web--1-eth0",
            br#"{"kind":"WorkloadEndpoint","apiVersion":"projectcalico.org/v3","metadata":{"name":"node--a-k8s-web--1-eth0","namespace":"default"},"spec":{"node":"node-a","pod":"web-1","ipNetworks":["10.65.0.0/32"]}}"#,
        )
        .await
        .unwrap();
    store
        .put_raw(
            "/calico/resources/v3/projectcalico.org/nodes/node-a",
            br#"{"kind":"Node","apiVersion":"projectcalico.org/v3","metadata":{"name":"node-a"},"spec":{"ipv4VXLANTunnelAddr":"10.65.0.5","bgp":{"ipv4Address":"192.168.1.10/24"}}}"#,
        )
        .await
        .unwrap();
    let in_use = cli_usage::addresses_in_use(&AnyDatastore::Etcd(store.clone()))
        .await
        .unwrap();
    assert_eq!(in_use.len(), 2, "{in_use:?}");
    let (text, problems) = cli::check(&store, Some(&in_use), t0()).await.unwrap();
    // 3 missing handles + leaked 10.65.0.2, 10.65.0.4 and the legacy 10.65.0.8.
    assert_eq!(problems, 6, "{text}");
    assert!(
        text.contains("10.65.0.2 is allocated to handle k8s-pod-network.bbb but nothing uses it"),
        "{text}"
    );

    // reserve writes the v3 object at its etcd key, with the smallest exact cover.
    let out = cli::reserve(
        &store,
        &cli::ReserveArgs {
            name: "keep-out".into(),
            items: vec!["10.65.1.1-10.65.1.6".into(), "10.65.2.0/24".into()],
        },
    )
    .await
    .unwrap();
    assert!(
        out.contains("10.65.1.1/32, 10.65.1.2/31, 10.65.1.4/31, 10.65.1.6/32, 10.65.2.0/24"),
        "{out}"
    );
    let raw = store
        .get_raw("/calico/resources/v3/projectcalico.org/ipreservations/keep-out")
        .await
        .unwrap()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(value["kind"], "IPReservation");
    assert_eq!(value["apiVersion"], "projectcalico.org/v3");
    assert_eq!(value["metadata"]["name"], "keep-out");
    assert_eq!(value["spec"]["reservedCIDRs"][4], "10.65.2.0/24");
    let reservation = store
        .get::<Reservation>(&"keep-out".to_string())
        .await
        .unwrap();
    assert_eq!(reservation.value.reserved_cidrs.len(), 5);

    // release --ip frees the address and is idempotent.
    let args = cli::ReleaseArgs {
        ip: Some("10.65.0.2".parse().unwrap()),
        handle: None,
    };
    assert!(cli::release(&store, &args)
        .await
        .unwrap()
        .starts_with("Successfully released"));
    assert!(cli::release(&store, &args)
        .await
        .unwrap()
        .contains("not assigned"));
    // A handle without a handle record is found by scanning the blocks.
    let by_handle = cli::ReleaseArgs {
        ip: None,
        handle: Some("k8s-pod-network.aaa".into()),
    };
    assert_eq!(
        cli::release(&store, &by_handle).await.unwrap(),
        "Released 2 address(es) of handle k8s-pod-network.aaa\n"
    );
}
