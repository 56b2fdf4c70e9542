//! Translation between rtnetlink messages and the plain kernel types: parsing dumps
//! (links, routes, neighbours) and building neighbour/FDB requests.
//!
//! Contract: pure functions; anything the reconciler does not model (multipath routes, other
//! tables, cloned entries) parses to `None` rather than to a wrong value.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteMetric,
    RouteScope as NetlinkScope, RouteType as NetlinkRouteType,
};
use rtnetlink::packet_route::AddressFamily;

use super::kernel::{Change, KernelError, Link, LinkKind, VxlanParameters};
use starling_calc::spec::{RouteScope, RouteSpec, RouteType};
use starling_model::MacAddr;

/// A main-table unicast or blackhole route in plain terms; `None` for anything else.
pub(super) fn parse_route(
    route: &RouteMessage,
    names: &BTreeMap<u32, String>,
) -> Option<RouteSpec> {
    let header = &route.header;
    let table = route
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or(u32::from(header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || header.flags.contains(RouteFlags::Cloned) {
        return None;
    }
    let route_type = match header.kind {
        NetlinkRouteType::Unicast => RouteType::Unicast,
        NetlinkRouteType::BlackHole => RouteType::Blackhole,
        _ => return None,
    };
    if route
        .attributes
        .iter()
        .any(|attribute| matches!(attribute, RouteAttribute::MultiPath(_)))
    {
        return None;
    }
    let mut destination = None;
    let mut gateway = None;
    let mut device = None;
    let mut metric = 0;
    let mut mtu = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Destination(address) => destination = ip_of(address),
            RouteAttribute::Gateway(address) => gateway = ip_of(address),
            RouteAttribute::Oif(index) => device = Some(name_of(names, *index)),
            RouteAttribute::Priority(priority) => metric = *priority,
            RouteAttribute::Metrics(metrics) => {
                mtu = metrics.iter().find_map(|metric| match metric {
                    RouteMetric::Mtu(value) => Some(*value),
                    _ => None,
                })
            }
            _ => {}
        }
    }
    let destination = match (destination, header.address_family) {
        (Some(ip), _) => ip,
        (None, AddressFamily::Inet6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        (None, _) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    };
    if route_type == RouteType::Blackhole {
        // IPv6 reports blackholes as leaving through `lo`; the device is not part of them.
        device = None;
    }
    Some(RouteSpec {
        destination: IpNet::new(destination, header.destination_prefix_length).ok()?,
        route_type,
        gateway,
        device,
        onlink: header.flags.contains(RouteFlags::Onlink),
        scope: if header.scope == NetlinkScope::Link {
            RouteScope::Link
        } else {
            RouteScope::Universe
        },
        metric,
        mtu,
        protocol: u8::from(header.protocol),
    })
}

pub(super) fn is_device_change(change: &Change) -> bool {
    matches!(
        change,
        Change::CreateDevice(_)
            | Change::DeleteDevice { .. }
            | Change::SetDevice { .. }
            | Change::AddAddress { .. }
            | Change::DeleteAddress { .. }
    )
}

pub(super) fn describe(change: &Change) -> String {
    format!("{change:?}")
}

/// A change named as [`describe`] names it, formatted only when displayed (in an error).
pub(super) struct Described<'a>(pub &'a Change);

impl std::fmt::Display for Described<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?}", self.0)
    }
}

pub(super) fn netlink_error(operation: &str, raw_code: i32) -> KernelError {
    let errno = raw_code.saturating_abs();
    KernelError::Netlink {
        operation: operation.to_string(),
        errno,
        message: std::io::Error::from_raw_os_error(errno).to_string(),
    }
}

pub(super) fn family_of(address: IpAddr) -> AddressFamily {
    match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

pub(super) fn route_address(address: IpAddr) -> RouteAddress {
    match address {
        IpAddr::V4(ip) => RouteAddress::Inet(ip),
        IpAddr::V6(ip) => RouteAddress::Inet6(ip),
    }
}

pub(super) fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

pub(super) fn neighbour_message(ifindex: u32, address: Option<IpAddr>) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.ifindex = ifindex;
    if let Some(address) = address {
        message.header.family = family_of(address);
        message
            .attributes
            .push(NeighbourAttribute::Destination(match address {
                IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
                IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
            }));
    }
    message
}

pub(super) fn fdb_message(
    ifindex: u32,
    mac: MacAddr,
    destination: Option<IpAddr>,
) -> NeighbourMessage {
    let mut message = neighbour_message(ifindex, destination);
    message.header.family = AddressFamily::Bridge;
    message.header.state = NeighbourState::Permanent;
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .insert(0, NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    message
}

pub(super) fn link_layer_address(message: &NeighbourMessage) -> Option<MacAddr> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            NeighbourAttribute::LinkLayerAddress(bytes) => mac_of(bytes),
            _ => None,
        })
}

pub(super) fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(octets));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

pub(super) fn mac_of(bytes: &[u8]) -> Option<MacAddr> {
    let array: [u8; 6] = bytes.try_into().ok()?;
    Some(MacAddr(array))
}

