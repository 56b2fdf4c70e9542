//! [`Kernel`] over rtnetlink, in the network namespace of the thread that connects.
//!
//! Contract: dumps go through `Handle::request` so that `NLM_F_DUMP_INTR` (a dump interrupted
//! by a concurrent change) is seen and the dump retried; every write asks for an ACK and its
//! errno is reported per item. Route, neighbour and FDB writes go in batches on a socket of
//! their own ([`super::netlink_batch`]); device and address writes run one at a time because
//! later ones depend on the interface index of earlier ones.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::stream::StreamExt;
use ipnet::IpNet;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope as NetlinkScope, RouteType as NetlinkRouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;

use super::kernel::{Address, Change, FdbEntry, Kernel, KernelError, Link, Neighbour};
use super::netlink_batch::BatchSocket;
use super::netlink_messages::{
    describe, family_of, fdb_message, ip_from_bytes, is_device_change, link_layer_address, name_of,
    neighbour_message, netlink_error, parse_link, parse_route, route_address, Described,
};
use starling_calc::spec::{DeviceKind, RouteScope, RouteSpec, RouteType};

const DUMP_ATTEMPTS: usize = 8;

/// The rtnetlink kernel. Create it inside the runtime (and thread) of the target namespace.
pub struct NetlinkKernel {
    handle: Handle,
    batch: BatchSocket,
    indexes: BTreeMap<String, u32>,
    names: BTreeMap<u32, String>,
}

