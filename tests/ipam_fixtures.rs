//! Calico-written objects (etcd values and v1 CRD objects) are read correctly, and what Starling
//! writes round-trips through Calico's field names.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;
use starling::datastore::memory::MemoryStore;
use starling::datastore::{Datastore, StoredKind};
use starling::resources::ipam::{BlockAffinity, IPAMBlock, IPAMHandle};
use starling_ipam::allocator::{Allocator, AssignRequest};
use starling_ipam::block::Block;
use starling_ipam::pools::IpFamily;
use starling_ipam::records::{
    Affinity, AffinityKey, AffinityState, AffinityType, Handle, IpamConfig, IpamConfigKey,
};
use starling_ipam::{check, show};

mod ipam_support;
use ipam_support::{attributes, pool, t0};

const HOLES: &str = include_str!("fixtures/ipam/etcd_block_holes.json");
const LEGACY: &str = include_str!("fixtures/ipam/etcd_block_legacy.json");
const AFFINITY: &str = include_str!("fixtures/ipam/etcd_affinity.json");
const HANDLE: &str = include_str!("fixtures/ipam/etcd_handle.json");
const CONFIG: &str = include_str!("fixtures/ipam/etcd_ipam_config.json");
const CRD_BLOCK: &str = include_str!("fixtures/ipam/crd_ipamblock.json");
const CRD_AFFINITY: &str = include_str!("fixtures/ipam/crd_blockaffinity.json");
const CRD_HANDLE: &str = include_str!("fixtures/ipam/crd_ipamhandle.json");

fn json(text: &[u8]) -> Value {
    serde_json::from_slice(text).unwrap()
}

fn holes_cidr() -> IpNet {
    "10.65.0.0/29".parse().unwrap()
}

#[test]
fn etcd_block_with_holes_and_borrowed_addresses() {
    let block = Block::etcd_decode(&holes_cidr(), HOLES.as_bytes()).unwrap();
    assert_eq!(block.host(), Some("node-a"));
    assert_eq!(block.allocated_count(), 4);
    assert_eq!(
        block.unallocated,
        vec![6, 7, 1, 3],
        "free-list order is kept"
    );
    assert_eq!(block.sequence_number, 1748772000000000042);
    assert_eq!(
        block.sequence_number_for_allocation.get(&5),
        Some(&1748772000000000020)
    );
    assert_eq!(
        block.affinity_claim_time.unwrap().to_rfc3339(),
        "2025-06-01T10:00:00+00:00"
    );
    let tunnel = block.attribute_of("10.65.0.5".parse().unwrap()).unwrap();
    assert_eq!(
        tunnel.handle_id.as_deref(),
        Some("vxlan-tunnel-addr-node-a")
    );
    assert_eq!(
        block.addresses_of_handle("k8s-pod-network.aaa"),
        vec![
            "10.65.0.0".parse::<IpAddr>().unwrap(),
            "10.65.0.4".parse().unwrap()
        ]
    );
    assert!(block.invariant_problems(t0()).is_empty());
    let borrowed = show::render_borrowed(std::slice::from_ref(&block));
    assert!(
        borrowed.contains("| 10.65.0.2 | node-b         | 10.65.0.0/29 | node-a      | pod  | kube-system/dns-1 |"),
        "{borrowed}"
    );
    // Round trip: what we write is what Calico wrote, field for field.
    assert_eq!(json(&block.etcd_encode().unwrap()), json(HOLES.as_bytes()));
}

