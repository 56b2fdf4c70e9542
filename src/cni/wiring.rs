//! Connecting a pod to the host: the veth pair, the pod's addresses and routes, the host's
//! sysctls and /32 (/128) routes (reference §2.4, §5.7, §5.8).
//!
//! Layout of a wired pod:
//! - host side `cali` + first 11 hex of SHA-1(`<namespace>.<pod>`) (prefix: the first entry of
//!   `FELIX_INTERFACEPREFIX` if set), MAC `ee:ee:ee:ee:ee:ee`, proxy ARP on, forwarding on, and a
//!   route `<podIP>/32 dev cali… scope link proto <Starling's protocol>` so the daemon recognises
//!   the route as its own and adopts it without a flap;
//! - pod side `CNI_IFNAME` with the pod's addresses as /32 and /128, `169.254.1.1 dev eth0 scope
//!   link`, `default via 169.254.1.1`, and for IPv6 `default via fe80::ecee:eeff:feee:eeee` (the
//!   host side's EUI-64 link-local address) with DAD off.
//!
//! The host side is configured in the calling thread's namespace (the plugin runs in the host's
//! namespace); the pod side on a worker thread inside the pod's namespace (`namespace.rs`).
//! [`PodDataplane::wire`] does not undo partial work itself: the caller's rollback calls
//! [`PodDataplane::unwire`], which removes whatever exists and tolerates what does not.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_route::route::RouteScope;

use super::namespace::{run_in_namespace, NamespaceError};
pub use super::netlink::Leftover;
use super::netlink::{format_mac, link_is_up, link_mac, Netlink};
use super::result::{code, CniError, Interface};

/// Host-side MAC of every pod veth; proxy ARP answers for the gateway with it.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The IPv4 gateway every pod routes through; no interface owns it.
pub const IPV4_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The host side's link-local address derived from [`HOST_MAC`].
pub const IPV6_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);
/// The route protocol number Starling's routes carry unless `STARLING_ROUTE_PROTOCOL` says
/// otherwise (the daemon must use the same value).
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 81;
/// The MTU file the daemon writes (reference §5.6).
pub const DEFAULT_MTU_FILE: &str = "/var/lib/calico/mtu";
/// Used when neither the config nor the MTU file gives an MTU.
pub const FALLBACK_MTU: u32 = 1450;

/// Metric of host routes to pods (Felix's `ipv4NormalRoutePriority`, the dataplane's default).
pub const WORKLOAD_ROUTE_METRIC: u32 = 1024;

/// The interface prefix: the first entry of `FELIX_INTERFACEPREFIX`, else `cali`.
pub fn interface_prefix(felix_interface_prefix: Option<&str>) -> String {
    felix_interface_prefix
        .and_then(|list| {
            list.split(',')
                .map(str::trim)
                .find(|entry| !entry.is_empty())
        })
        .unwrap_or("cali")
        .to_string()
}

/// The route protocol from `STARLING_ROUTE_PROTOCOL`, else the default.
pub fn route_protocol(environment: Option<&str>) -> Result<u8, CniError> {
    match environment.map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(DEFAULT_ROUTE_PROTOCOL),
        Some(text) => text.parse().map_err(|_| {
            CniError::new(
                code::INVALID_ENVIRONMENT,
                format!("STARLING_ROUTE_PROTOCOL {text:?} is not a number from 0 to 255"),
                "",
            )
        }),
    }
}

/// The pod MTU: the config's when set, else the daemon's MTU file, else [`FALLBACK_MTU`].
pub fn resolve_mtu(configured: Option<u32>, mtu_file: &Path) -> u32 {
    if let Some(mtu) = configured {
        return mtu;
    }
    match std::fs::read_to_string(mtu_file) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(mtu) if (68..=65535).contains(&mtu) => mtu,
            _ => {
                tracing::warn!(file = %mtu_file.display(), content = %text.trim(),
                    "the MTU file does not hold an MTU; using {FALLBACK_MTU}");
                FALLBACK_MTU
            }
        },
        Err(error) => {
            tracing::warn!(file = %mtu_file.display(), %error,
                "no MTU in the network config and no MTU file (is the Starling daemon running?); using {FALLBACK_MTU}");
            FALLBACK_MTU
        }
    }
}