impl NetlinkKernel {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime.
    pub fn connect() -> Result<Self, KernelError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|error| KernelError::Io {
                operation: "open rtnetlink socket".to_string(),
                message: error.to_string(),
            })?;
        tokio::spawn(connection);
        Ok(NetlinkKernel {
            handle,
            batch: BatchSocket::open()?,
            indexes: BTreeMap::new(),
            names: BTreeMap::new(),
        })
    }

    async fn dump_messages(
        &mut self,
        request: RouteNetlinkMessage,
        operation: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, KernelError> {
        for _ in 0..DUMP_ATTEMPTS {
            let mut message = NetlinkMessage::from(request.clone());
            message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            let mut responses = self
                .handle
                .request(message)
                .map_err(|error| KernelError::Io {
                    operation: operation.to_string(),
                    message: error.to_string(),
                })?;
            let mut collected = Vec::new();
            let mut interrupted = false;
            while let Some(response) = responses.next().await {
                if response.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match response.payload {
                    NetlinkPayload::InnerMessage(inner) => collected.push(inner),
                    NetlinkPayload::Error(error) if error.code.is_some() => {
                        return Err(netlink_error(operation, error.raw_code()));
                    }
                    NetlinkPayload::Done(_) => break,
                    _ => {}
                }
            }
            if !interrupted {
                return Ok(collected);
            }
            tracing::debug!(operation, "netlink dump interrupted; retrying");
        }
        Err(KernelError::DumpInterrupted {
            operation: operation.to_string(),
        })
    }

    async fn refresh_links(&mut self) -> Result<Vec<Link>, KernelError> {
        let messages = self
            .dump_messages(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                "dump links",
            )
            .await?;
        let links: Vec<Link> = messages
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewLink(link) => parse_link(&link),
                _ => None,
            })
            .collect();
        self.indexes = links
            .iter()
            .map(|link| (link.name.clone(), link.index))
            .collect();
        self.names = links
            .iter()
            .map(|link| (link.index, link.name.clone()))
            .collect();
        Ok(links)
    }

    async fn ensure_names(&mut self) -> Result<(), KernelError> {
        if self.names.is_empty() {
            self.refresh_links().await?;
        }
        Ok(())
    }

    fn name_of(&self, index: u32) -> String {
        name_of(&self.names, index)
    }

    fn index_of(&self, operation: &dyn std::fmt::Display, name: &str) -> Result<u32, KernelError> {
        self.indexes
            .get(name)
            .copied()
            .ok_or_else(|| KernelError::MissingDevice {
                operation: operation.to_string(),
                device: name.to_string(),
            })
    }

    /// Builds the request for a route/neighbour/FDB change (device changes are built inline).
    fn object_request(&self, change: &Change) -> Result<(RouteNetlinkMessage, u16), KernelError> {
        // Formatted only for an error: one per route would cost more than building the message.
        let operation = Described(change);
        Ok(match change {
            Change::ReplaceRoute(spec) => (
                RouteNetlinkMessage::NewRoute(self.route_message(&operation, spec)?),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            Change::DeleteRoute(spec) => {
                let mut message = self.route_message(&operation, spec)?;
                // Match on key and owner only: the device may be gone already.
                message.attributes.retain(|attribute| {
                    !matches!(
                        attribute,
                        RouteAttribute::Oif(_) | RouteAttribute::Metrics(_)
                    )
                });
                (RouteNetlinkMessage::DelRoute(message), 0)
            }
            Change::ReplaceNeighbour {
                device,
                address,
                mac,
            } => {
                let mut message =
                    neighbour_message(self.index_of(&operation, device)?, Some(*address));
                message.header.state = NeighbourState::Permanent;
                message
                    .attributes
                    .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
                (
                    RouteNetlinkMessage::NewNeighbour(message),
                    NLM_F_CREATE | NLM_F_REPLACE,
                )
            }
            Change::DeleteNeighbour { device, address } => (
                RouteNetlinkMessage::DelNeighbour(neighbour_message(
                    self.index_of(&operation, device)?,
                    Some(*address),
                )),
                0,
            ),
            Change::ReplaceFdb {
                device,
                mac,
                destination,
            } => (
                RouteNetlinkMessage::NewNeighbour(fdb_message(
                    self.index_of(&operation, device)?,
                    *mac,
                    Some(*destination),
                )),
                NLM_F_CREATE | NLM_F_REPLACE,
            ),
            Change::DeleteFdb {
                device,
                mac,
                destination,
            } => (
                RouteNetlinkMessage::DelNeighbour(fdb_message(
                    self.index_of(&operation, device)?,
                    *mac,
                    *destination,
                )),
                0,
            ),
            _ => {
                return Err(KernelError::Io {
                    operation: operation.to_string(),
                    message: "not an object change".to_string(),
                })
            }
        })
    }

    fn route_message(
        &self,
        operation: &dyn std::fmt::Display,
        spec: &RouteSpec,
    ) -> Result<RouteMessage, KernelError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family_of(spec.destination.addr());
        message.header.destination_prefix_length = spec.destination.prefix_len();
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::from(spec.protocol);
        message.header.scope = match spec.scope {
            RouteScope::Universe => NetlinkScope::Universe,
            RouteScope::Link => NetlinkScope::Link,
        };
        message.header.kind = match spec.route_type {
            RouteType::Unicast => NetlinkRouteType::Unicast,
            RouteType::Blackhole => NetlinkRouteType::BlackHole,
        };
        if spec.onlink {
            message.header.flags = RouteFlags::Onlink;
        }
        if spec.destination.prefix_len() > 0 {
            message
                .attributes
                .push(RouteAttribute::Destination(route_address(
                    spec.destination.addr(),
                )));
        }
        if let Some(gateway) = spec.gateway {
            message
                .attributes
                .push(RouteAttribute::Gateway(route_address(gateway)));
        }
        if let Some(device) = &spec.device {
            message
                .attributes
                .push(RouteAttribute::Oif(self.index_of(operation, device)?));
        }
        if spec.metric != 0 {
            message
                .attributes
                .push(RouteAttribute::Priority(spec.metric));
        }
        if let Some(mtu) = spec.mtu {
            message
                .attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        Ok(message)
    }

    async fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        operation: &str,
    ) -> Result<(), KernelError> {
        send_request(self.handle.clone(), message, flags, operation.to_string()).await
    }

    async fn apply_device_change(&mut self, change: &Change) -> Result<(), KernelError> {
        let operation = describe(change);
        let result = match change {
            Change::CreateDevice(spec) => {
                let mut message = LinkMessage::default();
                message
                    .attributes
                    .push(LinkAttribute::IfName(spec.name.clone()));
                message.attributes.push(LinkAttribute::Mtu(spec.mtu));
                if let Some(mac) = spec.mac {
                    message
                        .attributes
                        .push(LinkAttribute::Address(mac.0.to_vec()));
                }
                let info = match &spec.kind {
                    DeviceKind::Ipip => vec![LinkInfo::Kind(InfoKind::IpIp)],
                    DeviceKind::Vxlan {
                        vni,
                        port,
                        local,
                        parent,
                    } => {
                        let parent_index = self.index_of(&operation, parent)?;
                        let mut data = vec![InfoVxlan::Id(*vni), InfoVxlan::Port(*port)];
                        data.push(match local {
                            IpAddr::V4(address) => InfoVxlan::Local(*address),
                            IpAddr::V6(address) => InfoVxlan::Local6(*address),
                        });
                        data.push(InfoVxlan::Link(parent_index));
                        data.push(InfoVxlan::Learning(false));
                        vec![
                            LinkInfo::Kind(InfoKind::Vxlan),
                            LinkInfo::Data(InfoData::Vxlan(data)),
                        ]
                    }
                };
                message.attributes.push(LinkAttribute::LinkInfo(info));
                self.request(
                    RouteNetlinkMessage::NewLink(message),
                    NLM_F_CREATE | NLM_F_EXCL,
                    &operation,
                )
                .await
            }
            Change::DeleteDevice { name } => {
                let mut message = LinkMessage::default();
                message.header.index = self.index_of(&operation, name)?;
                self.request(RouteNetlinkMessage::DelLink(message), 0, &operation)
                    .await
            }
            Change::SetDevice { name, mtu, mac } => {
                let mut message = LinkMessage::default();
                message.header.index = self.index_of(&operation, name)?;
                message.header.flags = LinkFlags::Up;
                message.header.change_mask = LinkFlags::Up;
                message.attributes.push(LinkAttribute::Mtu(*mtu));
                if let Some(mac) = mac {
                    message
                        .attributes
                        .push(LinkAttribute::Address(mac.0.to_vec()));
                }
                self.request(RouteNetlinkMessage::SetLink(message), 0, &operation)
                    .await
            }
            Change::AddAddress { device, address } | Change::DeleteAddress { device, address } => {
                let mut message = AddressMessage::default();
                message.header.family = family_of(address.addr());
                message.header.prefix_len = address.prefix_len();
                message.header.index = self.index_of(&operation, device)?;
                message
                    .attributes
                    .push(AddressAttribute::Address(address.addr()));
                if address.addr().is_ipv4() {
                    message
                        .attributes
                        .push(AddressAttribute::Local(address.addr()));
                }
                if matches!(change, Change::AddAddress { .. }) {
                    self.request(
                        RouteNetlinkMessage::NewAddress(message),
                        NLM_F_CREATE | NLM_F_REPLACE,
                        &operation,
                    )
                    .await
                } else {
                    self.request(RouteNetlinkMessage::DelAddress(message), 0, &operation)
                        .await
                }
            }
            _ => Err(KernelError::Io {
                operation,
                message: "not a device change".to_string(),
            }),
        };
        if matches!(
            change,
            Change::CreateDevice(_) | Change::DeleteDevice { .. }
        ) {
            self.refresh_links().await?;
        }
        result
    }
}

