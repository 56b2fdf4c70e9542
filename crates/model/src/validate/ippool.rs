//! IPPool rules (reference §1.1) and the overlap policy for pools that slipped past them.

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::{cidrs_overlap, Subject, ValidationError};
use crate::pool::{AllowedUse, AssignmentMode, EncapMode, IpPool};
use crate::wire::{IPPoolSpec, V3Object};

const KIND: &str = "IPPool";

const ENCAP_MODES: [(&str, EncapMode); 3] = [
    ("Never", EncapMode::Never),
    ("Always", EncapMode::Always),
    ("CrossSubnet", EncapMode::CrossSubnet),
];

impl IpPool {
    /// Validates an etcd (`projectcalico.org/v3`) IPPool.
    pub fn from_v3(pool: &V3Object<IPPoolSpec>) -> Result<IpPool, ValidationError> {
        validate_ip_pool(&pool.metadata.name, &pool.spec, false)
    }
}

/// Applies every §1.1 rule and the defaults to one pool spec.
pub fn validate_ip_pool(
    name: &str,
    spec: &IPPoolSpec,
    deleting: bool,
) -> Result<IpPool, ValidationError> {
    let subject = Subject { kind: KIND, name };
    let cidr = subject.masked_cidr("spec.cidr", &spec.cidr)?;
    let is_ipv4 = matches!(cidr, IpNet::V4(_));
    let (family, link_local) = if is_ipv4 {
        ("IPv4", "169.254.0.0/16")
    } else {
        ("IPv6", "fe80::/10")
    };
    let link_local: IpNet = link_local
        .parse()
        .map_err(|_| subject.error("spec.cidr", "internal error"))?;
    if cidrs_overlap(&cidr, &link_local) {
        return Err(subject.error(
            "spec.cidr",
            format!("{cidr} overlaps the link-local range {link_local}"),
        ));
    }

    let disabled = spec.disabled.unwrap_or(false);
    let (default_block, min_block, max_block) = if is_ipv4 {
        (26, 20, 32)
    } else {
        (122, 116, 128)
    };
    let block_size = match spec.block_size {
        None | Some(0) => default_block,
        Some(size) if size < min_block || size > max_block => {
            return Err(subject.error(
                "spec.blockSize",
                format!("{size} is out of range {min_block}..{max_block} for {family}"),
            ))
        }
        Some(size) => size as u8,
    };
    if cidr.prefix_len() > block_size && !disabled {
        return Err(subject.error(
            "spec.cidr",
            format!(
                "prefix /{} is longer than blockSize {block_size}: an enabled pool must hold at least one block",
                cidr.prefix_len()
            ),
        ));
    }

    let ipip_mode = ipip_mode(&subject, spec)?;
    let vxlan_mode = subject.choice(
        "spec.vxlanMode",
        spec.vxlan_mode.as_deref(),
        &ENCAP_MODES,
        EncapMode::Never,
    )?;
    if !is_ipv4 && ipip_mode.is_enabled() {
        return Err(subject.error(
            "spec.ipipMode",
            format!("{ipip_mode:?} is not allowed on an IPv6 pool (IPIP carries IPv4 only)"),
        ));
    }
    if ipip_mode.is_enabled() && vxlan_mode.is_enabled() {
        return Err(subject.error(
            "spec.vxlanMode",
            format!("{vxlan_mode:?} conflicts with spec.ipipMode {ipip_mode:?}: a pool uses IPIP or VXLAN, not both"),
        ));
    }

    let explicit_uses = allowed_uses(&subject, spec)?;
    let node_selector_text = spec.node_selector.as_deref().unwrap_or("").trim();
    let node_selector = subject.selector("spec.nodeSelector", Some(node_selector_text))?;
    if node_selector.contains_global() {
        return Err(subject.error("spec.nodeSelector", "must not use global()"));
    }
    let namespace_selector_text = spec.namespace_selector.as_deref().unwrap_or("").trim();
    let namespace_selector =
        subject.selector("spec.namespaceSelector", Some(namespace_selector_text))?;
    if namespace_selector.contains_global() {
        return Err(subject.error("spec.namespaceSelector", "must not use global()"));
    }
    // Like Calico's CEL rule, this looks at the allowedUses written, not the defaulted set.
    if !namespace_selector_text.is_empty() && explicit_uses.contains(&AllowedUse::Tunnel) {
        return Err(subject.error(
            "spec.namespaceSelector",
            "must be empty when spec.allowedUses includes Tunnel",
        ));
    }

    let allowed_uses = if explicit_uses.is_empty() {
        IpPool::default_allowed_uses()
    } else {
        explicit_uses
    };
    let disable_bgp_export = spec.disable_bgp_export.unwrap_or(false);
    if allowed_uses.contains(&AllowedUse::LoadBalancer) {
        if allowed_uses.len() > 1 {
            return Err(subject.error(
                "spec.allowedUses",
                "LoadBalancer cannot be combined with Workload or Tunnel",
            ));
        }
        if ipip_mode.is_enabled() {
            return Err(subject.error("spec.ipipMode", "must be Never for a LoadBalancer pool"));
        }
        if vxlan_mode.is_enabled() {
            return Err(subject.error("spec.vxlanMode", "must be Never for a LoadBalancer pool"));
        }
        if !(node_selector_text.is_empty() || node_selector_text == "all()") {
            return Err(subject.error("spec.nodeSelector", "must be all() for a LoadBalancer pool"));
        }
        if disable_bgp_export {
            return Err(subject.error(
                "spec.disableBGPExport",
                "must be false for a LoadBalancer pool",
            ));
        }
    }

    let assignment_mode = subject.choice(
        "spec.assignmentMode",
        spec.assignment_mode.as_deref(),
        &[
            ("Automatic", AssignmentMode::Automatic),
            ("Manual", AssignmentMode::Manual),
        ],
        AssignmentMode::Automatic,
    )?;

    Ok(IpPool {
        name: name.to_string(),
        cidr,
        block_size,
        ipip_mode,
        vxlan_mode,
        nat_outgoing: spec.nat_outgoing.unwrap_or(false)
            || spec.nat_outgoing_legacy.unwrap_or(false),
        disabled,
        disable_bgp_export,
        node_selector,
        namespace_selector,
        allowed_uses,
        assignment_mode,
        deleting,
    })
}

