//! Acceptance (b) and (e): packets really flow between pods on two node namespaces, over
//! vxlan.calico / vxlan-v6.calico and over direct routes in no-encap mode; natOutgoing
//! masquerades pod traffic leaving the pools and leaves pool-to-pool traffic alone.

#[path = "support/netns_test.rs"]
mod netns_test;
#[path = "support/requirements.rs"]
mod requirements;
use requirements::require_root;

use netns_test::*;
use starling_model::EncapMode;

const OBSERVE_POD_B: &str = "table ip observe {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr 10.244.0.5 icmp type echo-request counter
    ip saddr 192.168.50.1 icmp type echo-request counter
  }
}";

const OBSERVE_OUTSIDE: &str = "table ip observe {
  chain input {
    type filter hook input priority 0; policy accept;
    ip saddr 192.168.70.1 icmp type echo-request counter
    ip saddr 10.244.0.0/16 icmp type echo-request counter
  }
}";

fn load_nft(namespace: &str, ruleset: &str) {
    let path = std::env::temp_dir().join(format!("{namespace}.nft"));
    std::fs::write(&path, ruleset).unwrap();
    run(
        "ip",
        &[
            "netns",
            "exec",
            namespace,
            "nft",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(path);
}

#[test]
fn pods_ping_across_nodes_over_vxlan_then_direct_routes() {
    if !require_root("pods_ping_across_nodes_over_vxlan_then_direct_routes") {
        return;
    }
    let topology = TwoNodes::build();
    program_two_nodes(&topology, EncapMode::Always);
    let (pod_a, pod_b) = (topology.pod_a.name(), topology.pod_b.name());
    assert!(ip(topology.node_a.name(), "route show 10.244.1.0/26").contains("dev vxlan.calico"));
    // The sysctls were written inside the node namespaces (the pods depend on proxy_arp).
    for (name, expected) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv6.conf.all.forwarding", "1"),
        ("net.ipv4.conf.caliaaaaaaaaaa1.proxy_arp", "1"),
        ("net.ipv4.conf.caliaaaaaaaaaa1.route_localnet", "1"),
        ("net.ipv4.neigh.caliaaaaaaaaaa1.proxy_delay", "0"),
        ("net.ipv6.conf.caliaaaaaaaaaa1.accept_ra", "0"),
        ("net.ipv6.conf.caliaaaaaaaaaa1.proxy_ndp", "1"),
    ] {
        let value = run(
            "ip",
            &[
                "netns",
                "exec",
                topology.node_a.name(),
                "sysctl",
                "-n",
                name,
            ],
        );
        assert_eq!(value.trim(), expected, "{name}");
    }

    assert!(
        ping(pod_a, "10.244.1.5"),
        "IPv4 pod-to-pod over vxlan.calico"
    );
    assert!(ping(pod_b, "10.244.0.5"), "IPv4 back");
    assert!(
        ping(pod_a, "fd00:244::45"),
        "IPv6 pod-to-pod over vxlan-v6.calico"
    );

    // No encapsulation: the VXLAN devices go away and routes point at the peer directly.
    program_two_nodes(&topology, EncapMode::Never);
    let route = ip(topology.node_a.name(), "route show 10.244.1.0/26");
    assert!(route.contains("via 192.168.50.2 dev eth0"), "{route}");
    assert!(!exec_ok(
        topology.node_a.name(),
        "ip link show vxlan.calico"
    ));
    assert!(
        ping(pod_a, "10.244.1.5"),
        "IPv4 pod-to-pod over direct routes"
    );
    assert!(
        ping(pod_a, "fd00:244::45"),
        "IPv6 pod-to-pod over direct routes"
    );
}

#[test]
fn nat_outgoing_masquerades_only_traffic_leaving_the_pools() {
    if !require_root("nat_outgoing_masquerades_only_traffic_leaving_the_pools") {
        return;
    }
    let topology = TwoNodes::build();
    program_two_nodes(&topology, EncapMode::Always);
    let (pod_a, pod_b, outside) = (
        topology.pod_a.name(),
        topology.pod_b.name(),
        topology.outside.name(),
    );
    load_nft(outside, OBSERVE_OUTSIDE);
    load_nft(pod_b, OBSERVE_POD_B);

    // The outside namespace has no route to the pools: only a masqueraded ping is answered.
    assert!(
        ping(pod_a, "192.168.70.2"),
        "pod reaches the outside through natOutgoing"
    );
    assert!(nft_counter(outside, "ip observe", "saddr 192.168.70.1") >= 1);
    assert_eq!(nft_counter(outside, "ip observe", "saddr 10.244.0.0/16"), 0);
    let table = run(
        "ip",
        &[
            "netns",
            "exec",
            topology.node_a.name(),
            "nft",
            "list",
            "table",
            "ip",
            "starling-nat",
        ],
    );
    assert!(table.contains("masquerade"), "{table}");

    // Pool to pool keeps the pod address.
    assert!(ping(pod_a, "10.244.1.5"));
    assert!(nft_counter(pod_b, "ip observe", "saddr 10.244.0.5") >= 1);
    assert_eq!(nft_counter(pod_b, "ip observe", "saddr 192.168.50.1"), 0);

    // Another table in the namespace is never touched by our atomic replacement.
    load_nft(topology.node_a.name(), "table ip someone-else {\n  chain c {\n    type filter hook forward priority 0; policy accept;\n  }\n}\n");
    program_two_nodes(&topology, EncapMode::Always);
    assert!(exec_ok(
        topology.node_a.name(),
        "nft list table ip someone-else"
    ));
}
