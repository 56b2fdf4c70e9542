//! Test-only helpers for dataplane tests: root check, `ip`/`bridge` in a namespace, scenario
//! builders (nodes, pools, blocks).

#![allow(dead_code)]

use std::process::Command;

use ipnet::IpNet;
use starling_calc::spec::{BlockSummary, DataplaneInput, HostInterface};
use starling_model::{CalicoNode, EncapMode, IpPool};
use starling_selector::Selector;

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

use starling::netns::{self, NetnsGuard};
use starling_calc::desired::compute;
use starling_calc::spec::{Desired, LocalWorkload};

/// `ip netns exec NS PROGRAM ARGS...` succeeded?
pub fn exec_ok(namespace: &str, command: &str) -> bool {
    let mut all = vec!["netns", "exec", namespace];
    all.extend(command.split_whitespace());
    try_run("ip", &all)
}

/// Polls `check` until it holds or `deadline` passes.
pub fn eventually(deadline: std::time::Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + deadline;
    loop {
        if check() {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn disable_dad(namespace: &str) {
    netns::run_in(namespace, || {
        for path in [
            "/proc/sys/net/ipv6/conf/default/accept_dad",
            "/proc/sys/net/ipv6/conf/all/accept_dad",
        ] {
            std::fs::write(path, "0").unwrap();
        }
    })
    .unwrap();
}

/// Two node namespaces joined by a veth (eth0, 192.168.50.0/24 and fd00:50::/64), each with a
/// pod namespace attached by a `cali…` veth set up the way the CNI plugin does, and an
/// "outside" namespace behind node A's eth1 (192.168.70.0/24).
pub struct TwoNodes {
    pub pod_a: NetnsGuard,
    pub pod_b: NetnsGuard,
    pub outside: NetnsGuard,
    pub node_a: NetnsGuard,
    pub node_b: NetnsGuard,
}

pub const POD_A_INTERFACE: &str = "caliaaaaaaaaaa1";
pub const POD_B_INTERFACE: &str = "calibbbbbbbbbb1";

fn attach_pod(node: &str, pod: &str, interface: &str, v4: &str, v6: &str) {
    ip(
        node,
        &format!("link add {interface} type veth peer name eth0 netns {pod}"),
    );
    ip(
        node,
        &format!("link set {interface} address ee:ee:ee:ee:ee:ee up"),
    );
    ip(pod, "link set lo up");
    ip(pod, &format!("addr add {v4}/32 dev eth0"));
    ip(pod, &format!("-6 addr add {v6}/128 dev eth0 nodad"));
    ip(pod, "link set eth0 up");
    ip(pod, "route add 169.254.1.1 dev eth0 scope link");
    ip(pod, "route add default via 169.254.1.1 dev eth0");
    ip(
        pod,
        "-6 route add default via fe80::ecee:eeff:feee:eeee dev eth0",
    );
}

impl TwoNodes {
    pub fn build() -> TwoNodes {
        let topology = TwoNodes {
            pod_a: netns::create(&netns::unique_name("st-pa")).unwrap(),
            pod_b: netns::create(&netns::unique_name("st-pb")).unwrap(),
            outside: netns::create(&netns::unique_name("st-out")).unwrap(),
            node_a: netns::create(&netns::unique_name("st-na")).unwrap(),
            node_b: netns::create(&netns::unique_name("st-nb")).unwrap(),
        };
        let (a, b) = (topology.node_a.name(), topology.node_b.name());
        for namespace in [
            a,
            b,
            topology.pod_a.name(),
            topology.pod_b.name(),
            topology.outside.name(),
        ] {
            disable_dad(namespace);
        }
        ip(
            a,
            &format!("link add eth0 type veth peer name eth0 netns {b}"),
        );
        for (namespace, v4, v6) in [
            (a, "192.168.50.1/24", "fd00:50::1/64"),
            (b, "192.168.50.2/24", "fd00:50::2/64"),
        ] {
            ip(namespace, "link set lo up");
            ip(namespace, &format!("addr add {v4} dev eth0"));
            ip(namespace, &format!("-6 addr add {v6} dev eth0 nodad"));
            ip(namespace, "link set eth0 up");
            // Real nodes have a default route; proxy ARP for 169.254.1.1 needs one.
            ip(namespace, "route add default via 192.168.50.254 dev eth0");
        }
        let outside = topology.outside.name();
        ip(
            a,
            &format!("link add eth1 type veth peer name eth0 netns {outside}"),
        );
        ip(a, "addr add 192.168.70.1/24 dev eth1");
        ip(a, "link set eth1 up");
        ip(outside, "link set lo up");
        ip(outside, "addr add 192.168.70.2/24 dev eth0");
        ip(outside, "link set eth0 up");
        attach_pod(
            a,
            topology.pod_a.name(),
            POD_A_INTERFACE,
            "10.244.0.5",
            "fd00:244::5",
        );
        attach_pod(
            b,
            topology.pod_b.name(),
            POD_B_INTERFACE,
            "10.244.1.5",
            "fd00:244::45",
        );
        topology
    }
}

/// The dataplane input of node A or B in the two-node topology.
pub fn two_node_input(local: &str, vxlan: EncapMode) -> DataplaneInput {
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
    let (local_node, eth0, workload) = if local == "node-a" {
        (
            a.clone(),
            ["192.168.50.1/24", "fd00:50::1/64"],
            (POD_A_INTERFACE, "10.244.0.5", "fd00:244::5"),
        )
    } else {
        (
            b.clone(),
            ["192.168.50.2/24", "fd00:50::2/64"],
            (POD_B_INTERFACE, "10.244.1.5", "fd00:244::45"),
        )
    };
    let mut host_interfaces = vec![
        interface("eth0", &eth0, 1500),
        interface(workload.0, &[], 1500),
    ];
    if local == "node-a" {
        host_interfaces.push(interface("eth1", &["192.168.70.1/24"], 1500));
    }
    DataplaneInput {
        local_node,
        nodes: vec![a, b],
        pools: vec![
            pool(
                "default-ipv4",
                "10.244.0.0/16",
                vxlan,
                EncapMode::Never,
                true,
            ),
            pool(
                "default-ipv6",
                "fd00:244::/48",
                vxlan,
                EncapMode::Never,
                false,
            ),
        ],
        blocks: vec![
            block("10.244.0.0/26", Some("node-a"), &[]),
            block("10.244.1.0/26", Some("node-b"), &[]),
            block("fd00:244::/122", Some("node-a"), &[]),
            block("fd00:244::40/122", Some("node-b"), &[]),
        ],
        workloads: vec![LocalWorkload {
            interface: workload.0.to_string(),
            addresses: vec![workload.1.parse().unwrap(), workload.2.parse().unwrap()],
            mac: None,
        }],
        host_interfaces,
        datastore_in_sync: true,
        ..DataplaneInput::default()
    }
}

/// One full dataplane pass in `namespace`: routes/devices, natOutgoing, sysctls.
pub fn program_node(namespace: &str, desired: &Desired) {
    netns::run_async_in(namespace, || async {
        let mut kernel = starling::dataplane::netlink::NetlinkKernel::connect().unwrap();
        let report = starling::dataplane::reconcile::Reconciler::default()
            .reconcile(&mut kernel, desired, std::time::Instant::now())
            .await
            .unwrap();
        assert!(report.converged(), "{report:?}");
        starling::dataplane::nat::apply(&desired.nat).unwrap();
        let sysctls =
            starling::dataplane::sysctl::apply(desired, std::path::Path::new("/proc/sys"));
        assert!(sysctls.errors.is_empty(), "{:?}", sysctls.errors);
    })
    .unwrap();
}

pub fn program_two_nodes(topology: &TwoNodes, vxlan: EncapMode) {
    program_node(
        topology.node_a.name(),
        &compute(&two_node_input("node-a", vxlan)),
    );
    program_node(
        topology.node_b.name(),
        &compute(&two_node_input("node-b", vxlan)),
    );
}

/// Packets matched by the counter rule whose text contains `needle` in `table` of `namespace`.
pub fn nft_counter(namespace: &str, table: &str, needle: &str) -> u64 {
    let text = run(
        "ip",
        &["netns", "exec", namespace, "nft", "list", "table", table],
    );
    text.lines()
        .find(|line| line.contains(needle) && line.contains("counter packets"))
        .and_then(|line| line.split("counter packets ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no counter for {needle:?} in {text}"))
}

/// Pings until one succeeds or the deadline passes.
pub fn ping(namespace: &str, target: &str) -> bool {
    eventually(std::time::Duration::from_secs(10), || {
        exec_ok(namespace, &format!("ping -c 1 -W 1 {target}"))
    })
}

/// Brings up `lo` and an oper-up `eth0` with `address` in `namespace`: a veth pair with both
/// ends inside (this kernel has no dummy module), as the daemon tests' node interface.
pub fn node_eth0(namespace: &str, address: &str) {
    ip(namespace, "link set lo up");
    ip(namespace, "link add eth0 type veth peer name eth0-peer");
    ip(namespace, &format!("addr add {address} dev eth0"));
    ip(namespace, "link set eth0 up");
    ip(namespace, "link set eth0-peer up");
}