/// Everything needed to wire, check or describe one pod attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiringRequest {
    pub host_interface: String,
    pub netns: PathBuf,
    pub pod_interface: String,
    /// The pod's addresses; wired as /32 and /128 whatever their prefix.
    pub addresses: Vec<IpAddr>,
    pub mtu: u32,
    /// The pod interface's MAC when the pod asks for one (`hwAddr` annotation).
    pub pod_mac: Option<[u8; 6]>,
}

/// The two ends as they go into the CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WiredPod {
    pub host: Interface,
    pub pod: Interface,
}

pub trait PodDataplane: Send + Sync {
    fn wire(
        &self,
        request: &WiringRequest,
    ) -> impl Future<Output = Result<WiredPod, CniError>> + Send;

    /// Removes the pod's veth (host side by name, or the pod side inside `netns`); missing
    /// interfaces and a missing namespace are success.
    fn unwire(
        &self,
        host_interface: Option<&str>,
        netns: Option<&Path>,
        pod_interface: &str,
    ) -> impl Future<Output = Result<(), CniError>> + Send;

    /// Fails with code 104 and a list of every difference from what `wire` leaves.
    fn check(&self, request: &WiringRequest) -> impl Future<Output = Result<(), CniError>> + Send;

    /// GC: removes a host-side veth left by a pod that is gone, unless it routes an address
    /// other than `released` (then it belongs to a newer sandbox of the pod).
    fn remove_leftover(
        &self,
        host_interface: &str,
        released: &[IpAddr],
    ) -> impl Future<Output = Result<Leftover, CniError>> + Send;
}

/// The real dataplane: rtnetlink and /proc/sys.
#[derive(Debug, Clone)]
pub struct NetlinkDataplane {
    pub route_protocol: u8,
}

fn wiring_error(error: impl std::fmt::Display) -> CniError {
    CniError::new(code::WIRING_FAILED, error.to_string(), String::new())
}

fn namespace_error(error: NamespaceError) -> CniError {
    let code = match error {
        NamespaceError::Open { .. } => code::CONTAINER_UNKNOWN,
        _ => code::WIRING_FAILED,
    };
    CniError::new(code, error.to_string(), String::new())
}

