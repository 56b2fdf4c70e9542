//! BGPConfiguration (reference §1.7) and BGPPeer (§1.8) rules.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use super::{Subject, ValidationError};
use crate::bgp::{
    BgpConfig, BgpConfigLayer, BgpPeer, NextHopMode, NodeScopedFields, PeerScope, PeerTarget,
    PrefixAdvertisement, ProgramClusterRoutes, SecretKeyRef,
};
use crate::wire::bgpconfig::{BgpPassword, ServiceCidr};
use crate::wire::{BGPConfigurationSpec, BGPPeerSpec};
use crate::AsNumber;

const CONFIG_KIND: &str = "BGPConfiguration";
const PEER_KIND: &str = "BGPPeer";

const PROGRAM_CLUSTER_ROUTES: [(&str, Option<ProgramClusterRoutes>); 4] = [
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
];

impl BgpConfig {
    /// The configuration a node uses: `default` with the fields confd honours per node
    /// (listenPort, logSeverityScreen, communities, prefixAdvertisements) taken from
    /// `node.<name>` when it sets them. Both layers are validated objects.
    pub fn effective(global: Option<&BgpConfigLayer>, node: Option<&BgpConfigLayer>) -> BgpConfig {
        let mut merged = global.map(|layer| layer.config.clone()).unwrap_or_default();
        if let Some(node) = node {
            let sets = &node.node_fields;
            if sets.listen_port {
                merged.listen_port = node.config.listen_port;
            }
            if sets.log_severity_screen {
                merged.log_severity_screen = node.config.log_severity_screen.clone();
            }
            if sets.communities {
                merged.communities = node.config.communities.clone();
            }
            if sets.prefix_advertisements {
                merged.prefix_advertisements = node.config.prefix_advertisements.clone();
            }
        }
        merged
    }
}

/// Validates one BGPConfiguration object into a layer for [`BgpConfig::effective`].
pub fn validate_bgp_configuration_layer(
    name: &str,
    spec: &BGPConfigurationSpec,
) -> Result<BgpConfigLayer, ValidationError> {
    Ok(BgpConfigLayer {
        config: validate_bgp_configuration(name, spec)?,
        node_fields: NodeScopedFields {
            listen_port: spec.listen_port.is_some(),
            log_severity_screen: spec.log_severity_screen.is_some(),
            communities: spec.communities.is_some(),
            prefix_advertisements: spec.prefix_advertisements.is_some(),
        },
    })
}

fn secret_ref(
    subject: &Subject<'_>,
    field: &str,
    password: &Option<BgpPassword>,
) -> Result<Option<SecretKeyRef>, ValidationError> {
    let Some(reference) = password.as_ref().and_then(|p| p.secret_key_ref.as_ref()) else {
        return Ok(None);
    };
    let name = reference.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(subject.error(format!("{field}.secretKeyRef.name"), "is required"));
    }
    if reference.key.is_empty() {
        return Err(subject.error(format!("{field}.secretKeyRef.key"), "is required"));
    }
    Ok(Some(SecretKeyRef {
        name,
        key: reference.key.clone(),
        optional: reference.optional.unwrap_or(false),
    }))
}

/// `aa:nn` (two 16-bit parts) or `aa:nn:mm` (three 32-bit parts, RFC 8092).
pub fn is_community_value(text: &str) -> bool {
    let parts: Vec<&str> = text.split(':').collect();
    let all_digits = parts
        .iter()
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    all_digits
        && match parts.len() {
            2 => parts.iter().all(|part| part.parse::<u16>().is_ok()),
            3 => parts.iter().all(|part| part.parse::<u32>().is_ok()),
            _ => false,
        }
}

fn service_cidrs(
    subject: &Subject<'_>,
    field: &str,
    list: &Option<Vec<ServiceCidr>>,
) -> Result<Vec<IpNet>, ValidationError> {
    list.iter()
        .flatten()
        .enumerate()
        .map(|(index, item)| subject.lenient_cidr(&format!("{field}[{index}].cidr"), &item.cidr))
        .collect()
}

