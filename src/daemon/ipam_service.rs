//! The daemon's answer to the CNI plugin's address-management requests
//! (`crate::cni::ipam_protocol`).
//!
//! PLACEHOLDER: the integrator replaces the body with the real handler; until then every
//! request is answered with an `Unavailable` error so the plugin reports "try again later".

use crate::cni::ipam_protocol::{IpamErrorKind, IpamRequest, IpamResponse};
use crate::config::Config;
use crate::datastore::AnyDatastore;
use crate::metrics::Metrics;

/// Serves IPAM requests for this node.
pub struct IpamService {
    #[allow(dead_code)]
    config: Config,
    #[allow(dead_code)]
    store: AnyDatastore,
    node_name: String,
    #[allow(dead_code)]
    metrics: Metrics,
}

impl IpamService {
    pub fn new(config: Config, store: AnyDatastore, node_name: String, metrics: Metrics) -> Self {
        IpamService {
            config,
            store,
            node_name,
            metrics,
        }
    }

    pub async fn handle(&self, request: IpamRequest) -> IpamResponse {
        let _ = request;
        IpamResponse::error(
            IpamErrorKind::Unavailable,
            format!(
                "address management is not available in the daemon on node {} yet",
                self.node_name
            ),
        )
    }
}