fn host_network(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

fn default_route(address: IpAddr) -> IpNet {
    match address {
        IpAddr::V4(_) => IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        IpAddr::V6(_) => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
    .unwrap_or_else(|_| host_network(address))
}

/// Writes one sysctl under /proc/sys/net, which shows the calling thread's namespace.
fn write_sysctl(path: &str, value: &str) -> Result<(), CniError> {
    let full = format!("/proc/sys/net/{path}");
    std::fs::write(&full, value)
        .map_err(|error| wiring_error(format!("setting {full} to {value}: {error}")))
}

/// §5.7: what the host side of a pod veth needs.
fn host_sysctls(interface: &str, has_ipv4: bool, has_ipv6: bool) -> Result<(), CniError> {
    if has_ipv4 {
        write_sysctl(&format!("ipv4/conf/{interface}/route_localnet"), "1")?;
        write_sysctl(&format!("ipv4/neigh/{interface}/proxy_delay"), "0")?;
        write_sysctl(&format!("ipv4/conf/{interface}/proxy_arp"), "1")?;
        write_sysctl(&format!("ipv4/conf/{interface}/forwarding"), "1")?;
    }
    // accept_ra=0 always, as Felix does, when the host has IPv6 at all.
    if Path::new(&format!("/proc/sys/net/ipv6/conf/{interface}")).exists() {
        write_sysctl(&format!("ipv6/conf/{interface}/accept_ra"), "0")?;
        if has_ipv6 {
            write_sysctl(&format!("ipv6/conf/{interface}/proxy_ndp"), "1")?;
            write_sysctl(&format!("ipv6/conf/{interface}/forwarding"), "1")?;
        }
    } else if has_ipv6 {
        return Err(wiring_error(format!(
            "the pod has an IPv6 address but IPv6 is disabled on {interface}"
        )));
    }
    Ok(())
}

/// The host side's MAC may be rewritten by udev right after creation; set it until it sticks.
async fn ensure_host_mac(netlink: &Netlink, name: &str) -> Result<u32, CniError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let link = netlink
            .link_by_name(name)
            .await
            .map_err(wiring_error)?
            .ok_or_else(|| wiring_error(format!("the new interface {name} disappeared")))?;
        if link_mac(&link) == Some(HOST_MAC) {
            return Ok(link.header.index);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(wiring_error(format!(
                "the MAC of {name} does not stay {}",
                format_mac(HOST_MAC)
            )));
        }
        netlink
            .set_mac(link.header.index, name, HOST_MAC)
            .await
            .map_err(wiring_error)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pod side, run inside the pod's namespace: returns the pod interface's MAC.
async fn wire_pod_side(
    interface: String,
    addresses: Vec<IpAddr>,
    requested_mac: Option<[u8; 6]>,
) -> Result<[u8; 6], CniError> {
    let netlink = Netlink::connect().map_err(|error| wiring_error(format!("netlink: {error}")))?;
    let link = netlink
        .link_by_name(&interface)
        .await
        .map_err(wiring_error)?
        .ok_or_else(|| wiring_error(format!("{interface} did not appear in the pod namespace")))?;
    let index = link.header.index;
    let mut mac = link_mac(&link).unwrap_or_default();
    if let Some(requested) = requested_mac {
        netlink
            .set_mac(index, &interface, requested)
            .await
            .map_err(wiring_error)?;
        mac = requested;
    }
    if addresses.iter().any(IpAddr::is_ipv6) {
        // Before the link comes up, so the address is never tentative.
        write_sysctl(&format!("ipv6/conf/{interface}/disable_ipv6"), "0")?;
        write_sysctl(&format!("ipv6/conf/{interface}/accept_dad"), "0")?;
    }
    netlink
        .set_up(index, &interface)
        .await
        .map_err(wiring_error)?;
    for address in &addresses {
        netlink
            .add_host_address(index, &interface, *address)
            .await
            .map_err(wiring_error)?;
    }
    if addresses.iter().any(IpAddr::is_ipv4) {
        netlink
            .add_route(
                host_network(IpAddr::V4(IPV4_GATEWAY)),
                None,
                index,
                RouteScope::Link,
                netlink_packet_route::route::RouteProtocol::Boot.into(),
                None,
            )
            .await
            .map_err(wiring_error)?;
        netlink
            .add_route(
                default_route(IpAddr::V4(IPV4_GATEWAY)),
                Some(IpAddr::V4(IPV4_GATEWAY)),
                index,
                RouteScope::Universe,
                netlink_packet_route::route::RouteProtocol::Boot.into(),
                None,
            )
            .await
            .map_err(wiring_error)?;
    }
    if addresses.iter().any(IpAddr::is_ipv6) {
        netlink
            .add_route(
                default_route(IpAddr::V6(IPV6_GATEWAY)),
                Some(IpAddr::V6(IPV6_GATEWAY)),
                index,
                RouteScope::Universe,
                netlink_packet_route::route::RouteProtocol::Boot.into(),
                None,
            )
            .await
            .map_err(wiring_error)?;
    }
    Ok(mac)
}

/// Pod side of CHECK: every difference as one line.
async fn check_pod_side(
    interface: String,
    addresses: Vec<IpAddr>,
) -> Result<Vec<String>, CniError> {
    let netlink = Netlink::connect().map_err(|error| wiring_error(format!("netlink: {error}")))?;
    let mut problems = Vec::new();
    let Some(link) = netlink
        .link_by_name(&interface)
        .await
        .map_err(wiring_error)?
    else {
        problems.push(format!("the pod has no interface {interface}"));
        return Ok(problems);
    };
    let index = link.header.index;
    if !link_is_up(&link) {
        problems.push(format!("{interface} in the pod is down"));
    }
    let present = netlink.addresses(index).await.map_err(wiring_error)?;
    for address in &addresses {
        if !present.contains(&host_network(*address)) {
            problems.push(format!(
                "{interface} in the pod lacks {}",
                host_network(*address)
            ));
        }
    }
    for ipv4 in [true, false] {
        if !addresses.iter().any(|address| address.is_ipv4() == ipv4) {
            continue;
        }
        let routes = netlink.routes(ipv4).await.map_err(wiring_error)?;
        let gateway = if ipv4 {
            IpAddr::V4(IPV4_GATEWAY)
        } else {
            IpAddr::V6(IPV6_GATEWAY)
        };
        let has_default = routes.iter().any(|route| {
            route.destination == default_route(gateway)
                && route.gateway == Some(gateway)
                && route.output_interface == Some(index)
        });
        if !has_default {
            problems.push(format!(
                "the pod has no default route via {gateway} dev {interface}"
            ));
        }
        if ipv4
            && !routes.iter().any(|route| {
                route.destination == host_network(gateway) && route.output_interface == Some(index)
            })
        {
            problems.push(format!("the pod has no route {gateway} dev {interface}"));
        }
    }
    Ok(problems)
}

impl PodDataplane for NetlinkDataplane {
    async fn wire(&self, request: &WiringRequest) -> Result<WiredPod, CniError> {
        let netlink =
            Netlink::connect().map_err(|error| wiring_error(format!("netlink: {error}")))?;
        // A host side left by an earlier sandbox of the same pod would block the name.
        if netlink
            .delete_link_by_name(&request.host_interface)
            .await
            .map_err(wiring_error)?
        {
            tracing::info!(interface = %request.host_interface, "removed a stale host-side veth");
        }
        let namespace_file = std::fs::File::open(&request.netns).map_err(|error| {
            CniError::new(
                code::CONTAINER_UNKNOWN,
                format!(
                    "cannot open the pod network namespace {}",
                    request.netns.display()
                ),
                error.to_string(),
            )
        })?;
        netlink
            .create_veth(
                &request.host_interface,
                HOST_MAC,
                request.mtu,
                &request.pod_interface,
                &namespace_file,
            )
            .await
            .map_err(|error| {
                let mut failure = wiring_error(&error);
                if error.errno() == Some(libc::EINVAL) {
                    failure.details =
                        format!("is {} a network namespace?", request.netns.display());
                }
                failure
            })?;
        let host_index = ensure_host_mac(&netlink, &request.host_interface).await?;
        let has_ipv4 = request.addresses.iter().any(IpAddr::is_ipv4);
        let has_ipv6 = request.addresses.iter().any(IpAddr::is_ipv6);
        host_sysctls(&request.host_interface, has_ipv4, has_ipv6)?;
        netlink
            .set_up(host_index, &request.host_interface)
            .await
            .map_err(wiring_error)?;

        let pod_interface = request.pod_interface.clone();
        let addresses = request.addresses.clone();
        let requested_mac = request.pod_mac;
        let pod_mac = run_in_namespace(&request.netns, move || {
            wire_pod_side(pod_interface, addresses, requested_mac)
        })
        .await
        .map_err(namespace_error)??;

        for address in &request.addresses {
            netlink
                .add_route(
                    host_network(*address),
                    None,
                    host_index,
                    RouteScope::Link,
                    self.route_protocol,
                    // The daemon's workload routes use Felix's normal priority; the same metric
                    // makes this route the daemon's own, adopted without a second copy.
                    Some(WORKLOAD_ROUTE_METRIC),
                )
                .await
                .map_err(wiring_error)?;
        }
        Ok(WiredPod {
            host: Interface {
                name: request.host_interface.clone(),
                mac: Some(format_mac(HOST_MAC)),
                sandbox: None,
            },
            pod: Interface {
                name: request.pod_interface.clone(),
                mac: Some(format_mac(pod_mac)),
                sandbox: Some(request.netns.display().to_string()),
            },
        })
    }

    async fn unwire(
        &self,
        host_interface: Option<&str>,
        netns: Option<&Path>,
        pod_interface: &str,
    ) -> Result<(), CniError> {
        let netlink =
            Netlink::connect().map_err(|error| wiring_error(format!("netlink: {error}")))?;
        if let Some(name) = host_interface {
            netlink
                .delete_link_by_name(name)
                .await
                .map_err(wiring_error)?;
        }
        if let Some(netns) = netns {
            let name = pod_interface.to_string();
            let outcome = run_in_namespace(netns, move || async move {
                let netlink = Netlink::connect()
                    .map_err(|error| wiring_error(format!("netlink: {error}")))?;
                netlink
                    .delete_link_by_name(&name)
                    .await
                    .map_err(wiring_error)
                    .map(|_| ())
            })
            .await;
            match outcome {
                Ok(result) => result?,
                // The sandbox is already gone, or was never a namespace: nothing left to remove.
                Err(error @ (NamespaceError::Open { .. } | NamespaceError::Enter { .. })) => {
                    tracing::debug!(%error, "no pod namespace to clean");
                }
                Err(error) => return Err(namespace_error(error)),
            }
        }
        Ok(())
    }

    async fn remove_leftover(
        &self,
        host_interface: &str,
        released: &[IpAddr],
    ) -> Result<Leftover, CniError> {
        let netlink =
            Netlink::connect().map_err(|error| wiring_error(format!("netlink: {error}")))?;
        netlink
            .delete_leftover(host_interface, released)
            .await
            .map_err(wiring_error)
    }

    async fn check(&self, request: &WiringRequest) -> Result<(), CniError> {
        let netlink =
            Netlink::connect().map_err(|error| wiring_error(format!("netlink: {error}")))?;
        let mut problems = Vec::new();
        match netlink
            .link_by_name(&request.host_interface)
            .await
            .map_err(wiring_error)?
        {
            None => problems.push(format!(
                "the host has no interface {}",
                request.host_interface
            )),
            Some(link) => {
                if link_mac(&link) != Some(HOST_MAC) {
                    problems.push(format!(
                        "{} has MAC {}, not {}",
                        request.host_interface,
                        link_mac(&link).map(format_mac).unwrap_or_default(),
                        format_mac(HOST_MAC)
                    ));
                }
                if !link_is_up(&link) {
                    problems.push(format!("{} is down", request.host_interface));
                }
                for address in &request.addresses {
                    let routes = netlink
                        .routes(address.is_ipv4())
                        .await
                        .map_err(wiring_error)?;
                    let routed = routes.iter().any(|route| {
                        route.destination == host_network(*address)
                            && route.output_interface == Some(link.header.index)
                    });
                    if !routed {
                        problems.push(format!(
                            "the host has no route {} dev {}",
                            host_network(*address),
                            request.host_interface
                        ));
                    }
                }
            }
        }
        let pod_interface = request.pod_interface.clone();
        let addresses = request.addresses.clone();
        problems.extend(
            run_in_namespace(&request.netns, move || {
                check_pod_side(pod_interface, addresses)
            })
            .await
            .map_err(namespace_error)??,
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "the pod's network is not as ADD left it: {}",
                    problems.join("; ")
                ),
                String::new(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_prefix_is_the_first_entry() {
        assert_eq!(interface_prefix(None), "cali");
        assert_eq!(interface_prefix(Some("tap, cali")), "tap");
        assert_eq!(interface_prefix(Some(" ,")), "cali");
    }

    #[test]
    fn mtu_resolution() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("mtu");
        assert_eq!(resolve_mtu(Some(1400), &file), 1400);
        assert_eq!(resolve_mtu(None, &file), FALLBACK_MTU);
        std::fs::write(&file, "1440").unwrap();
        assert_eq!(resolve_mtu(None, &file), 1440);
        std::fs::write(&file, "garbage").unwrap();
        assert_eq!(resolve_mtu(None, &file), FALLBACK_MTU);
    }

    #[test]
    fn route_protocol_from_environment() {
        assert_eq!(route_protocol(None).unwrap(), 81);
        assert_eq!(route_protocol(Some("90")).unwrap(), 90);
        assert_eq!(
            route_protocol(Some("300")).unwrap_err().code,
            code::INVALID_ENVIRONMENT
        );
    }

    #[test]
    fn gateway_constants() {
        assert_eq!(IPV6_GATEWAY.to_string(), "fe80::ecee:eeff:feee:eeee");
        assert_eq!(format_mac(HOST_MAC), "ee:ee:ee:ee:ee:ee");
    }
}