async fn send_request(
    mut handle: Handle,
    message: RouteNetlinkMessage,
    flags: u16,
    operation: String,
) -> Result<(), KernelError> {
    let mut request = NetlinkMessage::from(message);
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut responses = handle.request(request).map_err(|error| KernelError::Io {
        operation: operation.clone(),
        message: error.to_string(),
    })?;
    while let Some(response) = responses.next().await {
        if let NetlinkPayload::Error(error) = response.payload {
            return match error.code {
                Some(_) => Err(netlink_error(&operation, error.raw_code())),
                None => Ok(()),
            };
        }
    }
    Ok(())
}

impl Kernel for NetlinkKernel {
    async fn dump_links(&mut self) -> Result<Vec<Link>, KernelError> {
        self.refresh_links().await
    }

    async fn dump_addresses(&mut self) -> Result<Vec<Address>, KernelError> {
        self.ensure_names().await?;
        let messages = self
            .dump_messages(
                RouteNetlinkMessage::GetAddress(AddressMessage::default()),
                "dump addresses",
            )
            .await?;
        Ok(messages
            .into_iter()
            .filter_map(|message| match message {
                RouteNetlinkMessage::NewAddress(address) => {
                    let ip = address
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            AddressAttribute::Local(ip) => Some(*ip),
                            _ => None,
                        })
                        .or_else(|| {
                            address
                                .attributes
                                .iter()
                                .find_map(|attribute| match attribute {
                                    AddressAttribute::Address(ip) => Some(*ip),
                                    _ => None,
                                })
                        })?;
                    Some(Address {
                        device: self.name_of(address.header.index),
                        address: IpNet::new(ip, address.header.prefix_len).ok()?,
                        link_scope: address.header.scope == AddressScope::Link,
                    })
                }
                _ => None,
            })
            .collect())
    }

    async fn dump_routes(&mut self) -> Result<Vec<RouteSpec>, KernelError> {
        self.ensure_names().await?;
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            let messages = self
                .dump_messages(RouteNetlinkMessage::GetRoute(request), "dump routes")
                .await?;
            for message in messages {
                if let RouteNetlinkMessage::NewRoute(route) = message {
                    if let Some(spec) = parse_route(&route, &self.names) {
                        routes.push(spec);
                    }
                }
            }
        }
        Ok(routes)
    }

    async fn dump_neighbours(&mut self) -> Result<Vec<Neighbour>, KernelError> {
        self.ensure_names().await?;
        let mut neighbours = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = NeighbourMessage::default();
            request.header.family = family;
            let messages = self
                .dump_messages(
                    RouteNetlinkMessage::GetNeighbour(request),
                    "dump neighbours",
                )
                .await?;
            for message in messages {
                let RouteNetlinkMessage::NewNeighbour(neighbour) = message else {
                    continue;
                };
                let Some(address) =
                    neighbour
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                                Some(IpAddr::V4(*ip))
                            }
                            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                                Some(IpAddr::V6(*ip))
                            }
                            _ => None,
                        })
                else {
                    continue;
                };
                neighbours.push(Neighbour {
                    device: self.name_of(neighbour.header.ifindex),
                    address,
                    mac: link_layer_address(&neighbour),
                    permanent: neighbour.header.state == NeighbourState::Permanent,
                });
            }
        }
        Ok(neighbours)
    }

    async fn dump_fdb(&mut self) -> Result<Vec<FdbEntry>, KernelError> {
        self.ensure_names().await?;
        let mut request = NeighbourMessage::default();
        request.header.family = AddressFamily::Bridge;
        let messages = self
            .dump_messages(RouteNetlinkMessage::GetNeighbour(request), "dump fdb")
            .await?;
        Ok(messages
            .into_iter()
            .filter_map(|message| {
                let RouteNetlinkMessage::NewNeighbour(entry) = message else {
                    return None;
                };
                Some(FdbEntry {
                    device: self.name_of(entry.header.ifindex),
                    mac: link_layer_address(&entry)?,
                    destination: entry
                        .attributes
                        .iter()
                        .find_map(|attribute| match attribute {
                            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                                Some(IpAddr::V4(*ip))
                            }
                            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                                Some(IpAddr::V6(*ip))
                            }
                            // AF_BRIDGE messages do not say which family NDA_DST is: go by length.
                            NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => {
                                ip_from_bytes(bytes)
                            }
                            _ => None,
                        }),
                    permanent: entry.header.state == NeighbourState::Permanent,
                })
            })
            .collect())
    }

    async fn apply(&mut self, changes: &[Change]) -> Vec<Result<(), KernelError>> {
        if let Err(error) = self.ensure_names().await {
            return changes.iter().map(|_| Err(error.clone())).collect();
        }
        let mut results: Vec<Result<(), KernelError>> = Vec::with_capacity(changes.len());
        let mut index = 0;
        while index < changes.len() {
            if is_device_change(&changes[index]) {
                results.push(self.apply_device_change(&changes[index]).await);
                index += 1;
                continue;
            }
            // A run of object changes: pipeline them.
            let end = changes[index..]
                .iter()
                .position(is_device_change)
                .map_or(changes.len(), |offset| index + offset);
            let run = &changes[index..end];
            let requests: Vec<_> = run
                .iter()
                .map(|change| self.object_request(change))
                .collect();
            let outcomes = self
                .batch
                .send_all(requests, |position| describe(&run[position]))
                .await;
            results.extend(outcomes);
            index = end;
        }
        results
    }
}
