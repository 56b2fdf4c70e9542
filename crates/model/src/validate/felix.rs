//! FelixConfiguration subset (reference §1.10): each field an object sets is checked and becomes
//! one setting of its [`FelixLayer`]; [`FelixConfig::resolve`] lays the layers over the defaults
//! in precedence order (see `crate::felix`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Subject, ValidationError};
use crate::bgp::ProgramClusterRoutes;
use crate::felix::{FelixConfig, FelixLayer, FelixOverrides, NatOutgoingExclusions, RouteSource};
use crate::wire::FelixConfigurationSpec;

const ENABLED_DISABLED: [(&str, bool); 2] = [("Enabled", true), ("Disabled", false)];

impl FelixConfig {
    /// The effective configuration: defaults, then `default`, then `node.<name>`, then the
    /// environment. Layers are validated objects, so this cannot fail.
    pub fn resolve(
        global: Option<&FelixLayer>,
        node: Option<&FelixLayer>,
        overrides: &FelixOverrides,
    ) -> FelixConfig {
        let mut felix = FelixConfig::default();
        for layer in [global, node].into_iter().flatten() {
            felix.apply_layer(layer);
        }
        felix.apply_overrides(overrides);
        felix
    }
}

fn address<T: std::str::FromStr>(
    subject: &Subject<'_>,
    field: &str,
    value: Option<&str>,
    family: &str,
) -> Result<Option<T>, ValidationError> {
    value
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<T>()
                .map_err(|_| subject.error(field, format!("{text:?} is not an {family} address")))
        })
        .transpose()
}

