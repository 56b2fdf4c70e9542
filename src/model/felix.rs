//! The FelixConfiguration subset Starling acts on (reference §1.10, §5.6, §7.1, §7.3), with
//! Felix's defaults, and the precedence of its sources.
//!
//! Precedence (high to low): `FELIX_*` environment ([`FelixOverrides`]) > per-node
//! FelixConfiguration `node.<name>` > global FelixConfiguration `default` > built-in default.
//! `crate::model::validate::felix` applies resource layers; [`FelixConfig::apply_overrides`]
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

/// The effective Felix settings Starling uses. MTUs of 0 mean "derive from the host MTU".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FelixConfig {
    /// `None`: enabled iff an IPIP pool exists.
    pub ipip_enabled: Option<bool>,
    pub ipip_mtu: u32,
    /// `None`: enabled iff an IPv4 VXLAN pool exists.
    pub vxlan_enabled: Option<bool>,
    pub vxlan_mtu: u32,
    pub vxlan_mtu_v6: u32,
    pub vxlan_port: u16,
    pub vxlan_vni: u32,
    pub wireguard_mtu: u32,
    pub wireguard_mtu_v6: u32,
    pub mtu_iface_pattern: String,
    pub require_mtu_file: bool,
    pub allow_ipip_packets_from_workloads: bool,
    pub allow_vxlan_packets_from_workloads: bool,
    pub device_route_protocol: u8,
    pub device_route_source_address: Option<Ipv4Addr>,
    pub device_route_source_address_ipv6: Option<Ipv6Addr>,
    pub remove_external_routes: bool,
    /// `None`: unset (default depends on the Calico version, reference §0).
    pub program_cluster_routes: Option<ProgramClusterRoutes>,
    pub route_refresh_interval: Duration,
    pub route_source: RouteSource,
    pub route_table_ranges: Vec<(u32, u32)>,
    pub route_sync_disabled: bool,
    pub ipv4_normal_route_priority: u32,
    pub ipv6_normal_route_priority: u32,
    pub ipv4_elevated_route_priority: u32,
    pub ipv6_elevated_route_priority: u32,
    pub ip_forwarding: bool,
    pub ipv6_support: bool,
    /// Workload interface prefixes; the first names new veths.
    pub interface_prefixes: Vec<String>,
    pub interface_exclude: Vec<String>,
    /// Inclusive source port range for masquerade.
    pub nat_port_range: Option<(u16, u16)>,
    pub nat_outgoing_address: Option<Ipv4Addr>,
    pub nat_outgoing_exclusions: NatOutgoingExclusions,
    pub nat_outgoing_interface_filter: Option<String>,
    pub external_nodes: Vec<IpNet>,
    pub floating_ips: bool,
    pub health_enabled: bool,
    pub health_host: String,
    pub health_port: u16,
    pub health_timeout_overrides: BTreeMap<String, Duration>,
    pub prometheus_metrics_enabled: bool,
    /// Empty: all addresses.
    pub prometheus_metrics_host: String,
    pub prometheus_metrics_port: u16,
    pub prometheus_go_metrics_enabled: bool,
    pub prometheus_process_metrics_enabled: bool,
    pub reporting_interval: Duration,
    pub log_severity_screen: String,
    pub bpf_enabled: bool,
}

impl Default for FelixConfig {
    fn default() -> Self {
        FelixConfig {
            ipip_enabled: None,
            ipip_mtu: 0,
            vxlan_enabled: None,
            vxlan_mtu: 0,
            vxlan_mtu_v6: 0,
            vxlan_port: 4789,
            vxlan_vni: 4096,
            wireguard_mtu: 0,
            wireguard_mtu_v6: 0,
            mtu_iface_pattern: DEFAULT_MTU_IFACE_PATTERN.to_string(),
            require_mtu_file: false,
            allow_ipip_packets_from_workloads: false,
            allow_vxlan_packets_from_workloads: false,
            device_route_protocol: 3,
            device_route_source_address: None,
            device_route_source_address_ipv6: None,
            remove_external_routes: true,
            program_cluster_routes: None,
            route_refresh_interval: Duration::from_secs(90),
            route_source: RouteSource::CalicoIpam,
            route_table_ranges: Vec::new(),
            route_sync_disabled: false,
            ipv4_normal_route_priority: DEFAULT_NORMAL_ROUTE_PRIORITY,
            ipv6_normal_route_priority: DEFAULT_NORMAL_ROUTE_PRIORITY,
            ipv4_elevated_route_priority: 512,
            ipv6_elevated_route_priority: 512,
            ip_forwarding: true,
            ipv6_support: true,
            interface_prefixes: vec!["cali".to_string()],
            interface_exclude: vec!["kube-ipvs0".to_string()],
            nat_port_range: None,
            nat_outgoing_address: None,
            nat_outgoing_exclusions: NatOutgoingExclusions::IpPoolsOnly,
            nat_outgoing_interface_filter: None,
            external_nodes: Vec::new(),
            floating_ips: false,
            health_enabled: false,
            health_host: "localhost".to_string(),
            health_port: 9099,
            health_timeout_overrides: BTreeMap::new(),
            prometheus_metrics_enabled: false,
            prometheus_metrics_host: String::new(),
            prometheus_metrics_port: 9091,
            prometheus_go_metrics_enabled: true,
            prometheus_process_metrics_enabled: true,
            reporting_interval: Duration::from_secs(30),
            log_severity_screen: "Info".to_string(),
            bpf_enabled: false,
        }
    }
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
