//! The node's desired dataplane, computed from cluster state with no I/O (reference §5).
//!
//! Contract: [`compute`] is a pure function of its input. It never looks at history and never
//! depends on the order of the input collections (everything is keyed in `BTreeMap`s and ties
//! between competing routes are broken by class, then by content). Everything Starling installs
//! carries one route protocol number of its own (default [`DEFAULT_ROUTE_PROTOCOL`] = 81, unused
//! by the kernel, Felix (80, 3) and BIRD (12)), workload routes included, so a restarted
//! Starling can recognise its own routes without memory.
//!
//! One process owns every route here (Felix's and BIRD's jobs both), so IPIP and no-encap
//! cluster routes are always computed (Calico's `programClusterRoutes` has no counterpart), and
//! route classes settle who wins a destination. Workload routes are wanted whatever the
//! interface's state; the reconciler waits for the interface to exist.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::learned::learned_route_spec;
use crate::mtu;
use crate::spec::*;
use starling_model::{CalicoNode, EncapMode, IpPool, PoolEncapsulation};

fn host_route(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

struct Context<'a> {
    input: &'a DataplaneInput,
    nodes: BTreeMap<&'a str, &'a CalicoNode>,
    parent_v4: Option<String>,
    parent_v6: Option<String>,
    devices: &'a BTreeMap<String, DeviceSpec>,
    ipip_mtu: u32,
    vxlan_mtu: u32,
    vxlan_mtu_v6: u32,
}

