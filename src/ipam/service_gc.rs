//! CNI GC on the daemon side: one pass over the blocks decides (`cni::gc::plan`) which of this
//! node's handles of the network are stale, and each is released as DEL releases it (endpoint
//! first, then the addresses, then the pod's annotations). A handle that fails is reported and the
//! pass goes on.

use ipnet::IpNet;

use super::{error, host_net, IpamService};
use crate::cni::gc::{self, Allocation};
use crate::cni::ipam_protocol::{GcRequest, IpamErrorKind, IpamResponse, PodRef, ReleasedHandle};
use starling_ipam::block::Block;
use starling_ipam::store::IpamStoreExt;

impl IpamService {
    pub(super) async fn garbage_collect(&self, request: &GcRequest) -> IpamResponse {
        let host = self.allocator.host();
        let blocks = match self.store().list::<Block>().await {
            Ok(blocks) => blocks,
            Err(err) => {
                return error(
                    IpamErrorKind::Unavailable,
                    format!("listing the IPAM blocks for GC: {err}"),
                )
            }
        };
        let plan = gc::plan(
            request,
            host,
            chrono::Utc::now(),
            blocks.iter().flat_map(|block| {
                let block_host = block.value.host();
                block
                    .value
                    .allocated()
                    .into_iter()
                    .filter_map(move |(_, attribute)| {
                        Some(Allocation {
                            handle: attribute.handle_id.as_deref()?,
                            attributes: &attribute.secondary,
                            block_host,
                        })
                    })
            }),
        );
        let mut released: Vec<(String, Vec<IpNet>)> = Vec::new();
        let mut problems = Vec::new();
        for (handle, pod) in &plan.stale {
            match self.release_stale(request, handle, pod.as_ref()).await {
                Ok(addresses) => released.push((handle.clone(), addresses)),
                Err(problem) => problems.push(problem),
            }
        }
        tracing::info!(
            network = %request.network_name,
            valid = request.valid_handles.len(),
            released = released.len(),
            failed = problems.len(),
            "CNI GC"
        );
        IpamResponse::GarbageCollected {
            stale_pods: plan.stale_pods(&released),
            released: released
                .into_iter()
                .map(|(handle, addresses)| ReleasedHandle { handle, addresses })
                .collect(),
            problems,
        }
    }

    async fn release_stale(
        &self,
        request: &GcRequest,
        handle: &str,
        pod: Option<&PodRef>,
    ) -> Result<Vec<IpNet>, String> {
        let container = gc::container_of(&request.network_name, handle).unwrap_or_default();
        if let Some(pod) = pod {
            // GC does not know the pod's interface; Calico's default names the endpoint.
            super::super::endpoint_records::forget(
                self.store(),
                self.allocator.host(),
                &pod.namespace,
                &pod.name,
                None,
                container,
            )
            .await
            .map_err(|response| match response {
                IpamResponse::Error(failure) => format!("releasing {handle}: {}", failure.message),
                other => format!("releasing {handle}: {other:?}"),
            })?;
        }
        let mut addresses = starling_ipam::release::release_by_handle(self.store(), handle)
            .await
            .map_err(|err| format!("releasing {handle}: {err}"))?;
        if addresses.is_empty() {
            // Allocations whose handle record is missing: found by scanning the blocks.
            addresses = starling_ipam::release::release_by_handle_scan(self.store(), handle)
                .await
                .map_err(|err| format!("releasing {handle} by block scan: {err}"))?;
        }
        if let (Some(client), Some(pod)) = (&self.kube, pod) {
            super::clear_pod_annotations(client, &pod.namespace, &pod.name, container).await;
        }
        Ok(addresses.into_iter().map(host_net).collect())
    }
}
