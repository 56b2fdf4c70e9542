//! The CNI commands ADD, DEL, CHECK and STATUS (GC is `gc.rs`), over an [`IpamBackend`] and a
//! [`PodDataplane`] so the orchestration (ordering, rollback, idempotence, error codes) is tested
//! with fakes and the kernel work separately.
//!
//! - ADD: validate everything that can be validated before anything is allocated; assign under
//!   handle `<network name>.<containerID>`; wire. `prevResult` is ignored: Starling creates the
//!   pod's interface and so comes first in a chain. Once wired, the daemon records the pod's
//!   WorkloadEndpoint (etcd mode). A wiring or recording failure rolls back: the veth is removed
//!   and the handle released (which removes the endpoint too), so nothing is left behind.
//! - DEL: remove the veth (through the pod's namespace), then release the handle. Both steps succeed when there is nothing to
//!   remove, so DEL is idempotent. A daemon that cannot be reached is code 11: the runtime
//!   retries DEL, and succeeding silently would leak the address.
//! - CHECK (0.4.0 and later): the daemon confirms the handle holds the prevResult's addresses,
//!   and the interfaces, addresses and routes are compared with what ADD leaves.
//! - STATUS (1.1.0): OK when the daemon answers that IPAM is ready, else code 50.
//! - GC (1.1.0): in `gc.rs`.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use super::args::PluginEnvironment;
use super::backend::IpamBackend;
use super::config::NetworkConfig;
use super::ipam_protocol::{
    AssignRequest, CheckRequest, EndpointAddRequest, FloatingIp, IpamRequest, IpamResponse,
    ReleaseRequest,
};
use super::result::{code, version_at_least, CniError, CniResult, IpConfig, Route};
use super::wiring::{resolve_mtu, PodDataplane, WiredPod, WiringRequest};
use starling_calc::spec::veth_name;

/// Host facts the plugin takes from its environment rather than from the network config.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// `cali` unless `FELIX_INTERFACEPREFIX` says otherwise.
    pub interface_prefix: String,
    /// Where the daemon writes the pod MTU (`STARLING_MTU_FILE`).
    pub mtu_file: PathBuf,
}

/// The IPAM handle of one attachment (reference §4.1).
pub fn handle_for(config: &NetworkConfig, environment: &PluginEnvironment) -> String {
    format!("{}.{}", config.name, environment.container_id)
}

fn unexpected(action: &str, response: &IpamResponse) -> CniError {
    CniError::new(
        code::IPAM_INTERNAL,
        format!("{action}: the daemon gave an unexpected answer"),
        format!("{response:?}"),
    )
}

