//! The node's desired dataplane, computed from cluster state with no I/O (reference §5).
//!
//! Contract: [`compute`] is a pure function of its input. It never looks at history and never
//! depends on the order of the input collections (everything is keyed in `BTreeMap`s and ties
//! between competing routes are broken by class, then by content). Everything Starling installs
//! carries one route protocol number of its own (default [`DEFAULT_ROUTE_PROTOCOL`] = 81, unused
//! by the kernel, Felix (80, 3) and BIRD (12)), workload routes included, so a restarted
//! Starling can recognise its own routes without memory.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sha1::{Digest, Sha1};

use super::mtu::{self, MtuInterfacePattern};
use crate::model::{CalicoNode, EncapMode, IpPool, MacAddr, PoolEncapsulation};

/// Starling's route protocol number (`ip route ... proto 81`). Configurable; it must differ
/// from the kernel's (2), boot (3), Felix (80) and BIRD (12) so ownership stays unambiguous.
pub const DEFAULT_ROUTE_PROTOCOL: u8 = 81;
/// Felix's exclusive route protocol (reference §5.1).
pub const FELIX_ROUTE_PROTOCOL: u8 = 80;
/// RTPROT_BOOT: Felix's DeviceRouteProtocol default, used on workload and VXLAN routes.
pub const BOOT_ROUTE_PROTOCOL: u8 = 3;
/// RTPROT_BIRD.
pub const BIRD_ROUTE_PROTOCOL: u8 = 12;

pub const IPIP_DEVICE: &str = "tunl0";
pub const VXLAN_DEVICE: &str = "vxlan.calico";
pub const VXLAN_V6_DEVICE: &str = "vxlan-v6.calico";
/// The kernel's default metric for IPv6 routes that do not name one.
pub const IPV6_DEFAULT_METRIC: u32 = 1024;

/// Node-level settings (FelixConfiguration subset, §1.10) in plain terms.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    pub route_protocol: u8,
    pub vxlan_vni: u32,
    pub vxlan_port: u16,
    /// `None` = auto (host MTU minus the encapsulation overhead).
    pub ipip_mtu: Option<u32>,
    pub vxlan_mtu: Option<u32>,
    pub vxlan_mtu_v6: Option<u32>,
    pub mtu_interface_pattern: MtuInterfacePattern,
    /// Workload interface prefixes (`cali` by default); the first names new veths.
    pub interface_prefixes: Vec<String>,
    /// Metric of workload routes (`ipv4NormalRoutePriority`, 1024 since v3.32).
    pub workload_route_metric: u32,
    pub ip_forwarding: bool,
    pub ipv6_support: bool,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            route_protocol: DEFAULT_ROUTE_PROTOCOL,
            vxlan_vni: 4096,
            vxlan_port: 4789,
            ipip_mtu: None,
            vxlan_mtu: None,
            vxlan_mtu_v6: None,
            mtu_interface_pattern: MtuInterfacePattern::default(),
            interface_prefixes: vec!["cali".to_string()],
            workload_route_metric: 1024,
            ip_forwarding: true,
            ipv6_support: true,
        }
    }
}

/// An IPAM block as the dataplane needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    pub cidr: IpNet,
    /// Node the block is affine to (`host:<node>`), if any.
    pub affinity: Option<String>,
    /// Allocations whose `node` attribute differs from the affinity: (address, node using it).
    pub borrowed: Vec<(IpAddr, String)>,
}

/// A workload on this node, by its host-side interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalWorkload {
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    pub mac: Option<MacAddr>,
}

/// A route learned over BGP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRoute {
    pub prefix: IpNet,
    pub next_hop: IpAddr,
    /// Learned for an IPIP pool: carried through tunl0 onlink, as BIRD did.
    pub via_ipip: bool,
}

/// A host interface (for the parent interface and MTU detection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub addresses: Vec<IpNet>,
    pub mtu: u32,
    pub oper_up: bool,
}

/// Everything [`compute`] looks at.
#[derive(Debug, Clone, Default)]
pub struct DataplaneInput {
    pub config: DataplaneConfig,
    pub local_node: CalicoNode,
    /// All nodes, the local one included or not (names are unique).
    pub nodes: Vec<CalicoNode>,
    pub pools: Vec<IpPool>,
    pub blocks: Vec<BlockSummary>,
    pub workloads: Vec<LocalWorkload>,
    pub learned_routes: Vec<LearnedRoute>,
    pub host_interfaces: Vec<HostInterface>,
    /// Every watched kind has delivered its initial list: stale objects may be deleted.
    pub datastore_in_sync: bool,
}

/// Why a route exists. The declaration order is the precedence when two sources want the
/// same destination (earlier wins): local beats learned, IPAM knowledge beats BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteClass {
    LocalWorkload,
    BorrowedRemote,
    RemoteBlockSameSubnet,
    RemoteBlockVxlan,
    RemoteBlockIpip,
    RemoteBlockNoEncap,
    BlackholeLocalBlock,
    BgpLearned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteType {
    Unicast,
    Blackhole,
}

/// Scope as the kernel keeps it: `Link` for directly attached workload routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteScope {
    Universe,
    Link,
}