/// Applies the §1.7 rules and defaults.
pub fn validate_bgp_configuration(
    name: &str,
    spec: &BGPConfigurationSpec,
) -> Result<BgpConfig, ValidationError> {
    let subject = Subject {
        kind: CONFIG_KIND,
        name,
    };
    let defaults = BgpConfig::default();

    let log_severity_screen = match spec.log_severity_screen.as_deref().unwrap_or("") {
        "" => defaults.log_severity_screen.clone(),
        text => ["Trace", "Debug", "Info", "Warning", "Error", "Fatal"]
            .into_iter()
            .find(|level| level.eq_ignore_ascii_case(text))
            .map(str::to_string)
            .ok_or_else(|| {
                subject.error(
                    "spec.logSeverityScreen",
                    format!("{text:?} is not one of Trace, Debug, Info, Warning, Error, Fatal"),
                )
            })?,
    };
    let node_to_node_mesh_enabled = spec.node_to_node_mesh_enabled.unwrap_or(true);
    let listen_port = match spec.listen_port {
        Some(port) => subject.int_in("spec.listenPort", port, 1, 65535)?,
        None => defaults.listen_port,
    };
    let node_mesh_password =
        secret_ref(&subject, "spec.nodeMeshPassword", &spec.node_mesh_password)?;
    if node_mesh_password.is_some() && !node_to_node_mesh_enabled {
        return Err(subject.error(
            "spec.nodeMeshPassword",
            "cannot be set when nodeToNodeMeshEnabled is false",
        ));
    }
    let node_mesh_max_restart_time = subject.duration(
        "spec.nodeMeshMaxRestartTime",
        spec.node_mesh_max_restart_time.as_deref(),
    )?;
    if node_mesh_max_restart_time.is_some() && !node_to_node_mesh_enabled {
        return Err(subject.error(
            "spec.nodeMeshMaxRestartTime",
            "cannot be set when nodeToNodeMeshEnabled is false",
        ));
    }
    let bind_to_node_ip = subject.choice(
        "spec.bindMode",
        spec.bind_mode.as_deref(),
        &[("None", false), ("NodeIP", true)],
        false,
    )?;

    let mut communities = Vec::new();
    let mut community_names = BTreeSet::new();
    for (index, community) in spec.communities.iter().flatten().enumerate() {
        let field = format!("spec.communities[{index}]");
        let name = community.name.clone().unwrap_or_default();
        if name.is_empty() || name.len() > 253 {
            return Err(subject.error(format!("{field}.name"), "must be 1 to 253 characters"));
        }
        if !community_names.insert(name.clone()) {
            return Err(subject.error(
                format!("{field}.name"),
                format!("{name:?} is defined twice"),
            ));
        }
        let value = community.value.clone().unwrap_or_default();
        if !is_community_value(&value) {
            return Err(subject.error(
                format!("{field}.value"),
                format!("{value:?} is not a community (aa:nn or aa:nn:mm)"),
            ));
        }
        communities.push((name, value));
    }

    let mut prefix_advertisements = Vec::new();
    for (index, advertisement) in spec.prefix_advertisements.iter().flatten().enumerate() {
        let field = format!("spec.prefixAdvertisements[{index}]");
        let cidr_text = advertisement.cidr.as_deref().unwrap_or("");
        let cidr = subject.lenient_cidr(&format!("{field}.cidr"), cidr_text)?;
        let mut used = Vec::new();
        for (position, community) in advertisement.communities.iter().flatten().enumerate() {
            if !community_names.contains(community) && !is_community_value(community) {
                return Err(subject.error(
                    format!("{field}.communities[{position}]"),
                    format!("{community:?} is neither a community value (aa:nn or aa:nn:mm) nor a name defined in spec.communities"),
                ));
            }
            used.push(community.clone());
        }
        prefix_advertisements.push(PrefixAdvertisement {
            cidr,
            communities: used,
        });
    }

    let service_load_balancer_aggregation = subject.choice(
        "spec.serviceLoadBalancerAggregation",
        spec.service_load_balancer_aggregation.as_deref(),
        &[("Enabled", true), ("Disabled", false)],
        true,
    )?;
    let local_workload_peering_ipv4 = spec
        .local_workload_peering_ipv4
        .as_deref()
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<Ipv4Addr>().map_err(|_| {
                subject.error(
                    "spec.localWorkloadPeeringIPV4",
                    format!("{text:?} is not an IPv4 address"),
                )
            })
        })
        .transpose()?;
    let local_workload_peering_ipv6 = spec
        .local_workload_peering_ipv6
        .as_deref()
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse::<Ipv6Addr>().map_err(|_| {
                subject.error(
                    "spec.localWorkloadPeeringIPV6",
                    format!("{text:?} is not an IPv6 address"),
                )
            })
        })
        .transpose()?;
    let program_cluster_routes = subject.choice(
        "spec.programClusterRoutes",
        spec.program_cluster_routes.as_deref(),
        &PROGRAM_CLUSTER_ROUTES,
        None,
    )?;
    let priority = |field: &str, value: Option<i64>, default: u32| match value {
        Some(value) => subject.int_in(field, value, 1, 2_147_483_646),
        None => Ok(default),
    };

    Ok(BgpConfig {
        node_to_node_mesh_enabled,
        as_number: spec.as_number.unwrap_or(defaults.as_number),
        listen_port,
        bind_to_node_ip,
        node_mesh_password,
        node_mesh_max_restart_time,
        communities,
        prefix_advertisements,
        service_cluster_ips: service_cidrs(
            &subject,
            "spec.serviceClusterIPs",
            &spec.service_cluster_ips,
        )?,
        service_external_ips: service_cidrs(
            &subject,
            "spec.serviceExternalIPs",
            &spec.service_external_ips,
        )?,
        service_load_balancer_ips: service_cidrs(
            &subject,
            "spec.serviceLoadBalancerIPs",
            &spec.service_load_balancer_ips,
        )?,
        service_load_balancer_aggregation,
        log_severity_screen,
        ignored_interfaces: spec.ignored_interfaces.clone().unwrap_or_default(),
        local_workload_peering_ipv4,
        local_workload_peering_ipv6,
        program_cluster_routes,
        ipv4_normal_route_priority: priority(
            "spec.ipv4NormalRoutePriority",
            spec.ipv4_normal_route_priority,
            defaults.ipv4_normal_route_priority,
        )?,
        ipv6_normal_route_priority: priority(
            "spec.ipv6NormalRoutePriority",
            spec.ipv6_normal_route_priority,
            defaults.ipv6_normal_route_priority,
        )?,
        node_mesh_bfd: None,
    })
}

