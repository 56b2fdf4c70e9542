//! Reconciler against the fake kernel: fault injection, backoff, in-sync gate, ownership and
//! adoption, flush order, device recreation, and the IPIP request.

#[path = "support/netns_test.rs"]
mod netns_test;

use std::time::{Duration, Instant};

use ipnet::IpNet;
use netns_test::*;
use starling::dataplane::fake::FakeKernel;
use starling::dataplane::kernel::{Change, ItemKey, LinkKind};
use starling::dataplane::reconcile::{ReconcileReport, Reconciler};
use starling_calc::desired::compute;
use starling_calc::spec::*;
use starling_model::EncapMode;

fn node_kernel() -> FakeKernel {
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

fn pass(
    reconciler: &mut Reconciler,
    kernel: &mut FakeKernel,
    desired: &Desired,
    now: Instant,
) -> ReconcileReport {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(reconciler.reconcile(kernel, desired, now))
        .unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

fn spec(destination: &str, device: Option<&str>, protocol: u8) -> RouteSpec {
    let destination = net(destination);
    RouteSpec {
        destination,
        route_type: if device.is_some() {
            RouteType::Unicast
        } else {
            RouteType::Blackhole
        },
        gateway: None,
        device: device.map(str::to_string),
        onlink: false,
        scope: if device.is_some() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        },
        metric: default_metric(&destination),
        mtu: None,
        protocol,
    }
}

#[test]
fn failures_leave_the_rest_applied_and_converge_later() {
    let desired = compute(&three_node_vxlan());
    let mut kernel = node_kernel();
    let failing_route = ItemKey::Route(net("10.244.1.0/26"), 0);
    let failing_neighbour =
        ItemKey::Neighbour(VXLAN_DEVICE.to_string(), "10.244.2.1".parse().unwrap());
    let failing_v6_route = ItemKey::Route(net("fd00:244::40/122"), 1024);
    kernel.fail(failing_route.clone(), 1);
    kernel.fail(failing_neighbour.clone(), 1);
    kernel.fail(failing_v6_route.clone(), 3);
    let mut reconciler = Reconciler::default();
    let start = Instant::now();

    let report = pass(&mut reconciler, &mut kernel, &desired, start);
    let failed: Vec<&ItemKey> = report.failures.iter().map(|(key, _)| key).collect();
    assert_eq!(
        failed,
        vec![&failing_neighbour, &failing_route, &failing_v6_route]
    );
    // The route through the failed neighbour's VTEP waited; everything else is in place.
    assert_eq!(report.deferred, 1, "{report:?}");
    let routes: Vec<IpNet> = kernel
        .routes
        .iter()
        .map(|route| route.destination)
        .collect();
    assert!(!routes.contains(&net("10.244.1.0/26")));
    assert!(
        !routes.contains(&net("10.244.2.0/26")),
        "needs the failed neighbour"
    );
    assert!(routes.contains(&net("10.244.2.50/32")) && routes.contains(&net("10.244.0.0/26")));
    assert_eq!(kernel.routes.len(), desired.routes.len() - 3);
    assert!(report.next_retry.is_some_and(|at| at > start));

    // Before the backoff expires nothing is retried.
    kernel.clear_writes();
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_millis(10),
    );
    assert_eq!(report.writes, 0, "{report:?}");
    assert_eq!(report.deferred, 4);

    // After it, the single failures succeed; the triple one fails again with a longer backoff.
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_millis(150),
    );
    assert_eq!(report.failures.len(), 1);
    let attempts: Vec<(ItemKey, u32)> = reconciler
        .pending()
        .map(|(key, n)| (key.clone(), n))
        .collect();
    assert_eq!(attempts, vec![(failing_v6_route.clone(), 2)]);
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_millis(300),
    );
    assert_eq!(report.writes, 0, "200 ms backoff not over yet: {report:?}");
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_millis(400),
    );
    assert_eq!(report.failures.len(), 1);
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_secs(2),
    );
    assert!(report.converged(), "{report:?}");
    assert_eq!(kernel.routes.len(), desired.routes.len());
    assert_eq!(reconciler.pending().count(), 0);
    // Converged: an unchanged kernel gets no write.
    kernel.clear_writes();
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_secs(3),
    );
    assert_eq!(report.writes, 0);
    assert!(kernel.writes.is_empty());
}

