//! Tunnel addresses (§8.4): allocate, keep, switch, release, re-own legacy allocations.

use std::net::IpAddr;

use starling::datastore::memory::MemoryStore;
use starling::datastore::Datastore;
use starling_ipam::allocator::Allocator;
use starling_ipam::block::Block;
use starling_ipam::records::{Handle, IpamConfig};
use starling_ipam::tunnel::{reconcile_tunnel_addresses, TunnelKind};
use starling_model::EncapMode;

mod ipam_support;
use ipam_support::{node, pool, t0};

#[tokio::test]
async fn allocates_keeps_switches_and_releases() {
    let store = MemoryStore::new();
    let alloc = Allocator::new(store.clone(), "n1");
    let mut vxlan = pool("vx", "10.10.0.0/16", 26);
    vxlan.vxlan_mode = EncapMode::Always;
    let mut v6 = pool("vx6", "fd00:20::/64", 122);
    v6.vxlan_mode = EncapMode::CrossSubnet;
    let mut me = node("n1");

    let first = reconcile_tunnel_addresses(
        &alloc,
        &me,
        &[vxlan.clone(), v6.clone()],
        IpamConfig::default(),
        &[],
        t0(),
    )
    .await
    .unwrap();
    let v4 = first.ipv4_vxlan_tunnel_addr.expect("vxlan v4 address");
    assert!(first.ipv6_vxlan_tunnel_addr.is_some());
    assert_eq!(first.ipv4_ipip_tunnel_addr, None);
    let handle = store
        .get::<Handle>(&"vxlan-tunnel-addr-n1".to_string())
        .await
        .unwrap()
        .value;
    assert_eq!(handle.total(), 1);
    let block = store
        .list::<Block>()
        .await
        .unwrap()
        .into_iter()
        .find(|b| b.value.cidr.contains(&IpAddr::V4(v4)))
        .unwrap()
        .value;
    let attribute = block.attribute_of(IpAddr::V4(v4)).unwrap();
    assert_eq!(
        attribute.secondary.get("type").map(String::as_str),
        Some("vxlanTunnelAddress")
    );
    assert_eq!(
        attribute.secondary.get("node").map(String::as_str),
        Some("n1")
    );
    assert!(store
        .get::<Handle>(&"vxlan-v6-tunnel-addr-n1".to_string())
        .await
        .is_ok());

    // Second pass keeps the same addresses.
    assert!(first.apply_to(&mut me), "fields were empty");
    assert_eq!(me.ipv4_vxlan_tunnel_addr, Some(v4));
    let second = reconcile_tunnel_addresses(
        &alloc,
        &me,
        &[vxlan.clone(), v6.clone()],
        IpamConfig::default(),
        &[],
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(second, first);
    assert!(!second.apply_to(&mut me), "nothing changed");

    // The pool switches to IPIP: VXLAN address released, IPIP address allocated.
    let mut ipip = vxlan.clone();
    ipip.vxlan_mode = EncapMode::Never;
    ipip.ipip_mode = EncapMode::Always;
    let third = reconcile_tunnel_addresses(&alloc, &me, &[ipip], IpamConfig::default(), &[], t0())
        .await
        .unwrap();
    assert!(third.ipv4_ipip_tunnel_addr.is_some());
    assert_eq!(third.ipv4_vxlan_tunnel_addr, None);
    assert_eq!(third.ipv6_vxlan_tunnel_addr, None);
    assert!(store
        .get::<Handle>(&"vxlan-tunnel-addr-n1".to_string())
        .await
        .is_err());
    assert!(store
        .get::<Handle>(&"vxlan-v6-tunnel-addr-n1".to_string())
        .await
        .is_err());
    assert!(store
        .get::<Handle>(&"ipip-tunnel-addr-n1".to_string())
        .await
        .is_ok());
    assert_eq!(TunnelKind::Ipip.handle_id("n1"), "ipip-tunnel-addr-n1");
}

#[tokio::test]
async fn legacy_allocation_without_handle_is_reowned_in_place() {
    let store = MemoryStore::new();
    let alloc = Allocator::new(store.clone(), "n1");
    let mut vxlan = pool("vx", "10.10.0.0/16", 26);
    vxlan.vxlan_mode = EncapMode::Always;
    // A Calico block with an attribute-less, handle-less allocation at 10.10.0.5.
    let mut block = Block::new(
        "10.10.0.0/26".parse().unwrap(),
        Some("host:n1".into()),
        None,
        1,
    )
    .unwrap();
    block
        .assign_address("10.10.0.5".parse().unwrap(), None, &Default::default())
        .unwrap();
    store.create(&block).await.unwrap();
    let mut me = node("n1");
    me.ipv4_vxlan_tunnel_addr = Some("10.10.0.5".parse().unwrap());
    let out = reconcile_tunnel_addresses(&alloc, &me, &[vxlan], IpamConfig::default(), &[], t0())
        .await
        .unwrap();
    assert_eq!(
        out.ipv4_vxlan_tunnel_addr,
        Some("10.10.0.5".parse().unwrap())
    );
    let stored = store
        .get::<Block>(&"10.10.0.0/26".parse().unwrap())
        .await
        .unwrap()
        .value;
    let attribute = stored.attribute_of("10.10.0.5".parse().unwrap()).unwrap();
    assert_eq!(attribute.handle_id.as_deref(), Some("vxlan-tunnel-addr-n1"));
}
