//! calico-node's start-up (reference §8.1): node name, waiting for the datastore, IP
//! autodetection, node registration, AS, default pools, tunnel addresses, the nodename file and
//! the `NetworkUnavailable` node condition.
//!
//! CONTRACT STUB: the daemon codes against this surface; the implementation replaces the body.

use crate::config::Config;
use crate::datastore::AnyDatastore;
use crate::model::CalicoNode;

/// What start-up established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupOutcome {
    pub node_name: String,
    /// The node as registered (addresses, AS, tunnel addresses, labels).
    pub node: CalicoNode,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("start-up is not implemented yet")]
    NotImplemented,
}

/// Runs start-up once, before any watcher starts.
pub async fn run(_config: &Config, _store: &AnyDatastore) -> Result<StartupOutcome, StartupError> {
    Err(StartupError::NotImplemented)
}

/// Keeps the node's tunnel addresses right after pools or the node changed (§8.4); returns the
/// node as now registered.
pub async fn refresh_tunnel_addresses(
    _config: &Config,
    _store: &AnyDatastore,
    node_name: &str,
) -> Result<CalicoNode, StartupError> {
    let _ = node_name;
    Err(StartupError::NotImplemented)
}

/// Sets the Kubernetes `NetworkUnavailable` condition (`CalicoIsUp` / `CalicoIsDown`); a no-op
/// on etcd.
pub async fn set_network_unavailable(
    _store: &AnyDatastore,
    _node_name: &str,
    _unavailable: bool,
) -> Result<(), StartupError> {
    Ok(())
}
