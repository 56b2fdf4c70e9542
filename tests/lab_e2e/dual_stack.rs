//! `lab up --ipv6`: dual stack end to end. Nodes carry an IPv6 address next to the IPv4 one
//! (registered as `spec.bgp.ipv6Address`), an IPv6 pool joins the IPv4 pool, every pod gets one
//! address of each family, and both ping matrices are complete:
//! - bgp mode: a second mesh session per node pair over IPv6 carries the IPv6 blocks, next hop
//!   the remote node's IPv6 address;
//! - vxlan mode: `vxlan-v6.calico` (VNI 4096, port 4789) with a neighbour and FDB entry per remote
//!   IPv6 VTEP and the remote IPv6 blocks routed through it.
//!
//! And `lab ping` fails (non-zero exit) when only the IPv6 matrix has a loss.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use starling::lab::{self, resources, topology, Mode};

use super::requirements::require_root;
use super::Lab;

const NODES: usize = 3;

/// `starling lab ARGS` for this lab: whether it exited 0, and its stdout.
fn lab_cli(lab: &Lab, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("lab")
        .args(["--name", &lab.options.name, "--state-dir"])
        .arg(lab.options.state_dir())
        .args(args)
        .output()
        .expect("running starling lab");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The node resource `index` registered in the lab's etcd.
fn node_resource(lab: &Lab, index: usize) -> serde_json::Value {
    let key = format!(
        "/calico/resources/v3/projectcalico.org/nodes/{}",
        topology::node_name(index)
    );
    lab::etcd::get(&lab.names(), &lab.state.etcd_endpoints, &key)
        .unwrap()
        .unwrap_or_else(|| panic!("{key} is not registered"))
}

/// What both modes share: addresses of nodes and pods, registration, the pods' IPv6 wiring and
/// both complete matrices (through the CLI, as an operator runs it).
fn assert_dual_stack(lab: &Lab) {
    let pool_v4: IpNet = resources::POD_POOL.parse().unwrap();
    let pool_v6: IpNet = resources::POD_POOL_V6.parse().unwrap();
    let status = lab::verbs::status_json(&lab.options).unwrap();
    assert_eq!(status["ipv6"], true, "{status:#}");
    for index in 1..=NODES {
        let v6 = topology::node_address_v6_in(index, 1);
        assert_eq!(
            status["nodes"][index - 1]["addressV6"],
            v6.to_string(),
            "{status:#}"
        );
        let node = node_resource(lab, index);
        assert_eq!(
            node["spec"]["bgp"]["ipv6Address"],
            format!("{v6}/64"),
            "node{index} registered without its IPv6 address: {node:#}"
        );
    }
    let pods = status["pods"].as_array().unwrap();
    assert_eq!(pods.len(), lab.state.pods.len());
    for pod in pods {
        let addresses: Vec<IpAddr> = pod["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(addresses.len(), 2, "{pod:#}");
        assert!(pool_v4.contains(&addresses[0]), "{pod:#}");
        assert!(pool_v6.contains(&addresses[1]), "{pod:#}");
    }
    for pod in &lab.state.pods {
        // Calico's pod side: the /128 on eth0 and the default route via the host veth's
        // link-local address (EUI-64 of ee:ee:ee:ee:ee:ee).
        let args = ["-n", pod.namespace.as_str(), "-6", "route", "show"];
        let routes = topology::ip(&args).unwrap_or_default();
        assert!(
            routes.contains("default via fe80::ecee:eeff:feee:eeee dev eth0"),
            "{}: {routes}",
            pod.qualified()
        );
    }
    lab.assert_full_matrix(Duration::from_secs(60));
    let (ok, printed) = lab_cli(lab, &["ping"]);
    assert!(ok, "lab ping failed:\n{printed}");
    assert!(
        printed.contains("IPv4:\n") && printed.contains("IPv6:\n"),
        "{printed}"
    );
}

/// `ip -6 route` of a node.
fn routes_v6(lab: &Lab, node: usize) -> String {
    lab.ip(node, &["-6", "route", "show"])
}

#[test]
fn dual_stack_bgp_carries_both_families() {
    if !require_root("dual_stack_bgp_carries_both_families") {
        return;
    }
    let lab = Lab::up_dual_stack("e2ev6bgp", Mode::Bgp, NODES, 1);
    assert_dual_stack(&lab);
    for node in 1..=NODES {
        let socket = lab::daemons::NodeFiles::new(&lab.options.state_dir(), node).control_socket();
        let status = lab::node_status(&socket).unwrap();
        let mut established_v6: Vec<IpAddr> = status
            .peers
            .iter()
            .filter(|p| p.info.starts_with("Established") && p.address.is_ipv6())
            .map(|p| p.address)
            .collect();
        established_v6.sort();
        let others: Vec<IpAddr> = (1..=NODES)
            .filter(|o| *o != node)
            .map(|o| IpAddr::V6(topology::node_address_v6_in(o, 1)))
            .collect();
        assert_eq!(established_v6, others, "node{node}: {}", status.render());
        assert_eq!(status.peers.len(), 2 * (NODES - 1), "{}", status.render());
        // Every other node's IPv6 block is reached via that node's IPv6 address.
        let routes = routes_v6(&lab, node);
        for other in (1..=NODES).filter(|o| *o != node) {
            let via = format!("via {} dev eth0", topology::node_address_v6_in(other, 1));
            assert!(
                routes
                    .lines()
                    .any(|l| l.contains("/122 ") && l.contains(&via)),
                "node{node} has no IPv6 block route {via}:\n{routes}"
            );
        }
    }

    // A loss in the IPv6 matrix alone fails `lab ping`: node1's pod loses its IPv6 default
    // route, so it neither reaches the others nor answers them over IPv6.
    let pod = &lab.state.pods[0];
    topology::ip(&["-n", &pod.namespace, "-6", "route", "del", "default"]).unwrap();
    let (ok, printed) = lab_cli(&lab, &["ping"]);
    assert!(!ok, "lab ping exited 0 with IPv6 losses:\n{printed}");
    let (v4, v6) = printed.split_once("IPv6:\n").expect("an IPv6 matrix");
    assert!(!v4.contains("LOST"), "{printed}");
    assert_eq!(v6.matches("LOST").count(), 2 * (NODES - 1), "{printed}");
}

/// `lab pod add` in a dual-stack lab prints both addresses, and the new pod answers over IPv6.
fn assert_pod_add_is_dual_stack(lab: &Lab) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["lab", "--state-dir"])
        .arg(lab.options.state_dir())
        .args(["pod", "add", "--lab", &lab.options.name, "--name", "extra"])
        .args(["--node", "2"])
        .output()
        .expect("running starling lab pod add");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let state = lab::LabState::load(&lab.options.state_dir()).unwrap();
    let extra = state
        .pods
        .iter()
        .find(|p| p.name() == "extra")
        .expect("the new pod is recorded");
    let v6 = extra.address_v6.expect("the new pod has an IPv6 address");
    assert!(printed.contains(&format!(",{v6}")), "{printed}");
    let from = &lab.state.pods[0].namespace;
    let target = v6.to_string();
    assert!(
        super::poll(Duration::from_secs(10), || topology::in_ns(
            from,
            "ping",
            &["-c", "1", "-W", "1", &target]
        )
        .is_ok()),
        "{from} does not reach the new pod at {v6}"
    );
}

#[test]
fn dual_stack_vxlan_uses_the_v6_device() {
    if !require_root("dual_stack_vxlan_uses_the_v6_device") {
        return;
    }
    let lab = Lab::up_dual_stack("e2ev6vx", Mode::Vxlan, NODES, 1);
    assert_dual_stack(&lab);
    let pool_v6: IpNet = resources::POD_POOL_V6.parse().unwrap();
    let device = lab.ip(1, &["-d", "link", "show", "vxlan-v6.calico"]);
    for expected in ["vxlan id 4096 ", "local fd00::1 ", "dstport 4789 "] {
        assert!(device.contains(expected), "no {expected:?} in {device}");
    }
    let neighbours = lab.ip(1, &["-6", "neigh", "show", "dev", "vxlan-v6.calico"]);
    let node1 = lab.names().node_ns(1);
    let fdb = topology::run(
        "bridge",
        &["-n", &node1, "fdb", "show", "dev", "vxlan-v6.calico"],
    )
    .unwrap_or_default();
    let routes = routes_v6(&lab, 1);
    for other in 2..=NODES {
        let node = node_resource(&lab, other);
        let vtep: IpAddr = node["spec"]["ipv6VXLANTunnelAddr"]
            .as_str()
            .unwrap_or_else(|| panic!("node{other} has no IPv6 VTEP: {node:#}"))
            .parse()
            .unwrap();
        assert!(pool_v6.contains(&vtep), "{vtep}");
        let mac = starling_calc::spec::vtep_mac(&topology::node_name(other), true).to_string();
        assert!(
            neighbours.contains(&format!("{vtep} lladdr {mac} PERMANENT")),
            "node1 has no neighbour entry for node{other}'s VTEP {vtep} ({mac}):\n{neighbours}"
        );
        let underlay = topology::node_address_v6_in(other, 1);
        assert!(
            fdb.contains(&format!("{mac} dst {underlay} ")),
            "node1 has no FDB entry {mac} -> {underlay}:\n{fdb}"
        );
        // The remote IPv6 blocks go via the remote VTEP, on the v6 device.
        assert!(
            routes.lines().any(|l| l.contains("/122 ")
                && l.contains("dev vxlan-v6.calico")
                && l.contains(&format!("via {vtep} "))),
            "node1 has no IPv6 block route via node{other}'s VTEP {vtep}:\n{routes}"
        );
    }
    assert_pod_add_is_dual_stack(&lab);
}
