//! Shared helpers for the IPAM integration tests.
#![allow(dead_code)]

pub mod etcd;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use starling_model::{AssignmentMode, CalicoNode, EncapMode, IpPool};
use starling_selector::Selector;

pub fn pool(name: &str, cidr: &str, block_size: u8) -> IpPool {
    IpPool {
        name: name.to_string(),
        cidr: cidr.parse().unwrap(),
        block_size,
        ipip_mode: EncapMode::Never,
        vxlan_mode: EncapMode::Never,
        nat_outgoing: false,
        disabled: false,
        disable_bgp_export: false,
        node_selector: Selector::all(),
        namespace_selector: Selector::all(),
        allowed_uses: IpPool::default_allowed_uses(),
        assignment_mode: AssignmentMode::Automatic,
        deleting: false,
    }
}

pub fn node(name: &str) -> CalicoNode {
    CalicoNode {
        name: name.to_string(),
        ..CalicoNode::default()
    }
}

pub fn attributes(node: &str, pod: &str) -> BTreeMap<String, String> {
    [
        ("node".to_string(), node.to_string()),
        ("namespace".to_string(), "default".to_string()),
        ("pod".to_string(), pod.to_string()),
    ]
    .into_iter()
    .collect()
}

/// A fixed instant: tests never read the clock.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}