pub async fn add(
    config: &NetworkConfig,
    environment: &PluginEnvironment,
    settings: &HostSettings,
    ipam: &impl IpamBackend,
    dataplane: &impl PodDataplane,
) -> Result<CniResult, CniError> {
    let pod = environment.pod()?;
    let netns = environment
        .netns
        .clone()
        .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS is not set", ""))?;
    if !netns.exists() {
        return Err(CniError::new(
            code::CONTAINER_UNKNOWN,
            format!(
                "the pod network namespace {} does not exist",
                netns.display()
            ),
            "",
        ));
    }
    let mut requested_addresses = environment.args.requested_addresses.clone();
    requested_addresses.extend(config.requested_addresses()?);
    let pod_annotations = config.pod_annotations()?;
    let handle = handle_for(config, environment);
    let action = format!("assigning an address to pod {}/{}", pod.namespace, pod.name);
    let response = ipam
        .exchange(IpamRequest::Assign(AssignRequest {
            handle: handle.clone(),
            network_name: config.name.clone(),
            container_id: environment.container_id.clone(),
            pod_namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            interface_name: environment.interface_name.clone(),
            ipam: config.ipam(),
            feature_control: config.feature_control,
            requested_addresses,
            pod_annotations,
        }))
        .await?;
    let (addresses, pod_mac, floating_ips): (Vec<IpAddr>, _, _) = match response {
        IpamResponse::Assigned {
            addresses,
            pod_mac,
            floating_ips,
        } if !addresses.is_empty() => (
            addresses.iter().map(IpNet::addr).collect(),
            pod_mac,
            floating_ips,
        ),
        IpamResponse::Error(error) => return Err(error.to_cni_error(&action)),
        other => return Err(unexpected(&action, &other)),
    };
    let pod_mac = match pod_mac.as_deref().map(parse_mac).transpose() {
        Ok(mac) => mac,
        Err(mut error) => {
            if let Err(problem) = release(config, environment, ipam).await {
                error.details = format!("releasing {handle} failed too: {problem}");
            }
            return Err(error);
        }
    };
    tracing::info!(pod = %format!("{}/{}", pod.namespace, pod.name), %handle, ?addresses, "addresses assigned");

    let request = WiringRequest {
        host_interface: veth_name(&settings.interface_prefix, &pod.namespace, &pod.name),
        netns: netns.clone(),
        pod_interface: environment.interface_name.clone(),
        addresses: addresses.clone(),
        mtu: resolve_mtu(config.explicit_mtu(), &settings.mtu_file),
        pod_mac,
    };
    let wired = match wire_and_record(
        environment,
        &handle,
        &request,
        &floating_ips,
        ipam,
        dataplane,
    )
    .await
    {
        Ok(wired) => wired,
        Err(mut error) => {
            tracing::warn!(%error, "wiring or recording the endpoint failed; rolling back");
            let mut rollback_problems = Vec::new();
            // Only the host side: deleting it takes its peer along, and an interface in the pod
            // namespace that this ADD did not create (its creation failed) is not ours to delete.
            if let Err(problem) = dataplane
                .unwire(Some(&request.host_interface), None, &request.pod_interface)
                .await
            {
                rollback_problems.push(format!("removing the veth: {problem}"));
            }
            if let Err(problem) = release(config, environment, ipam).await {
                rollback_problems.push(format!("releasing {handle}: {problem}"));
            }
            if !rollback_problems.is_empty() {
                let joined = rollback_problems.join("; ");
                tracing::error!(problems = %joined, "rollback incomplete");
                error.details = if error.details.is_empty() {
                    format!("rollback incomplete: {joined}")
                } else {
                    format!("{}; rollback incomplete: {joined}", error.details)
                };
            }
            return Err(error);
        }
    };

    let mut routes = Vec::new();
    for ipv4 in [true, false] {
        if addresses.iter().any(|address| address.is_ipv4() == ipv4) {
            let destination = if ipv4 { "0.0.0.0/0" } else { "::/0" };
            if let Ok(dst) = destination.parse() {
                routes.push(Route { dst, gw: None });
            }
        }
    }
    Ok(CniResult {
        interfaces: vec![wired.host, wired.pod],
        ips: addresses
            .iter()
            .map(|address| IpConfig {
                address: IpNet::from(*address),
                gateway: None,
                interface: Some(1),
            })
            .collect(),
        routes,
        dns: config.dns.clone().unwrap_or(serde_json::Value::Null),
    })
}

/// Wires the pod, then has the daemon record its WorkloadEndpoint (what Calico's plugin writes
/// once the interface exists: the host veth's name and the pod side's MAC).
async fn wire_and_record(
    environment: &PluginEnvironment,
    handle: &str,
    request: &WiringRequest,
    floating_ips: &[FloatingIp],
    ipam: &impl IpamBackend,
    dataplane: &impl PodDataplane,
) -> Result<WiredPod, CniError> {
    let wired = dataplane.wire(request).await?;
    let pod = environment.pod()?;
    let action = format!(
        "recording the endpoint of pod {}/{}",
        pod.namespace, pod.name
    );
    let response = ipam
        .exchange(IpamRequest::EndpointAdd(EndpointAddRequest {
            handle: handle.to_string(),
            container_id: environment.container_id.clone(),
            pod_namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            interface_name: request.pod_interface.clone(),
            host_interface: wired.host.name.clone(),
            mac: wired.pod.mac.clone(),
            addresses: request.addresses.iter().map(|a| IpNet::from(*a)).collect(),
            floating_ips: floating_ips.to_vec(),
        }))
        .await?;
    match response {
        IpamResponse::EndpointRecorded { name } => {
            if let Some(name) = name {
                tracing::info!(endpoint = %name, "workload endpoint recorded");
            }
            Ok(wired)
        }
        IpamResponse::Error(error) => Err(error.to_cni_error(&action)),
        other => Err(unexpected(&action, &other)),
    }
}

async fn release(
    config: &NetworkConfig,
    environment: &PluginEnvironment,
    ipam: &impl IpamBackend,
) -> Result<Vec<IpNet>, CniError> {
    let handle = handle_for(config, environment);
    let pod = environment.pod_if_known();
    let action = format!("releasing the addresses of {handle}");
    let response = ipam
        .exchange(IpamRequest::ReleaseByHandle(ReleaseRequest {
            handle: handle.clone(),
            network_name: config.name.clone(),
            container_id: environment.container_id.clone(),
            pod_namespace: pod.as_ref().map(|pod| pod.namespace.clone()),
            pod_name: pod.as_ref().map(|pod| pod.name.clone()),
            interface_name: Some(environment.interface_name.clone()),
        }))
        .await?;
    match response {
        IpamResponse::Released { addresses } => Ok(addresses),
        IpamResponse::Error(error) => Err(error.to_cni_error(&action)),
        other => Err(unexpected(&action, &other)),
    }
}

