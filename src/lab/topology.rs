//! The lab's network: one bridge namespace joining N node namespaces, plus an "outside" namespace
//! that stands for the world beyond the cluster (for natOutgoing).
//!
//! Addressing (all inside namespaces the lab creates, never in the root namespace):
//! - nodes: `192.0.2.<i>/24` (TEST-NET-1, RFC 5737) on `eth0`, i = 1..=200; default route via the
//!   bridge namespace's `192.0.2.254`;
//! - outside: `198.51.100.1/24` (TEST-NET-2) on a link to the bridge namespace (`198.51.100.254`),
//!   routed back to the node subnet only, so pod addresses reach it only when masqueraded.
//!
//! Every namespace name starts with `stl-<lab>-` so `lab down` can sweep them after a crash.
//! Interface names live inside those namespaces, so they never collide with the host's.

use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Address of the bridge namespace on the node subnet (nodes' default gateway, etcd's address).
pub const BRIDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
pub const NODE_PREFIX_LEN: u8 = 24;
pub const OUTSIDE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const OUTSIDE_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// Largest node count the /24 node subnet allows (254 is the bridge).
pub const MAX_NODES: usize = 200;

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

pub fn node_address(index: usize) -> Ipv4Addr {
    // index is bounded by MAX_NODES, so it fits in the last octet.
    Ipv4Addr::new(192, 0, 2, index as u8)
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

/// Creates the bridge namespace (with its bridge) and the outside namespace.
pub fn create_core(names: &LabNames) -> Result<()> {
    let br = names.bridge_ns();
    add_ns(&br)?;
    ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
    ip(&["-n", &br, "link", "set", "br0", "up"])?;
    let bridge_cidr = format!("{BRIDGE_ADDRESS}/{NODE_PREFIX_LEN}");
    ip(&["-n", &br, "addr", "add", &bridge_cidr, "dev", "br0"])?;
    sysctl(&br, "net.ipv4.ip_forward", "1")?;

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
    // Only the node subnet is routed back: un-masqueraded pod traffic gets no answer.
    ip(&[
        "-n",
        &out,
        "route",
        "add",
        &format!("192.0.2.0/{NODE_PREFIX_LEN}"),
        "via",
        &OUTSIDE_GATEWAY.to_string(),
    ])?;
    Ok(())
}

/// Creates node namespace `index` and plugs it into the bridge.
pub fn create_node(names: &LabNames, index: usize) -> Result<()> {
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
    ip(&["-n", &br, "link", "set", &port, "master", "br0"])?;
    ip(&["-n", &br, "link", "set", &port, "up"])?;
    let cidr = format!("{}/{NODE_PREFIX_LEN}", node_address(index));
    ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(&[
        "-n",
        &ns,
        "route",
        "add",
        "default",
        "via",
        &BRIDGE_ADDRESS.to_string(),
    ])?;
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
}
