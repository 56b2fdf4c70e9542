//! Desired-state scenarios: inputs → expected `Desired`, order independence (also as a
//! property), and "depends only on current state" (step by step equals from empty).

#[path = "support/netns_test.rs"]
mod netns_test;

use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;
use netns_test::*;
use proptest::prelude::*;
use starling::dataplane::fake::FakeKernel;
use starling::dataplane::kernel::Snapshot;
use starling::dataplane::reconcile::Reconciler;
use starling_bgp::kernel::LearnedRoute;
use starling_calc::desired::compute;
use starling_calc::spec::*;
use starling_model::{EncapMode, MacAddr};

fn route<'a>(desired: &'a Desired, destination: &str) -> &'a DesiredRoute {
    let destination: IpNet = destination.parse().unwrap();
    desired.routes.get(&destination).unwrap_or_else(|| {
        panic!(
            "no route for {destination}: {:?}",
            desired.routes.keys().collect::<Vec<_>>()
        )
    })
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn three_node_vxlan_desired_state() {
    let mut input = three_node_vxlan();
    input.workloads.push(LocalWorkload {
        interface: "cali0000000001a".to_string(),
        addresses: vec![ip("10.244.0.5"), ip("fd00:244::5")],
        mac: Some("0a:58:0a:f4:00:05".parse().unwrap()),
    });
    let desired = compute(&input);

    assert_eq!(desired.route_protocol, 81);
    assert_eq!(desired.host_mtu, 1500);
    assert_eq!(
        desired.pod_mtu, 1430,
        "smallest enabled encapsulation (VXLAN v6)"
    );
    assert_eq!(desired.parent_interface_v4.as_deref(), Some("eth0"));

    let vxlan = &desired.devices[VXLAN_DEVICE];
    assert_eq!(vxlan.mtu, 1450);
    assert_eq!(vxlan.address, "10.244.0.1/32".parse::<IpNet>().unwrap());
    assert_eq!(vxlan.mac, Some(vtep_mac("node-a", false)));
    assert_eq!(
        vxlan.kind,
        DeviceKind::Vxlan {
            vni: 4096,
            port: 4789,
            local: ip("192.168.50.1"),
            parent: "eth0".to_string()
        }
    );
    assert_eq!(desired.devices[VXLAN_V6_DEVICE].mtu, 1430);
    assert!(!desired.devices.contains_key(IPIP_DEVICE));

    let workload = route(&desired, "10.244.0.5/32");
    assert_eq!(workload.class, RouteClass::LocalWorkload);
    assert_eq!(workload.spec.device.as_deref(), Some("cali0000000001a"));
    assert_eq!(workload.spec.scope, RouteScope::Link);
    assert_eq!(workload.spec.metric, 1024);
    assert_eq!(workload.spec.protocol, 81);

    let blackhole = route(&desired, "10.244.0.0/26");
    assert_eq!(blackhole.class, RouteClass::BlackholeLocalBlock);
    assert_eq!(blackhole.spec.route_type, RouteType::Blackhole);

    let remote = route(&desired, "10.244.1.0/26");
    assert_eq!(remote.class, RouteClass::RemoteBlockVxlan);
    assert_eq!(remote.spec.gateway, Some(ip("10.244.1.1")));
    assert_eq!(remote.spec.device.as_deref(), Some(VXLAN_DEVICE));
    assert!(remote.spec.onlink);
    assert_eq!(remote.spec.mtu, Some(1450));

    let borrowed = route(&desired, "10.244.2.50/32");
    assert_eq!(borrowed.class, RouteClass::BorrowedRemote);
    assert_eq!(
        borrowed.spec.gateway,
        Some(ip("10.244.1.1")),
        "toward the borrowing node"
    );

    let remote_v6 = route(&desired, "fd00:244::80/122");
    assert_eq!(remote_v6.spec.gateway, Some(ip("fd00:244::81")));
    assert_eq!(remote_v6.spec.device.as_deref(), Some(VXLAN_V6_DEVICE));
    assert_eq!(remote_v6.spec.metric, 1024);
    assert_eq!(desired.routes.len(), 9, "5 IPv4 + 4 IPv6");

    let neighbour = |device: &str, address: &str| {
        desired
            .neighbours
            .get(&NeighbourKey {
                device: device.to_string(),
                address: ip(address),
            })
            .copied()
    };
    assert_eq!(
        neighbour(VXLAN_DEVICE, "10.244.1.1"),
        Some(vtep_mac("node-b", false))
    );
    assert_eq!(
        neighbour(VXLAN_V6_DEVICE, "fd00:244::81"),
        Some(vtep_mac("node-c", true))
    );
    assert_eq!(
        neighbour("cali0000000001a", "10.244.0.5"),
        Some("0a:58:0a:f4:00:05".parse().unwrap())
    );
    assert_eq!(
        neighbour("cali0000000001a", "fd00:244::5"),
        None,
        "static ARP is IPv4 only"
    );
    assert_eq!(
        desired.fdb.get(&FdbKey {
            device: VXLAN_DEVICE.to_string(),
            mac: vtep_mac("node-c", false)
        }),
        Some(&ip("192.168.60.3"))
    );
    assert_eq!(desired.fdb.len(), 4);

    assert_eq!(desired.nat.masquerade_v4.len(), 1);
    assert!(desired.nat.masquerade_v6.is_empty());
    assert_eq!(desired.nat.all_pools_v6.len(), 1);
    assert_eq!(
        desired
            .global_sysctls
            .get("net/ipv4/ip_forward")
            .map(String::as_str),
        Some("1")
    );
    assert!(desired.allow_deletions);
}

