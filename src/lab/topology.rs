//! The lab's network: one bridge namespace joining N node namespaces, plus an "outside" namespace
//! that stands for the world beyond the cluster (for natOutgoing).
//!
//! Addressing (all inside namespaces the lab creates, never in the root namespace):
//! - nodes: `192.0.2.<i>/24` (TEST-NET-1, RFC 5737) on `eth0`, i = 1..=200; default route via the
//!   bridge namespace's `192.0.2.254`;
//! - with two subnets (for CrossSubnet), even-numbered nodes are on a second bridge instead:
//!   `203.0.113.<i>/24` (TEST-NET-3), gateway `203.0.113.254`; the bridge namespace routes between
//!   the two, so traffic across subnets takes one routed hop, as between racks;
//! - with `--ipv6`, every node also has `fd00:0:0:<s>::<i>/64` next to its IPv4 address (a ULA
//!   /64 per node subnet s, counted from 0), gateway `fd00:0:0:<s>::fe` (the bridge namespace,
//!   which forwards IPv6 between the subnets too);
//! - outside: `198.51.100.1/24` (TEST-NET-2) on a link to the bridge namespace (`198.51.100.254`),
//!   routed back to the node subnet only, so pod addresses reach it only when masqueraded.
//!
//! Every namespace name starts with `stl-<lab>-` so `lab down` can sweep them after a crash.
//! Interface names live inside those namespaces, so they never collide with the host's.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Address of the bridge namespace on the node subnet (nodes' default gateway, etcd's address).
pub const BRIDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
pub const NODE_PREFIX_LEN: u8 = 24;
pub const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const OUTSIDE_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// Largest node count the /24 node subnet allows (254 is the bridge).
pub const MAX_NODES: usize = 200;
/// Most node subnets a lab has.
pub const MAX_SUBNETS: usize = 2;
/// The second node subnet's gateway (the bridge namespace on `br1`).
pub const SECOND_SUBNET_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 254);

/// Which node subnet (0 or 1) node `index` is on when the lab has `subnets` of them.
pub fn node_subnet(index: usize, subnets: usize) -> usize {
    if subnets > 1 {
        (index + 1) % 2
    } else {
        0
    }
}

/// The gateway (bridge namespace address) of node subnet `subnet`.
pub fn subnet_gateway(subnet: usize) -> Ipv4Addr {
    if subnet == 0 {
        BRIDGE_ADDRESS
    } else {
        SECOND_SUBNET_GATEWAY
    }
}

/// The /24 network of node subnet `subnet`.
pub fn subnet_network(subnet: usize) -> String {
    let [a, b, c, _] = subnet_gateway(subnet).octets();
    format!("{a}.{b}.{c}.0/{NODE_PREFIX_LEN}")
}

/// Node `index`'s address in a lab with `subnets` node subnets.
pub fn node_address_in(index: usize, subnets: usize) -> Ipv4Addr {
    let [a, b, c, _] = subnet_gateway(node_subnet(index, subnets)).octets();
    // index is bounded by MAX_NODES, so it fits in the last octet.
    Ipv4Addr::new(a, b, c, index as u8)
}

/// Prefix length of the IPv6 node subnets.
pub const NODE_PREFIX_LEN_V6: u8 = 64;
/// Host part of the bridge namespace's IPv6 address on each node subnet.
const BRIDGE_HOST_V6: u16 = 0xfe;

/// The IPv6 gateway (bridge namespace address) of node subnet `subnet`.
pub fn subnet_gateway_v6(subnet: usize) -> Ipv6Addr {
    // subnet is bounded by MAX_SUBNETS.
    Ipv6Addr::new(0xfd00, 0, 0, subnet as u16, 0, 0, 0, BRIDGE_HOST_V6)
}

/// Node `index`'s IPv6 address in a lab with `subnets` node subnets (the same host part as its
/// IPv4 address, in hexadecimal).
pub fn node_address_v6_in(index: usize, subnets: usize) -> Ipv6Addr {
    let subnet = node_subnet(index, subnets);
    // index is bounded by MAX_NODES.
    Ipv6Addr::new(0xfd00, 0, 0, subnet as u16, 0, 0, 0, index as u16)
}