/// Parses `IP`, `IPv4:port` or `[IPv6]:port`.
pub fn parse_peer_address(text: &str) -> Option<(IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    let socket: SocketAddr = text.parse().ok()?;
    (socket.port() != 0).then_some((socket.ip(), Some(socket.port())))
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// Applies the §1.8 rules.
pub fn validate_bgp_peer(name: &str, spec: &BGPPeerSpec) -> Result<BgpPeer, ValidationError> {
    let subject = Subject {
        kind: PEER_KIND,
        name,
    };
    let scope = match (non_empty(&spec.node), non_empty(&spec.node_selector)) {
        (Some(_), Some(_)) => {
            return Err(subject.error("spec.nodeSelector", "cannot be set together with spec.node"))
        }
        (Some(node), None) => PeerScope::Node(node.to_string()),
        (None, Some(selector)) => {
            PeerScope::NodeSelector(subject.selector("spec.nodeSelector", Some(selector))?)
        }
        (None, None) => PeerScope::Global,
    };

    let peer_ip = non_empty(&spec.peer_ip);
    let peer_selector = non_empty(&spec.peer_selector);
    let local_workload_selector = non_empty(&spec.local_workload_selector);
    let as_number = spec.as_number.filter(|asn| asn.0 != 0);
    let target = if let Some(selector) = local_workload_selector {
        if peer_ip.is_some() {
            return Err(subject.error(
                "spec.peerIP",
                "must be empty when spec.localWorkloadSelector is set",
            ));
        }
        if peer_selector.is_some() {
            return Err(subject.error(
                "spec.peerSelector",
                "must be empty when spec.localWorkloadSelector is set",
            ));
        }
        if as_number.is_none() {
            return Err(subject.error(
                "spec.asNumber",
                "is required when spec.localWorkloadSelector is set",
            ));
        }
        PeerTarget::LocalWorkloads(subject.selector("spec.localWorkloadSelector", Some(selector))?)
    } else {
        match (peer_ip, peer_selector) {
            (Some(_), Some(_)) => {
                return Err(subject.error(
                    "spec.peerSelector",
                    "cannot be set together with spec.peerIP",
                ))
            }
            (None, None) => {
                return Err(subject.error(
                    "spec.peerIP",
                    "is required (or spec.peerSelector, or spec.localWorkloadSelector)",
                ))
            }
            (Some(text), None) => {
                let (ip, port) = parse_peer_address(text).ok_or_else(|| {
                    subject.error(
                        "spec.peerIP",
                        format!("{text:?} is not an IP, IPv4:port or [IPv6]:port"),
                    )
                })?;
                PeerTarget::Address { ip, port }
            }
            (None, Some(selector)) => {
                if as_number.is_some() {
                    return Err(subject.error(
                        "spec.asNumber",
                        "must be empty when spec.peerSelector is set (the selected nodes' AS is used)",
                    ));
                }
                PeerTarget::Nodes(subject.selector("spec.peerSelector", Some(selector))?)
            }
        }
    };

    let reachable_by = match non_empty(&spec.reachable_by) {
        None => None,
        Some(text) => {
            if peer_ip.is_none() {
                return Err(subject.error("spec.reachableBy", "requires spec.peerIP"));
            }
            Some(text.parse::<IpAddr>().map_err(|_| {
                subject.error("spec.reachableBy", format!("{text:?} is not an IP address"))
            })?)
        }
    };

    let keep_original = spec.keep_original_next_hop.unwrap_or(false);
    let next_hop_text = non_empty(&spec.next_hop_mode);
    if keep_original && next_hop_text.is_some() {
        return Err(subject.error(
            "spec.nextHopMode",
            "cannot be set together with spec.keepOriginalNextHop",
        ));
    }
    let next_hop_mode = if keep_original {
        NextHopMode::Keep
    } else {
        subject.choice(
            "spec.nextHopMode",
            next_hop_text,
            &[
                ("Auto", NextHopMode::Auto),
                ("Self", NextHopMode::SelfAddress),
                ("Keep", NextHopMode::Keep),
            ],
            NextHopMode::Auto,
        )?
    };
    let source_use_node_ip = subject.choice(
        "spec.sourceAddress",
        spec.source_address.as_deref(),
        &[("UseNodeIP", true), ("None", false)],
        true,
    )?;
    let reverse_peering_manual = subject.choice(
        "spec.reversePeering",
        spec.reverse_peering.as_deref(),
        &[("Auto", false), ("Manual", true)],
        false,
    )?;
    let ttl_security = spec
        .ttl_security
        .map(|ttl| subject.int_in::<u8>("spec.ttlSecurity", ttl, 0, 255))
        .transpose()?;
    let num_allowed_local_as_numbers = spec
        .num_allowed_local_as_numbers
        .map(|count| {
            subject.int_in::<u32>(
                "spec.numAllowedLocalASNumbers",
                count,
                0,
                i64::from(i32::MAX),
            )
        })
        .transpose()?;
    let filters = spec.filters.clone().unwrap_or_default();
    if let Some(index) = filters.iter().position(|filter| filter.trim().is_empty()) {
        return Err(subject.error(format!("spec.filters[{index}]"), "is empty"));
    }

    Ok(BgpPeer {
        name: name.to_string(),
        scope,
        target,
        as_number,
        local_as_number: spec.local_as_number.filter(|asn: &AsNumber| asn.0 != 0),
        password: secret_ref(&subject, "spec.password", &spec.password)?,
        keepalive_time: subject.duration("spec.keepaliveTime", spec.keepalive_time.as_deref())?,
        max_restart_time: subject
            .duration("spec.maxRestartTime", spec.max_restart_time.as_deref())?,
        ttl_security,
        source_use_node_ip,
        next_hop_mode,
        num_allowed_local_as_numbers,
        reverse_peering_manual,
        reachable_by,
        filters,
        import_limit: None,
        bfd: None,
    })
}

/// The import limit a BGPPeer's annotations ask for (none without the limit annotation).
pub fn import_limit_from_annotations(
    name: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Option<crate::bgp::ImportLimit>, ValidationError> {
    use crate::bgp::{
        ImportLimit, LimitAction, IMPORT_LIMIT_ACTION_ANNOTATION, IMPORT_LIMIT_ANNOTATION,
    };
    let error = |annotation: &str, reason: String| ValidationError {
        kind: "BGPPeer",
        name: name.to_string(),
        field: format!("metadata.annotations[{annotation}]"),
        reason,
    };
    let Some(text) = annotations.get(IMPORT_LIMIT_ANNOTATION) else {
        if annotations.contains_key(IMPORT_LIMIT_ACTION_ANNOTATION) {
            return Err(error(
                IMPORT_LIMIT_ACTION_ANNOTATION,
                format!("has no effect without {IMPORT_LIMIT_ANNOTATION}"),
            ));
        }
        return Ok(None);
    };
    let limit: u32 = text
        .trim()
        .parse()
        .ok()
        .filter(|limit| *limit > 0)
        .ok_or_else(|| {
            error(
                IMPORT_LIMIT_ANNOTATION,
                format!("{text:?} is not a positive prefix count"),
            )
        })?;
    let action = match annotations
        .get(IMPORT_LIMIT_ACTION_ANNOTATION)
        .map(|a| a.trim())
    {
        None | Some("disable") => LimitAction::Disable,
        Some("restart") => LimitAction::Restart,
        Some("block") => LimitAction::Block,
        Some("warn") => LimitAction::Warn,
        Some(other) => {
            return Err(error(
                IMPORT_LIMIT_ACTION_ANNOTATION,
                format!("{other:?} is not one of disable, restart, block, warn"),
            ))
        }
    };
    Ok(Some(ImportLimit { limit, action }))
}

/// The BFD settings an object's annotations ask for (none without the interval annotation).
/// `kind`/`name` name the object in the error.
pub fn bfd_from_annotations(
    kind: &'static str,
    name: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Result<Option<crate::bgp::BfdSettings>, ValidationError> {
    use crate::bgp::{
        BfdSettings, BFD_INTERVAL_ANNOTATION, BFD_MULTIPLIER_ANNOTATION, DEFAULT_BFD_MULTIPLIER,
    };
    let error = |annotation: &str, reason: String| ValidationError {
        kind,
        name: name.to_string(),
        field: format!("metadata.annotations[{annotation}]"),
        reason,
    };
    let Some(text) = annotations.get(BFD_INTERVAL_ANNOTATION) else {
        if annotations.contains_key(BFD_MULTIPLIER_ANNOTATION) {
            return Err(error(
                BFD_MULTIPLIER_ANNOTATION,
                format!("has no effect without {BFD_INTERVAL_ANNOTATION}"),
            ));
        }
        return Ok(None);
    };
    let interval = crate::duration::parse_go_duration(text.trim())
        .map_err(|e| error(BFD_INTERVAL_ANNOTATION, format!("{text:?}: {e}")))?;
    // The wire carries microseconds in 32 bits; below 1 ms no implementation keeps up.
    let range = std::time::Duration::from_millis(1)..=std::time::Duration::from_secs(60);
    if !range.contains(&interval) {
        return Err(error(
            BFD_INTERVAL_ANNOTATION,
            format!("{text:?} is outside 1ms..60s"),
        ));
    }
    let multiplier = match annotations.get(BFD_MULTIPLIER_ANNOTATION) {
        None => DEFAULT_BFD_MULTIPLIER,
        Some(text) => text
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| {
                error(
                    BFD_MULTIPLIER_ANNOTATION,
                    format!("{text:?} is not a detect multiplier in 1..255"),
                )
            })?,
    };
    Ok(Some(BfdSettings {
        interval,
        multiplier,
    }))
}
