//! The WorkloadEndpoints the IPAM service records for the CNI plugin (reference §2.3): written
//! after ADD has wired a pod, removed on DEL. Only etcd stores them; with the Kubernetes
//! datastore the pod itself is the endpoint and nothing is written.
//!
//! Labels are `projectcalico.org/namespace` and `projectcalico.org/orchestrator`: in etcd mode
//! the daemon has no Kubernetes API to read the pod's own labels or service account from.

use crate::cni::ipam_protocol::{EndpointAddRequest, IpamErrorKind, IpamResponse};
use crate::datastore::{endpoints, AnyDatastore};
use starling_model::endpoint::k8s_endpoint_name;
use starling_model::store::StoreError;
use starling_model::{IpNat, MacAddr, PodEndpoint, WorkloadEndpoint};

/// The pod interface Calico assumes when a request does not name one.
pub const DEFAULT_ENDPOINT: &str = "eth0";

fn store_error(action: &str, error: StoreError) -> IpamResponse {
    let kind = match error {
        StoreError::Unavailable { .. } | StoreError::Conflict { .. } => IpamErrorKind::Unavailable,
        _ => IpamErrorKind::Internal,
    };
    IpamResponse::error(kind, format!("{action}: {error}"))
}

/// `EndpointAdd`: writes the endpoint (etcd) and answers its name.
pub async fn record(
    store: &AnyDatastore,
    node: &str,
    request: &EndpointAddRequest,
) -> IpamResponse {
    let AnyDatastore::Etcd(etcd) = store else {
        return IpamResponse::EndpointRecorded { name: None };
    };
    let pod = format!("{}/{}", request.pod_namespace, request.pod_name);
    let mac = match request
        .mac
        .as_deref()
        .map(str::parse::<MacAddr>)
        .transpose()
    {
        Ok(mac) => mac,
        Err(error) => {
            return IpamResponse::error(
                IpamErrorKind::Invalid,
                format!("the endpoint of pod {pod}: {error}"),
            )
        }
    };
    let endpoint = match WorkloadEndpoint::for_pod(PodEndpoint {
        node: node.to_string(),
        namespace: request.pod_namespace.clone(),
        pod: request.pod_name.clone(),
        container_id: request.container_id.clone(),
        endpoint: request.interface_name.clone(),
        interface_name: request.host_interface.clone(),
        mac,
        networks: request.addresses.clone(),
        ip_nats: request
            .floating_ips
            .iter()
            .map(|floating| IpNat {
                internal: floating.internal,
                external: floating.external,
            })
            .collect(),
        ..PodEndpoint::default()
    }) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            return IpamResponse::error(IpamErrorKind::Invalid, format!("pod {pod}: {error}"))
        }
    };
    if let Err(error) = endpoints::write(etcd, &endpoint).await {
        return store_error(&format!("writing the WorkloadEndpoint of pod {pod}"), error);
    }
    tracing::info!(
        endpoint = %endpoint.key(),
        handle = %request.handle,
        addresses = ?request.addresses,
        "recorded workload endpoint"
    );
    IpamResponse::EndpointRecorded {
        name: Some(endpoint.name),
    }
}

/// DEL: removes the pod's endpoint unless it belongs to another container. Errors are the
/// caller's to answer (the runtime retries DEL; the address must not be released while the
/// endpoint that names it may stay behind).
pub async fn forget(
    store: &AnyDatastore,
    node: &str,
    namespace: &str,
    pod: &str,
    interface: Option<&str>,
    container_id: &str,
) -> Result<(), IpamResponse> {
    let AnyDatastore::Etcd(etcd) = store else {
        return Ok(());
    };
    let interface = interface
        .filter(|i| !i.is_empty())
        .unwrap_or(DEFAULT_ENDPOINT);
    let Ok(name) = k8s_endpoint_name(node, pod, interface) else {
        // No endpoint can have been written under a name that cannot be built.
        return Ok(());
    };
    match endpoints::delete_for_container(etcd, namespace, &name, container_id).await {
        Ok(deleted) => {
            if deleted {
                tracing::info!(endpoint = %format!("{namespace}/{name}"), "removed workload endpoint");
            }
            Ok(())
        }
        Err(error) => Err(store_error(
            &format!("removing the WorkloadEndpoint {namespace}/{name}"),
            error,
        )),
    }
}