#[test]
fn legacy_host_affinity_and_handle_less_attributes() {
    let cidr: IpNet = "10.65.0.8/29".parse().unwrap();
    let block = Block::etcd_decode(&cidr, LEGACY.as_bytes()).unwrap();
    assert_eq!(block.affinity.as_deref(), Some("host:node-old"));
    assert_eq!(block.attributes[0].handle_id, None);
    assert!(block.attributes[0].secondary.is_empty());
    let written = json(&block.etcd_encode().unwrap());
    assert_eq!(written["affinity"], "host:node-old");
    assert!(written.get("hostAffinity").is_none());
    assert_eq!(written["allocations"][0], 0);
    assert_eq!(written["allocations"][1], Value::Null);
    // Wrong key, bad shapes: refused with a reason.
    assert!(Block::etcd_decode(&holes_cidr(), LEGACY.as_bytes())
        .unwrap_err()
        .contains("does not match"));
    let mut broken = json(HOLES.as_bytes());
    broken["unallocated"] = serde_json::json!([6, 6, 1, 3]);
    let error = Block::etcd_decode(&holes_cidr(), broken.to_string().as_bytes()).unwrap_err();
    assert!(error.contains("twice"), "{error}");
    broken["unallocated"] = serde_json::json!([0, 7, 1, 3]);
    let error = Block::etcd_decode(&holes_cidr(), broken.to_string().as_bytes()).unwrap_err();
    assert!(error.contains("both allocated"), "{error}");
    broken["allocations"] = serde_json::json!([0]);
    assert!(Block::etcd_decode(&holes_cidr(), broken.to_string().as_bytes()).is_err());
}

#[test]
fn etcd_affinity_handle_and_config() {
    let key = AffinityKey {
        host: "node-a".into(),
        affinity_type: AffinityType::Host,
        cidr: holes_cidr(),
    };
    let affinity = Affinity::etcd_decode(&key, AFFINITY.as_bytes()).unwrap();
    assert_eq!(affinity.state, AffinityState::Confirmed);
    assert_eq!(
        json(&affinity.etcd_encode().unwrap()),
        json(AFFINITY.as_bytes())
    );
    // Calico's oldest affinities have an empty value.
    assert_eq!(
        Affinity::etcd_decode(&key, b"").unwrap().state,
        AffinityState::Confirmed
    );
    let handle =
        Handle::etcd_decode(&"k8s-pod-network.aaa".to_string(), HANDLE.as_bytes()).unwrap();
    assert_eq!(handle.id, "k8s-pod-network.aaa");
    assert_eq!(handle.blocks.get("10.65.0.0/29"), Some(&2));
    assert_eq!(
        json(&handle.etcd_encode().unwrap()),
        json(HANDLE.as_bytes())
    );
    let config = IpamConfig::etcd_decode(&IpamConfigKey, CONFIG.as_bytes()).unwrap();
    assert!(config.strict_affinity && config.auto_allocate_blocks);
    assert_eq!(config.max_blocks_per_host, 4);
    assert_eq!(
        json(&config.etcd_encode().unwrap()),
        json(CONFIG.as_bytes())
    );
}

#[test]
fn crd_objects_round_trip() {
    let object: IPAMBlock = serde_json::from_str(CRD_BLOCK).unwrap();
    let block = Block::from_crd(&object).unwrap();
    assert_eq!(block.cidr, "fd00:10::/122".parse::<IpNet>().unwrap());
    assert_eq!(block.allocated_count(), 3);
    assert_eq!(block.sequence_number_for_allocation.get(&9), Some(&6));
    let written = serde_json::to_value(block.to_crd()).unwrap();
    let original = json(CRD_BLOCK.as_bytes());
    assert_eq!(written["spec"], original["spec"]);
    assert_eq!(written["metadata"]["name"], "fd00-10---122");
    assert_eq!(written["apiVersion"], "crd.projectcalico.org/v1");
    assert_eq!(written["kind"], "IPAMBlock");
    assert_eq!(written["spec"]["strictAffinity"], false, "always written");

    let object: BlockAffinity = serde_json::from_str(CRD_AFFINITY).unwrap();
    let affinity = Affinity::from_crd(&object).unwrap();
    assert_eq!(affinity.key.host, "node-a");
    assert!(!affinity.deleted);
    let written = serde_json::to_value(affinity.to_crd()).unwrap();
    assert_eq!(written["spec"], json(CRD_AFFINITY.as_bytes())["spec"]);
    assert_eq!(written["spec"]["deleted"], "false", "a string in v1");
    assert_eq!(written["metadata"]["name"], "node-a-fd00-10---122");
    let labels = &written["metadata"]["labels"];
    assert_eq!(labels["projectcalico.org/ip-version"], "6");
    assert_eq!(labels["projectcalico.org/affinity-type"], "host");
    assert_eq!(
        labels["projectcalico.org/hostname-hash"]
            .as_str()
            .unwrap()
            .len(),
        52
    );

    let object: IPAMHandle = serde_json::from_str(CRD_HANDLE).unwrap();
    let handle = Handle::from_crd(&object).unwrap();
    let written = serde_json::to_value(handle.to_crd()).unwrap();
    assert_eq!(written["spec"], json(CRD_HANDLE.as_bytes())["spec"]);
}