#[test]
fn vtep_mac_derivation_and_override() {
    // 0x66 then the first five bytes of SHA-1("node-a").
    let mac = vtep_mac("node-a", false);
    assert_eq!(mac.0[0], 0x66);
    assert_ne!(mac, vtep_mac("node-a", true));
    let mut input = three_node_vxlan();
    let override_mac: MacAddr = "66:00:00:00:00:0b".parse().unwrap();
    input.nodes[1].vxlan_tunnel_mac = Some(override_mac);
    let desired = compute(&input);
    assert_eq!(
        desired.neighbours[&NeighbourKey {
            device: VXLAN_DEVICE.to_string(),
            address: ip("10.244.1.1")
        }],
        override_mac
    );
}

#[test]
fn cross_subnet_ipip_and_no_encap_shapes() {
    let mut input = three_node_vxlan();
    input.pools[0].vxlan_mode = EncapMode::CrossSubnet;
    let desired = compute(&input);
    let same = route(&desired, "10.244.1.0/26");
    assert_eq!(same.class, RouteClass::RemoteBlockSameSubnet);
    assert_eq!(same.spec.gateway, Some(ip("192.168.50.2")));
    assert_eq!(same.spec.device.as_deref(), Some("eth0"));
    assert_eq!(same.spec.mtu, None);
    // node-c is in another subnet: still VXLAN.
    assert_eq!(
        route(&desired, "10.244.2.0/26").class,
        RouteClass::RemoteBlockVxlan
    );

    input.pools[0].vxlan_mode = EncapMode::Never;
    input.pools[0].ipip_mode = EncapMode::Always;
    input.local_node.ipv4_ipip_tunnel_addr = Some("10.244.0.2".parse().unwrap());
    let desired = compute(&input);
    let tunnel = &desired.devices[IPIP_DEVICE];
    assert_eq!(tunnel.kind, DeviceKind::Ipip);
    assert_eq!(tunnel.mtu, 1480);
    assert!(!desired.devices.contains_key(VXLAN_DEVICE));
    let ipip = route(&desired, "10.244.2.0/26");
    assert_eq!(ipip.class, RouteClass::RemoteBlockIpip);
    assert_eq!(ipip.spec.gateway, Some(ip("192.168.60.3")));
    assert_eq!(ipip.spec.device.as_deref(), Some(IPIP_DEVICE));
    assert!(ipip.spec.onlink);
    assert_eq!(ipip.spec.mtu, Some(1480));

    input.pools[0].ipip_mode = EncapMode::Never;
    let desired = compute(&input);
    let direct = route(&desired, "10.244.2.0/26");
    assert_eq!(direct.class, RouteClass::RemoteBlockNoEncap);
    assert_eq!(direct.spec.device.as_deref(), Some("eth0"));
    assert!(!desired.devices.contains_key(IPIP_DEVICE));
    assert_eq!(desired.pod_mtu, 1430, "only VXLAN v6 remains enabled");
}

