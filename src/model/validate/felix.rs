//! FelixConfiguration subset (reference §1.10): each set field is checked and laid over the
//! lower-precedence layers (see `crate::model::felix`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Subject, ValidationError};
use crate::model::bgp::ProgramClusterRoutes;
use crate::model::felix::{FelixConfig, FelixOverrides, NatOutgoingExclusions, RouteSource};
use crate::resources::{FelixConfiguration, FelixConfigurationSpec};

impl FelixConfig {
    /// One FelixConfiguration over the built-in defaults.
    pub fn from_resource(config: &FelixConfiguration) -> Result<FelixConfig, ValidationError> {
        let mut felix = FelixConfig::default();
        apply_felix_configuration(&mut felix, config)?;
        Ok(felix)
    }

    /// The effective configuration: defaults, then `default`, then `node.<name>`, then the
    /// environment. A layer that fails validation is reported and nothing is returned.
    pub fn resolve(
        global: Option<&FelixConfiguration>,
        node: Option<&FelixConfiguration>,
        overrides: &FelixOverrides,
    ) -> Result<FelixConfig, ValidationError> {
        let mut felix = FelixConfig::default();
        for layer in [global, node].into_iter().flatten() {
            apply_felix_configuration(&mut felix, layer)?;
        }
        felix.apply_overrides(overrides);
        Ok(felix)
    }
}

