//! End-to-end tests through the lab: real daemons in node namespaces, a private etcd, pods wired
//! by the CNI plugin, and traffic between them. Each test brings up its own lab (own name, so
//! namespaces never collide), and a guard brings it down even when the test fails.
//! Root only; skipped with a message otherwise.
//!
//! Tests that need a kernel feature the host may lack (ipip) run where the kernel has it; the
//! core of this binary also runs once more inside a QEMU guest booting Debian's 6.1 kernel
//! (tests/lab_guest.rs, through scripts/vm-test.sh), so it is proven on that kernel too and the
//! IPIP tests always run somewhere.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use starling::lab::{self, pods, topology, LabOptions, LabState, Mode, UpArgs};

#[path = "lab_e2e/bfd.rs"]
mod bfd;
#[path = "lab_e2e/cross_subnet.rs"]
mod cross_subnet;
#[path = "lab_e2e/dual_stack.rs"]
mod dual_stack;
#[path = "lab_e2e/floating_ip.rs"]
mod floating_ip;
#[path = "lab_e2e/ipam_check.rs"]
mod ipam_check;
#[path = "lab_e2e/ipip.rs"]
mod ipip;
#[path = "support/metrics_scrape.rs"]
mod metrics_scrape;
#[path = "lab_e2e/mtu.rs"]
mod mtu;
#[path = "lab_e2e/no_flap.rs"]
mod no_flap;
#[path = "lab_e2e/policy_calico.rs"]
mod policy_calico;
#[path = "lab_e2e/policy_conformance.rs"]
mod policy_conformance;
#[path = "lab_e2e/policy_model.rs"]
mod policy_model;
#[path = "lab_e2e/policy_support.rs"]
mod policy_support;
#[path = "support/requirements.rs"]
mod requirements;
#[path = "support/vm.rs"]
mod vm;

use requirements::require_root;

/// Brings a lab up and always down again.
struct Lab {
    options: LabOptions,
    state: LabState,
}

impl Lab {
    fn up(name: &str, mode: Mode, nodes: usize, pods_per_node: usize) -> Lab {
        Lab::start(name, mode, nodes, pods_per_node, false)
    }

    /// `lab up --ipv6`.
    fn up_dual_stack(name: &str, mode: Mode, nodes: usize, pods_per_node: usize) -> Lab {
        Lab::start(name, mode, nodes, pods_per_node, true)
    }

    fn start(name: &str, mode: Mode, nodes: usize, pods_per_node: usize, ipv6: bool) -> Lab {
        let options = LabOptions {
            name: name.to_string(),
            state_dir: Some(std::env::temp_dir().join(format!("starling-lab-{name}"))),
        };
        let args = UpArgs {
            nodes,
            mode,
            pods_per_node,
            subnets: None,
            ipv6,
            etcd_endpoints: None,
            starling_binary: Some(PathBuf::from(env!("CARGO_BIN_EXE_starling"))),
        };
        let started = Instant::now();
        let state = match lab::up(&options, &args) {
            Ok(state) => state,
            Err(err) => {
                let logs = logs(&options, nodes);
                lab::down(&options).ok();
                panic!("lab {name} did not come up: {err:#}\n{logs}");
            }
        };
        eprintln!(
            "lab {name}: {nodes} nodes x {pods_per_node} pods up in {:.1?}",
            started.elapsed()
        );
        Lab { options, state }
    }

    fn names(&self) -> topology::LabNames {
        self.options.names().unwrap()
    }

    fn binary(&self) -> PathBuf {
        self.state.binary.clone()
    }

    /// Polls the all-pairs matrix until it is complete or the deadline passes.
    fn full_matrix(&self, timeout: Duration) -> lab::ping::PingReport {
        let deadline = Instant::now() + timeout;
        loop {
            let matrix = lab::ping(&self.options).unwrap();
            if matrix.failures() == 0 || Instant::now() >= deadline {
                return matrix;
            }
        }
    }

    fn assert_full_matrix(&self, timeout: Duration) {
        let started = Instant::now();
        let matrix = self.full_matrix(timeout);
        assert_eq!(
            matrix.failures(),
            0,
            "ping matrix has losses:\n{}\n{}",
            matrix.render(),
            logs(&self.options, self.state.nodes)
        );
        eprintln!(
            "lab {}: full ping matrix ({} pairs) after {:.1?}\n{}",
            self.options.name,
            matrix.pairs(),
            started.elapsed(),
            matrix.render()
        );
    }

    fn routes(&self, node: usize) -> String {
        self.ip(node, &["route", "show"])
    }

    /// `ip ARGS` in node `node`'s namespace (empty on failure, so asserts show what was seen).
    fn ip(&self, node: usize, args: &[&str]) -> String {
        let ns = self.names().node_ns(node);
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        topology::ip(&full).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(err) = lab::down(&self.options) {
            eprintln!("lab {} down failed: {err:#}", self.options.name);
        }
    }
}