/// Computes the desired dataplane of `input.local_node`.
pub fn compute(input: &DataplaneInput) -> Desired {
    let config = &input.config;
    let local = &input.local_node;
    let protocol = config.route_protocol;

    let interfaces = input
        .host_interfaces
        .iter()
        .map(|interface| mtu::InterfaceMtu {
            name: &interface.name,
            mtu: interface.mtu,
            oper_up: interface.oper_up,
        });
    let host_mtu = mtu::host_mtu(interfaces, &config.mtu_interface_pattern);
    let ipip_mtu = config
        .ipip_mtu
        .unwrap_or(host_mtu.saturating_sub(mtu::IPIP_OVERHEAD));
    let vxlan_mtu = config
        .vxlan_mtu
        .unwrap_or(host_mtu.saturating_sub(mtu::VXLAN_OVERHEAD));
    let vxlan_mtu_v6 = config
        .vxlan_mtu_v6
        .unwrap_or(host_mtu.saturating_sub(mtu::VXLAN_V6_OVERHEAD));

    let ipip_enabled = input
        .pools
        .iter()
        .any(|pool| pool.is_ipv4() && matches!(pool.encapsulation(), PoolEncapsulation::Ipip(_)));
    let vxlan_enabled = input
        .pools
        .iter()
        .any(|pool| pool.is_ipv4() && matches!(pool.encapsulation(), PoolEncapsulation::Vxlan(_)));
    let vxlan_v6_enabled = config.ipv6_support
        && input.pools.iter().any(|pool| {
            !pool.is_ipv4() && matches!(pool.encapsulation(), PoolEncapsulation::Vxlan(_))
        });
    let pod_mtu = mtu::pod_mtu(
        host_mtu,
        [
            (ipip_enabled, ipip_mtu),
            (vxlan_enabled, vxlan_mtu),
            (vxlan_v6_enabled, vxlan_mtu_v6),
        ],
    );

    let parent_v4 = local
        .ipv4()
        .and_then(|ip| interface_with_address(&input.host_interfaces, IpAddr::V4(ip)));
    let parent_v6 = local
        .ipv6()
        .and_then(|ip| interface_with_address(&input.host_interfaces, IpAddr::V6(ip)));

    let mut devices = BTreeMap::new();
    if let (true, Some(tunnel)) = (ipip_enabled, local.ipv4_ipip_tunnel_addr) {
        devices.insert(
            IPIP_DEVICE.to_string(),
            DeviceSpec {
                name: IPIP_DEVICE.to_string(),
                kind: DeviceKind::Ipip,
                mtu: ipip_mtu,
                mac: None,
                address: host_route(IpAddr::V4(tunnel)),
            },
        );
    }
    if let (true, Some(tunnel), Some(local_ip), Some(parent)) = (
        vxlan_enabled,
        local.ipv4_vxlan_tunnel_addr,
        local.ipv4(),
        parent_v4.as_ref(),
    ) {
        devices.insert(
            VXLAN_DEVICE.to_string(),
            DeviceSpec {
                name: VXLAN_DEVICE.to_string(),
                kind: DeviceKind::Vxlan {
                    vni: config.vxlan_vni,
                    port: config.vxlan_port,
                    local: IpAddr::V4(local_ip),
                    parent: parent.clone(),
                },
                mtu: vxlan_mtu,
                mac: Some(
                    local
                        .vxlan_tunnel_mac
                        .unwrap_or_else(|| vtep_mac(&local.name, false)),
                ),
                address: host_route(IpAddr::V4(tunnel)),
            },
        );
    }
    if let (true, Some(tunnel), Some(local_ip), Some(parent)) = (
        vxlan_v6_enabled,
        local.ipv6_vxlan_tunnel_addr,
        local.ipv6(),
        parent_v6.as_ref(),
    ) {
        devices.insert(
            VXLAN_V6_DEVICE.to_string(),
            DeviceSpec {
                name: VXLAN_V6_DEVICE.to_string(),
                kind: DeviceKind::Vxlan {
                    vni: config.vxlan_vni,
                    port: config.vxlan_port,
                    local: IpAddr::V6(local_ip),
                    parent: parent.clone(),
                },
                mtu: vxlan_mtu_v6,
                mac: Some(
                    local
                        .vxlan_tunnel_mac_v6
                        .unwrap_or_else(|| vtep_mac(&local.name, true)),
                ),
                address: host_route(IpAddr::V6(tunnel)),
            },
        );
    }

    let mut nodes: BTreeMap<&str, &CalicoNode> = BTreeMap::new();
    for node in &input.nodes {
        nodes.insert(node.name.as_str(), node);
    }
    // The local node's own record is authoritative for itself.
    nodes.insert(local.name.as_str(), local);

    let context = Context {
        input,
        nodes,
        parent_v4: parent_v4.clone(),
        parent_v6: parent_v6.clone(),
        devices: &devices,
        ipip_mtu,
        vxlan_mtu,
        vxlan_mtu_v6,
    };

    let mut routes = RouteTable::default();
    for workload in &input.workloads {
        for address in &workload.addresses {
            if matches!(address, IpAddr::V6(_)) && !config.ipv6_support {
                continue;
            }
            routes.offer(DesiredRoute {
                spec: RouteSpec {
                    destination: host_route(*address),
                    route_type: RouteType::Unicast,
                    gateway: None,
                    device: Some(workload.interface.clone()),
                    onlink: false,
                    // IPv6 routes carry no scope: the kernel reports universe.
                    scope: if address.is_ipv4() {
                        RouteScope::Link
                    } else {
                        RouteScope::Universe
                    },
                    metric: config.workload_route_metric,
                    mtu: None,
                    protocol,
                },
                class: RouteClass::LocalWorkload,
            });
        }
    }

    let mut local_blocks: Vec<IpNet> = Vec::new();
    for block in &input.blocks {
        if matches!(block.cidr, IpNet::V6(_)) && !config.ipv6_support {
            continue;
        }
        let Some(pool) = pool_for(&input.pools, &block.cidr) else {
            continue;
        };
        let remote_from_bgp = config.cluster_routes_from_bgp
            && matches!(
                pool.encapsulation(),
                PoolEncapsulation::Ipip(_) | PoolEncapsulation::NoEncap
            );
        let single_address = block.cidr.prefix_len() == block.cidr.max_prefix_len();
        match block.affinity.as_deref() {
            Some(owner) if owner == local.name => {
                local_blocks.push(block.cidr);
                if !single_address && pool.encapsulation() != PoolEncapsulation::None {
                    routes.offer(DesiredRoute {
                        spec: RouteSpec {
                            destination: block.cidr,
                            route_type: RouteType::Blackhole,
                            gateway: None,
                            device: None,
                            onlink: false,
                            scope: RouteScope::Universe,
                            metric: default_metric(&block.cidr),
                            mtu: None,
                            protocol,
                        },
                        class: RouteClass::BlackholeLocalBlock,
                    });
                }
            }
            Some(owner) if !single_address && !remote_from_bgp => {
                if let Some(route) = context.route_to_node(block.cidr, owner, pool, false) {
                    routes.offer(route);
                }
            }
            _ => {}
        }
        for (address, user) in &block.borrowed {
            if remote_from_bgp
                || !block.cidr.contains(address)
                || *user == local.name
                || Some(user.as_str()) == block.affinity.as_deref()
            {
                continue;
            }
            if let Some(route) = context.route_to_node(host_route(*address), user, pool, true) {
                routes.offer(route);
            }
        }
    }

    local_blocks.sort();
    let learned_rules = LearnedRouteRules {
        protocol,
        local_blocks,
        ipv6_support: config.ipv6_support,
        ipip_mtu: devices.contains_key(IPIP_DEVICE).then_some(ipip_mtu),
    };
    for learned in &input.learned_routes {
        if let Some(route) = learned_route_spec(&learned_rules, learned) {
            routes.offer(route);
        }
    }

    let mut neighbours = BTreeMap::new();
    let mut fdb = BTreeMap::new();
    for node in context.nodes.values() {
        if node.name == local.name {
            continue;
        }
        if devices.contains_key(VXLAN_DEVICE) {
            if let (Some(vtep), Some(node_ip)) = (node.ipv4_vxlan_tunnel_addr, node.ipv4()) {
                let mac = node
                    .vxlan_tunnel_mac
                    .unwrap_or_else(|| vtep_mac(&node.name, false));
                neighbours.insert(
                    NeighbourKey {
                        device: VXLAN_DEVICE.to_string(),
                        address: IpAddr::V4(vtep),
                    },
                    mac,
                );
                fdb.insert(
                    FdbKey {
                        device: VXLAN_DEVICE.to_string(),
                        mac,
                    },
                    IpAddr::V4(node_ip),
                );
            }
        }
        if devices.contains_key(VXLAN_V6_DEVICE) {
            if let (Some(vtep), Some(node_ip)) = (node.ipv6_vxlan_tunnel_addr, node.ipv6()) {
                let mac = node
                    .vxlan_tunnel_mac_v6
                    .unwrap_or_else(|| vtep_mac(&node.name, true));
                neighbours.insert(
                    NeighbourKey {
                        device: VXLAN_V6_DEVICE.to_string(),
                        address: IpAddr::V6(vtep),
                    },
                    mac,
                );
                fdb.insert(
                    FdbKey {
                        device: VXLAN_V6_DEVICE.to_string(),
                        mac,
                    },
                    IpAddr::V6(node_ip),
                );
            }
        }
    }
    for workload in &input.workloads {
        let Some(mac) = workload.mac else { continue };
        for address in workload.addresses.iter().filter(|a| a.is_ipv4()) {
            neighbours.insert(
                NeighbourKey {
                    device: workload.interface.clone(),
                    address: *address,
                },
                mac,
            );
        }
    }

    let mut nat = NatSets::default();
    let mut pool_cidrs = BTreeSet::new();
    for pool in &input.pools {
        pool_cidrs.insert(pool.cidr.trunc());
        match pool.cidr.trunc() {
            IpNet::V4(cidr) => {
                nat.all_pools_v4.insert(cidr);
                if pool.nat_outgoing {
                    nat.masquerade_v4.insert(cidr);
                }
            }
            IpNet::V6(cidr) => {
                if !config.ipv6_support {
                    continue;
                }
                nat.all_pools_v6.insert(cidr);
                if pool.nat_outgoing {
                    nat.masquerade_v6.insert(cidr);
                }
            }
        }
    }

    let mut global_sysctls = BTreeMap::new();
    if config.ip_forwarding {
        global_sysctls.insert("net/ipv4/ip_forward".to_string(), "1".to_string());
        if config.ipv6_support {
            global_sysctls.insert("net/ipv6/conf/all/forwarding".to_string(), "1".to_string());
        }
    }
    let mut desired = Desired::empty(protocol);
    desired.interface_prefixes = config.interface_prefixes.clone();
    let mut interface_sysctls = BTreeMap::new();
    for interface in &input.host_interfaces {
        if interface.oper_up && desired.is_workload_interface(&interface.name) {
            interface_sysctls.insert(
                interface.name.clone(),
                workload_interface_sysctls(&interface.name, config.ipv6_support),
            );
        }
    }

    desired.parent_interface_v4 = parent_v4;
    desired.parent_interface_v6 = parent_v6;
    desired.pool_cidrs = pool_cidrs;
    desired.ipip_enabled = ipip_enabled;
    desired.routes = routes.routes;
    desired.devices = devices;
    desired.neighbours = neighbours;
    desired.fdb = fdb;
    desired.nat = nat;
    desired.global_sysctls = global_sysctls;
    desired.interface_sysctls = interface_sysctls;
    desired.host_mtu = host_mtu;
    desired.pod_mtu = pod_mtu;
    desired.allow_deletions = input.datastore_in_sync;
    desired.learned_rules = learned_rules;
    desired
}