#[test]
fn flush_order_neighbours_before_routes_and_routes_before_neighbour_removal() {
    let mut input = three_node_vxlan();
    let mut kernel = node_kernel();
    let mut reconciler = Reconciler::default();
    pass(
        &mut reconciler,
        &mut kernel,
        &compute(&input),
        Instant::now(),
    );
    let position = |writes: &[Change], wanted: &dyn Fn(&Change) -> bool| {
        writes.iter().position(wanted).unwrap()
    };
    let writes = kernel.writes.clone();
    let neighbour = position(
        &writes,
        &|c| matches!(c, Change::ReplaceNeighbour { address, .. } if address.to_string() == "10.244.2.1"),
    );
    let fdb = position(
        &writes,
        &|c| matches!(c, Change::ReplaceFdb { destination, .. } if destination.to_string() == "192.168.60.3"),
    );
    let route = position(
        &writes,
        &|c| matches!(c, Change::ReplaceRoute(s) if s.destination == net("10.244.2.0/26")),
    );
    assert!(neighbour < route && fdb < route);

    kernel.clear_writes();
    input.nodes.retain(|node| node.name != "node-c");
    input
        .blocks
        .retain(|block| block.affinity.as_deref() != Some("node-c"));
    pass(
        &mut reconciler,
        &mut kernel,
        &compute(&input),
        Instant::now(),
    );
    let writes = kernel.writes.clone();
    let route = position(
        &writes,
        &|c| matches!(c, Change::DeleteRoute(s) if s.destination == net("10.244.2.0/26")),
    );
    let neighbour = position(
        &writes,
        &|c| matches!(c, Change::DeleteNeighbour { address, .. } if address.to_string() == "10.244.2.1"),
    );
    assert!(route < neighbour);
}

#[test]
fn nothing_stale_is_deleted_before_the_datastore_is_in_sync() {
    let mut input = three_node_vxlan();
    let mut kernel = node_kernel();
    kernel.routes.push(spec("10.244.9.0/26", None, 81));
    kernel.routes.push(spec("10.244.8.0/26", None, 80));
    input.datastore_in_sync = false;
    let mut reconciler = Reconciler::default();
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &compute(&input),
        Instant::now(),
    );
    assert!(report.converged());
    assert!(kernel
        .writes
        .iter()
        .all(|change| !matches!(change, Change::DeleteRoute(_))));
    assert_eq!(kernel.routes.len(), compute(&input).routes.len() + 2);

    input.datastore_in_sync = true;
    kernel.clear_writes();
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &compute(&input),
        Instant::now(),
    );
    assert_eq!(
        report.writes, 2,
        "exactly the two stale routes: {:?}",
        kernel.writes
    );
    assert_eq!(kernel.routes.len(), compute(&input).routes.len());
}

#[test]
fn adopts_felix_and_bird_routes_in_place_sweeps_their_stale_ones_and_leaves_foreign() {
    let input = three_node_vxlan();
    let desired = compute(&input);
    let mut kernel = node_kernel();
    let mut reconciler = Reconciler::default();
    // Program once, then pretend calico-node made those routes: re-label them.
    pass(&mut reconciler, &mut kernel, &desired, Instant::now());
    for route in &mut kernel.routes {
        route.protocol = match route.route_type {
            RouteType::Blackhole => 80,
            RouteType::Unicast => 3,
        };
    }
    kernel.add_interface("cali0000000003c", 1500, &[]);
    kernel.add_interface("tunl0", 1480, &[]);
    let stale_felix = spec("10.244.5.7/32", Some("cali0000000003c"), 3);
    let stale_bird = spec("10.244.6.0/26", Some("tunl0"), 12);
    let bird_outside_pools = spec("192.0.2.0/24", Some("tunl0"), 12);
    let foreign_in_pool = spec("10.244.7.0/26", Some("eth0"), 4);
    kernel.routes.extend([
        stale_felix.clone(),
        stale_bird.clone(),
        bird_outside_pools.clone(),
        foreign_in_pool.clone(),
    ]);
    kernel.clear_writes();

    let mut restarted = Reconciler::default();
    restarted.workload_route_grace = Duration::ZERO; // covered by its own test below
    let report = pass(&mut restarted, &mut kernel, &desired, Instant::now());
    assert!(report.converged(), "{report:?}");
    let replaced = kernel
        .writes
        .iter()
        .filter(|c| matches!(c, Change::ReplaceRoute(_)))
        .count();
    let deleted: Vec<&Change> = kernel
        .writes
        .iter()
        .filter(|c| matches!(c, Change::DeleteRoute(_)))
        .collect();
    assert_eq!(
        replaced,
        desired.routes.len(),
        "every adopted route replaced in place"
    );
    assert_eq!(
        deleted,
        vec![
            &Change::DeleteRoute(stale_felix),
            &Change::DeleteRoute(stale_bird)
        ]
    );
    assert!(
        kernel.routes.contains(&bird_outside_pools) && kernel.routes.contains(&foreign_in_pool)
    );
    assert!(kernel
        .routes
        .iter()
        .filter(|r| desired.routes.contains_key(&r.destination))
        .all(|r| r.protocol == 81));
}