/// The /64 network of node subnet `subnet`.
pub fn subnet_network_v6(subnet: usize) -> String {
    let gateway = subnet_gateway_v6(subnet).segments();
    let network = Ipv6Addr::new(gateway[0], gateway[1], gateway[2], gateway[3], 0, 0, 0, 0);
    format!("{network}/{NODE_PREFIX_LEN_V6}")
}

/// Names of everything one lab creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNames {
    pub lab: String,
}

impl LabNames {
    pub fn new(lab: &str) -> Self {
        LabNames {
            lab: lab.to_string(),
        }
    }

    /// The prefix every namespace of this lab carries.
    pub fn prefix(&self) -> String {
        format!("stl-{}-", self.lab)
    }

    pub fn bridge_ns(&self) -> String {
        format!("{}br", self.prefix())
    }

    pub fn outside_ns(&self) -> String {
        format!("{}out", self.prefix())
    }

    pub fn node_ns(&self, index: usize) -> String {
        format!("{}{}", self.prefix(), node_name(index))
    }

    pub fn pod_ns(&self, node: usize, pod: usize) -> String {
        format!("{}{}-p{}", self.prefix(), node_name(node), pod)
    }
}

/// Kubernetes-style node name of lab node `index` (1-based).
pub fn node_name(index: usize) -> String {
    format!("node{index}")
}

/// Node `index`'s address in a lab with one node subnet.
pub fn node_address(index: usize) -> Ipv4Addr {
    node_address_in(index, 1)
}

/// Runs `ip` with the given arguments, failing with the command line and stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args)
}

pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs a command inside a namespace (`ip netns exec`).
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    ip(&full)
}

/// Every namespace whose name starts with `prefix`.
pub fn namespaces_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let listing = ip(&["netns", "list"])?;
    Ok(listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_string)
        .collect())
}

fn add_ns(ns: &str) -> Result<()> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    Ok(())
}

fn sysctl(ns: &str, key: &str, value: &str) -> Result<()> {
    in_ns(ns, "sysctl", &["-q", "-w", &format!("{key}={value}")]).map(|_| ())
}

