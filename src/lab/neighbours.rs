//! The host's ARP table limits, which every network namespace shares.
//!
//! The kernel keeps one IPv4 neighbour table for all namespaces, and its garbage-collection
//! thresholds (`net.ipv4.neigh.default.gc_thresh1..3`) exist only in the root namespace. A lab
//! mesh of N nodes holds about N·(N−1) entries (every node resolves every other), so above about
//! 30 nodes the default hard limit (1024) overflows: the kernel logs "neighbor table overflow",
//! drops SYNs and the mesh looks pathologically slow. `lab up` raises the limits for such labs
//! and records the originals in the lab state, and `lab down` puts them back.

use std::path::PathBuf;

use anyhow::{Context, Result};

const NAMES: [&str; 3] = ["gc_thresh1", "gc_thresh2", "gc_thresh3"];

fn path(name: &str) -> PathBuf {
    PathBuf::from("/proc/sys/net/ipv4/neigh/default").join(name)
}

/// The three thresholds as the kernel has them now.
pub fn read() -> Result<[u64; 3]> {
    let mut values = [0; 3];
    for (value, name) in values.iter_mut().zip(NAMES) {
        let file = path(name);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        *value = text
            .trim()
            .parse()
            .with_context(|| format!("{} holds {:?}, not a number", file.display(), text))?;
    }
    Ok(values)
}

pub fn write(values: [u64; 3]) -> Result<()> {
    // Raised from the top down and lowered from the bottom up, so thresh1 <= thresh2 <= thresh3
    // holds after every single write.
    let raising = read().map(|now| values[2] >= now[2]).unwrap_or(true);
    let mut order = [0, 1, 2];
    if raising {
        order.reverse();
    }
    for index in order {
        let file = path(NAMES[index]);
        std::fs::write(&file, values[index].to_string())
            .with_context(|| format!("writing {} to {}", values[index], file.display()))?;
    }
    Ok(())
}

/// The limits a lab of `nodes` needs: room for every node pair in both directions, plus the
/// bridge namespace and the host's own entries, with headroom for stale ones.
pub fn needed(nodes: usize) -> [u64; 3] {
    let entries = (nodes * nodes + 4 * nodes) as u64;
    let hard = (entries * 2).max(1024);
    [hard / 4, hard / 2, hard]
}

/// Raises the limits where they are below what `nodes` need; returns the values to restore
/// afterwards (None when nothing changed).
pub fn raise_for(nodes: usize) -> Result<Option<[u64; 3]>> {
    let current = read()?;
    let wanted = needed(nodes);
    if current[2] >= wanted[2] {
        return Ok(None);
    }
    let raised = [
        current[0].max(wanted[0]),
        current[1].max(wanted[1]),
        wanted[2],
    ];
    write(raised)?;
    Ok(Some(current))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_labs_fit_the_default_and_a_200_node_mesh_does_not() {
        assert_eq!(needed(3), [256, 512, 1024]);
        assert_eq!(needed(20)[2], 1024);
        let mesh = needed(200);
        assert!(mesh[2] >= 200 * 199, "{mesh:?}");
        assert!(mesh[0] <= mesh[1] && mesh[1] <= mesh[2]);
    }
}