#[tokio::test]
async fn allocator_continues_on_calico_data() {
    let store = MemoryStore::new();
    store.put_raw(
        "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-29",
        HOLES.as_bytes(),
    );
    store.put_raw("/calico/ipam/v2/host/node-a/ipv4/block/10.65.0.0-29", b"");
    store.put_raw(
        "/calico/ipam/v2/handle/k8s-pod-network.aaa",
        HANDLE.as_bytes(),
    );
    store.put_raw(
        "/calico/ipam/v2/handle/k8s-pod-network.bbb",
        br#"{"block":{"10.65.0.0/29":1},"deleted":false}"#,
    );
    store.put_raw(
        "/calico/ipam/v2/handle/vxlan-tunnel-addr-node-a",
        br#"{"block":{"10.65.0.0/29":1},"deleted":false}"#,
    );
    let pools = vec![pool("p", "10.65.0.0/28", 29)];
    assert!(check::check(&store, &pools, None, t0())
        .await
        .unwrap()
        .problems
        .is_empty());
    let alloc = Allocator::new(store.clone(), "node-a");
    let got = alloc
        .auto_assign(&AssignRequest {
            handle_id: "k8s-pod-network.new".into(),
            attributes: attributes("node-a", "new"),
            family: IpFamily::V4,
            count: 3,
            pools: pools.clone(),
            reserved: Vec::new(),
            config: IpamConfig::default(),
            max_blocks_per_host: 0,
            now: t0(),
        })
        .await
        .unwrap();
    let expected: Vec<IpAddr> = ["10.65.0.6", "10.65.0.7", "10.65.0.1"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(got, expected, "front of Calico's free list first");
    let block = store.get::<Block>(&holes_cidr()).await.unwrap().value;
    assert_eq!(block.sequence_number, 1748772000000000043);
    assert_eq!(
        block.sequence_number_for_allocation.get(&6),
        Some(&1748772000000000042)
    );
    assert!(check::check(&store, &pools, None, t0())
        .await
        .unwrap()
        .problems
        .is_empty());
}

#[test]
fn generated_crds_keep_calico_names_and_scope() {
    use kube::CustomResourceExt;
    let block = serde_json::to_value(IPAMBlock::crd()).unwrap();
    assert_eq!(
        block["metadata"]["name"],
        "ipamblocks.crd.projectcalico.org"
    );
    assert_eq!(block["spec"]["scope"], "Cluster");
    let schema = &block["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(required.contains(&"cidr"), "{required:?}");
    let items = &schema["properties"]["allocations"]["items"];
    assert_eq!(items["nullable"], true, "allocations hold nulls: {items}");
    for (crd, name) in [
        (
            serde_json::to_value(BlockAffinity::crd()).unwrap(),
            "blockaffinities.crd.projectcalico.org",
        ),
        (
            serde_json::to_value(IPAMHandle::crd()).unwrap(),
            "ipamhandles.crd.projectcalico.org",
        ),
    ] {
        assert_eq!(crd["metadata"]["name"], name);
        assert_eq!(crd["spec"]["scope"], "Cluster");
    }
}
