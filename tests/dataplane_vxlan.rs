//! Acceptance (a): a three-node VXLAN scenario programmed into a node namespace; `ip -j route`,
//! `ip -j neigh` and `bridge -j fdb` show exactly the expected entries; then the scenario
//! changes and the kernel follows with minimal writes.

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use std::collections::BTreeSet;
use std::time::Instant;

use netns_test::*;
use starling::dataplane::netlink::NetlinkKernel;
use starling::dataplane::reconcile::{ReconcileReport, Reconciler};
use starling::netns;
use starling_calc::desired::compute;
use starling_calc::spec::{vtep_mac, DataplaneInput, Desired, LocalWorkload};
use starling_model::EncapMode;

const WORKLOAD: &str = "calia0000000001";

fn setup(namespace: &str) {
    ip(namespace, "link set lo up");
    ip(namespace, "link add eth0 type veth peer name eth0peer");
    ip(namespace, "link set eth0peer up");
    ip(namespace, "addr add 192.168.50.1/24 dev eth0");
    ip(namespace, "-6 addr add fd00:50::1/64 dev eth0 nodad");
    ip(namespace, "link set eth0 up");
    ip(
        namespace,
        &format!("link add {WORKLOAD} type veth peer name podside"),
    );
    ip(namespace, "link set podside up");
    ip(namespace, &format!("link set {WORKLOAD} up"));
    // A foreign route that must survive everything.
    ip(
        namespace,
        "route add 198.51.100.0/24 via 192.168.50.254 dev eth0 proto static",
    );
}

fn scenario() -> DataplaneInput {
    let mut input = three_node_vxlan();
    input.workloads.push(LocalWorkload {
        interface: WORKLOAD.to_string(),
        addresses: vec![
            "10.244.0.5".parse().unwrap(),
            "fd00:244::5".parse().unwrap(),
        ],
        mac: None,
    });
    input
}

fn program(namespace: &str, reconciler: &mut Reconciler, desired: &Desired) -> ReconcileReport {
    netns::run_async_in(namespace, || async {
        let mut kernel = NetlinkKernel::connect().unwrap();
        reconciler
            .reconcile(&mut kernel, desired, Instant::now())
            .await
            .unwrap()
    })
    .unwrap()
}

/// Our routes as `ip -j route` prints them, one normalised line each.
fn our_routes(namespace: &str) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for family in ["-4", "-6"] {
        for route in ip_json(namespace, &format!("{family} route show proto 81")) {
            let mut line = route["dst"].as_str().unwrap().to_string();
            if let Some(kind) = route["type"].as_str() {
                line = format!("{kind} {line}");
            }
            if let Some(gateway) = route["gateway"].as_str() {
                line += &format!(" via {gateway}");
            }
            if let Some(device) = route["dev"].as_str() {
                line += &format!(" dev {device}");
            }
            if route["flags"]
                .as_array()
                .is_some_and(|flags| flags.iter().any(|f| f == "onlink"))
            {
                line += " onlink";
            }
            if let Some(metric) = route["metric"].as_u64() {
                line += &format!(" metric {metric}");
            }
            if let Some(mtu) = route["metrics"]
                .as_array()
                .and_then(|m| m.first())
                .and_then(|m| m["mtu"].as_u64())
            {
                line += &format!(" mtu {mtu}");
            }
            lines.insert(line);
        }
    }
    lines
}

fn set(lines: &[&str]) -> BTreeSet<String> {
    lines.iter().map(|line| line.to_string()).collect()
}

fn neighbours(namespace: &str, device: &str) -> BTreeSet<String> {
    let mut lines = BTreeSet::new();
    for family in ["-4", "-6"] {
        for neighbour in ip_json(namespace, &format!("{family} neigh show dev {device}")) {
            lines.insert(format!(
                "{} {} {}",
                neighbour["dst"].as_str().unwrap(),
                neighbour["lladdr"].as_str().unwrap_or("-"),
                neighbour["state"][0].as_str().unwrap_or("-")
            ));
        }
    }
    lines
}