/// The §5.7 sysctls of one workload interface (paths relative to /proc/sys).
pub fn workload_interface_sysctls(interface: &str, ipv6: bool) -> Vec<(String, SysctlValue)> {
    let mut settings = vec![
        (
            format!("net/ipv6/conf/{interface}/accept_ra"),
            SysctlValue::Fixed("0"),
        ),
        (
            format!("net/ipv4/conf/{interface}/route_localnet"),
            SysctlValue::Fixed("1"),
        ),
        (
            format!("net/ipv4/neigh/{interface}/proxy_delay"),
            SysctlValue::Fixed("0"),
        ),
        (
            format!("net/ipv4/conf/{interface}/proxy_arp"),
            SysctlValue::Fixed("1"),
        ),
        (
            format!("net/ipv4/conf/{interface}/forwarding"),
            SysctlValue::Fixed("1"),
        ),
        (
            format!("net/ipv4/conf/{interface}/rp_filter"),
            SysctlValue::DefaultRpFilter,
        ),
    ];
    if ipv6 {
        settings.push((
            format!("net/ipv6/conf/{interface}/proxy_ndp"),
            SysctlValue::Fixed("1"),
        ));
        settings.push((
            format!("net/ipv6/conf/{interface}/forwarding"),
            SysctlValue::Fixed("1"),
        ));
    }
    settings
}