#[test]
fn foreign_route_holding_a_wanted_destination_is_a_conflict_not_a_write() {
    let desired = compute(&three_node_vxlan());
    let mut kernel = node_kernel();
    let foreign = spec("10.244.0.0/26", Some("eth0"), 4);
    kernel.routes.push(foreign.clone());
    let report = pass(
        &mut Reconciler::default(),
        &mut kernel,
        &desired,
        Instant::now(),
    );
    assert_eq!(report.conflicts, vec![net("10.244.0.0/26")]);
    assert!(kernel.routes.contains(&foreign));
}

#[test]
fn vxlan_device_recreated_when_an_immutable_parameter_differs() {
    let desired = compute(&three_node_vxlan());
    let mut kernel = node_kernel();
    let mut reconciler = Reconciler::default();
    pass(&mut reconciler, &mut kernel, &desired, Instant::now());
    for link in &mut kernel.links {
        if let LinkKind::Vxlan(parameters) = &mut link.kind {
            if link.name == VXLAN_DEVICE {
                parameters.vni = 1;
            }
        }
        if link.name == VXLAN_V6_DEVICE {
            link.mtu = 1300; // mutable: fixed in place
        }
    }
    kernel.clear_writes();
    let report = pass(&mut reconciler, &mut kernel, &desired, Instant::now());
    assert!(report.converged(), "{report:?}");
    let delete = kernel.writes.iter().position(|c| {
        *c == Change::DeleteDevice {
            name: VXLAN_DEVICE.to_string(),
        }
    });
    let create = kernel
        .writes
        .iter()
        .position(|c| matches!(c, Change::CreateDevice(spec) if spec.name == VXLAN_DEVICE));
    assert!(
        delete.is_some() && create.is_some() && delete < create,
        "{:?}",
        kernel.writes
    );
    assert!(kernel.writes.contains(&Change::SetDevice {
        name: VXLAN_V6_DEVICE.to_string(),
        mtu: 1430,
        mac: None
    }));
    assert!(!kernel
        .writes
        .iter()
        .any(|c| matches!(c, Change::DeleteDevice { name } if name == VXLAN_V6_DEVICE)));
    // The recreated device got its neighbours, FDB entries and routes back.
    assert_eq!(kernel.routes.len(), desired.routes.len());
    assert_eq!(kernel.fdb.len(), 4);
}

fn ipip_input() -> DataplaneInput {
    let mut input = three_node_vxlan();
    input.pools[0].vxlan_mode = EncapMode::Never;
    input.pools[0].ipip_mode = EncapMode::Always;
    input.local_node.ipv4_ipip_tunnel_addr = Some("10.244.0.2".parse().unwrap());
    input
}

