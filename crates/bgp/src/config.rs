//! What the speaker is asked to run: the daemon computes a [`SpeakerConfig`] from cluster state
//! (`starling_calc`) and the speaker applies it, touching only what changed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use starling_model::AsNumber;

use crate::peering::SessionSpec;
use crate::policy::CalicoPolicy;

/// Everything the speaker needs; the daemon sends a new one whenever cluster state changes.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerConfig {
    pub router_id: Ipv4Addr,
    /// The node's AS (its own or the cluster's); sessions may override it (`localASNumber`).
    pub local_as: AsNumber,
    /// `bindMode: NodeIP` gives the node address; `None` listens on every address.
    pub listen_address: Option<IpAddr>,
    pub listen_port: u16,
    /// Sessions keyed by Calico's protocol name (`Mesh_10_0_0_7`, ...).
    pub sessions: BTreeMap<String, SessionSpec>,
    /// TCP-MD5 passwords resolved from Secrets, keyed by session name.
    pub passwords: BTreeMap<String, String>,
    /// Routes this node originates: confirmed local blocks and borrowed workload /32s.
    pub originated: Vec<IpNet>,
    /// The interface of originated routes that have one (a borrowed workload /32 leaves
    /// through the pod's host veth): what export `interface` rules of BGPFilters match.
    pub originated_interfaces: BTreeMap<IpNet, String>,
    /// Calico's export/import/kernel rules for this node.
    pub policy: CalicoPolicy,
    /// Restart time we advertise as a restarting speaker (RFC 4724).
    pub graceful_restart_time: Duration,
}
