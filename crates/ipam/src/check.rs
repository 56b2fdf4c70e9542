//! `ipam check` (reference §4.7): every invariant and leak class that the datastore and an optional
//! list of addresses known to be in use can tell. One sentence per problem.
//!
//! Classes: (a) allocated but not in use, (b) in use but in no active pool, (c) in use in an active
//! pool with no allocation, (d) an address with several users, (e) handles with no addresses or with
//! counts that disagree with the blocks, (f) allocations whose handle record is missing, (g) invalid
//! block structures (§1.2 invariants, or objects that do not decode). (a)–(d) need `in_use`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::block::Block;
use super::records::Handle;
use super::IpamError;
use crate::store::{IpamStore, IpamStoreExt};
use starling_model::IpPool;

/// An address some workload, node or service is known to use, and who.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUseAddress {
    pub address: IpAddr,
    pub owner: String,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub problems: Vec<String>,
    pub blocks: usize,
    pub allocations: usize,
    pub handles: usize,
    /// Nodes (the `node` attribute) by number of allocations, most first.
    pub top_nodes: Vec<(String, usize)>,
}

/// Runs every check the inputs allow.
pub async fn check<S: IpamStore>(
    store: &S,
    pools: &[IpPool],
    in_use: Option<&[InUseAddress]>,
    now: DateTime<Utc>,
) -> Result<CheckReport, IpamError> {
    let (blocks, invalid_blocks) = store.list_reporting::<Block>().await?;
    let (handles, invalid_handles) = store.list_reporting::<Handle>().await?;
    let mut report = CheckReport {
        blocks: blocks.len(),
        handles: handles.len(),
        ..CheckReport::default()
    };
    for error in invalid_blocks.iter().chain(&invalid_handles) {
        report.problems.push(format!("invalid object: {error}"));
    }
    // address → handle, and per handle per block the real counts.
    let mut allocated: BTreeMap<IpAddr, Option<String>> = BTreeMap::new();
    let mut actual: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for block in &blocks {
        let block = &block.value;
        report.problems.extend(block.invariant_problems(now));
        for (address, attribute) in block.allocated() {
            report.allocations += 1;
            allocated.insert(address, attribute.handle_id.clone());
            if let Some(handle) = &attribute.handle_id {
                *actual
                    .entry(handle.clone())
                    .or_default()
                    .entry(block.cidr.to_string())
                    .or_default() += 1;
            }
            if let Some(node) = attribute.secondary.get("node") {
                *per_node.entry(node.clone()).or_default() += 1;
            }
        }
    }
    let recorded: BTreeMap<&str, &Handle> = handles
        .iter()
        .map(|h| (h.value.id.as_str(), &h.value))
        .collect();
    for handle in recorded.values() {
        match actual.get(&handle.id) {
            None => report.problems.push(format!(
                "handle {} has no addresses in any block (leaked handle)",
                handle.id
            )),
            Some(counts) if *counts != handle.blocks => report.problems.push(format!(
                "handle {} records {:?} but the blocks hold {:?}",
                handle.id, handle.blocks, counts
            )),
            Some(_) => {}
        }
    }
    for (handle, counts) in &actual {
        if !recorded.contains_key(handle.as_str()) {
            report.problems.push(format!(
                "handle {handle} owns {} address(es) but has no handle record",
                counts.values().sum::<u64>()
            ));
        }
    }
    if let Some(in_use) = in_use {
        let mut users: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for entry in in_use {
            users
                .entry(entry.address)
                .or_default()
                .push(entry.owner.as_str());
        }
        for (address, owners) in &users {
            if owners.len() > 1 {
                report.problems.push(format!(
                    "{address} is used by several owners: {}",
                    owners.join(", ")
                ));
            }
            let in_active_pool = pools.iter().any(|p| p.is_active() && p.contains(*address));
            if !in_active_pool {
                report.problems.push(format!(
                    "{address} (used by {}) is not in any active IP pool",
                    owners.join(", ")
                ));
            } else if !allocated.contains_key(address) {
                report.problems.push(format!(
                    "{address} (used by {}) is in an active pool but has no IPAM allocation",
                    owners.join(", ")
                ));
            }
        }
        for (address, handle) in &allocated {
            if !users.contains_key(address) {
                report.problems.push(format!(
                    "{address} is allocated to handle {} but nothing uses it (leaked address)",
                    handle.as_deref().unwrap_or("<none>")
                ));
            }
        }
    }
    let mut top: Vec<(String, usize)> = per_node.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    report.top_nodes = top;
    Ok(report)
}

/// Calico's closing line.
pub fn summary_line(report: &CheckReport) -> String {
    format!("Check complete; found {} problems.", report.problems.len())
}