/// A main-table route in plain terms (devices by name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteSpec {
    pub destination: IpNet,
    pub route_type: RouteType,
    pub gateway: Option<IpAddr>,
    /// `None` lets the kernel pick the interface (BGP next hops).
    pub device: Option<String>,
    pub onlink: bool,
    pub scope: RouteScope,
    pub metric: u32,
    pub mtu: Option<u32>,
    pub protocol: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredRoute {
    pub spec: RouteSpec,
    pub class: RouteClass,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKind {
    Vxlan {
        vni: u32,
        port: u16,
        local: IpAddr,
        parent: String,
    },
    /// The kernel's ipip fallback device (`tunl0`).
    Ipip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub name: String,
    pub kind: DeviceKind,
    pub mtu: u32,
    pub mac: Option<MacAddr>,
    /// The one address of this family on the device (/32 or /128).
    pub address: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NeighbourKey {
    pub device: String,
    pub address: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbKey {
    pub device: String,
    pub mac: MacAddr,
}

/// Pool CIDRs for natOutgoing (§5.9).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatSets {
    pub masquerade_v4: BTreeSet<Ipv4Net>,
    pub all_pools_v4: BTreeSet<Ipv4Net>,
    pub masquerade_v6: BTreeSet<Ipv6Net>,
    pub all_pools_v6: BTreeSet<Ipv6Net>,
}

/// A per-interface sysctl value: fixed, or copied from `net.ipv4.conf.default.rp_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysctlValue {
    Fixed(&'static str),
    DefaultRpFilter,
}

/// The node's desired dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub route_protocol: u8,
    pub interface_prefixes: Vec<String>,
    /// Host interfaces carrying the node's IPv4 / IPv6 address.
    pub parent_interface_v4: Option<String>,
    pub parent_interface_v6: Option<String>,
    /// All pool CIDRs (BIRD's routes inside them are adopted or swept).
    pub pool_cidrs: BTreeSet<IpNet>,
    pub ipip_enabled: bool,
    pub devices: BTreeMap<String, DeviceSpec>,
    pub routes: BTreeMap<IpNet, DesiredRoute>,
    pub neighbours: BTreeMap<NeighbourKey, MacAddr>,
    /// Remote VTEP MAC → remote node address.
    pub fdb: BTreeMap<FdbKey, IpAddr>,
    pub nat: NatSets,
    /// Paths under /proc/sys (slash separated) → value.
    pub global_sysctls: BTreeMap<String, String>,
    pub interface_sysctls: BTreeMap<String, Vec<(String, SysctlValue)>>,
    pub host_mtu: u32,
    pub pod_mtu: u32,
    pub allow_deletions: bool,
}

impl Desired {
    /// An empty desired state: owns nothing, deletes nothing.
    pub fn empty(route_protocol: u8) -> Self {
        Desired {
            route_protocol,
            interface_prefixes: vec!["cali".to_string()],
            parent_interface_v4: None,
            parent_interface_v6: None,
            pool_cidrs: BTreeSet::new(),
            ipip_enabled: false,
            devices: BTreeMap::new(),
            routes: BTreeMap::new(),
            neighbours: BTreeMap::new(),
            fdb: BTreeMap::new(),
            nat: NatSets::default(),
            global_sysctls: BTreeMap::new(),
            interface_sysctls: BTreeMap::new(),
            host_mtu: mtu::DEFAULT_HOST_MTU,
            pod_mtu: mtu::DEFAULT_HOST_MTU,
            allow_deletions: false,
        }
    }

    pub fn is_workload_interface(&self, name: &str) -> bool {
        self.interface_prefixes
            .iter()
            .any(|prefix| !prefix.is_empty() && name.starts_with(prefix.as_str()))
    }
}

/// The VTEP MAC of a node (§5.5): `66` then the first five bytes of SHA-1(name), or of
/// SHA-1(name + "-v6") for the IPv6 device.
pub fn vtep_mac(node_name: &str, ipv6: bool) -> MacAddr {
    let mut hasher = Sha1::new();
    hasher.update(node_name.as_bytes());
    if ipv6 {
        hasher.update(b"-v6");
    }
    let digest = hasher.finalize();
    MacAddr([0x66, digest[0], digest[1], digest[2], digest[3], digest[4]])
}

/// Metric Starling gives non-workload routes: none for IPv4; the kernel's own default for
/// IPv6 (it would store 1024 anyway, and equality with the dump must hold).
pub fn default_metric(destination: &IpNet) -> u32 {
    match destination {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => IPV6_DEFAULT_METRIC,
    }
}

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

    let host_mtu = mtu::host_mtu(&input.host_interfaces, &config.mtu_interface_pattern);
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
            Some(owner) if !single_address => {
                if let Some(route) = context.route_to_node(block.cidr, owner, pool, false) {
                    routes.offer(route);
                }
            }
            _ => {}
        }
        for (address, user) in &block.borrowed {
            if !block.cidr.contains(address)
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

    for learned in &input.learned_routes {
        if matches!(learned.prefix, IpNet::V4(_)) != learned.next_hop.is_ipv4()
            || (matches!(learned.prefix, IpNet::V6(_)) && !config.ipv6_support)
            || local_blocks
                .iter()
                .any(|block| block.contains(&learned.prefix))
        {
            continue;
        }
        let through_tunnel = learned.via_ipip && devices.contains_key(IPIP_DEVICE);
        routes.offer(DesiredRoute {
            spec: RouteSpec {
                destination: learned.prefix.trunc(),
                route_type: RouteType::Unicast,
                gateway: Some(learned.next_hop),
                device: through_tunnel.then(|| IPIP_DEVICE.to_string()),
                onlink: through_tunnel,
                scope: RouteScope::Universe,
                metric: default_metric(&learned.prefix),
                mtu: through_tunnel.then_some(ipip_mtu),
                protocol,
            },
            class: RouteClass::BgpLearned,
        });
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