#[test]
fn route_precedence_local_beats_learned() {
    let mut input = three_node_vxlan();
    input.learned_routes = vec![
        // Same destination as a remote block: IPAM knowledge wins.
        LearnedRoute {
            prefix: "10.244.1.0/26".parse().unwrap(),
            next_hop: ip("192.168.50.9"),
            via_ipip: false,
        },
        // Inside our own block: never installed.
        LearnedRoute {
            prefix: "10.244.0.7/32".parse().unwrap(),
            next_hop: ip("192.168.50.9"),
            via_ipip: false,
        },
        // Elsewhere: installed as learned.
        LearnedRoute {
            prefix: "172.20.0.0/16".parse().unwrap(),
            next_hop: ip("192.168.50.9"),
            via_ipip: false,
        },
        // Family mismatch: ignored.
        LearnedRoute {
            prefix: "172.21.0.0/16".parse().unwrap(),
            next_hop: ip("fd00::9"),
            via_ipip: false,
        },
    ];
    input.workloads.push(LocalWorkload {
        interface: "cali0000000002b".to_string(),
        addresses: vec![ip("10.244.2.50")],
        mac: None,
    });
    let desired = compute(&input);
    assert_eq!(
        route(&desired, "10.244.1.0/26").class,
        RouteClass::RemoteBlockVxlan
    );
    assert!(!desired
        .routes
        .contains_key(&"10.244.0.7/32".parse::<IpNet>().unwrap()));
    let learned = route(&desired, "172.20.0.0/16");
    assert_eq!(learned.class, RouteClass::BgpLearned);
    assert_eq!(learned.spec.device, None);
    assert!(!desired
        .routes
        .contains_key(&"172.21.0.0/16".parse::<IpNet>().unwrap()));
    // A local workload beats the borrowed-address route for the same /32.
    assert_eq!(
        route(&desired, "10.244.2.50/32").class,
        RouteClass::LocalWorkload
    );
}

#[test]
fn mtu_configuration_and_no_pools() {
    let mut input = three_node_vxlan();
    input.config.vxlan_mtu = Some(1400);
    input.host_interfaces[0].mtu = 9000;
    let desired = compute(&input);
    assert_eq!(desired.devices[VXLAN_DEVICE].mtu, 1400);
    assert_eq!(desired.devices[VXLAN_V6_DEVICE].mtu, 8930);
    assert_eq!(desired.pod_mtu, 1400);

    let empty = compute(&DataplaneInput::default());
    assert!(empty.routes.is_empty() && empty.devices.is_empty() && empty.neighbours.is_empty());
    assert_eq!(empty.pod_mtu, 1460);
    assert!(!empty.allow_deletions);
}

#[test]
fn reversed_input_order_gives_the_same_desired_state() {
    let input = three_node_vxlan();
    let mut reversed = input.clone();
    reversed.nodes.reverse();
    reversed.pools.reverse();
    reversed.blocks.reverse();
    reversed.host_interfaces.reverse();
    assert_eq!(compute(&input), compute(&reversed));
}