/// Creates the bridge namespace (with one bridge a node subnet) and the outside namespace;
/// with `ipv6` the bridges also carry the IPv6 gateways.
pub fn create_core(names: &LabNames, subnets: usize, ipv6: bool) -> Result<()> {
    if subnets == 0 || subnets > MAX_SUBNETS {
        bail!("the lab has 1 to {MAX_SUBNETS} node subnets, not {subnets}");
    }
    let br = names.bridge_ns();
    add_ns(&br)?;
    for subnet in 0..subnets {
        let bridge = format!("br{subnet}");
        ip(&["-n", &br, "link", "add", &bridge, "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", &bridge, "up"])?;
        let bridge_cidr = format!("{}/{NODE_PREFIX_LEN}", subnet_gateway(subnet));
        ip(&["-n", &br, "addr", "add", &bridge_cidr, "dev", &bridge])?;
        if ipv6 {
            let cidr = format!("{}/{NODE_PREFIX_LEN_V6}", subnet_gateway_v6(subnet));
            add_address_v6(&br, &cidr, &bridge)?;
        }
    }
    sysctl(&br, "net.ipv4.ip_forward", "1")?;
    if ipv6 {
        sysctl(&br, "net.ipv6.conf.all.forwarding", "1")?;
    }

    let out = names.outside_ns();
    add_ns(&out)?;
    ip(&[
        "-n", &br, "link", "add", "outside", "type", "veth", "peer", "name", "eth0", "netns", &out,
    ])?;
    ip(&[
        "-n",
        &br,
        "addr",
        "add",
        &format!("{OUTSIDE_GATEWAY}/24"),
        "dev",
        "outside",
    ])?;
    ip(&["-n", &br, "link", "set", "outside", "up"])?;
    ip(&[
        "-n",
        &out,
        "addr",
        "add",
        &format!("{OUTSIDE_ADDRESS}/24"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", &out, "link", "set", "eth0", "up"])?;
    // Only the node subnets are routed back: un-masqueraded pod traffic gets no answer.
    for subnet in 0..subnets {
        let network = subnet_network(subnet);
        let gateway = OUTSIDE_GATEWAY.to_string();
        ip(&["-n", &out, "route", "add", &network, "via", &gateway])?;
    }
    Ok(())
}

/// Adds an IPv6 address without duplicate address detection: the lab picks unique addresses, and
/// a tentative address would delay the first packets by a second or two.
fn add_address_v6(ns: &str, cidr: &str, device: &str) -> Result<()> {
    ip(&["-n", ns, "addr", "add", cidr, "dev", device, "nodad"]).map(|_| ())
}

/// Creates node namespace `index` and plugs it into its subnet's bridge (with `ipv6`, also
/// its IPv6 address and default route).
pub fn create_node(names: &LabNames, index: usize, subnets: usize, ipv6: bool) -> Result<()> {
    if index == 0 || index > MAX_NODES {
        bail!("node index {index} is outside 1..={MAX_NODES}");
    }
    let br = names.bridge_ns();
    let ns = names.node_ns(index);
    add_ns(&ns)?;
    let port = format!("n{index}");
    ip(&[
        "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ])?;
    let subnet = node_subnet(index, subnets);
    ip(&[
        "-n",
        &br,
        "link",
        "set",
        &port,
        "master",
        &format!("br{subnet}"),
    ])?;
    ip(&["-n", &br, "link", "set", &port, "up"])?;
    let cidr = format!("{}/{NODE_PREFIX_LEN}", node_address_in(index, subnets));
    ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    let gateway = subnet_gateway(subnet).to_string();
    ip(&["-n", &ns, "route", "add", "default", "via", &gateway])?;
    if ipv6 {
        let cidr = format!(
            "{}/{NODE_PREFIX_LEN_V6}",
            node_address_v6_in(index, subnets)
        );
        add_address_v6(&ns, &cidr, "eth0")?;
        let gateway = subnet_gateway_v6(subnet).to_string();
        ip(&["-n", &ns, "-6", "route", "add", "default", "via", &gateway])?;
    }
    Ok(())
}

/// Deletes every namespace of the lab (idempotent; deleting a namespace removes its links).
pub fn destroy(names: &LabNames) -> Result<Vec<String>> {
    let victims = namespaces_with_prefix(&names.prefix())?;
    for ns in &victims {
        // A namespace may vanish concurrently (another `down`): ignore failures, check at the end.
        let _ = ip(&["netns", "delete", ns]);
    }
    let left = namespaces_with_prefix(&names.prefix())?;
    if !left.is_empty() {
        bail!("could not delete namespaces: {}", left.join(", "));
    }
    Ok(victims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_lab_prefix() {
        let names = LabNames::new("t1");
        assert_eq!(names.bridge_ns(), "stl-t1-br");
        assert_eq!(names.node_ns(3), "stl-t1-node3");
        assert_eq!(names.pod_ns(3, 2), "stl-t1-node3-p2");
        assert!(names.outside_ns().starts_with(&names.prefix()));
        assert_eq!(node_address(7), Ipv4Addr::new(192, 0, 2, 7));
    }

    #[test]
    fn two_subnets_put_even_nodes_on_the_second() {
        assert_eq!(node_address_in(1, 2), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(node_address_in(2, 2), Ipv4Addr::new(203, 0, 113, 2));
        assert_eq!(node_address_in(3, 2), Ipv4Addr::new(192, 0, 2, 3));
        assert_eq!(node_address_in(2, 1), Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(subnet_network(1), "203.0.113.0/24");
        assert_eq!(subnet_network(0), "192.0.2.0/24");
    }

    #[test]
    fn ipv6_addresses_follow_the_ipv4_subnets() {
        assert_eq!(node_address_v6_in(1, 1).to_string(), "fd00::1");
        assert_eq!(node_address_v6_in(12, 1).to_string(), "fd00::c");
        assert_eq!(node_address_v6_in(2, 2).to_string(), "fd00:0:0:1::2");
        assert_eq!(node_address_v6_in(3, 2).to_string(), "fd00::3");
        assert_eq!(subnet_gateway_v6(1).to_string(), "fd00:0:0:1::fe");
        assert_eq!(subnet_network_v6(0), "fd00::/64");
        assert_eq!(subnet_network_v6(1), "fd00:0:0:1::/64");
    }
}
