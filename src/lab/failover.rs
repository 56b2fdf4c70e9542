//! A node's network failure in a lab, for the BFD end-to-end test and the `bfd_failover`
//! benchmark: the node's port on the lab bridge set down (its cable pulled; its daemon keeps
//! running and is not told), the routes the other nodes' kernels hold via it, and each
//! daemon's BFD states from `node status`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::topology::{ip, LabNames};

/// Sets node `index`'s bridge port down: its packets go nowhere, its link loses carrier.
pub fn cut_node(names: &LabNames, index: usize) -> Result<()> {
    set_port(names, index, "down")
}

/// Sets node `index`'s bridge port up again.
pub fn restore_node(names: &LabNames, index: usize) -> Result<()> {
    set_port(names, index, "up")
}

fn set_port(names: &LabNames, index: usize, state: &str) -> Result<()> {
    let port = format!("n{index}");
    ip(&["-n", &names.bridge_ns(), "link", "set", &port, state])
        .map(|_| ())
        .with_context(|| format!("setting node{index}'s bridge port {port} {state}"))
}

/// Destinations that node `node`'s kernel routes via `gateway` (main table).
pub fn routes_via(names: &LabNames, node: usize, gateway: Ipv4Addr) -> Result<Vec<String>> {
    let text = ip(&["-n", &names.node_ns(node), "-j", "-4", "route", "show"])?;
    let routes: Vec<serde_json::Value> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&text).with_context(|| format!("node{node}'s ip -j route"))?
    };
    let gateway = gateway.to_string();
    Ok(routes
        .iter()
        .filter(|route| route["gateway"].as_str() == Some(gateway.as_str()))
        .filter_map(|route| route["dst"].as_str().map(str::to_string))
        .collect())
}

/// Each peer of the daemon with this control socket and its BFD state (`None`: no BFD).
pub fn bfd_states(socket: &Path) -> Result<Vec<(IpAddr, Option<String>)>> {
    Ok(super::node_status(socket)?
        .peers
        .into_iter()
        .map(|peer| (peer.address, peer.bfd))
        .collect())
}

/// Polls every `interval` until no observer's kernel has a route via `gateway` (or `limit`
/// passes); returns, per observer, how long after `since` its last such route went (`None`
/// for an observer that still had one at the limit).
pub fn time_until_gone(
    names: &LabNames,
    observers: &[usize],
    gateway: Ipv4Addr,
    since: Instant,
    interval: Duration,
    limit: Duration,
) -> Vec<Option<Duration>> {
    let mut gone: Vec<Option<Duration>> = vec![None; observers.len()];
    while since.elapsed() < limit && gone.iter().any(Option::is_none) {
        for (slot, node) in gone.iter_mut().zip(observers) {
            // A failed `ip` is not a removal: it counts as routes still there.
            if slot.is_none() && routes_via(names, *node, gateway).is_ok_and(|r| r.is_empty()) {
                *slot = Some(since.elapsed());
            }
        }
        std::thread::sleep(interval);
    }
    gone
}
