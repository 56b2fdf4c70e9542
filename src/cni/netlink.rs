//! The few rtnetlink operations the plugin needs, on whichever namespace the calling thread is in.
//!
//! Every failure names the action and the object (`creating veth cali… (peer eth0)`). Dumps use
//! rtnetlink's plain dump: a dump interrupted by a concurrent change (NLM_F_DUMP_INTR) may be
//! incomplete, which only CHECK reads and which a retried CHECK repairs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteVia,
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct NetlinkFailure {
    pub action: String,
    pub source: rtnetlink::Error,
}

impl NetlinkFailure {
    /// The errno the kernel answered with, if it answered with one.
    pub fn errno(&self) -> Option<i32> {
        match &self.source {
            rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
            _ => None,
        }
    }
}

fn failed(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkFailure {
    let action = action.into();
    move |source| NetlinkFailure { action, source }
}

/// A route as the plugin cares about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSummary {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub output_interface: Option<u32>,
    pub protocol: u8,
    pub scope: u8,
}

/// What [`Netlink::delete_leftover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    Absent,
    Removed,
    /// Kept: the interface routes these host addresses, which are not the released ones.
    InUse(Vec<IpNet>),
}

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's namespace; the connection runs as a task on
    /// the current runtime.
    pub fn connect() -> std::io::Result<Netlink> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    pub async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, NetlinkFailure> {
        let mut request = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match request.try_next().await {
            Ok(link) => Ok(link),
            Err(source) => {
                let failure = failed(format!("looking up interface {name}"))(source);
                if failure.errno() == Some(libc::ENODEV) {
                    Ok(None)
                } else {
                    Err(failure)
                }
            }
        }
    }

    /// Deletes the interface if it exists; true when something was deleted.
    pub async fn delete_link_by_name(&self, name: &str) -> Result<bool, NetlinkFailure> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(source) => {
                let failure = failed(format!("deleting interface {name}"))(source);
                // Gone in the meantime (a concurrent DEL, or the peer's namespace went away).
                if failure.errno() == Some(libc::ENODEV) {
                    Ok(false)
                } else {
                    Err(failure)
                }
            }
        }
    }

    /// Deletes the interface unless a main-table host route through it goes to an address
    /// outside `released`. The link is deleted by the index that was checked, so one recreated
    /// under the same name meanwhile (a new sandbox of the pod) is not touched.
    pub async fn delete_leftover(
        &self,
        name: &str,
        released: &[IpAddr],
    ) -> Result<Leftover, NetlinkFailure> {
        let Some(link) = self.link_by_name(name).await? else {
            return Ok(Leftover::Absent);
        };
        let index = link.header.index;
        let mut foreign = Vec::new();
        for ipv4 in [true, false] {
            for route in self.routes(ipv4).await? {
                let destination = route.destination;
                let host_route = destination.prefix_len() == destination.max_prefix_len();
                let link_local =
                    matches!(destination.addr(), IpAddr::V6(a) if a.is_unicast_link_local());
                if route.output_interface == Some(index)
                    && host_route
                    && !link_local
                    && !released.contains(&destination.addr())
                {
                    foreign.push(destination);
                }
            }
        }
        if !foreign.is_empty() {
            return Ok(Leftover::InUse(foreign));
        }
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(Leftover::Removed),
            Err(source) => {
                let failure = failed(format!("deleting interface {name}"))(source);
                if failure.errno() == Some(libc::ENODEV) {
                    Ok(Leftover::Absent)
                } else {
                    Err(failure)
                }
            }
        }
    }

    /// Creates a veth pair whose peer is born inside the namespace `peer_namespace` (an open
    /// namespace file), so no temporary name ever exists in the host namespace.
    pub async fn create_veth(
        &self,
        host_name: &str,
        host_mac: [u8; 6],
        mtu: u32,
        peer_name: &str,
        peer_namespace: &impl AsRawFd,
    ) -> Result<(), NetlinkFailure> {
        let peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer_name.to_string())
            .mtu(mtu)
            .setns_by_fd(peer_namespace.as_raw_fd())
            .build();
        let message = LinkVeth::new(host_name, peer_name)
            .mtu(mtu)
            .address(host_mac.to_vec())
            .set_info_data(netlink_packet_route::link::InfoData::Veth(
                netlink_packet_route::link::InfoVeth::Peer(peer),
            ))
            .build();
        self.handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(failed(format!(
                "creating veth {host_name} with peer {peer_name} in the pod namespace"
            )))
    }

    pub async fn set_up(&self, index: u32, name: &str) -> Result<(), NetlinkFailure> {
        let message = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(failed(format!("setting {name} up")))
    }

    pub async fn set_mac(
        &self,
        index: u32,
        name: &str,
        mac: [u8; 6],
    ) -> Result<(), NetlinkFailure> {
        let message = LinkUnspec::new_with_index(index)
            .address(mac.to_vec())
            .build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(failed(format!("setting the MAC of {name}")))
    }

    /// Adds `address` as a host address (/32 or /128) without duplicate address detection.
    pub async fn add_host_address(
        &self,
        index: u32,
        name: &str,
        address: IpAddr,
    ) -> Result<(), NetlinkFailure> {
        let prefix = if address.is_ipv4() { 32 } else { 128 };
        let mut request = self.handle.address().add(index, address, prefix);
        if address.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request
            .execute()
            .await
            .map_err(failed(format!("adding {address}/{prefix} to {name}")))
    }

    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, NetlinkFailure> {
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut found = Vec::new();
        while let Some(message) = stream
            .try_next()
            .await
            .map_err(failed(format!("listing addresses of interface {index}")))?
        {
            let prefix = message.header.prefix_len;
            for attribute in &message.attributes {
                if let AddressAttribute::Address(address) = attribute {
                    if let Ok(network) = IpNet::new(*address, prefix) {
                        found.push(network);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Adds a main-table route; an identical route already present counts as success.
    pub async fn add_route(
        &self,
        destination: IpNet,
        gateway: Option<IpAddr>,
        output_interface: u32,
        scope: RouteScope,
        protocol: u8,
        metric: Option<u32>,
    ) -> Result<(), NetlinkFailure> {
        let action = match gateway {
            Some(gateway) => format!("adding route {destination} via {gateway}"),
            None => format!("adding route {destination} dev {output_interface}"),
        };
        let mut message = route_message(destination, gateway, output_interface, scope, protocol);
        if let Some(metric) = metric {
            message.attributes.push(RouteAttribute::Priority(metric));
        }
        match self.handle.route().add(message).execute().await {
            Ok(()) => Ok(()),
            Err(source) => {
                let failure = failed(action)(source);
                if failure.errno() == Some(libc::EEXIST) {
                    let routes = self.routes(destination.addr().is_ipv4()).await?;
                    let same = routes.iter().any(|route| {
                        route.destination == destination
                            && route.output_interface == Some(output_interface)
                            && route.gateway == gateway
                    });
                    if same {
                        return Ok(());
                    }
                }
                Err(failure)
            }
        }
    }

    /// All main-table routes of one family.
    pub async fn routes(&self, ipv4: bool) -> Result<Vec<RouteSummary>, NetlinkFailure> {
        let filter = if ipv4 {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        };
        let mut stream = self.handle.route().get(filter).execute();
        let mut found = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(failed("listing routes"))? {
            if message.header.table != netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN {
                continue;
            }
            if let Some(summary) = summarise(&message) {
                found.push(summary);
            }
        }
        Ok(found)
    }
}

fn route_message(
    destination: IpNet,
    gateway: Option<IpAddr>,
    output_interface: u32,
    scope: RouteScope,
    protocol: u8,
) -> RouteMessage {
    let mut message = match destination {
        IpNet::V4(network) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(network.addr(), network.prefix_len())
            .output_interface(output_interface)
            .scope(scope)
            .protocol(RouteProtocol::from(protocol))
            .build(),
        IpNet::V6(network) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(network.addr(), network.prefix_len())
            .output_interface(output_interface)
            .scope(scope)
            .protocol(RouteProtocol::from(protocol))
            .build(),
    };
    if let Some(gateway) = gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    }
    message
}

fn route_address(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(address) => Some(IpAddr::V4(*address)),
        RouteAddress::Inet6(address) => Some(IpAddr::V6(*address)),
        _ => None,
    }
}

fn summarise(message: &RouteMessage) -> Option<RouteSummary> {
    let ipv4 = message.header.address_family == netlink_packet_route::AddressFamily::Inet;
    let unspecified = if ipv4 {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let mut destination = unspecified;
    let mut gateway = None;
    let mut output_interface = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => destination = route_address(address)?,
            RouteAttribute::Gateway(address) => gateway = route_address(address),
            RouteAttribute::Via(RouteVia::Inet6(address)) => gateway = Some(IpAddr::V6(*address)),
            RouteAttribute::Via(RouteVia::Inet(address)) => gateway = Some(IpAddr::V4(*address)),
            RouteAttribute::Oif(index) => output_interface = Some(*index),
            _ => {}
        }
    }
    Some(RouteSummary {
        destination: IpNet::new(destination, message.header.destination_prefix_length).ok()?,
        gateway,
        output_interface,
        protocol: message.header.protocol.into(),
        scope: message.header.scope.into(),
    })
}

pub fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(bytes) => bytes.as_slice().try_into().ok(),
            _ => None,
        })
}

pub fn link_is_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