#[test]
fn ipip_tunnel_request_on_the_fake_kernel() {
    let desired = compute(&ipip_input());
    let mut kernel = node_kernel();
    let report = pass(
        &mut Reconciler::default(),
        &mut kernel,
        &desired,
        Instant::now(),
    );
    assert!(report.converged(), "{report:?}");
    assert_eq!(
        kernel.writes[0],
        Change::CreateDevice(DeviceSpec {
            name: "tunl0".to_string(),
            kind: DeviceKind::Ipip,
            mtu: 1480,
            mac: None,
            address: net("10.244.0.2/32"),
        })
    );
    assert_eq!(
        kernel.writes[1],
        Change::SetDevice {
            name: "tunl0".to_string(),
            mtu: 1480,
            mac: None
        }
    );
    assert_eq!(
        kernel.writes[2],
        Change::AddAddress {
            device: "tunl0".to_string(),
            address: net("10.244.0.2/32")
        }
    );
    let tunnel_route = kernel
        .routes
        .iter()
        .find(|r| r.destination == net("10.244.1.0/26"))
        .unwrap();
    assert_eq!(tunnel_route.device.as_deref(), Some("tunl0"));
    assert_eq!(tunnel_route.gateway, Some("192.168.50.2".parse().unwrap()));
    assert!(tunnel_route.onlink);
    assert_eq!(tunnel_route.mtu, Some(1480));
}

#[test]
fn without_the_ipip_module_other_routes_still_proceed() {
    let desired = compute(&ipip_input());
    let mut kernel = node_kernel();
    kernel.without_ipip = true;
    let report = pass(
        &mut Reconciler::default(),
        &mut kernel,
        &desired,
        Instant::now(),
    );
    assert!(report
        .failures
        .iter()
        .any(|(key, _)| *key == ItemKey::Device("tunl0".to_string())));
    assert!(
        report.waiting_for_device >= 2,
        "tunnel routes wait for tunl0: {report:?}"
    );
    assert!(
        kernel
            .routes
            .iter()
            .any(|r| r.destination == net("10.244.0.0/26")),
        "blackhole installed"
    );
    assert!(
        kernel
            .routes
            .iter()
            .any(|r| r.destination == net("fd00:244::40/122")),
        "IPv6 VXLAN unaffected"
    );
}

#[test]
fn routes_on_a_new_workload_interface_get_a_grace_period() {
    let desired = compute(&three_node_vxlan());
    let mut kernel = node_kernel();
    kernel.add_interface("cali0000000004d", 1500, &[]);
    // The CNI plugin's route for a pod the datastore has not shown yet.
    let cni_route = spec("10.244.0.44/32", Some("cali0000000004d"), 3);
    kernel.routes.push(cni_route.clone());
    let mut reconciler = Reconciler::default();
    let start = Instant::now();
    let report = pass(&mut reconciler, &mut kernel, &desired, start);
    assert!(kernel.routes.contains(&cni_route));
    assert_eq!(report.deferred, 1);
    assert_eq!(report.next_retry, Some(start + Duration::from_secs(10)));
    pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_secs(9),
    );
    assert!(kernel.routes.contains(&cni_route));
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        start + Duration::from_secs(10),
    );
    assert!(report.converged(), "{report:?}");
    assert!(!kernel.routes.contains(&cni_route));
}

#[test]
fn routes_without_a_device_match_the_device_the_kernel_resolved() {
    let mut kernel = FakeKernel::resolving();
    kernel.add_interface("eth0", 1500, &["192.168.50.1/24".parse().unwrap()]);
    let mut input = three_node_vxlan();
    input.learned_routes = vec![starling_bgp::kernel::LearnedRoute {
        prefix: net("10.99.0.0/24"),
        next_hop: "192.168.50.2".parse().unwrap(),
        via_ipip: false,
    }];
    let desired = compute(&input);
    let mut reconciler = Reconciler::default();
    let now = Instant::now();
    let report = pass(&mut reconciler, &mut kernel, &desired, now);
    assert!(report.converged(), "{report:?}");
    let stored = kernel
        .routes
        .iter()
        .find(|route| route.destination == net("10.99.0.0/24"))
        .expect("the learned route is in the kernel");
    assert_eq!(
        stored.device.as_deref(),
        Some("eth0"),
        "resolved like the kernel"
    );
    kernel.clear_writes();
    let report = pass(
        &mut reconciler,
        &mut kernel,
        &desired,
        now + Duration::from_secs(90),
    );
    assert_eq!(report.writes, 0, "{report:?}");
    assert_eq!(kernel.route_writes(), 0);
}
