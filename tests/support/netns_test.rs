//! Test-only helpers for dataplane tests: root check, `ip`/`bridge` in a namespace, scenario
//! builders (nodes, pools, blocks).

#![allow(dead_code)]

use std::process::Command;

use ipnet::IpNet;
use starling::dataplane::desired::{BlockSummary, DataplaneInput, HostInterface};
use starling::model::{CalicoNode, EncapMode, IpPool};
use starling::selector::Selector;

/// True when running as root; otherwise prints why the test is skipped.
pub fn require_root(test: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        true
    } else {
        println!("skipping {test}: needs root (network namespaces)");
        false
    }
}

/// Runs a command, panicking with its output when it fails; returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command and reports whether it succeeded (output discarded).
pub fn try_run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}

/// `ip -n NS ARGS...`
pub fn ip(namespace: &str, args: &str) -> String {
    let mut all = vec!["-n", namespace];
    all.extend(args.split_whitespace());
    run("ip", &all)
}

/// `ip -n NS -j ARGS...` parsed.
pub fn ip_json(namespace: &str, args: &str) -> Vec<serde_json::Value> {
    let mut all = vec!["-n", namespace, "-j"];
    all.extend(args.split_whitespace());
    let text = run("ip", &all);
    if text.trim().is_empty() {
        return vec![];
    }
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("ip {args}: {error}: {text}"))
}

/// `ip netns exec NS bridge -j fdb show dev DEV` parsed.
pub fn fdb_json(namespace: &str, device: &str) -> Vec<serde_json::Value> {
    let text = run(
        "ip",
        &[
            "netns", "exec", namespace, "bridge", "-j", "fdb", "show", "dev", device,
        ],
    );
    if text.trim().is_empty() {
        return vec![];
    }
    serde_json::from_str(&text).unwrap()
}

pub fn node(name: &str, ipv4: &str, vxlan: &str) -> CalicoNode {
    CalicoNode {
        name: name.to_string(),
        ipv4_address: Some(ipv4.parse().unwrap()),
        ipv4_vxlan_tunnel_addr: Some(vxlan.parse().unwrap()),
        ..CalicoNode::default()
    }
}

pub fn with_ipv6(mut node: CalicoNode, ipv6: &str, vxlan: &str) -> CalicoNode {
    node.ipv6_address = Some(ipv6.parse().unwrap());
    node.ipv6_vxlan_tunnel_addr = Some(vxlan.parse().unwrap());
    node
}

pub fn pool(
    name: &str,
    cidr: &str,
    vxlan: EncapMode,
    ipip: EncapMode,
    nat_outgoing: bool,
) -> IpPool {
    let cidr: IpNet = cidr.parse().unwrap();
    IpPool {
        name: name.to_string(),
        cidr,
        block_size: if matches!(cidr, IpNet::V4(_)) {
            26
        } else {
            122
        },
        ipip_mode: ipip,
        vxlan_mode: vxlan,
        nat_outgoing,
        disabled: false,
        disable_bgp_export: false,
        node_selector: Selector::all(),
        namespace_selector: Selector::all(),
        allowed_uses: IpPool::default_allowed_uses(),
        assignment_mode: Default::default(),
        deleting: false,
    }
}

pub fn block(cidr: &str, affinity: Option<&str>, borrowed: &[(&str, &str)]) -> BlockSummary {
    BlockSummary {
        cidr: cidr.parse().unwrap(),
        affinity: affinity.map(str::to_string),
        borrowed: borrowed
            .iter()
            .map(|(address, node)| (address.parse().unwrap(), node.to_string()))
            .collect(),
    }
}

pub fn interface(name: &str, addresses: &[&str], mtu: u32) -> HostInterface {
    HostInterface {
        name: name.to_string(),
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        mtu,
        oper_up: true,
    }
}

/// The three-node VXLAN scenario, seen from node-a (v4 and v6).
pub fn three_node_vxlan() -> DataplaneInput {
    let a = with_ipv6(
        node("node-a", "192.168.50.1/24", "10.244.0.1"),
        "fd00:50::1/64",
        "fd00:244::1",
    );
    let b = with_ipv6(
        node("node-b", "192.168.50.2/24", "10.244.1.1"),
        "fd00:50::2/64",
        "fd00:244::41",
    );
    let c = with_ipv6(
        node("node-c", "192.168.60.3/24", "10.244.2.1"),
        "fd00:60::3/64",
        "fd00:244::81",
    );
    DataplaneInput {
        local_node: a.clone(),
        nodes: vec![a, b, c],
        pools: vec![
            pool(
                "default-ipv4",
                "10.244.0.0/16",
                EncapMode::Always,
                EncapMode::Never,
                true,
            ),
            pool(
                "default-ipv6",
                "fd00:244::/48",
                EncapMode::Always,
                EncapMode::Never,
                false,
            ),
        ],
        blocks: vec![
            block("10.244.0.0/26", Some("node-a"), &[]),
            block("10.244.1.0/26", Some("node-b"), &[]),
            block(
                "10.244.2.0/26",
                Some("node-c"),
                &[("10.244.2.50", "node-b")],
            ),
            block("fd00:244::/122", Some("node-a"), &[]),
            block("fd00:244::40/122", Some("node-b"), &[]),
            block("fd00:244::80/122", Some("node-c"), &[]),
        ],
        host_interfaces: vec![interface(
            "eth0",
            &["192.168.50.1/24", "fd00:50::1/64"],
            1500,
        )],
        datastore_in_sync: true,
        ..DataplaneInput::default()
    }
}
