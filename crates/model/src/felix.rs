//! The FelixConfiguration subset Starling acts on (reference §1.10, §5.6, §7.1, §7.3), with
//! Felix's defaults, and the precedence of its sources.
//!
//! Precedence (high to low): `FELIX_*` environment ([`FelixOverrides`]) > per-node
//! FelixConfiguration `node.<name>` > global FelixConfiguration `default` > built-in default.
//! `crate::validate::felix` applies resource layers; [`FelixConfig::apply_overrides`]
//! applies the environment last.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use super::bgp::{ProgramClusterRoutes, DEFAULT_NORMAL_ROUTE_PRIORITY};

/// `routeSource`: where workload routes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteSource {
    #[default]
    CalicoIpam,
    WorkloadIps,
}

/// `natOutgoingExclusions`: which destinations skip masquerade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatOutgoingExclusions {
    #[default]
    IpPoolsOnly,
    IpPoolsAndHostIps,
}

/// Felix's interface pattern for host MTU detection.
pub const DEFAULT_MTU_IFACE_PATTERN: &str = "^((en|wl|ww|sl|ib)[Pcopsvx].*|(eth|wlan|wwan).*)";

/// Declares [`FelixConfig`] (every setting with Felix's default) and [`FelixLayer`] (the same
/// settings, each optional: what one FelixConfiguration object sets) from one list, so the two
/// cannot drift apart.
macro_rules! felix_settings {
    ($($(#[$doc:meta])* $field:ident: $type:ty = $default:expr,)*) => {
        /// The effective Felix settings Starling uses. MTUs of 0 mean "derive from the host MTU".
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct FelixConfig {
            $($(#[$doc])* pub $field: $type,)*
        }

        impl Default for FelixConfig {
            fn default() -> Self {
                FelixConfig { $($field: $default,)* }
            }
        }

        /// The settings one validated FelixConfiguration object sets (`None`: not set there).
        /// Felix layers per setting: a later layer replaces a setting wholesale.
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct FelixLayer {
            $($(#[$doc])* pub $field: Option<$type>,)*
        }

        impl FelixConfig {
            /// Lays the settings `layer` sets over these.
            pub fn apply_layer(&mut self, layer: &FelixLayer) {
                $(if let Some(value) = &layer.$field {
                    self.$field = value.clone();
                })*
            }
        }
    };
}

felix_settings! {
    /// `None`: enabled iff an IPIP pool exists.
    ipip_enabled: Option<bool> = None,
    ipip_mtu: u32 = 0,
    /// `None`: enabled iff an IPv4 VXLAN pool exists.
    vxlan_enabled: Option<bool> = None,
    vxlan_mtu: u32 = 0,
    vxlan_mtu_v6: u32 = 0,
    vxlan_port: u16 = 4789,
    vxlan_vni: u32 = 4096,
    wireguard_mtu: u32 = 0,
    wireguard_mtu_v6: u32 = 0,
    mtu_iface_pattern: String = DEFAULT_MTU_IFACE_PATTERN.to_string(),
    require_mtu_file: bool = false,
    allow_ipip_packets_from_workloads: bool = false,
    allow_vxlan_packets_from_workloads: bool = false,
    device_route_protocol: u8 = 3,
    device_route_source_address: Option<Ipv4Addr> = None,
    device_route_source_address_ipv6: Option<Ipv6Addr> = None,
    remove_external_routes: bool = true,
    /// `None`: unset (default depends on the Calico version, reference §0).
    program_cluster_routes: Option<ProgramClusterRoutes> = None,
    route_refresh_interval: Duration = Duration::from_secs(90),
    route_source: RouteSource = RouteSource::CalicoIpam,
    route_table_ranges: Vec<(u32, u32)> = Vec::new(),
    route_sync_disabled: bool = false,
    ipv4_normal_route_priority: u32 = DEFAULT_NORMAL_ROUTE_PRIORITY,
    ipv6_normal_route_priority: u32 = DEFAULT_NORMAL_ROUTE_PRIORITY,
    ipv4_elevated_route_priority: u32 = 512,
    ipv6_elevated_route_priority: u32 = 512,
    ip_forwarding: bool = true,
    ipv6_support: bool = true,
    /// Workload interface prefixes; the first names new veths.
    interface_prefixes: Vec<String> = vec!["cali".to_string()],
    interface_exclude: Vec<String> = vec!["kube-ipvs0".to_string()],
    /// Inclusive source port range for masquerade.
    nat_port_range: Option<(u16, u16)> = None,
    nat_outgoing_address: Option<Ipv4Addr> = None,
    nat_outgoing_exclusions: NatOutgoingExclusions = NatOutgoingExclusions::IpPoolsOnly,
    nat_outgoing_interface_filter: Option<String> = None,
    external_nodes: Vec<IpNet> = Vec::new(),
    floating_ips: bool = false,
    health_enabled: bool = false,
    health_host: String = "localhost".to_string(),
    health_port: u16 = 9099,
    health_timeout_overrides: BTreeMap<String, Duration> = BTreeMap::new(),
    prometheus_metrics_enabled: bool = false,
    /// Empty: all addresses.
    prometheus_metrics_host: String = String::new(),
    prometheus_metrics_port: u16 = 9091,
    prometheus_go_metrics_enabled: bool = true,
    prometheus_process_metrics_enabled: bool = true,
    reporting_interval: Duration = Duration::from_secs(30),
    log_severity_screen: String = "Info".to_string(),
    bpf_enabled: bool = false,
}

/// `FELIX_*` environment settings, already validated; `None` = not set (the resources decide).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FelixOverrides {
    pub health_enabled: Option<bool>,
    pub health_host: Option<String>,
    pub health_port: Option<u16>,
    pub prometheus_metrics_enabled: Option<bool>,
    pub prometheus_metrics_host: Option<String>,
    pub prometheus_metrics_port: Option<u16>,
    pub ipip_mtu: Option<u32>,
    pub vxlan_mtu: Option<u32>,
    pub vxlan_mtu_v6: Option<u32>,
    pub vxlan_port: Option<u16>,
    pub vxlan_vni: Option<u32>,
    pub ipv6_support: Option<bool>,
    pub interface_prefixes: Option<Vec<String>>,
    pub route_refresh_interval: Option<Duration>,
}

impl FelixConfig {
    /// Applies the environment layer, which beats every resource.
    pub fn apply_overrides(&mut self, overrides: &FelixOverrides) {
        fn set<T: Clone>(target: &mut T, value: &Option<T>) {
            if let Some(value) = value {
                *target = value.clone();
            }
        }
        set(&mut self.health_enabled, &overrides.health_enabled);
        set(&mut self.health_host, &overrides.health_host);
        set(&mut self.health_port, &overrides.health_port);
        set(
            &mut self.prometheus_metrics_enabled,
            &overrides.prometheus_metrics_enabled,
        );
        set(
            &mut self.prometheus_metrics_host,
            &overrides.prometheus_metrics_host,
        );
        set(
            &mut self.prometheus_metrics_port,
            &overrides.prometheus_metrics_port,
        );
        set(&mut self.ipip_mtu, &overrides.ipip_mtu);
        set(&mut self.vxlan_mtu, &overrides.vxlan_mtu);
        set(&mut self.vxlan_mtu_v6, &overrides.vxlan_mtu_v6);
        set(&mut self.vxlan_port, &overrides.vxlan_port);
        set(&mut self.vxlan_vni, &overrides.vxlan_vni);
        set(&mut self.ipv6_support, &overrides.ipv6_support);
        set(&mut self.interface_prefixes, &overrides.interface_prefixes);
        set(
            &mut self.route_refresh_interval,
            &overrides.route_refresh_interval,
        );
    }
}
