//! The daemon side of the CNI plugin's address management (`cni::ipam_protocol`): one
//! [`IpamService`] per node turns `IpamRequest`s into allocator calls.
//!
//! Why here and not in the plugin: one process per node owns the allocator, so its host-wide
//! lock serialises concurrent ADDs without CAS storms, its last-block hint stays warm, and only
//! the daemon holds datastore credentials. Pools, reservations and the IPAM configuration are
//! read fresh for every request (a few reads) so a pool created a moment ago is honoured.
//!
//! etcd side effects: the pod's WorkloadEndpoint is written after wiring and removed on release
//! (`endpoint_records`). CNI GC is `service_gc.rs`.
//!
//! Kubernetes side effects (when a Kubernetes client is available): the pod's and namespace's
//! annotations drive the request, and `cni.projectcalico.org/podIP`, `podIPs` and `containerID`
//! are written through the pod's status subresource, as Calico's plugin does. If that write
//! fails, the addresses are released again, so "assigned" is never answered for addresses the
//! pod does not record.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams};
use kube::Api;

use crate::cni::ipam_protocol::{
    AssignRequest as CniAssign, CheckRequest, FloatingIp, IpamErrorKind, IpamRequest, IpamResponse,
    ReleaseRequest,
};
use crate::datastore::{AnyDatastore, Datastore};
use crate::metrics::Metrics;
use crate::resources::FromResource;
use crate::resources::IPPool;
use starling_ipam::allocator::{AddressRequest, Allocator, AssignRequest};
use starling_ipam::block::Block;
use starling_ipam::pools::{IpFamily, NamespaceInfo};
use starling_ipam::records::Handle;
use starling_ipam::request::{
    allocation_request, pair_floating_ips, pod_attributes, pools_for, AllocationMode, CniIpamConfig,
};
use starling_ipam::store::{read_ipam_config, read_reservations};
use starling_ipam::IpamError;
use starling_model::store::StoreError;
use starling_model::validate::ippool::resolve_overlaps;
use starling_model::{CalicoNode, IpPool};

#[path = "service_gc.rs"]
mod gc;

pub const ANNOTATION_POD_IP: &str = "cni.projectcalico.org/podIP";
pub const ANNOTATION_POD_IPS: &str = "cni.projectcalico.org/podIPs";
pub const ANNOTATION_CONTAINER_ID: &str = "cni.projectcalico.org/containerID";
pub const ANNOTATION_HW_ADDR: &str = "cni.projectcalico.org/hwAddr";

/// The local node as the daemon currently knows it (labels drive nodeSelector).
pub type NodeSource = Arc<dyn Fn() -> CalicoNode + Send + Sync>;

/// Serves the CNI plugin's IPAM requests for one node.
#[derive(Clone)]
pub struct IpamService {
    allocator: Allocator<AnyDatastore>,
    kube: Option<kube::Client>,
    node: NodeSource,
    metrics: Metrics,
}

/// What the pod and its namespace say, read once per request.
#[derive(Debug, Default)]
struct PodContext {
    pod_annotations: BTreeMap<String, String>,
    namespace: NamespaceInfo,
    namespace_annotations: BTreeMap<String, String>,
}

fn error(kind: IpamErrorKind, message: impl Into<String>) -> IpamResponse {
    IpamResponse::error(kind, message)
}

/// Maps an allocator error to the protocol's error kinds.
fn classify(err: &IpamError) -> IpamErrorKind {
    match err {
        IpamError::Exhausted { .. } => IpamErrorKind::Exhausted,
        IpamError::AddressNotInPool { .. } | IpamError::AddressInUse { .. } => {
            IpamErrorKind::AddressInUse
        }
        IpamError::Pool(_) => IpamErrorKind::Invalid,
        IpamError::Store(StoreError::Unavailable { .. }) => IpamErrorKind::Unavailable,
        _ => IpamErrorKind::Internal,
    }
}