pub(super) fn parse_link(message: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut mtu = 0;
    let mut mac = None;
    let mut kind = LinkKind::Other(None);
    let mut oper_state = None;
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(value) => name = Some(value.clone()),
            LinkAttribute::Mtu(value) => mtu = *value,
            LinkAttribute::Address(bytes) => mac = mac_of(bytes),
            LinkAttribute::OperState(state) => oper_state = Some(*state),
            LinkAttribute::LinkInfo(infos) => kind = parse_link_kind(infos),
            _ => {}
        }
    }
    let flags = message.header.flags;
    let oper_up = match oper_state {
        Some(State::Up) => true,
        Some(State::Unknown) | None => {
            flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::Running)
        }
        _ => false,
    };
    Some(Link {
        index: message.header.index,
        name: name?,
        kind,
        mtu,
        admin_up: flags.contains(LinkFlags::Up),
        oper_up,
        mac,
    })
}

pub(super) fn parse_link_kind(infos: &[LinkInfo]) -> LinkKind {
    let mut kind_name = None;
    let mut vxlan = None;
    let mut is_ipip = false;
    for info in infos {
        match info {
            LinkInfo::Kind(InfoKind::Vxlan) => kind_name = Some("vxlan".to_string()),
            LinkInfo::Kind(InfoKind::IpIp) => is_ipip = true,
            LinkInfo::Kind(other) => kind_name = Some(other.to_string()),
            LinkInfo::Data(InfoData::Vxlan(data)) => {
                let mut parameters = VxlanParameters {
                    vni: 0,
                    port: 0,
                    local: None,
                    parent_index: None,
                    learning: false,
                };
                for item in data {
                    match item {
                        InfoVxlan::Id(vni) => parameters.vni = *vni,
                        InfoVxlan::Port(port) => parameters.port = *port,
                        InfoVxlan::Local(ip) => parameters.local = Some(IpAddr::V4(*ip)),
                        InfoVxlan::Local6(ip) => parameters.local = Some(IpAddr::V6(*ip)),
                        InfoVxlan::Link(index) => parameters.parent_index = Some(*index),
                        InfoVxlan::Learning(learning) => parameters.learning = *learning,
                        _ => {}
                    }
                }
                vxlan = Some(parameters);
            }
            _ => {}
        }
    }
    if is_ipip {
        return LinkKind::Ipip;
    }
    match vxlan {
        Some(parameters) => LinkKind::Vxlan(parameters),
        None => LinkKind::Other(kind_name),
    }
}

pub(super) fn name_of(names: &BTreeMap<u32, String>, index: u32) -> String {
    names
        .get(&index)
        .cloned()
        .unwrap_or_else(|| format!("if{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::RouteProtocol;

    fn route(table: u8, kind: NetlinkRouteType, attributes: Vec<RouteAttribute>) -> RouteMessage {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet6;
        message.header.destination_prefix_length = 122;
        message.header.table = table;
        message.header.kind = kind;
        message.header.protocol = RouteProtocol::from(81);
        message.attributes = attributes;
        message
    }

    #[test]
    fn parses_main_table_routes_only_and_drops_the_blackhole_device() {
        let names: BTreeMap<u32, String> = [(1, "lo".to_string())].into_iter().collect();
        let destination =
            RouteAttribute::Destination(RouteAddress::Inet6("fd00:244::".parse().unwrap()));
        let blackhole = route(
            RouteHeader::RT_TABLE_MAIN,
            NetlinkRouteType::BlackHole,
            vec![
                destination.clone(),
                RouteAttribute::Oif(1),
                RouteAttribute::Priority(1024),
            ],
        );
        let parsed = parse_route(&blackhole, &names).unwrap();
        assert_eq!(parsed.device, None);
        assert_eq!(parsed.metric, 1024);
        assert_eq!(parsed.protocol, 81);
        assert_eq!(
            parsed.destination,
            "fd00:244::/122".parse::<IpNet>().unwrap()
        );
        let local = route(255, NetlinkRouteType::Local, vec![destination.clone()]);
        assert_eq!(parse_route(&local, &names), None);
        let other_table = route(
            0,
            NetlinkRouteType::Unicast,
            vec![destination, RouteAttribute::Table(1000)],
        );
        assert_eq!(parse_route(&other_table, &names), None);
    }

    #[test]
    fn fdb_requests_are_bridge_family_self_permanent() {
        let message = fdb_message(
            7,
            MacAddr([0x66, 1, 2, 3, 4, 5]),
            Some("192.0.2.1".parse().unwrap()),
        );
        assert_eq!(message.header.family, AddressFamily::Bridge);
        assert_eq!(message.header.ifindex, 7);
        assert_eq!(message.header.state, NeighbourState::Permanent);
        assert_eq!(message.header.flags, NeighbourFlags::Own);
        assert_eq!(
            link_layer_address(&message),
            Some(MacAddr([0x66, 1, 2, 3, 4, 5]))
        );
        assert_eq!(
            ip_from_bytes(&[192, 0, 2, 1]),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
    }
}