fn logs(options: &LabOptions, nodes: usize) -> String {
    let dir = options.state_dir();
    let mut out = String::new();
    for index in 1..=nodes {
        let path = dir.join(topology::node_name(index)).join("starling.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        out.push_str(&format!("--- {} (last lines)\n", path.display()));
        for line in tail.into_iter().rev() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn poll(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(lab::POLL_INTERVAL);
    }
}

#[test]
fn vxlan_three_nodes_full_matrix_and_mtu() {
    if !require_root("vxlan_three_nodes_full_matrix_and_mtu") {
        return;
    }
    let lab = Lab::up("e2evx", Mode::Vxlan, 3, 2);
    lab.assert_full_matrix(Duration::from_secs(30));
    // Remote blocks go through the VXLAN device.
    let routes = lab.routes(1);
    assert!(routes.contains("vxlan.calico"), "{routes}");
    mtu::assert_pod_mtu(&lab, 1450);
}

#[test]
fn bgp_full_mesh_routes_learned_over_bgp() {
    if !require_root("bgp_full_mesh_routes_learned_over_bgp") {
        return;
    }
    let lab = Lab::up("e2ebgp", Mode::Bgp, 3, 2);
    lab.assert_full_matrix(Duration::from_secs(60));
    for node in 1..=3 {
        let socket = lab::daemons::NodeFiles::new(&lab.options.state_dir(), node).control_socket();
        let status = lab::node_status(&socket).unwrap();
        let established = status
            .peers
            .iter()
            .filter(|p| p.info.contains("Established"))
            .count();
        assert_eq!(established, 2, "node{node}: {}", status.render());
        // The operator's view: `starling node status` prints the same two sessions.
        let printed = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
            .args(["node", "status", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&printed.stdout);
        assert!(printed.status.success(), "{text}");
        assert!(
            text.contains("IPv4 BGP status") && text.contains("PEER ADDRESS"),
            "{text}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("node-to-node mesh") && l.contains("Established"))
                .count(),
            2,
            "{text}"
        );
        // Every other node's pods are reached through a route via that node's address.
        for other in (1..=3).filter(|o| *o != node) {
            let via = format!("via {}", topology::node_address(other));
            let routes = lab.routes(node);
            assert!(
                routes.contains(&via),
                "node{node} has no route via node{other}:\n{routes}"
            );
        }
    }
}

#[test]
fn bgp_route_reflector_clients_peer_only_with_the_reflector() {
    if !require_root("bgp_route_reflector_clients_peer_only_with_the_reflector") {
        return;
    }
    let lab = Lab::up("e2err", Mode::BgpRr, 4, 1);
    lab.assert_full_matrix(Duration::from_secs(60));
    let reflector: IpAddr = IpAddr::V4(topology::node_address(1));
    for node in 2..=4 {
        let socket = lab::daemons::NodeFiles::new(&lab.options.state_dir(), node).control_socket();
        let status = lab::node_status(&socket).unwrap();
        let peers: Vec<IpAddr> = status.peers.iter().map(|p| p.address).collect();
        assert_eq!(peers, vec![reflector], "node{node}: {}", status.render());
    }
    let socket = lab::daemons::NodeFiles::new(&lab.options.state_dir(), 1).control_socket();
    assert_eq!(lab::node_status(&socket).unwrap().peers.len(), 3);
}

#[test]
fn pool_with_node_selector_serves_only_its_node() {
    if !require_root("pool_with_node_selector_serves_only_its_node") {
        return;
    }
    let lab = Lab::up("e2esel", Mode::Vxlan, 2, 1);
    let names = lab.names();
    // node2 joins rack 1: the general pool leaves it, a rack pool serves it.
    let node_key = "/calico/resources/v3/projectcalico.org/nodes/node2";
    let mut node2: serde_json::Value = lab::etcd::get(&names, &lab.state.etcd_endpoints, node_key)
        .unwrap()
        .expect("node2 is registered");
    node2["metadata"]["labels"] = serde_json::json!({"rack": "1"});
    lab::etcd::put_all(
        &names,
        &lab.state.etcd_endpoints,
        vec![
            (node_key.to_string(), node2),
            lab::resources::pool(
                "lab-pool",
                lab::resources::POD_POOL,
                Mode::Vxlan,
                "rack != '1'",
            ),
            lab::resources::pool("rack1-pool", "10.245.0.0/16", Mode::Vxlan, "rack == '1'"),
        ],
    )
    .unwrap();
    let state_dir = lab.options.state_dir();
    let rack: ipnet::IpNet = "10.245.0.0/16".parse().unwrap();
    let mut added = Vec::new();
    // The daemon sees the label change through its watch; poll until a new pod lands in the pool.
    let landed = poll(Duration::from_secs(20), || {
        let index = 10 + added.len();
        let pod = pods::add(&names, &state_dir, &lab.binary(), 2, index).unwrap();
        let inside = pod.address.is_some_and(|a| rack.contains(&a));
        added.push(pod);
        inside
    });
    assert!(
        landed,
        "pods on node2 never got rack1-pool addresses: {added:?}"
    );
    let on_node1 = pods::add(&names, &state_dir, &lab.binary(), 1, 10).unwrap();
    assert!(
        !on_node1.address.is_some_and(|a| rack.contains(&a)),
        "node1's pod came from the rack pool: {on_node1:?}"
    );
    for pod in added.iter().chain([&on_node1]) {
        pods::delete(&names, &state_dir, &lab.binary(), pod);
    }
}

#[test]
fn nat_outgoing_shows_the_node_address_outside() {
    if !require_root("nat_outgoing_shows_the_node_address_outside") {
        return;
    }
    let lab = Lab::up("e2enat", Mode::Vxlan, 2, 1);
    let names = lab.names();
    let pod = lab.state.pods[0].clone();
    let outside = names.outside_ns();
    // A UDP listener in the outside namespace reports the source address it sees.
    let listener = starling::netns::run_in(&outside, || {
        std::net::UdpSocket::bind((topology::OUTSIDE_ADDRESS, 5000))
    })
    .unwrap()
    .unwrap();
    listener
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let target = format!("{}:5000", topology::OUTSIDE_ADDRESS);
    let mut seen = None;
    let reached = poll(Duration::from_secs(20), || {
        let sent = starling::netns::run_in(&pod.namespace, || {
            let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
            socket.send_to(b"hello", &target)
        });
        if !matches!(sent, Ok(Ok(_))) {
            return false;
        }
        let mut buffer = [0u8; 16];
        match listener.recv_from(&mut buffer) {
            Ok((_, from)) => {
                seen = Some(from.ip());
                true
            }
            Err(_) => false,
        }
    });
    assert!(
        reached,
        "nothing from pod {:?} reached the outside",
        pod.address
    );
    let node_address = IpAddr::V4(topology::node_address(pod.node));
    assert_eq!(
        seen,
        Some(node_address),
        "the outside must see the node's address, not the pod's {:?}",
        pod.address
    );
}

#[test]
fn node_restart_keeps_traffic_and_converges() {
    if !require_root("node_restart_keeps_traffic_and_converges") {
        return;
    }
    let lab = Lab::up("e2erst", Mode::Bgp, 3, 1);
    let names = lab.names();
    // A short mesh restart time, so "a node that stays away" is decided within the test.
    lab::etcd::put_all(
        &names,
        &lab.state.etcd_endpoints,
        vec![(
            "/calico/resources/v3/projectcalico.org/bgpconfigurations/default".to_string(),
            serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
                "metadata": {"name": "default"},
                "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": true,
                         "nodeMeshMaxRestartTime": "4s"}}),
        )],
    )
    .unwrap();
    lab.assert_full_matrix(Duration::from_secs(60));
    let before = lab.routes(1);
    // Stop node3's daemon: its routes stay everywhere (kernel keeps them, peers hold them as stale).
    let pid = lab.state.daemon_pids[2];
    lab::daemons::stop(pid, Duration::from_secs(10));
    lab.assert_full_matrix(Duration::from_secs(10));
    // Restart it: it converges without disturbing the routes that were right.
    let started = Instant::now();
    let new_pid = lab::daemons::start(
        &names,
        &lab.options.state_dir(),
        &lab.binary(),
        &lab.state,
        3,
    )
    .unwrap();
    lab::daemons::wait_ready(&names, &[3], Duration::from_secs(60)).unwrap();
    // Converged means node1's session to node3 is back too: until then node1 holds the old
    // session's stale routes under that session's restart time (on a slow machine, such as the
    // emulated guest, readiness comes well before the session).
    let socket = lab::daemons::NodeFiles::new(&lab.options.state_dir(), 1).control_socket();
    let node3 = IpAddr::V4(topology::node_address(3));
    assert!(
        poll(Duration::from_secs(60), || lab::node_status(&socket)
            .is_ok_and(|status| status
                .peers
                .iter()
                .any(
                    |peer| peer.address == node3 && peer.info.starts_with("Established")
                ))),
        "node1's session to the restarted node3 did not come back:\n{}",
        logs(&lab.options, 3)
    );
    lab.assert_full_matrix(Duration::from_secs(60));
    eprintln!("node3 restart converged in {:.1?}", started.elapsed());
    assert_eq!(
        lab.routes(1),
        before,
        "routes on node1 changed across node3's restart"
    );

    // node3 goes away for good: after its restart time the others withdraw its routes.
    lab::daemons::stop(new_pid, Duration::from_secs(10));
    let gone = Instant::now();
    let via_node3 = format!("via {}", topology::node_address(3));
    assert!(
        poll(Duration::from_secs(30), || !lab
            .routes(1)
            .contains(&via_node3)),
        "node1 still routes to node3 long after its restart time:\n{}\n{}",
        lab.routes(1),
        logs(&lab.options, 3)
    );
    eprintln!(
        "node3's routes withdrawn {:.1?} after it stopped",
        gone.elapsed()
    );
}
