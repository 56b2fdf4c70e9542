//! `ipipMode: CrossSubnet` and `vxlanMode: CrossSubnet`: a 4-node lab on two subnets (odd nodes
//! on 192.0.2.0/24, even ones on 203.0.113.0/24, one routed hop apart). Blocks of nodes on the same
//! subnet are reached with plain routes through eth0; only the other subnet's go through the
//! tunnel. Full ping matrix.

use std::time::Duration;

use starling::lab::{topology, Mode};

use super::ipip::{ipip_here, pod_blocks, route_line};
use super::requirements::{require_kernel_feature, require_root};
use super::Lab;

const NODES: usize = 4;

/// Checks every node's route to every other node's blocks: direct through eth0 when both are on
/// one subnet, else as `across` says (what it should look like, and a predicate on the line).
fn assert_routes(lab: &Lab, across: (&str, fn(&str) -> bool)) {
    for node in 1..=NODES {
        for other in (1..=NODES).filter(|o| *o != node) {
            let same_subnet = topology::node_subnet(node, 2) == topology::node_subnet(other, 2);
            for block in pod_blocks(lab, other) {
                let line = route_line(lab, node, block).unwrap_or_else(|| {
                    panic!(
                        "node{node} has no route to node{other}'s block {block}:\n{}",
                        lab.routes(node)
                    )
                });
                if same_subnet {
                    let direct = format!("via {} dev eth0 ", lab.state.node_address(other));
                    assert!(
                        line.contains(&direct),
                        "node{node} reaches node{other} (same subnet) not directly \
                         (`{direct}`): {line}"
                    );
                } else {
                    assert!(
                        (across.1)(&line),
                        "node{node} reaches node{other} (other subnet) not `{}`: {line}",
                        across.0
                    );
                }
            }
        }
    }
    eprintln!(
        "lab {} node1 ({}) routes:\n{}",
        lab.options.name,
        lab.state.node_address(1),
        lab.routes(1)
    );
}

#[test]
fn ipip_cross_subnet_encapsulates_only_across_subnets() {
    if !require_root("ipip_cross_subnet_encapsulates_only_across_subnets")
        || !require_kernel_feature(
            "ipip_cross_subnet_encapsulates_only_across_subnets",
            "ipip",
            || ipip_here("ipip_cross_subnet_encapsulates_only_across_subnets"),
        )
    {
        return;
    }
    let lab = Lab::up("e2eipipcs", Mode::IpipCrossSubnet, NODES, 1);
    lab.assert_full_matrix(Duration::from_secs(60));
    assert_routes(
        &lab,
        ("via <node> dev tunl0 ... onlink", |line| {
            line.contains(" dev tunl0 ") && line.contains("onlink")
        }),
    );
    // The tunnel goes to the other node's own address, not through the router.
    for other in [2, 4] {
        let block = pod_blocks(&lab, other)[0];
        let line = route_line(&lab, 1, block).unwrap_or_default();
        let via = format!("via {} dev tunl0 ", lab.state.node_address(other));
        assert!(line.contains(&via), "{line}");
    }
}

#[test]
fn vxlan_cross_subnet_encapsulates_only_across_subnets() {
    if !require_root("vxlan_cross_subnet_encapsulates_only_across_subnets") {
        return;
    }
    let lab = Lab::up("e2evxcs", Mode::VxlanCrossSubnet, NODES, 1);
    lab.assert_full_matrix(Duration::from_secs(60));
    assert_routes(
        &lab,
        ("via <VTEP> dev vxlan.calico ... onlink", |line| {
            line.contains(" dev vxlan.calico ") && line.contains("onlink")
        }),
    );
}