pub async fn delete(
    config: &NetworkConfig,
    environment: &PluginEnvironment,
    ipam: &impl IpamBackend,
    dataplane: &impl PodDataplane,
) -> Result<(), CniError> {
    // Through the pod's namespace only, never by the host-side name: a newer sandbox of the same
    // pod has the same host-side name, and a DEL for the old sandbox must not cut it off. When the
    // namespace is gone its veth went with it.
    dataplane
        .unwire(
            None,
            environment.netns.as_deref(),
            &environment.interface_name,
        )
        .await?;
    let released = release(config, environment, ipam).await?;
    tracing::info!(handle = %handle_for(config, environment), ?released, "pod network removed");
    Ok(())
}

pub async fn check(
    config: &NetworkConfig,
    environment: &PluginEnvironment,
    settings: &HostSettings,
    ipam: &impl IpamBackend,
    dataplane: &impl PodDataplane,
) -> Result<(), CniError> {
    if !version_at_least(&config.cni_version, "0.4.0") {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "CHECK needs cniVersion 0.4.0 or later, not {}",
                config.cni_version
            ),
            "",
        ));
    }
    let pod = environment.pod()?;
    let previous = config.prev_result.as_ref().ok_or_else(|| {
        CniError::new(
            code::INVALID_NETWORK_CONFIG,
            "CHECK needs prevResult in the network configuration",
            "",
        )
    })?;
    let previous = CniResult::from_prev_result(previous)?;
    // Only the addresses on our pod interface; a chained plugin may have added others.
    let ours = |ip: &IpConfig| match ip.interface {
        None => true,
        Some(index) => previous
            .interfaces
            .get(index)
            .is_some_and(|interface| interface.name == environment.interface_name),
    };
    let addresses: Vec<IpNet> = previous
        .ips
        .iter()
        .filter(|ip| ours(ip))
        .map(|ip| IpNet::from(ip.address.addr()))
        .collect();
    if addresses.is_empty() {
        return Err(CniError::new(
            code::CHECK_FAILED,
            format!(
                "prevResult has no address on {}",
                environment.interface_name
            ),
            "",
        ));
    }
    let handle = handle_for(config, environment);
    let action = format!("checking the addresses of {handle}");
    match ipam
        .exchange(IpamRequest::Check(CheckRequest {
            handle: handle.clone(),
            addresses: addresses.clone(),
        }))
        .await?
    {
        IpamResponse::Checked => {}
        IpamResponse::Error(error) => return Err(error.to_cni_error(&action)),
        other => return Err(unexpected(&action, &other)),
    }
    let netns = environment
        .netns
        .clone()
        .ok_or_else(|| CniError::new(code::INVALID_ENVIRONMENT, "CNI_NETNS is not set", ""))?;
    dataplane
        .check(&WiringRequest {
            host_interface: veth_name(&settings.interface_prefix, &pod.namespace, &pod.name),
            netns,
            pod_interface: environment.interface_name.clone(),
            addresses: addresses.iter().map(IpNet::addr).collect(),
            mtu: 0,
            pod_mac: None,
        })
        .await
}

/// Parses `aa:bb:cc:dd:ee:ff` (the `hwAddr` annotation, as the daemon passes it on).
pub fn parse_mac(text: &str) -> Result<[u8; 6], CniError> {
    let invalid = || {
        CniError::new(
            code::IPAM_REFUSED,
            format!("the pod's hwAddr {text:?} is not a MAC address like 02:00:00:00:00:01"),
            "",
        )
    };
    let bytes: Vec<u8> = text
        .trim()
        .split([':', '-'])
        .map(|part| {
            if part.len() == 2 {
                u8::from_str_radix(part, 16).ok()
            } else {
                None
            }
        })
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let mac: [u8; 6] = bytes.try_into().map_err(|_| invalid())?;
    // A multicast MAC cannot be an interface address.
    if mac[0] & 1 == 1 {
        return Err(invalid());
    }
    Ok(mac)
}

/// STATUS: code 50 unless the daemon says IPAM is ready.
pub async fn status(ipam: &impl IpamBackend) -> Result<(), CniError> {
    let not_available = |message: String, details: String| {
        CniError::new(code::PLUGIN_NOT_AVAILABLE, message, details)
    };
    match ipam.exchange(IpamRequest::Status).await {
        Ok(IpamResponse::Ready) => Ok(()),
        Ok(IpamResponse::Error(error)) => Err(not_available(
            format!("the Starling daemon is not ready: {}", error.message),
            String::new(),
        )),
        Ok(other) => Err(not_available(
            "the Starling daemon gave an unexpected answer to STATUS".into(),
            format!("{other:?}"),
        )),
        Err(error) => Err(not_available(error.msg, error.details)),
    }
}