/// Lays the fields `config` sets over `felix`.
pub fn apply_felix_configuration(
    felix: &mut FelixConfig,
    config: &FelixConfiguration,
) -> Result<(), ValidationError> {
    let name = config.metadata.name.as_deref().unwrap_or("");
    apply_felix_spec(felix, name, &config.spec)
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

/// As [`apply_felix_configuration`], for a bare spec.
pub fn apply_felix_spec(
    felix: &mut FelixConfig,
    name: &str,
    spec: &FelixConfigurationSpec,
) -> Result<(), ValidationError> {
    let subject = Subject {
        kind: "FelixConfiguration",
        name,
    };
    let mtu = |field: &str, value: Option<i64>| -> Result<Option<u32>, ValidationError> {
        value
            .map(|v| subject.int_in(field, v, 0, 65535))
            .transpose()
    };
    let port = |field: &str, value: Option<i64>| -> Result<Option<u16>, ValidationError> {
        value
            .map(|v| subject.int_in(field, v, 1, 65535))
            .transpose()
    };
    let priority = |field: &str, value: Option<i64>| -> Result<Option<u32>, ValidationError> {
        value
            .map(|v| subject.int_in(field, v, 1, 2_147_483_646))
            .transpose()
    };

    if spec.ipip_enabled.is_some() {
        felix.ipip_enabled = spec.ipip_enabled;
    }
    if spec.vxlan_enabled.is_some() {
        felix.vxlan_enabled = spec.vxlan_enabled;
    }
    set(&mut felix.ipip_mtu, mtu("spec.ipipMTU", spec.ipip_mtu)?);
    set(&mut felix.vxlan_mtu, mtu("spec.vxlanMTU", spec.vxlan_mtu)?);
    set(
        &mut felix.vxlan_mtu_v6,
        mtu("spec.vxlanMTUV6", spec.vxlan_mtu_v6)?,
    );
    set(
        &mut felix.wireguard_mtu,
        mtu("spec.wireguardMTU", spec.wireguard_mtu)?,
    );
    set(
        &mut felix.wireguard_mtu_v6,
        mtu("spec.wireguardMTUV6", spec.wireguard_mtu_v6)?,
    );
    set(
        &mut felix.vxlan_port,
        port("spec.vxlanPort", spec.vxlan_port)?,
    );
    set(
        &mut felix.vxlan_vni,
        spec.vxlan_vni
            .map(|vni| subject.int_in("spec.vxlanVNI", vni, 1, 16_777_215))
            .transpose()?,
    );
    set(&mut felix.mtu_iface_pattern, spec.mtu_iface_pattern.clone());
    set(&mut felix.require_mtu_file, spec.require_mtu_file);
    set(
        &mut felix.allow_ipip_packets_from_workloads,
        spec.allow_ipip_packets_from_workloads,
    );
    set(
        &mut felix.allow_vxlan_packets_from_workloads,
        spec.allow_vxlan_packets_from_workloads,
    );
    set(
        &mut felix.device_route_protocol,
        spec.device_route_protocol
            .map(|protocol| subject.int_in("spec.deviceRouteProtocol", protocol, 0, 255))
            .transpose()?,
    );
    if let Some(text) = spec
        .device_route_source_address
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        felix.device_route_source_address = Some(text.parse::<Ipv4Addr>().map_err(|_| {
            subject.error(
                "spec.deviceRouteSourceAddress",
                format!("{text:?} is not an IPv4 address"),
            )
        })?);
    }
    if let Some(text) = spec
        .device_route_source_address_ipv6
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        felix.device_route_source_address_ipv6 = Some(text.parse::<Ipv6Addr>().map_err(|_| {
            subject.error(
                "spec.deviceRouteSourceAddressIPv6",
                format!("{text:?} is not an IPv6 address"),
            )
        })?);
    }
    set(
        &mut felix.remove_external_routes,
        spec.remove_external_routes,
    );
    if spec
        .program_cluster_routes
        .as_deref()
        .is_some_and(|t| !t.is_empty())
    {
        felix.program_cluster_routes = subject.choice(
            "spec.programClusterRoutes",
            spec.program_cluster_routes.as_deref(),
            &[
                ("Enabled", Some(ProgramClusterRoutes::Enabled)),
                ("Disabled", Some(ProgramClusterRoutes::Disabled)),
                (
                    "EnabledIPIPOnly",
                    Some(ProgramClusterRoutes::EnabledIpipOnly),
                ),
                (
                    "EnabledNoEncapOnly",
                    Some(ProgramClusterRoutes::EnabledNoEncapOnly),
                ),
            ],
            None,
        )?;
    }
    set(
        &mut felix.route_refresh_interval,
        subject.duration(
            "spec.routeRefreshInterval",
            spec.route_refresh_interval.as_deref(),
        )?,
    );
    if spec.route_source.is_some() {
        felix.route_source = subject.choice(
            "spec.routeSource",
            spec.route_source.as_deref(),
            &[
                ("CalicoIPAM", RouteSource::CalicoIpam),
                ("WorkloadIPs", RouteSource::WorkloadIps),
            ],
            felix.route_source,
        )?;
    }
    let mut ranges = Vec::new();
    if let Some(range) = &spec.route_table_range {
        ranges.push(("spec.routeTableRange".to_string(), range.min, range.max));
    }
    for (index, range) in spec.route_table_ranges.iter().flatten().enumerate() {
        ranges.push((
            format!("spec.routeTableRanges[{index}]"),
            range.min,
            range.max,
        ));
    }
    if !ranges.is_empty() {
        felix.route_table_ranges = Vec::new();
        for (field, min, max) in ranges {
            let low: u32 = subject.int_in(&format!("{field}.min"), min, 1, 0xffff_ffff)?;
            let high: u32 = subject.int_in(&format!("{field}.max"), max, 1, 0xffff_ffff)?;
            if low > high {
                return Err(subject.error(field, format!("min {low} is greater than max {high}")));
            }
            felix.route_table_ranges.push((low, high));
        }
    }
    set(&mut felix.route_sync_disabled, spec.route_sync_disabled);
    set(
        &mut felix.ipv4_normal_route_priority,
        priority(
            "spec.ipv4NormalRoutePriority",
            spec.ipv4_normal_route_priority,
        )?,
    );
    set(
        &mut felix.ipv6_normal_route_priority,
        priority(
            "spec.ipv6NormalRoutePriority",
            spec.ipv6_normal_route_priority,
        )?,
    );
    set(
        &mut felix.ipv4_elevated_route_priority,
        priority(
            "spec.ipv4ElevatedRoutePriority",
            spec.ipv4_elevated_route_priority,
        )?,
    );
    set(
        &mut felix.ipv6_elevated_route_priority,
        priority(
            "spec.ipv6ElevatedRoutePriority",
            spec.ipv6_elevated_route_priority,
        )?,
    );
    if spec.ip_forwarding.is_some() {
        felix.ip_forwarding = subject.choice(
            "spec.ipForwarding",
            spec.ip_forwarding.as_deref(),
            &[("Enabled", true), ("Disabled", false)],
            felix.ip_forwarding,
        )?;
    }
    set(&mut felix.ipv6_support, spec.ipv6_support);
    if let Some(prefixes) = &spec.interface_prefix {
        let list = split_list(prefixes);
        if list.is_empty() {
            return Err(subject.error("spec.interfacePrefix", "names no prefix"));
        }
        felix.interface_prefixes = list;
    }
    if let Some(excludes) = &spec.interface_exclude {
        felix.interface_exclude = split_list(excludes);
    }
    if let Some(range) = &spec.nat_port_range {
        felix.nat_port_range = Some(port_range(&subject, range)?);
    }
    if let Some(text) = spec
        .nat_outgoing_address
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        felix.nat_outgoing_address = Some(text.parse::<Ipv4Addr>().map_err(|_| {
            subject.error(
                "spec.natOutgoingAddress",
                format!("{text:?} is not an IPv4 address"),
            )
        })?);
    }
    if spec.nat_outgoing_exclusions.is_some() {
        felix.nat_outgoing_exclusions = subject.choice(
            "spec.natOutgoingExclusions",
            spec.nat_outgoing_exclusions.as_deref(),
            &[
                ("IPPoolsOnly", NatOutgoingExclusions::IpPoolsOnly),
                (
                    "IPPoolsAndHostIPs",
                    NatOutgoingExclusions::IpPoolsAndHostIps,
                ),
            ],
            felix.nat_outgoing_exclusions,
        )?;
    }
    if let Some(filter) = spec.iptables_nat_outgoing_interface_filter.as_deref() {
        felix.nat_outgoing_interface_filter = Some(filter.to_string()).filter(|f| !f.is_empty());
    }
    if let Some(nodes) = &spec.external_nodes_list {
        felix.external_nodes = nodes
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let field = format!("spec.externalNodesList[{index}]");
                match text.trim().parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(ipnet::IpNet::from(ip)),
                    Err(_) => subject.lenient_cidr(&field, text),
                }
            })
            .collect::<Result<_, _>>()?;
    }
    if spec.floating_ips.is_some() {
        felix.floating_ips = subject.choice(
            "spec.floatingIPs",
            spec.floating_ips.as_deref(),
            &[("Enabled", true), ("Disabled", false)],
            felix.floating_ips,
        )?;
    }
    set(&mut felix.health_enabled, spec.health_enabled);
    set(&mut felix.health_host, spec.health_host.clone());
    set(
        &mut felix.health_port,
        port("spec.healthPort", spec.health_port)?,
    );
    for (index, item) in spec.health_timeout_overrides.iter().flatten().enumerate() {
        let field = format!("spec.healthTimeoutOverrides[{index}]");
        if item.name.is_empty() {
            return Err(subject.error(format!("{field}.name"), "is empty"));
        }
        let timeout = subject
            .duration(&format!("{field}.timeout"), Some(&item.timeout))?
            .unwrap_or_default();
        felix
            .health_timeout_overrides
            .insert(item.name.clone(), timeout);
    }
    set(
        &mut felix.prometheus_metrics_enabled,
        spec.prometheus_metrics_enabled,
    );
    set(
        &mut felix.prometheus_metrics_host,
        spec.prometheus_metrics_host.clone(),
    );
    set(
        &mut felix.prometheus_metrics_port,
        port("spec.prometheusMetricsPort", spec.prometheus_metrics_port)?,
    );
    set(
        &mut felix.prometheus_go_metrics_enabled,
        spec.prometheus_go_metrics_enabled,
    );
    set(
        &mut felix.prometheus_process_metrics_enabled,
        spec.prometheus_process_metrics_enabled,
    );
    set(
        &mut felix.reporting_interval,
        subject.duration("spec.reportingInterval", spec.reporting_interval.as_deref())?,
    );
    if let Some(level) = spec
        .log_severity_screen
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        felix.log_severity_screen = level.to_string();
    }
    set(&mut felix.bpf_enabled, spec.bpf_enabled);
    Ok(())
}

/// A comma-separated list, trimmed, empty items dropped.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

/// `natPortRange`: a port number or `lo:hi` (inclusive).
fn port_range(
    subject: &Subject<'_>,
    value: &serde_json::Value,
) -> Result<(u16, u16), ValidationError> {
    let field = "spec.natPortRange";
    let bad = || {
        subject.error(
            field,
            format!("{value} is not a port or a lo:hi port range"),
        )
    };
    let parse = |text: &str| text.trim().parse::<u16>().map_err(|_| bad());
    let (low, high) = match value {
        serde_json::Value::Number(number) => {
            let port = number
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(bad)?;
            (port, port)
        }
        serde_json::Value::String(text) => match text.split_once(':') {
            Some((low, high)) => (parse(low)?, parse(high)?),
            None => {
                let port = parse(text)?;
                (port, port)
            }
        },
        _ => return Err(bad()),
    };
    if low > high {
        return Err(bad());
    }
    Ok((low, high))
}
