//! IPIP (Calico's default pool, `ipipMode: Always`) end to end: tunl0 as Calico leaves it, remote
//! blocks through it, pod MTU 1480, repair of a deleted route. Needs the kernel's ipip module: where the host
//! lacks it, these run on the guest kernel (tests/lab_guest.rs).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use starling::lab::{self, topology, Mode};

use super::requirements::{require_kernel_feature, require_root};
use super::{mtu, poll, vm, Lab};

/// Block size of the lab's pool (resources::pool).
const BLOCK_PREFIX_LEN: u8 = 26;

/// Whether this kernel can run IPIP tests, for `require_kernel_feature`. Where it cannot, the
/// test is left to the guest run (the skip says so); inside the guest, a missing ipip is a
/// failure.
pub fn ipip_here(test: &str) -> Result<(), String> {
    let here = lab::ipip_support().map_err(|error| format!("{error:#}"));
    assert!(
        here.is_ok() || !vm::in_guest(),
        "{test}: the guest kernel must have the ipip module: {here:?}"
    );
    here.map_err(|error| {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        format!(
            "{error} (kernel {}); the test runs on the guest kernel \
             (lab_guest::lab_suite_on_guest_kernel)",
            kernel.trim()
        )
    })
}

/// The node's IPIP tunnel address as IPAM recorded it on its Node resource.
fn tunnel_address(lab: &Lab, node: usize) -> Ipv4Addr {
    let key = format!(
        "/calico/resources/v3/projectcalico.org/nodes/{}",
        topology::node_name(node)
    );
    let resource = lab::etcd::get(&lab.names(), &lab.state.etcd_endpoints, &key)
        .unwrap()
        .unwrap_or_else(|| panic!("no Node resource at {key}"));
    resource["spec"]["bgp"]["ipv4IPIPTunnelAddr"]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("node{node} has no ipv4IPIPTunnelAddr: {resource}"))
}

/// The blocks of the pods on `node`.
pub fn pod_blocks(lab: &Lab, node: usize) -> Vec<Ipv4Net> {
    let mut blocks: Vec<Ipv4Net> = lab
        .state
        .pods
        .iter()
        .filter(|pod| pod.node == node)
        .filter_map(|pod| match pod.address {
            Some(IpAddr::V4(address)) => Ipv4Net::new(address, BLOCK_PREFIX_LEN).ok(),
            _ => None,
        })
        .map(|net| net.trunc())
        .collect();
    blocks.sort();
    blocks.dedup();
    assert!(!blocks.is_empty(), "node{node} has no pod blocks");
    blocks
}

/// The `ip route` line for `block` on `node`, if any.
pub fn route_line(lab: &Lab, node: usize, block: Ipv4Net) -> Option<String> {
    let prefix = format!("{block} ");
    lab.routes(node)
        .lines()
        .find(|line| line.starts_with(&prefix))
        .map(str::to_string)
}

/// Asserts that `node` reaches `other`'s pod blocks `via <other> dev tunl0 onlink`.
pub fn assert_tunnel_routes(lab: &Lab, node: usize, other: usize) {
    for block in pod_blocks(lab, other) {
        let line = route_line(lab, node, block).unwrap_or_else(|| {
            panic!(
                "node{node} has no route to node{other}'s block {block}:\n{}",
                lab.routes(node)
            )
        });
        let via = format!("via {} dev tunl0 ", topology::node_address(other));
        assert!(
            line.contains(&via) && line.contains("onlink"),
            "node{node}'s route to node{other}'s block is not `{via}... onlink`: {line}"
        );
    }
}

/// tunl0 carries the node's tunnel address and is as Calico's Felix leaves it: the kernel's
/// fallback device (any remote, any local, ttl inherit, pmtudisc off), up, IPIP MTU.
pub fn assert_tunl0(lab: &Lab, node: usize, mtu: u32) {
    let tunnel = tunnel_address(lab, node);
    let addresses = lab.ip(node, &["-4", "addr", "show", "dev", "tunl0"]);
    assert!(
        addresses.contains(&format!("inet {tunnel}/32 ")),
        "node{node}'s tunl0 does not carry its tunnel address {tunnel}/32:\n{addresses}"
    );
    let link = lab.ip(node, &["-d", "link", "show", "tunl0"]);
    for wanted in [
        "tunl0@NONE: <NOARP,UP,LOWER_UP>",
        &format!(" mtu {mtu} "),
        "link/ipip 0.0.0.0 brd 0.0.0.0",
        "ipip any remote any local any ttl inherit nopmtudisc",
    ] {
        assert!(
            link.contains(wanted),
            "node{node}'s tunl0 lacks `{wanted}`:\n{link}"
        );
    }
}

#[test]
fn ipip_three_nodes_full_matrix_tunl0_mtu_and_route_repair() {
    if !require_root("ipip_three_nodes_full_matrix_tunl0_mtu_and_route_repair")
        || !require_kernel_feature(
            "ipip_three_nodes_full_matrix_tunl0_mtu_and_route_repair",
            "ipip",
            || ipip_here("ipip_three_nodes_full_matrix_tunl0_mtu_and_route_repair"),
        )
    {
        return;
    }
    let lab = Lab::up("e2eipip", Mode::Ipip, 3, 2);
    lab.assert_full_matrix(Duration::from_secs(60));
    for node in 1..=3 {
        assert_tunl0(&lab, node, 1480);
        for other in (1..=3).filter(|o| *o != node) {
            assert_tunnel_routes(&lab, node, other);
        }
        eprintln!("node{node}:\n{}", lab.routes(node));
    }
    eprintln!(
        "node1 tunl0:\n{}",
        lab.ip(1, &["-d", "link", "show", "tunl0"])
    );
    mtu::assert_pod_mtu(&lab, 1480);

    // Someone deletes node1's route to node2's block: the daemon notices and puts it back.
    let block = pod_blocks(&lab, 2)[0];
    let before = route_line(&lab, 1, block).unwrap();
    let started = Instant::now();
    // The daemon may put it back before the next `ip route` runs: the successful delete is the
    // proof that it was gone.
    topology::ip(&[
        "-n",
        &lab.names().node_ns(1),
        "route",
        "del",
        &block.to_string(),
    ])
    .unwrap_or_else(|err| panic!("deleting node1's route to {block}: {err:#}"));
    assert!(
        poll(Duration::from_secs(30), || route_line(&lab, 1, block)
            .is_some()),
        "node1's route to {block} was not repaired within 30 s:\n{}",
        lab.routes(1)
    );
    eprintln!(
        "node1's deleted route to {block} repaired after {:.1?}",
        started.elapsed()
    );
    assert_eq!(route_line(&lab, 1, block).unwrap(), before);
    lab.assert_full_matrix(Duration::from_secs(30));
}
