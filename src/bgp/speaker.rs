//! The BGP speaker task: sessions over TCP (listener and outgoing connections), one FSM and RIB
//! per process, configured from Calico's resources and feeding learned routes to the dataplane.
//!
//! CONTRACT STUB: the daemon codes against this surface; the implementation replaces the body.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::watch;

use super::peering::SessionSpec;
use super::policy::CalicoPolicy;
use crate::dataplane::spec::LearnedRoute;
use crate::metrics::Metrics;
use crate::model::AsNumber;
use crate::status::PeerStatus;

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
    /// Calico's export/import/kernel rules for this node.
    pub policy: CalicoPolicy,
    /// Restart time we advertise as a restarting speaker (RFC 4724).
    pub graceful_restart_time: Duration,
}

/// Handle to the running speaker.
pub struct SpeakerHandle {
    config: watch::Sender<SpeakerConfig>,
    learned: watch::Receiver<Arc<Vec<LearnedRoute>>>,
}

impl SpeakerHandle {
    /// Starts the speaker on the current tokio runtime.
    pub fn spawn(initial: SpeakerConfig, _metrics: Metrics) -> SpeakerHandle {
        let (config, _config_rx) = watch::channel(initial);
        let (_learned_tx, learned) = watch::channel(Arc::new(Vec::new()));
        SpeakerHandle { config, learned }
    }

    /// Applies a new configuration (sessions added, removed or changed; exports re-evaluated).
    pub fn update(&self, config: SpeakerConfig) {
        self.config.send_replace(config);
    }

    /// Best learned routes that policy allows into the kernel; replaced on every change.
    pub fn learned_routes(&self) -> watch::Receiver<Arc<Vec<LearnedRoute>>> {
        self.learned.clone()
    }

    /// One row per session for `node status` and metrics.
    pub async fn status(&self) -> Vec<PeerStatus> {
        Vec::new()
    }

    /// Stops every session: with `graceful`, connections are closed without a Cease so peers
    /// keep our routes for the restart time (RFC 4724); otherwise a Cease NOTIFICATION is sent.
    pub async fn shutdown(self, _graceful: bool) {}
}