fn host_net(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

impl IpamService {
    pub fn new(
        store: AnyDatastore,
        node_name: &str,
        kube: Option<kube::Client>,
        node: NodeSource,
        metrics: Metrics,
    ) -> IpamService {
        IpamService {
            allocator: Allocator::new(store, node_name),
            kube,
            node,
            metrics,
        }
    }

    fn store(&self) -> &AnyDatastore {
        self.allocator.store()
    }

    /// Answers one request; never panics and never leaves a half-done assignment behind.
    pub async fn handle(&self, request: IpamRequest) -> IpamResponse {
        let started = std::time::Instant::now();
        let (operation, response) = match request {
            IpamRequest::Assign(assign) => ("assign", self.assign(&assign).await),
            IpamRequest::ReleaseByHandle(release) => ("release", self.release(&release).await),
            IpamRequest::Check(check) => ("check", self.check(&check).await),
            IpamRequest::EndpointAdd(endpoint) => (
                "endpoint_add",
                super::endpoint_records::record(self.store(), self.allocator.host(), &endpoint)
                    .await,
            ),
            IpamRequest::Status => ("status", self.status().await),
            IpamRequest::GarbageCollect(gc) => ("gc", self.garbage_collect(&gc).await),
        };
        self.metrics
            .ipam_operation_seconds
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
        let outcome = if matches!(response, IpamResponse::Error(_)) {
            "error"
        } else {
            "ok"
        };
        self.metrics
            .cni_requests_total
            .with_label_values(&[operation, outcome])
            .inc();
        response
    }

    async fn status(&self) -> IpamResponse {
        match read_ipam_config(self.store()).await {
            Ok(_) => IpamResponse::Ready,
            Err(err) => error(IpamErrorKind::Unavailable, format!("datastore: {err}")),
        }
    }

    /// Valid pools, overlaps resolved as the rest of the daemon resolves them.
    async fn pools(&self) -> Result<Vec<IpPool>, StoreError> {
        let mut valid = Vec::new();
        for stored in self.store().list::<IPPool>().await? {
            match IpPool::from_resource(&stored.value) {
                Ok(pool) => valid.push(pool),
                Err(err) => tracing::warn!(%err, "ignoring invalid IPPool"),
            }
        }
        Ok(resolve_overlaps(&valid).0)
    }

    /// The pod's context from the Kubernetes API; without one (etcd mode), the annotations the
    /// orchestrator passed with the request (`passed`).
    async fn pod_context(
        &self,
        namespace: &str,
        pod: &str,
        passed: &BTreeMap<String, String>,
    ) -> Result<PodContext, IpamResponse> {
        let Some(client) = &self.kube else {
            return Ok(PodContext {
                pod_annotations: passed.clone(),
                namespace: NamespaceInfo {
                    name: namespace.to_string(),
                    labels: BTreeMap::new(),
                },
                ..PodContext::default()
            });
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let pod_object = pods.get(pod).await.map_err(|err| match err {
            kube::Error::Api(status) if status.code == 404 => error(
                IpamErrorKind::Invalid,
                format!("pod {namespace}/{pod} does not exist"),
            ),
            other => error(
                IpamErrorKind::Unavailable,
                format!("reading pod {namespace}/{pod}: {other}"),
            ),
        })?;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let namespace_object = namespaces.get_opt(namespace).await.map_err(|err| {
            error(
                IpamErrorKind::Unavailable,
                format!("reading namespace {namespace}: {err}"),
            )
        })?;
        let (namespace_labels, namespace_annotations) = namespace_object
            .map(|ns| {
                (
                    ns.metadata.labels.unwrap_or_default(),
                    ns.metadata.annotations.unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        Ok(PodContext {
            pod_annotations: pod_object.metadata.annotations.unwrap_or_default(),
            namespace: NamespaceInfo {
                name: namespace.to_string(),
                labels: namespace_labels,
            },
            namespace_annotations,
        })
    }

    /// Addresses a handle holds now (empty when the handle does not exist).
    async fn addresses_of_handle(&self, handle_id: &str) -> Result<Vec<IpAddr>, StoreError> {
        let handle = match self.store().get::<Handle>(&handle_id.to_string()).await {
            Ok(handle) => handle.value,
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let mut addresses = Vec::new();
        for cidr in handle.blocks.keys().filter_map(|c| c.parse::<IpNet>().ok()) {
            match self.store().get::<Block>(&cidr).await {
                Ok(block) => addresses.extend(block.value.addresses_of_handle(handle_id)),
                Err(StoreError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        addresses.sort();
        Ok(addresses)
    }

    async fn assign(&self, request: &CniAssign) -> IpamResponse {
        match self.addresses_of_handle(&request.handle).await {
            Ok(existing) if !existing.is_empty() => {
                // A retried ADD for the same container: answer what it already holds.
                return IpamResponse::Assigned {
                    addresses: existing.into_iter().map(host_net).collect(),
                    pod_mac: None,
                    floating_ips: Vec::new(),
                };
            }
            Ok(_) => {}
            Err(err) => return error(IpamErrorKind::Unavailable, err.to_string()),
        }
        let context = match self
            .pod_context(
                &request.pod_namespace,
                &request.pod_name,
                &request.pod_annotations,
            )
            .await
        {
            Ok(context) => context,
            Err(response) => return response,
        };
        let (assigned, floating_ips) = match self.assign_addresses(request, &context).await {
            Ok(assigned) => assigned,
            Err(response) => {
                // Whatever part of the request succeeded is given back.
                if let Err(err) =
                    starling_ipam::release::release_by_handle(self.store(), &request.handle).await
                {
                    tracing::error!(handle = %request.handle, %err, "releasing a failed assignment");
                }
                return response;
            }
        };
        if let Err(message) = self.annotate_pod(request, &assigned).await {
            if let Err(err) =
                starling_ipam::release::release_by_handle(self.store(), &request.handle).await
            {
                tracing::error!(handle = %request.handle, %err, "releasing after a failed annotation");
            }
            return error(IpamErrorKind::Unavailable, message);
        }
        tracing::info!(
            pod = %format!("{}/{}", request.pod_namespace, request.pod_name),
            handle = %request.handle,
            addresses = ?assigned,
            "assigned pod addresses"
        );
        IpamResponse::Assigned {
            addresses: assigned,
            pod_mac: context.pod_annotations.get(ANNOTATION_HW_ADDR).cloned(),
            floating_ips,
        }
    }

    async fn assign_addresses(
        &self,
        request: &CniAssign,
        context: &PodContext,
    ) -> Result<(Vec<IpNet>, Vec<FloatingIp>), IpamResponse> {
        let unavailable = |err: StoreError| error(IpamErrorKind::Unavailable, err.to_string());
        let pools = self.pools().await.map_err(unavailable)?;
        let config = read_ipam_config(self.store()).await.map_err(unavailable)?;
        let reserved = read_reservations(self.store()).await.map_err(unavailable)?;
        let cni = CniIpamConfig {
            ipv4_pools: request.ipam.ipv4_pools.clone(),
            ipv6_pools: request.ipam.ipv6_pools.clone(),
            assign_ipv4: request.ipam.assign_ipv4,
            assign_ipv6: request.ipam.assign_ipv6,
            ip_addrs_no_ipam: request.feature_control.ip_addrs_no_ipam,
            floating_ips: request.feature_control.floating_ips,
        };
        let mut allocation = allocation_request(
            &context.pod_annotations,
            &context.namespace_annotations,
            &cni,
            &pools,
        )
        .map_err(|err| error(IpamErrorKind::Invalid, err.to_string()))?;
        if !request.requested_addresses.is_empty() {
            if !matches!(allocation.mode, AllocationMode::Automatic { .. }) {
                return Err(error(
                    IpamErrorKind::Invalid,
                    "the runtime asked for specific addresses and the pod's annotations do too",
                ));
            }
            allocation.mode = AllocationMode::Specific(request.requested_addresses.clone());
        }
        let node = (self.node)();
        let attributes = pod_attributes(
            self.allocator.host(),
            &request.pod_namespace,
            &request.pod_name,
            chrono::Utc::now(),
        );
        let now = chrono::Utc::now();
        let mut assigned = Vec::new();
        match allocation.mode {
            AllocationMode::NoIpam(networks) => assigned = networks,
            AllocationMode::Specific(addresses) => {
                for address in addresses {
                    let specific = AddressRequest {
                        address,
                        handle_id: request.handle.clone(),
                        attributes: attributes.clone(),
                        pools: pools.clone(),
                        config,
                        now,
                    };
                    self.allocator
                        .assign_address(&specific)
                        .await
                        .map_err(|err| error(classify(&err), err.to_string()))?;
                    assigned.push(host_net(address));
                }
            }
            AllocationMode::Automatic { ipv4, ipv6 } => {
                for (family, family_request) in [(IpFamily::V4, ipv4), (IpFamily::V6, ipv6)] {
                    let Some(family_request) = family_request else {
                        continue;
                    };
                    let chosen = pools_for(
                        &family_request,
                        family,
                        &pools,
                        &node,
                        Some(&context.namespace),
                    )
                    .map_err(|err| error(IpamErrorKind::Invalid, err.to_string()))?;
                    let names: Vec<&str> = chosen.iter().map(|p| p.name.as_str()).collect();
                    let names = names.join(", ");
                    let assign = AssignRequest {
                        handle_id: request.handle.clone(),
                        attributes: attributes.clone(),
                        family,
                        count: 1,
                        pools: chosen,
                        reserved: reserved.clone(),
                        config,
                        max_blocks_per_host: 0,
                        now,
                    };
                    let addresses = self.allocator.auto_assign(&assign).await.map_err(|err| {
                        let kind = classify(&err);
                        let message = if kind == IpamErrorKind::Exhausted {
                            format!("IP pool(s) {names} exhausted: {err}")
                        } else {
                            err.to_string()
                        };
                        error(kind, message)
                    })?;
                    assigned.extend(addresses.into_iter().map(host_net));
                }
            }
        }
        // Checked once the addresses are known; an error releases them again (the caller).
        let addresses: Vec<IpAddr> = assigned.iter().map(IpNet::addr).collect();
        let floating_ips = pair_floating_ips(&allocation.floating_ips, &addresses, &pools)
            .map_err(|err| error(IpamErrorKind::Invalid, err.to_string()))?
            .into_iter()
            .map(|nat| FloatingIp {
                internal: nat.internal,
                external: nat.external,
            })
            .collect();
        Ok((assigned, floating_ips))
    }

    /// Writes the pod IP annotations (Kubernetes only).
    async fn annotate_pod(&self, request: &CniAssign, assigned: &[IpNet]) -> Result<(), String> {
        let Some(client) = &self.kube else {
            return Ok(());
        };
        let ips: Vec<String> = assigned.iter().map(|n| n.to_string()).collect();
        let patch = serde_json::json!({
            "metadata": {"annotations": {
                ANNOTATION_POD_IP: ips.first().cloned().unwrap_or_default(),
                ANNOTATION_POD_IPS: ips.join(","),
                ANNOTATION_CONTAINER_ID: request.container_id,
            }}
        });
        let pods: Api<Pod> = Api::namespaced(client.clone(), &request.pod_namespace);
        pods.patch_status(
            &request.pod_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(drop)
        .map_err(|err| {
            format!(
                "writing the IP annotations of pod {}/{}: {err}",
                request.pod_namespace, request.pod_name
            )
        })
    }

    async fn release(&self, request: &ReleaseRequest) -> IpamResponse {
        // The endpoint goes first, as in Calico's DEL: an address is never free while an
        // endpoint still names it.
        if let (Some(namespace), Some(pod)) = (&request.pod_namespace, &request.pod_name) {
            if let Err(response) = super::endpoint_records::forget(
                self.store(),
                self.allocator.host(),
                namespace,
                pod,
                request.interface_name.as_deref(),
                &request.container_id,
            )
            .await
            {
                return response;
            }
        }
        let released =
            match starling_ipam::release::release_by_handle(self.store(), &request.handle).await {
                Ok(released) => released,
                Err(err) => return error(classify(&err), err.to_string()),
            };
        if let (Some(client), Some(namespace), Some(pod)) =
            (&self.kube, &request.pod_namespace, &request.pod_name)
        {
            clear_pod_annotations(client, namespace, pod, &request.container_id).await;
        }
        IpamResponse::Released {
            addresses: released.into_iter().map(host_net).collect(),
        }
    }

    async fn check(&self, request: &CheckRequest) -> IpamResponse {
        let held = match self.addresses_of_handle(&request.handle).await {
            Ok(held) => held,
            Err(err) => return error(IpamErrorKind::Unavailable, err.to_string()),
        };
        let mut expected: Vec<IpAddr> = request.addresses.iter().map(|n| n.addr()).collect();
        expected.sort();
        if held == expected {
            IpamResponse::Checked
        } else {
            error(
                IpamErrorKind::Mismatch,
                format!(
                    "handle {} holds {held:?}, the container has {expected:?}",
                    request.handle
                ),
            )
        }
    }
}

/// Clears podIP/podIPs when the pod's containerID annotation still names this container (a newer
/// sandbox of the same pod keeps its annotations). Failures are logged: DEL must still succeed.
async fn clear_pod_annotations(client: &kube::Client, namespace: &str, pod: &str, container: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let current = match pods.get_opt(pod).await {
        Ok(Some(current)) => current,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(%err, pod = %format!("{namespace}/{pod}"), "reading pod on release");
            return;
        }
    };
    let annotations = current.metadata.annotations.unwrap_or_default();
    if annotations
        .get(ANNOTATION_CONTAINER_ID)
        .is_some_and(|id| id != container)
    {
        return;
    }
    let patch = serde_json::json!({
        "metadata": {"annotations": {ANNOTATION_POD_IP: "", ANNOTATION_POD_IPS: ""}}
    });
    if let Err(err) = pods
        .patch_status(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(%err, pod = %format!("{namespace}/{pod}"), "clearing pod IP annotations");
    }
}
