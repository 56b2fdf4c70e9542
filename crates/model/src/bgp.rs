//! BGP configuration and peers as the speaker's peering computation sees them (reference §1.7, §1.8, §6.3).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use super::AsNumber;
use starling_selector::Selector;

/// The effective BGPConfiguration (`default`, with a node's `node.<name>` overrides applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpConfig {
    pub node_to_node_mesh_enabled: bool,
    pub as_number: AsNumber,
    pub listen_port: u16,
    /// `bindMode: NodeIP`: listen on the node IP only.
    pub bind_to_node_ip: bool,
    pub node_mesh_password: Option<SecretKeyRef>,
    pub node_mesh_max_restart_time: Option<Duration>,
    /// `(name, value)` pairs; values are `aa:nn` or `aa:nn:mm`.
    pub communities: Vec<(String, String)>,
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    pub service_cluster_ips: Vec<IpNet>,
    pub service_external_ips: Vec<IpNet>,
    pub service_load_balancer_ips: Vec<IpNet>,
    /// `serviceLoadBalancerAggregation: Enabled` (the default); false = one /32 per service.
    pub service_load_balancer_aggregation: bool,
    /// `logSeverityScreen`, canonical spelling (`Info` by default).
    pub log_severity_screen: String,
    /// Interfaces whose addresses are not exported.
    pub ignored_interfaces: Vec<String>,
    pub local_workload_peering_ipv4: Option<Ipv4Addr>,
    pub local_workload_peering_ipv6: Option<Ipv6Addr>,
    /// `None` when the resource leaves it unset (the meaning then depends on the Calico version, §0).
    pub program_cluster_routes: Option<ProgramClusterRoutes>,
    pub ipv4_normal_route_priority: u32,
    pub ipv6_normal_route_priority: u32,
    /// BFD for the node-to-node mesh ([`BFD_INTERVAL_ANNOTATION`] on the `default` object).
    pub node_mesh_bfd: Option<BfdSettings>,
}

/// Which pool routes the BGP side (or Felix) programs into the kernel (reference §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProgramClusterRoutes {
    Enabled,
    Disabled,
    EnabledIpipOnly,
    EnabledNoEncapOnly,
}

impl ProgramClusterRoutes {
    /// The spelling used in the resources.
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramClusterRoutes::Enabled => "Enabled",
            ProgramClusterRoutes::Disabled => "Disabled",
            ProgramClusterRoutes::EnabledIpipOnly => "EnabledIPIPOnly",
            ProgramClusterRoutes::EnabledNoEncapOnly => "EnabledNoEncapOnly",
        }
    }
}

/// The default metric of workload routes, shared by BGPConfiguration and FelixConfiguration.
pub const DEFAULT_NORMAL_ROUTE_PRIORITY: u32 = 1024;

impl Default for BgpConfig {
    fn default() -> Self {
        BgpConfig {
            node_to_node_mesh_enabled: true,
            as_number: AsNumber::CALICO_DEFAULT,
            listen_port: 179,
            bind_to_node_ip: false,
            node_mesh_password: None,
            node_mesh_max_restart_time: None,
            communities: Vec::new(),
            prefix_advertisements: Vec::new(),
            service_cluster_ips: Vec::new(),
            service_external_ips: Vec::new(),
            service_load_balancer_ips: Vec::new(),
            service_load_balancer_aggregation: true,
            log_severity_screen: "Info".to_string(),
            ignored_interfaces: Vec::new(),
            local_workload_peering_ipv4: None,
            local_workload_peering_ipv6: None,
            program_cluster_routes: None,
            ipv4_normal_route_priority: DEFAULT_NORMAL_ROUTE_PRIORITY,
            ipv6_normal_route_priority: DEFAULT_NORMAL_ROUTE_PRIORITY,
            node_mesh_bfd: None,
        }
    }
}

/// One validated BGPConfiguration object (`default` or `node.<name>`): the configuration it
/// describes on its own, and which of the per-node fields it sets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BgpConfigLayer {
    pub config: BgpConfig,
    pub node_fields: NodeScopedFields,
}

