//! Configuration changes never flap routes: in a BGP lab, a new `nodeMeshMaxRestartTime`, a new
//! pool, and new pods that claim new blocks (the old pool closed to new pods) leave every route
//! that was in every node's kernel untouched; a route monitor in each node counts the events.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};
use starling::lab::{self, pods, Mode};

use super::requirements::require_root;
use super::{poll, Lab};

/// Sentinel route that marks the end of a node's event window.
const SENTINEL: &str = "198.18.0.1";

/// `ip monitor route` in one namespace, its lines collected.
struct RouteMonitor {
    namespace: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl RouteMonitor {
    fn start(namespace: &str) -> RouteMonitor {
        let mut child = Command::new("ip")
            .args(["-n", namespace, "monitor", "route"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ip monitor runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let collected = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                collected.lock().unwrap().push(line);
            }
        });
        let monitor = RouteMonitor {
            namespace: namespace.to_string(),
            child,
            lines,
        };
        // The monitor is live once it reports a route we add.
        monitor.mark_and_wait();
        monitor.lines.lock().unwrap().clear();
        monitor
    }

    /// Adds and removes the sentinel route, then waits until the monitor saw it: every event
    /// before it is in `lines`.
    fn mark_and_wait(&self) {
        let route = format!("{SENTINEL}/32");
        let sentinel = |verb: &str| {
            let _ = Command::new("ip")
                .args(["-n", &self.namespace, "route", verb, "blackhole", &route])
                .args(["proto", "250"])
                .status();
        };
        // Delete and add each round: a replace of an identical route may not be announced, and
        // the monitor may subscribe late on a slow (emulated) machine.
        let seen = poll(Duration::from_secs(60), || {
            sentinel("del");
            sentinel("add");
            poll(Duration::from_secs(1), || {
                self.lines
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|line| line.contains(SENTINEL))
            })
        });
        sentinel("del");
        assert!(
            seen,
            "the route monitor in {} never saw its sentinel",
            self.namespace
        );
    }

    /// Events up to the sentinel.
    fn events(&self) -> Vec<String> {
        self.mark_and_wait();
        let lines = self.lines.lock().unwrap();
        // Skip the tail of the start-up mark (its deletion may arrive after the clear).
        lines
            .iter()
            .skip_while(|line| line.contains(SENTINEL))
            .take_while(|line| !line.contains(SENTINEL))
            .cloned()
            .collect()
    }
}

impl Drop for RouteMonitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The destination an `ip route`/`ip monitor` line is about ("Deleted " stripped).
fn destination(line: &str) -> &str {
    let line = line.strip_prefix("Deleted ").unwrap_or(line);
    let line = line.strip_prefix("blackhole ").unwrap_or(line);
    line.split_whitespace().next().unwrap_or("")
}

#[test]
fn config_pool_and_new_block_changes_leave_existing_routes_untouched() {
    if !require_root("config_pool_and_new_block_changes_leave_existing_routes_untouched") {
        return;
    }
    let nodes = 3;
    let lab = Lab::up("e2enf", Mode::Bgp, nodes, 1);
    lab.assert_full_matrix(Duration::from_secs(60));
    let names = lab.names();
    let before: Vec<String> = (1..=nodes).map(|node| lab.routes(node)).collect();
    let monitors: Vec<RouteMonitor> = (1..=nodes)
        .map(|node| RouteMonitor::start(&names.node_ns(node)))
        .collect();

    // A new mesh restart time, a new pool, and the old pool closed to new pods.
    let (new_pool_key, new_pool) =
        lab::resources::pool("new-pool", "10.246.0.0/16", Mode::Bgp, "all()");
    let (old_pool_key, old_pool) =
        lab::resources::pool("lab-pool", lab::resources::POD_POOL, Mode::Bgp, "!all()");
    lab::etcd::put_all(
        &names,
        &lab.state.etcd_endpoints,
        vec![
            (
                "/calico/resources/v3/projectcalico.org/bgpconfigurations/default".to_string(),
                serde_json::json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPConfiguration",
                    "metadata": {"name": "default"},
                    "spec": {"asNumber": 64512, "nodeToNodeMeshEnabled": true,
                             "nodeMeshMaxRestartTime": "4s"}}),
            ),
            (new_pool_key, new_pool),
            (old_pool_key, old_pool),
        ],
    )
    .unwrap();
    lab.assert_full_matrix(Duration::from_secs(5));

    // New pods now claim blocks of the new pool; every node learns every new block.
    let state_dir = lab.options.state_dir();
    let new_pool_cidr: IpNet = "10.246.0.0/16".parse().unwrap();
    let mut new_blocks = Vec::new();
    for node in 1..=nodes {
        let placed = poll(Duration::from_secs(20), || {
            let pod = pods::add(
                &names,
                &state_dir,
                &lab.binary(),
                node,
                50 + new_blocks.len(),
            )
            .unwrap();
            let address = pod.address.expect("the CNI result has an address");
            if !new_pool_cidr.contains(&address) {
                // The pool change has not reached this daemon yet: try another pod.
                new_blocks.push(None);
                return false;
            }
            let std::net::IpAddr::V4(v4) = address else {
                return false;
            };
            new_blocks.push(Some(Ipv4Net::new(v4, 26).unwrap().trunc()));
            true
        });
        assert!(placed, "node{node} never placed a pod in the new pool");
    }
    let new_blocks: Vec<Ipv4Net> = new_blocks.into_iter().flatten().collect();
    for node in 1..=nodes {
        let learned = poll(Duration::from_secs(30), || {
            let routes = lab.routes(node);
            new_blocks
                .iter()
                .all(|block| routes.contains(&block.to_string()))
        });
        assert!(
            learned,
            "node{node} lacks a new block:\n{}",
            lab.routes(node)
        );
    }
    lab.assert_full_matrix(Duration::from_secs(5));

    for (index, monitor) in monitors.iter().enumerate() {
        let node = index + 1;
        let events = monitor.events();
        let old: Vec<&str> = before[index].lines().map(destination).collect();
        let touched: Vec<&String> = events
            .iter()
            .filter(|line| line.starts_with("Deleted") || old.contains(&destination(line)))
            .collect();
        // The monitor saw the changes there were: every new block's route arriving.
        for block in &new_blocks {
            assert!(
                events
                    .iter()
                    .any(|line| destination(line) == block.to_string()),
                "node{node}'s monitor missed the new block {block}:\n{events:#?}"
            );
        }
        assert!(
            touched.is_empty(),
            "node{node}: existing routes were touched:\n{touched:#?}\nall events:\n{events:#?}"
        );
        let after = lab.routes(node);
        for line in before[index].lines() {
            assert!(
                after.contains(line),
                "node{node} lost or changed {line:?}:\n{after}"
            );
        }
        eprintln!(
            "node{node}: {} route events, none on existing routes",
            events.len()
        );
    }
}
