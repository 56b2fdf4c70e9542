//! Pod allocation requests (reference §2.2, §4.2, §4.5): one pure function turns a pod's and its
//! namespace's annotations plus the CNI IPAM configuration into what to allocate.
//!
//! Precedence for pools: pod annotation > namespace annotation > CNI config > the pools'
//! nodeSelector (an empty pool list). `ipAddrs`, `ipAddrsNoIpam`, `floatingIPs` and `ipFamilies`
//! are read from the pod only. Every error names the annotation (or CNI field) and the problem.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::pools::{IpFamily, PoolReference};
use starling_model::IpPool;

pub const ANNOTATION_IPV4_POOLS: &str = "cni.projectcalico.org/ipv4pools";
pub const ANNOTATION_IPV6_POOLS: &str = "cni.projectcalico.org/ipv6pools";
pub const ANNOTATION_IP_ADDRS: &str = "cni.projectcalico.org/ipAddrs";
pub const ANNOTATION_IP_ADDRS_NO_IPAM: &str = "cni.projectcalico.org/ipAddrsNoIpam";
pub const ANNOTATION_FLOATING_IPS: &str = "cni.projectcalico.org/floatingIPs";
pub const ANNOTATION_IP_FAMILIES: &str = "cni.projectcalico.org/ipFamilies";

/// The handle of a pod's allocation: `<CNI network name>.<containerID>` (cut at a carriage return).
pub fn pod_handle_id(network_name: &str, container_id: &str) -> String {
    super::records::sanitize_handle(&format!("{network_name}.{container_id}")).to_string()
}

