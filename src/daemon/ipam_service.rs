//! The daemon's answer to the CNI plugin's address-management requests
//! (`crate::cni::ipam_protocol`): `crate::ipam::service::IpamService`, fed with the local node
//! as the state loop currently sees it (its labels drive pool nodeSelectors).

use std::sync::Arc;

use tokio::sync::watch;

use crate::datastore::AnyDatastore;
use crate::metrics::Metrics;
use starling_calc::compute::Computed;
use starling_model::CalicoNode;

pub use crate::ipam::service::IpamService;

/// Builds the node's IPAM service. On Kubernetes the service also reads pod and namespace
/// annotations and writes the pod IP annotations.
pub fn build(
    store: AnyDatastore,
    node_name: &str,
    registered: CalicoNode,
    computed: watch::Receiver<Option<Arc<Computed>>>,
    metrics: Metrics,
) -> IpamService {
    let kube = match &store {
        AnyDatastore::Kube(kube) => Some(kube.client()),
        _ => None,
    };
    let node = Arc::new(move || {
        computed
            .borrow()
            .as_ref()
            .map(|c| c.local_node.clone())
            .unwrap_or_else(|| registered.clone())
    });
    IpamService::new(store, node_name, kube, node, metrics)
}