fn interface_with_address(interfaces: &[HostInterface], address: IpAddr) -> Option<String> {
    let mut names: Vec<&str> = interfaces
        .iter()
        .filter(|interface| interface.addresses.iter().any(|net| net.addr() == address))
        .map(|interface| interface.name.as_str())
        .collect();
    names.sort_unstable();
    names.first().map(|name| name.to_string())
}

/// The most specific pool containing `cidr`.
fn pool_for<'a>(pools: &'a [IpPool], cidr: &IpNet) -> Option<&'a IpPool> {
    pools
        .iter()
        .filter(|pool| pool.cidr.contains(cidr))
        .max_by(|a, b| (a.cidr.prefix_len(), &a.name).cmp(&(b.cidr.prefix_len(), &b.name)))
}

impl Context<'_> {
    /// The route carrying `destination` to the node `node_name`, shaped by the pool's
    /// encapsulation (§5.2); `None` when the node or its addresses are unknown.
    fn route_to_node(
        &self,
        destination: IpNet,
        node_name: &str,
        pool: &IpPool,
        borrowed: bool,
    ) -> Option<DesiredRoute> {
        let local = &self.input.local_node;
        if node_name == local.name {
            return None;
        }
        let node = self.nodes.get(node_name)?;
        let protocol = self.input.config.route_protocol;
        let metric = default_metric(&destination);
        let (remote_ip, same_subnet, parent, vxlan_device, vtep, vxlan_mtu) = match destination {
            IpNet::V4(_) => {
                let remote = node.ipv4()?;
                let same = local.ipv4_address.is_some_and(|net| net.contains(&remote));
                (
                    IpAddr::V4(remote),
                    same,
                    self.parent_v4.as_ref(),
                    VXLAN_DEVICE,
                    node.ipv4_vxlan_tunnel_addr.map(IpAddr::V4),
                    self.vxlan_mtu,
                )
            }
            IpNet::V6(_) => {
                let remote = node.ipv6()?;
                let same = local.ipv6_address.is_some_and(|net| net.contains(&remote));
                (
                    IpAddr::V6(remote),
                    same,
                    self.parent_v6.as_ref(),
                    VXLAN_V6_DEVICE,
                    node.ipv6_vxlan_tunnel_addr.map(IpAddr::V6),
                    self.vxlan_mtu_v6,
                )
            }
        };
        let via = |gateway: IpAddr, device: &str, mtu: Option<u32>| RouteSpec {
            destination,
            route_type: RouteType::Unicast,
            gateway: Some(gateway),
            device: Some(device.to_string()),
            onlink: true,
            scope: RouteScope::Universe,
            metric,
            mtu,
            protocol,
        };
        let direct = |class: RouteClass| {
            parent.map(|parent| DesiredRoute {
                spec: via(remote_ip, parent, None),
                class: if borrowed {
                    RouteClass::BorrowedRemote
                } else {
                    class
                },
            })
        };
        let encapsulation = match (pool.encapsulation(), destination) {
            (PoolEncapsulation::Ipip(_), IpNet::V6(_)) => PoolEncapsulation::NoEncap,
            (other, _) => other,
        };
        match encapsulation {
            PoolEncapsulation::None => None,
            PoolEncapsulation::Vxlan(EncapMode::CrossSubnet)
            | PoolEncapsulation::Ipip(EncapMode::CrossSubnet)
                if same_subnet =>
            {
                direct(RouteClass::RemoteBlockSameSubnet)
            }
            PoolEncapsulation::Vxlan(_) => {
                if !self.devices.contains_key(vxlan_device) {
                    return None;
                }
                Some(DesiredRoute {
                    spec: via(vtep?, vxlan_device, Some(vxlan_mtu)),
                    class: if borrowed {
                        RouteClass::BorrowedRemote
                    } else {
                        RouteClass::RemoteBlockVxlan
                    },
                })
            }
            PoolEncapsulation::Ipip(_) => {
                if !self.devices.contains_key(IPIP_DEVICE) {
                    return None;
                }
                Some(DesiredRoute {
                    spec: via(remote_ip, IPIP_DEVICE, Some(self.ipip_mtu)),
                    class: if borrowed {
                        RouteClass::BorrowedRemote
                    } else {
                        RouteClass::RemoteBlockIpip
                    },
                })
            }
            PoolEncapsulation::NoEncap => direct(RouteClass::RemoteBlockNoEncap),
        }
    }
}

/// Routes keyed by destination; competing offers resolved by class, then content.
#[derive(Default)]
struct RouteTable {
    routes: BTreeMap<IpNet, DesiredRoute>,
}

impl RouteTable {
    fn offer(&mut self, route: DesiredRoute) {
        let destination = route.spec.destination.trunc();
        match self.routes.get(&destination) {
            Some(existing) if (existing.class, &existing.spec) <= (route.class, &route.spec) => {}
            _ => {
                let mut route = route;
                route.spec.destination = destination;
                self.routes.insert(destination, route);
            }
        }
    }
}
