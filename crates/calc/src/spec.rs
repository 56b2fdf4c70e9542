//! Plain data of the desired dataplane: the inputs [`crate::desired::compute`] reads, the
//! objects it produces, and Starling's fixed names and numbers.
//!
//! Contract: no logic beyond small pure helpers (VTEP MAC derivation, default metrics); every
//! type is plain, comparable data so desired states can be diffed and asserted on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sha1::{Digest, Sha1};

use crate::mtu::{self, MtuInterfacePattern};
use starling_bgp::kernel::LearnedRoute;
use starling_model::{CalicoNode, IpPool, MacAddr};

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
    /// The BGP speaker carries IPIP and no-encap cluster routes (backend `bird`): remote blocks
    /// and borrowed addresses of those pools come from BGP, not from IPAM. VXLAN pools are
    /// always routed from IPAM, as Felix does.
    pub cluster_routes_from_bgp: bool,
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
            cluster_routes_from_bgp: false,
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

/// Floating IP NATs of this node's endpoints (see [`crate::floating`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FloatingIps {
    /// External (floating) IP → the endpoint's internal IP.
    pub dnat: BTreeMap<IpAddr, IpAddr>,
    /// Internal IP → the floating IP its hairpin traffic leaves with.
    pub snat: BTreeMap<IpAddr, IpAddr>,
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
    pub floating_ips: FloatingIps,
    /// Paths under /proc/sys (slash separated) → value.
    pub global_sysctls: BTreeMap<String, String>,
    pub interface_sysctls: BTreeMap<String, Vec<(String, SysctlValue)>>,
    pub host_mtu: u32,
    pub pod_mtu: u32,
    pub allow_deletions: bool,
    /// How the dataplane turns learned BGP routes, which bypass this computation, into routes.
    pub learned_rules: LearnedRouteRules,
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
            floating_ips: FloatingIps::default(),
            global_sysctls: BTreeMap::new(),
            interface_sysctls: BTreeMap::new(),
            host_mtu: mtu::DEFAULT_HOST_MTU,
            pod_mtu: mtu::DEFAULT_HOST_MTU,
            allow_deletions: false,
            learned_rules: LearnedRouteRules {
                protocol: route_protocol,
                ..Default::default()
            },
        }
    }

    pub fn is_workload_interface(&self, name: &str) -> bool {
        self.interface_prefixes
            .iter()
            .any(|prefix| !prefix.is_empty() && name.starts_with(prefix.as_str()))
    }
}

/// The host-side interface name of a pod's veth, as Calico names it: the prefix and the first
/// 11 hex digits of SHA-1(`<namespace>.<pod>`).
pub fn veth_name(prefix: &str, namespace: &str, pod: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}.{pod}").as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{prefix}{}", &hex[..11])
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

/// What the kernel form of a learned route depends on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LearnedRouteRules {
    pub protocol: u8,
    /// This node's own blocks, sorted: a learned copy never replaces their routes.
    pub local_blocks: Vec<IpNet>,
    pub ipv6_support: bool,
    /// `tunl0`'s MTU when the node has the device (IPIP pool routes go through it).
    pub ipip_mtu: Option<u32>,
}

impl LearnedRouteRules {
    pub fn inside_local_block(&self, prefix: &IpNet) -> bool {
        // Sorted blocks: only the last block starting at or before the prefix can hold it
        // (Calico's blocks never nest).
        let position = self.local_blocks.partition_point(|block| block <= prefix);
        position > 0 && self.local_blocks[position - 1].contains(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_follow_calico() {
        // `printf default.nginx | sha1sum` = c440f455693b69cdd48a37aa5ecd78038f50413d
        assert_eq!(veth_name("cali", "default", "nginx"), "calic440f455693");
        assert_eq!(veth_name("tap", "default", "nginx"), "tapc440f455693");
        // `printf kube-system.coredns-abc | sha1sum` = 3d5d6ab04b5152ac04d8...
        assert_eq!(
            veth_name("cali", "kube-system", "coredns-abc"),
            "cali3d5d6ab04b5"
        );
    }
}