fn managed_state(kernel: &FakeKernel) -> Snapshot {
    let mut snapshot = Snapshot {
        links: kernel
            .links
            .iter()
            .filter(|l| l.name != "eth0")
            .cloned()
            .collect(),
        addresses: kernel.addresses.clone(),
        routes: kernel.routes.clone(),
        neighbours: kernel.neighbours.clone(),
        fdb: kernel.fdb.clone(),
    };
    for link in &mut snapshot.links {
        link.index = 0; // creation order differs between histories
    }
    snapshot.links.sort_by(|a, b| a.name.cmp(&b.name));
    snapshot.addresses.sort();
    snapshot.routes.sort();
    snapshot.neighbours.sort();
    snapshot.fdb.sort();
    snapshot
}

fn fake_node_kernel() -> FakeKernel {
    let mut kernel = FakeKernel::new();
    kernel.add_interface(
        "eth0",
        1500,
        &[
            "192.168.50.1/24".parse().unwrap(),
            "fd00:50::1/64".parse().unwrap(),
        ],
    );
    kernel
}

fn converge(kernel: &mut FakeKernel, desired: &Desired) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let report = runtime
        .block_on(Reconciler::default().reconcile(kernel, desired, Instant::now()))
        .unwrap();
    assert!(report.converged(), "{report:?}");
}

#[test]
fn step_by_step_equals_from_empty_and_teardown() {
    let first = three_node_vxlan();
    let mut second = first.clone();
    second.nodes.retain(|node| node.name != "node-c");
    second
        .blocks
        .retain(|block| block.affinity.as_deref() != Some("node-c"));
    second.pools[0].vxlan_mode = EncapMode::CrossSubnet;

    let mut stepped = fake_node_kernel();
    converge(&mut stepped, &compute(&first));
    converge(&mut stepped, &compute(&second));
    let mut direct = fake_node_kernel();
    converge(&mut direct, &compute(&second));
    assert_eq!(managed_state(&stepped), managed_state(&direct));

    // Everything torn down when nothing is wanted any more (in sync, no pools).
    let nothing = DataplaneInput {
        datastore_in_sync: true,
        ..DataplaneInput::default()
    };
    converge(&mut stepped, &compute(&nothing));
    assert!(stepped.routes.is_empty(), "{:?}", stepped.routes);
    assert!(stepped.neighbours.is_empty() && stepped.fdb.is_empty());
    assert_eq!(stepped.links.len(), 1, "only eth0 remains");
}

proptest! {
    #[test]
    fn desired_state_is_independent_of_input_order(seed in any::<u64>()) {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut input = three_node_vxlan();
        input.learned_routes.push(LearnedRoute { prefix: "10.244.1.0/26".parse().unwrap(), next_hop: ip("192.168.50.9"), via_ipip: false });
        input.learned_routes.push(LearnedRoute { prefix: "172.20.0.0/16".parse().unwrap(), next_hop: ip("192.168.50.9"), via_ipip: false });
        input.learned_routes.push(LearnedRoute { prefix: "172.20.0.0/16".parse().unwrap(), next_hop: ip("192.168.50.8"), via_ipip: false });
        input.workloads.push(LocalWorkload { interface: "cali1".into(), addresses: vec![ip("10.244.0.9")], mac: None });
        input.workloads.push(LocalWorkload { interface: "cali2".into(), addresses: vec![ip("10.244.2.50")], mac: None });
        input.pools.push(pool("extra", "10.250.0.0/16", EncapMode::Never, EncapMode::Never, false));
        input.blocks.push(block("10.250.0.0/26", Some("node-b"), &[("10.250.0.9", "node-c")]));
        let expected = compute(&input);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut shuffled = input.clone();
        shuffled.nodes.shuffle(&mut rng);
        shuffled.pools.shuffle(&mut rng);
        shuffled.blocks.shuffle(&mut rng);
        shuffled.workloads.shuffle(&mut rng);
        shuffled.learned_routes.shuffle(&mut rng);
        shuffled.host_interfaces.shuffle(&mut rng);
        prop_assert_eq!(compute(&shuffled), expected);
    }
}