/// The fields a `node.<name>` BGPConfiguration overrides when it sets them (confd's node keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeScopedFields {
    pub listen_port: bool,
    pub log_severity_screen: bool,
    pub communities: bool,
    pub prefix_advertisements: bool,
}

/// `prefixAdvertisements[]`: communities (names or literal values) attached to routes inside `cidr`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixAdvertisement {
    pub cidr: IpNet,
    pub communities: Vec<String>,
}

/// A reference to a key of a Kubernetes Secret in calico-node's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
    pub optional: bool,
}

/// Which nodes a BGPPeer applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerScope {
    /// Neither `node` nor `nodeSelector`: every node ("global" peer).
    Global,
    Node(String),
    NodeSelector(Selector),
}

/// Who the peer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTarget {
    /// `peerIP`, with the optional port from `IP:port` / `[IPv6]:port`.
    Address { ip: IpAddr, port: Option<u16> },
    /// `peerSelector`: the selected Calico nodes.
    Nodes(Selector),
    /// `localWorkloadSelector`: local workloads that speak BGP.
    LocalWorkloads(Selector),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NextHopMode {
    #[default]
    Auto,
    SelfAddress,
    Keep,
}

/// What happens when a peer sends more prefixes than its import limit (BIRD's `import limit`
/// actions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitAction {
    /// Log and count; keep everything.
    Warn,
    /// Refuse prefixes beyond the limit; keep the session.
    Block,
    /// Cease (Maximum Number of Prefixes Reached) and reconnect.
    Restart,
    /// Cease and stay down until the configuration changes (BIRD's default).
    #[default]
    Disable,
}

/// A per-peer limit on accepted prefixes (Starling annotations on a BGPPeer, default off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimit {
    pub limit: u32,
    pub action: LimitAction,
}

/// Annotation holding a BGPPeer's import limit (a prefix count).
pub const IMPORT_LIMIT_ANNOTATION: &str = "starling.io/import-limit";
/// Annotation choosing the action: `disable` (default), `restart`, `block` or `warn`.
pub const IMPORT_LIMIT_ACTION_ANNOTATION: &str = "starling.io/import-limit-action";

/// BFD (RFC 5880) on a peer's sessions, from Starling annotations (Calico has no BFD field).
/// The interval is both our desired minimum TX and required minimum RX interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdSettings {
    pub interval: Duration,
    pub multiplier: u8,
}

/// Annotation enabling BFD with this interval (a Go duration such as `100ms`), on a BGPPeer or
/// on the `default` BGPConfiguration (for the node-to-node mesh).
pub const BFD_INTERVAL_ANNOTATION: &str = "starling/bfd-interval";
/// Annotation with the BFD detect multiplier (1–255, default 3).
pub const BFD_MULTIPLIER_ANNOTATION: &str = "starling/bfd-multiplier";
/// The detect multiplier without [`BFD_MULTIPLIER_ANNOTATION`].
pub const DEFAULT_BFD_MULTIPLIER: u8 = 3;

/// A validated BGPPeer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BgpPeer {
    pub name: String,
    pub scope: PeerScope,
    pub target: PeerTarget,
    pub as_number: Option<AsNumber>,
    pub local_as_number: Option<AsNumber>,
    pub password: Option<SecretKeyRef>,
    pub keepalive_time: Option<Duration>,
    pub max_restart_time: Option<Duration>,
    pub ttl_security: Option<u8>,
    /// `sourceAddress: UseNodeIP` (the default) vs `None`.
    pub source_use_node_ip: bool,
    pub next_hop_mode: NextHopMode,
    pub num_allowed_local_as_numbers: Option<u32>,
    /// `reversePeering: Manual` turns automatic reverse peering off.
    pub reverse_peering_manual: bool,
    pub reachable_by: Option<IpAddr>,
    pub filters: Vec<String>,
    /// From the Starling annotations ([`IMPORT_LIMIT_ANNOTATION`]); `None` is no limit.
    pub import_limit: Option<ImportLimit>,
    /// From [`BFD_INTERVAL_ANNOTATION`]; `None` is no BFD.
    pub bfd: Option<BfdSettings>,
}