/// Checks every field one FelixConfiguration sets and returns them as a layer.
pub fn validate_felix_configuration(
    name: &str,
    spec: &FelixConfigurationSpec,
) -> Result<FelixLayer, ValidationError> {
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
    let mut layer = FelixLayer {
        ipip_enabled: spec.ipip_enabled.map(Some),
        vxlan_enabled: spec.vxlan_enabled.map(Some),
        ipip_mtu: mtu("spec.ipipMTU", spec.ipip_mtu)?,
        vxlan_mtu: mtu("spec.vxlanMTU", spec.vxlan_mtu)?,
        vxlan_mtu_v6: mtu("spec.vxlanMTUV6", spec.vxlan_mtu_v6)?,
        wireguard_mtu: mtu("spec.wireguardMTU", spec.wireguard_mtu)?,
        wireguard_mtu_v6: mtu("spec.wireguardMTUV6", spec.wireguard_mtu_v6)?,
        vxlan_port: port("spec.vxlanPort", spec.vxlan_port)?,
        vxlan_vni: spec
            .vxlan_vni
            .map(|vni| subject.int_in("spec.vxlanVNI", vni, 1, 16_777_215))
            .transpose()?,
        mtu_iface_pattern: spec
            .mtu_iface_pattern
            .as_ref()
            .map(|pattern| match regex::Regex::new(pattern) {
                Ok(_) => Ok(pattern.clone()),
                Err(error) => Err(subject.error(
                    "spec.mtuIfacePattern",
                    format!("{pattern:?} is not a regular expression: {error}"),
                )),
            })
            .transpose()?,
        require_mtu_file: spec.require_mtu_file,
        allow_ipip_packets_from_workloads: spec.allow_ipip_packets_from_workloads,
        allow_vxlan_packets_from_workloads: spec.allow_vxlan_packets_from_workloads,
        device_route_protocol: spec
            .device_route_protocol
            .map(|protocol| subject.int_in("spec.deviceRouteProtocol", protocol, 0, 255))
            .transpose()?,
        device_route_source_address: address::<Ipv4Addr>(
            &subject,
            "spec.deviceRouteSourceAddress",
            spec.device_route_source_address.as_deref(),
            "IPv4",
        )?
        .map(Some),
        device_route_source_address_ipv6: address::<Ipv6Addr>(
            &subject,
            "spec.deviceRouteSourceAddressIPv6",
            spec.device_route_source_address_ipv6.as_deref(),
            "IPv6",
        )?
        .map(Some),
        remove_external_routes: spec.remove_external_routes,
        program_cluster_routes: subject
            .optional_choice(
                "spec.programClusterRoutes",
                spec.program_cluster_routes.as_deref(),
                &[
                    ("Enabled", ProgramClusterRoutes::Enabled),
                    ("Disabled", ProgramClusterRoutes::Disabled),
                    ("EnabledIPIPOnly", ProgramClusterRoutes::EnabledIpipOnly),
                    (
                        "EnabledNoEncapOnly",
                        ProgramClusterRoutes::EnabledNoEncapOnly,
                    ),
                ],
            )?
            .map(Some),
        route_refresh_interval: subject.duration(
            "spec.routeRefreshInterval",
            spec.route_refresh_interval.as_deref(),
        )?,
        route_source: subject.optional_choice(
            "spec.routeSource",
            spec.route_source.as_deref(),
            &[
                ("CalicoIPAM", RouteSource::CalicoIpam),
                ("WorkloadIPs", RouteSource::WorkloadIps),
            ],
        )?,
        route_sync_disabled: spec.route_sync_disabled,
        ipv4_normal_route_priority: priority(
            "spec.ipv4NormalRoutePriority",
            spec.ipv4_normal_route_priority,
        )?,
        ipv6_normal_route_priority: priority(
            "spec.ipv6NormalRoutePriority",
            spec.ipv6_normal_route_priority,
        )?,
        ipv4_elevated_route_priority: priority(
            "spec.ipv4ElevatedRoutePriority",
            spec.ipv4_elevated_route_priority,
        )?,
        ipv6_elevated_route_priority: priority(
            "spec.ipv6ElevatedRoutePriority",
            spec.ipv6_elevated_route_priority,
        )?,
        ip_forwarding: subject.optional_choice(
            "spec.ipForwarding",
            spec.ip_forwarding.as_deref(),
            &ENABLED_DISABLED,
        )?,
        ipv6_support: spec.ipv6_support,
        interface_exclude: spec.interface_exclude.as_deref().map(split_list),
        nat_port_range: spec
            .nat_port_range
            .as_ref()
            .map(|range| port_range(&subject, range).map(Some))
            .transpose()?,
        nat_outgoing_address: address::<Ipv4Addr>(
            &subject,
            "spec.natOutgoingAddress",
            spec.nat_outgoing_address.as_deref(),
            "IPv4",
        )?
        .map(Some),
        nat_outgoing_exclusions: subject.optional_choice(
            "spec.natOutgoingExclusions",
            spec.nat_outgoing_exclusions.as_deref(),
            &[
                ("IPPoolsOnly", NatOutgoingExclusions::IpPoolsOnly),
                (
                    "IPPoolsAndHostIPs",
                    NatOutgoingExclusions::IpPoolsAndHostIps,
                ),
            ],
        )?,
        nat_outgoing_interface_filter: spec
            .iptables_nat_outgoing_interface_filter
            .as_deref()
            .map(|filter| Some(filter.to_string()).filter(|f| !f.is_empty())),
        floating_ips: subject.optional_choice(
            "spec.floatingIPs",
            spec.floating_ips.as_deref(),
            &ENABLED_DISABLED,
        )?,
        health_enabled: spec.health_enabled,
        health_host: spec.health_host.clone(),
        health_port: port("spec.healthPort", spec.health_port)?,
        prometheus_metrics_enabled: spec.prometheus_metrics_enabled,
        prometheus_metrics_host: spec.prometheus_metrics_host.clone(),
        prometheus_metrics_port: port("spec.prometheusMetricsPort", spec.prometheus_metrics_port)?,
        prometheus_go_metrics_enabled: spec.prometheus_go_metrics_enabled,
        prometheus_process_metrics_enabled: spec.prometheus_process_metrics_enabled,
        reporting_interval: subject
            .duration("spec.reportingInterval", spec.reporting_interval.as_deref())?,
        log_severity_screen: spec
            .log_severity_screen
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        bpf_enabled: spec.bpf_enabled,
        ..FelixLayer::default()
    };

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
        let mut table_ranges = Vec::new();
        for (field, min, max) in ranges {
            let low: u32 = subject.int_in(&format!("{field}.min"), min, 1, 0xffff_ffff)?;
            let high: u32 = subject.int_in(&format!("{field}.max"), max, 1, 0xffff_ffff)?;
            if low > high {
                return Err(subject.error(field, format!("min {low} is greater than max {high}")));
            }
            table_ranges.push((low, high));
        }
        layer.route_table_ranges = Some(table_ranges);
    }
    if let Some(prefixes) = &spec.interface_prefix {
        let list = split_list(prefixes);
        if list.is_empty() {
            return Err(subject.error("spec.interfacePrefix", "names no prefix"));
        }
        layer.interface_prefixes = Some(list);
    }
    if let Some(nodes) = &spec.external_nodes_list {
        layer.external_nodes = Some(
            nodes
                .iter()
                .enumerate()
                .map(|(index, text)| {
                    let field = format!("spec.externalNodesList[{index}]");
                    match text.trim().parse::<std::net::IpAddr>() {
                        Ok(ip) => Ok(ipnet::IpNet::from(ip)),
                        Err(_) => subject.lenient_cidr(&field, text),
                    }
                })
                .collect::<Result<_, _>>()?,
        );
    }
    if let Some(items) = &spec.health_timeout_overrides {
        let mut overrides = std::collections::BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            let field = format!("spec.healthTimeoutOverrides[{index}]");
            if item.name.is_empty() {
                return Err(subject.error(format!("{field}.name"), "is empty"));
            }
            let timeout = subject
                .duration(&format!("{field}.timeout"), Some(&item.timeout))?
                .unwrap_or_default();
            overrides.insert(item.name.clone(), timeout);
        }
        layer.health_timeout_overrides = Some(overrides);
    }
    Ok(layer)
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