/// `ipipMode`, falling back to the legacy `ipip {enabled, mode}` when the modern field is unset.
fn ipip_mode(subject: &Subject<'_>, spec: &IPPoolSpec) -> Result<EncapMode, ValidationError> {
    let modern = spec.ipip_mode.as_deref().filter(|mode| !mode.is_empty());
    if modern.is_some() {
        return subject.choice("spec.ipipMode", modern, &ENCAP_MODES, EncapMode::Never);
    }
    let Some(legacy) = &spec.ipip else {
        return Ok(EncapMode::Never);
    };
    if !legacy.enabled.unwrap_or(false) {
        return Ok(EncapMode::Never);
    }
    subject.choice(
        "spec.ipip.mode",
        legacy.mode.as_deref(),
        &[
            ("always", EncapMode::Always),
            ("cross-subnet", EncapMode::CrossSubnet),
        ],
        EncapMode::Always,
    )
}

fn allowed_uses(
    subject: &Subject<'_>,
    spec: &IPPoolSpec,
) -> Result<BTreeSet<AllowedUse>, ValidationError> {
    let mut uses = BTreeSet::new();
    for (index, text) in spec.allowed_uses.iter().flatten().enumerate() {
        let field = format!("spec.allowedUses[{index}]");
        if text.is_empty() {
            return Err(subject.error(
                field,
                "is empty (expected Workload, Tunnel or LoadBalancer)",
            ));
        }
        let usage = subject.choice(
            &field,
            Some(text.as_str()),
            &[
                ("Workload", AllowedUse::Workload),
                ("Tunnel", AllowedUse::Tunnel),
                ("LoadBalancer", AllowedUse::LoadBalancer),
            ],
            AllowedUse::Workload,
        )?;
        uses.insert(usage);
    }
    Ok(uses)
}

/// Two pools whose CIDRs overlap; `ignored` loses to `kept` under [`resolve_overlaps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOverlap {
    pub kept: String,
    pub ignored: String,
}

/// Every overlapping pair, each reported once, in name order.
pub fn find_overlaps(pools: &[IpPool]) -> Vec<(String, String)> {
    let mut sorted: Vec<&IpPool> = pools.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut pairs = Vec::new();
    for (index, first) in sorted.iter().enumerate() {
        for second in &sorted[index + 1..] {
            if cidrs_overlap(&first.cidr, &second.cidr) {
                pairs.push((first.name.clone(), second.name.clone()));
            }
        }
    }
    pairs
}

/// Picks a usable set of pools when some overlap (Calico refuses overlapping pools when they
/// are created through its client, but `kubectl apply` bypasses that check).
///
/// Rule: pools are taken in order of name (byte order); a pool that overlaps one already taken
/// is ignored. The name is the one key every node sees identically, so every node ignores the
/// same pool whatever order the datastore delivered them in. Returns the kept pools (in name
/// order) and one [`PoolOverlap`] per ignored pool, naming the kept pool it lost to.
pub fn resolve_overlaps(pools: &[IpPool]) -> (Vec<IpPool>, Vec<PoolOverlap>) {
    let mut sorted: Vec<&IpPool> = pools.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut kept: Vec<IpPool> = Vec::new();
    let mut overlaps = Vec::new();
    for pool in sorted {
        match kept
            .iter()
            .find(|existing| cidrs_overlap(&existing.cidr, &pool.cidr))
        {
            Some(winner) => overlaps.push(PoolOverlap {
                kept: winner.name.clone(),
                ignored: pool.name.clone(),
            }),
            None => kept.push(pool.clone()),
        }
    }
    (kept, overlaps)
}