fn fdb(namespace: &str, device: &str) -> BTreeSet<String> {
    fdb_json(namespace, device)
        .iter()
        .filter(|entry| entry["dst"].is_string())
        .map(|entry| {
            format!(
                "{} dst {} {}",
                entry["mac"].as_str().unwrap(),
                entry["dst"].as_str().unwrap(),
                entry["state"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn three_node_vxlan_scenario_and_changes() {
    if !require_root("three_node_vxlan_scenario_and_changes") {
        return;
    }
    let namespace = netns::create(&netns::unique_name("st-vx")).unwrap();
    let ns = namespace.name();
    setup(ns);
    let mut reconciler = Reconciler::default();

    let mut input = scenario();
    let desired = compute(&input);
    let report = program(ns, &mut reconciler, &desired);
    assert!(report.converged(), "{report:?}");

    let mac_b = vtep_mac("node-b", false).to_string();
    let mac_c = vtep_mac("node-c", false).to_string();
    let mac_b6 = vtep_mac("node-b", true).to_string();
    let mac_c6 = vtep_mac("node-c", true).to_string();
    assert_eq!(
        our_routes(ns),
        set(&[
            "blackhole 10.244.0.0/26",
            "10.244.0.5 dev calia0000000001 metric 1024",
            "10.244.1.0/26 via 10.244.1.1 dev vxlan.calico onlink mtu 1450",
            "10.244.2.0/26 via 10.244.2.1 dev vxlan.calico onlink mtu 1450",
            "10.244.2.50 via 10.244.1.1 dev vxlan.calico onlink mtu 1450",
            "blackhole fd00:244::/122 dev lo metric 1024",
            "fd00:244::5 dev calia0000000001 metric 1024",
            "fd00:244::40/122 via fd00:244::41 dev vxlan-v6.calico onlink metric 1024 mtu 1430",
            "fd00:244::80/122 via fd00:244::81 dev vxlan-v6.calico onlink metric 1024 mtu 1430",
        ])
    );
    assert_eq!(
        neighbours(ns, "vxlan.calico"),
        set(&[
            &format!("10.244.1.1 {mac_b} PERMANENT"),
            &format!("10.244.2.1 {mac_c} PERMANENT")
        ])
    );
    let v6_neighbours = neighbours(ns, "vxlan-v6.calico");
    assert!(
        v6_neighbours.contains(&format!("fd00:244::41 {mac_b6} PERMANENT")),
        "{v6_neighbours:?}"
    );
    assert!(
        v6_neighbours.contains(&format!("fd00:244::81 {mac_c6} PERMANENT")),
        "{v6_neighbours:?}"
    );
    assert_eq!(
        fdb(ns, "vxlan.calico"),
        set(&[
            &format!("{mac_b} dst 192.168.50.2 permanent"),
            &format!("{mac_c} dst 192.168.60.3 permanent")
        ])
    );
    assert_eq!(
        fdb(ns, "vxlan-v6.calico"),
        set(&[
            &format!("{mac_b6} dst fd00:50::2 permanent"),
            &format!("{mac_c6} dst fd00:60::3 permanent")
        ])
    );
    let link = &ip_json(ns, "-d link show vxlan.calico")[0];
    assert_eq!(link["address"], vtep_mac("node-a", false).to_string());
    assert_eq!(link["mtu"], 1450);
    assert_eq!(link["linkinfo"]["info_data"]["id"], 4096);
    assert_eq!(link["linkinfo"]["info_data"]["port"], 4789);
    assert_eq!(link["linkinfo"]["info_data"]["local"], "192.168.50.1");
    assert_eq!(link["linkinfo"]["info_data"]["learning"], false);

    // A second pass over the unchanged kernel writes nothing.
    let report = program(ns, &mut reconciler, &desired);
    assert_eq!(report.writes, 0, "{report:?}");

    // node-c leaves and its block moves to node-b.
    input.nodes.retain(|node| node.name != "node-c");
    for block in &mut input.blocks {
        if block.affinity.as_deref() == Some("node-c") {
            block.affinity = Some("node-b".to_string());
        }
    }
    let report = program(ns, &mut reconciler, &compute(&input));
    assert!(report.converged(), "{report:?}");
    // Routes: 10.244.2.0/26 and fd00:244::80/122 re-pointed, 10.244.2.50 (no longer borrowed)
    // deleted; neighbours: node-c's two VTEP neighbours and two FDB entries deleted.
    assert_eq!(report.route_writes, 3, "{report:?}");
    assert_eq!(report.writes, 7, "{report:?}");
    assert_eq!(
        our_routes(ns),
        set(&[
            "blackhole 10.244.0.0/26",
            "10.244.0.5 dev calia0000000001 metric 1024",
            "10.244.1.0/26 via 10.244.1.1 dev vxlan.calico onlink mtu 1450",
            "10.244.2.0/26 via 10.244.1.1 dev vxlan.calico onlink mtu 1450",
            "blackhole fd00:244::/122 dev lo metric 1024",
            "fd00:244::5 dev calia0000000001 metric 1024",
            "fd00:244::40/122 via fd00:244::41 dev vxlan-v6.calico onlink metric 1024 mtu 1430",
            "fd00:244::80/122 via fd00:244::41 dev vxlan-v6.calico onlink metric 1024 mtu 1430",
        ])
    );
    assert_eq!(
        neighbours(ns, "vxlan.calico"),
        set(&[&format!("10.244.1.1 {mac_b} PERMANENT")])
    );
    assert_eq!(
        fdb(ns, "vxlan.calico"),
        set(&[&format!("{mac_b} dst 192.168.50.2 permanent")])
    );

    // The v4 pool switches to CrossSubnet: node-b shares eth0's subnet, so its blocks go direct.
    input.pools[0].vxlan_mode = EncapMode::CrossSubnet;
    let report = program(ns, &mut reconciler, &compute(&input));
    assert!(report.converged(), "{report:?}");
    assert_eq!(report.writes, 2, "{report:?}");
    let routes = our_routes(ns);
    assert!(
        routes.contains("10.244.1.0/26 via 192.168.50.2 dev eth0 onlink"),
        "{routes:?}"
    );
    assert!(
        routes.contains("10.244.2.0/26 via 192.168.50.2 dev eth0 onlink"),
        "{routes:?}"
    );

    // The foreign route was never touched.
    let foreign = ip_json(ns, "route show 198.51.100.0/24");
    assert_eq!(foreign.len(), 1);
    assert_eq!(foreign[0]["protocol"], "static");
}