/// The attributes Calico's CNI plugin writes for a pod: node, namespace, pod and a Go-style
/// UTC timestamp (`2006-01-02 15:04:05.999999999 +0000 UTC`).
pub fn pod_attributes(
    node: &str,
    namespace: &str,
    pod: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<String, String> {
    use chrono::Timelike;
    let nanos = format!("{:09}", now.nanosecond() % 1_000_000_000);
    let fraction = nanos.trim_end_matches('0');
    let timestamp = if fraction.is_empty() {
        format!("{} +0000 UTC", now.format("%Y-%m-%d %H:%M:%S"))
    } else {
        format!("{}.{fraction} +0000 UTC", now.format("%Y-%m-%d %H:%M:%S"))
    };
    [
        (super::block::ATTRIBUTE_NODE, node),
        (super::block::ATTRIBUTE_NAMESPACE, namespace),
        (super::block::ATTRIBUTE_POD, pod),
        (super::block::ATTRIBUTE_TIMESTAMP, timestamp.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The IPAM part of the CNI network configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniIpamConfig {
    pub ipv4_pools: Vec<String>,
    pub ipv6_pools: Vec<String>,
    pub assign_ipv4: bool,
    pub assign_ipv6: bool,
    /// `feature_control.ip_addrs_no_ipam`.
    pub ip_addrs_no_ipam: bool,
    /// `feature_control.floating_ips`.
    pub floating_ips: bool,
}

impl Default for CniIpamConfig {
    fn default() -> Self {
        CniIpamConfig {
            ipv4_pools: Vec::new(),
            ipv6_pools: Vec::new(),
            assign_ipv4: true,
            assign_ipv6: false,
            ip_addrs_no_ipam: false,
            floating_ips: false,
        }
    }
}

/// Where a family's pool list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolSource {
    PodAnnotation,
    NamespaceAnnotation,
    CniConfig,
    /// No explicit list: pools are chosen by their nodeSelector/namespaceSelector.
    NodeSelector,
}

/// Automatic assignment of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRequest {
    /// Empty when `source` is `NodeSelector`.
    pub pools: Vec<PoolReference>,
    pub source: PoolSource,
}

/// What the CNI plugin must do for the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocationMode {
    Automatic {
        ipv4: Option<FamilyRequest>,
        ipv6: Option<FamilyRequest>,
    },
    /// `ipAddrs`: these exact addresses through IPAM.
    Specific(Vec<IpAddr>),
    /// `ipAddrsNoIpam`: these addresses, nothing written to IPAM.
    NoIpam(Vec<IpNet>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    pub mode: AllocationMode,
    /// `floatingIPs` (external addresses for DNAT/SNAT).
    pub floating_ips: Vec<IpAddr>,
}

/// A refused request: which annotation or CNI field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct RequestError {
    pub source_name: String,
    pub problem: String,
}

fn error(source_name: &str, problem: impl Into<String>) -> RequestError {
    RequestError {
        source_name: source_name.to_string(),
        problem: problem.into(),
    }
}

fn parse_list(annotation: &str, text: &str) -> Result<Vec<String>, RequestError> {
    serde_json::from_str::<Vec<String>>(text).map_err(|e| {
        error(
            annotation,
            format!("is not a JSON list of strings ({e}): {text:?}"),
        )
    })
}

fn parse_addresses(annotation: &str, text: &str) -> Result<Vec<IpAddr>, RequestError> {
    parse_list(annotation, text)?
        .iter()
        .map(|item| {
            item.trim()
                .parse::<IpAddr>()
                .map_err(|_| error(annotation, format!("{item:?} is not an IP address")))
        })
        .collect()
}

/// Checks that each named pool exists, is enabled and is of the family.
fn resolve_pools(
    source_name: &str,
    names: &[String],
    family: IpFamily,
    pools: &[IpPool],
) -> Result<Vec<PoolReference>, RequestError> {
    names
        .iter()
        .map(|name| {
            let reference = PoolReference::parse(name);
            let pool = pools
                .iter()
                .find(|p| reference.matches(p))
                .ok_or_else(|| error(source_name, format!("IP pool {name} does not exist")))?;
            if !pool.is_active() {
                return Err(error(
                    source_name,
                    format!("IP pool {name} is disabled or being deleted"),
                ));
            }
            if IpFamily::of_net(&pool.cidr) != family {
                return Err(error(
                    source_name,
                    format!("IP pool {name} is not an IPv{} pool", family.version()),
                ));
            }
            Ok(reference)
        })
        .collect()
}

fn family_request(
    family: IpFamily,
    pod: &BTreeMap<String, String>,
    namespace: &BTreeMap<String, String>,
    cni_pools: &[String],
    pools: &[IpPool],
) -> Result<FamilyRequest, RequestError> {
    let (annotation, cni_field) = match family {
        IpFamily::V4 => (ANNOTATION_IPV4_POOLS, "CNI config ipam.ipv4_pools"),
        IpFamily::V6 => (ANNOTATION_IPV6_POOLS, "CNI config ipam.ipv6_pools"),
    };
    let (names, source, source_name) = if let Some(text) = pod.get(annotation) {
        (
            parse_list(annotation, text)?,
            PoolSource::PodAnnotation,
            format!("pod annotation {annotation}"),
        )
    } else if let Some(text) = namespace.get(annotation) {
        (
            parse_list(annotation, text)?,
            PoolSource::NamespaceAnnotation,
            format!("namespace annotation {annotation}"),
        )
    } else if !cni_pools.is_empty() {
        (
            cni_pools.to_vec(),
            PoolSource::CniConfig,
            cni_field.to_string(),
        )
    } else {
        return Ok(FamilyRequest {
            pools: Vec::new(),
            source: PoolSource::NodeSelector,
        });
    };
    Ok(FamilyRequest {
        pools: resolve_pools(&source_name, &names, family, pools)?,
        source,
    })
}

/// The pools one family of an automatic request may use: the explicit list as-is, or the pools
/// selected by node and namespace when the request names none (§4.2).
pub fn pools_for(
    family_request: &FamilyRequest,
    family: IpFamily,
    all_pools: &[IpPool],
    node: &starling_model::CalicoNode,
    namespace: Option<&super::pools::NamespaceInfo>,
) -> Result<Vec<IpPool>, super::pools::PoolError> {
    super::pools::select_pools(
        all_pools,
        &family_request.pools,
        family,
        node,
        namespace,
        starling_model::AllowedUse::Workload,
    )
}

/// Pairs the pod's floating IPs with its assigned addresses (Calico's CNI plugin: each floating
/// IP NATs to the pod address of its family) once the addresses are known. Stricter than
/// Calico, which records whatever the annotation says: a floating IP of a family the pod has
/// no address of, or outside every IP pool (BGP exports only pool addresses, so it could never
/// be reached), is an error naming the annotation.
pub fn pair_floating_ips(
    floating_ips: &[IpAddr],
    assigned: &[IpAddr],
    pools: &[IpPool],
) -> Result<Vec<starling_model::IpNat>, RequestError> {
    let mut pairs = Vec::with_capacity(floating_ips.len());
    for external in floating_ips {
        let family = IpFamily::of_address(external);
        let Some(internal) = assigned
            .iter()
            .find(|address| IpFamily::of_address(address) == family)
        else {
            return Err(error(
                ANNOTATION_FLOATING_IPS,
                format!(
                    "{external} is an IPv{} address and the pod has none",
                    family.version()
                ),
            ));
        };
        if !pools.iter().any(|pool| pool.contains(*external)) {
            return Err(error(
                ANNOTATION_FLOATING_IPS,
                format!("{external} is outside every IP pool"),
            ));
        }
        if assigned.contains(external) {
            return Err(error(
                ANNOTATION_FLOATING_IPS,
                format!("{external} is the pod's own address"),
            ));
        }
        pairs.push(starling_model::IpNat {
            internal: *internal,
            external: *external,
        });
    }
    Ok(pairs)
}

/// Builds the allocation request for a pod.
pub fn allocation_request(
    pod_annotations: &BTreeMap<String, String>,
    namespace_annotations: &BTreeMap<String, String>,
    cni: &CniIpamConfig,
    pools: &[IpPool],
) -> Result<AllocationRequest, RequestError> {
    let floating_ips = match pod_annotations.get(ANNOTATION_FLOATING_IPS) {
        None => Vec::new(),
        Some(_) if !cni.floating_ips => {
            return Err(error(
                ANNOTATION_FLOATING_IPS,
                "floating IPs are disabled in the CNI config (feature_control.floating_ips)",
            ))
        }
        Some(text) => parse_addresses(ANNOTATION_FLOATING_IPS, text)?,
    };
    let ip_addrs = pod_annotations.get(ANNOTATION_IP_ADDRS);
    let no_ipam = pod_annotations.get(ANNOTATION_IP_ADDRS_NO_IPAM);
    let mode = match (ip_addrs, no_ipam) {
        (Some(_), Some(_)) => {
            return Err(error(
                ANNOTATION_IP_ADDRS,
                format!("cannot be used together with {ANNOTATION_IP_ADDRS_NO_IPAM}"),
            ))
        }
        (None, Some(text)) => {
            if !cni.ip_addrs_no_ipam {
                return Err(error(
                    ANNOTATION_IP_ADDRS_NO_IPAM,
                    "is disabled in the CNI config (feature_control.ip_addrs_no_ipam)",
                ));
            }
            let addresses = parse_addresses(ANNOTATION_IP_ADDRS_NO_IPAM, text)?;
            if addresses.is_empty() {
                return Err(error(ANNOTATION_IP_ADDRS_NO_IPAM, "lists no addresses"));
            }
            AllocationMode::NoIpam(addresses.into_iter().map(IpNet::from).collect())
        }
        (Some(text), None) => {
            let addresses = parse_addresses(ANNOTATION_IP_ADDRS, text)?;
            if addresses.is_empty() {
                return Err(error(ANNOTATION_IP_ADDRS, "lists no addresses"));
            }
            for family in [IpFamily::V4, IpFamily::V6] {
                if addresses
                    .iter()
                    .filter(|a| IpFamily::of_address(a) == family)
                    .count()
                    > 1
                {
                    return Err(error(
                        ANNOTATION_IP_ADDRS,
                        format!("lists more than one IPv{} address", family.version()),
                    ));
                }
            }
            for address in &addresses {
                match pools.iter().find(|p| p.contains(*address)) {
                    None => {
                        return Err(error(
                            ANNOTATION_IP_ADDRS,
                            format!("{address} is outside every IP pool"),
                        ))
                    }
                    Some(pool) if !pool.is_active() => {
                        return Err(error(
                            ANNOTATION_IP_ADDRS,
                            format!(
                                "{address} is in IP pool {} which is disabled or being deleted",
                                pool.name
                            ),
                        ))
                    }
                    Some(_) => {}
                }
            }
            AllocationMode::Specific(addresses)
        }
        (None, None) => {
            let (assign_v4, assign_v6) = match pod_annotations.get(ANNOTATION_IP_FAMILIES) {
                None => (cni.assign_ipv4, cni.assign_ipv6),
                Some(text) => {
                    let families = parse_list(ANNOTATION_IP_FAMILIES, text)?;
                    if families.is_empty() {
                        return Err(error(ANNOTATION_IP_FAMILIES, "lists no IP family"));
                    }
                    let mut wanted = (false, false);
                    for family in &families {
                        match family.as_str() {
                            "IPv4" => wanted.0 = true,
                            "IPv6" => wanted.1 = true,
                            other => {
                                return Err(error(
                                    ANNOTATION_IP_FAMILIES,
                                    format!("{other:?} is not IPv4 or IPv6"),
                                ))
                            }
                        }
                    }
                    wanted
                }
            };
            let ipv4 = assign_v4
                .then(|| {
                    family_request(
                        IpFamily::V4,
                        pod_annotations,
                        namespace_annotations,
                        &cni.ipv4_pools,
                        pools,
                    )
                })
                .transpose()?;
            let ipv6 = assign_v6
                .then(|| {
                    family_request(
                        IpFamily::V6,
                        pod_annotations,
                        namespace_annotations,
                        &cni.ipv6_pools,
                        pools,
                    )
                })
                .transpose()?;
            if ipv4.is_none() && ipv6.is_none() {
                return Err(error(
                    "CNI config ipam",
                    "neither assign_ipv4 nor assign_ipv6 is enabled",
                ));
            }
            AllocationMode::Automatic { ipv4, ipv6 }
        }
    };
    Ok(AllocationRequest { mode, floating_ips })
}
