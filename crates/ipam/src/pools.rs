//! Pool selection (reference §4.2): which pools an allocation may draw from. Pure.
//!
//! Explicitly requested pools (by name or CIDR) must exist and be active and are used as-is,
//! ignoring node and namespace selectors and the assignment mode. Otherwise the candidates are the
//! active Automatic pools whose nodeSelector matches the node and whose namespaceSelector matches the
//! namespace. Either way the pool must allow the intended use; none left is an error.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use starling_model::{AllowedUse, AssignmentMode, CalicoNode, IpPool};

/// IP family of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of_net(net: &IpNet) -> IpFamily {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    pub fn of_address(address: &IpAddr) -> IpFamily {
        match address {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    pub fn version(self) -> u8 {
        match self {
            IpFamily::V4 => 4,
            IpFamily::V6 => 6,
        }
    }
}

/// A pool named in a request: its name or its CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolReference {
    Name(String),
    Cidr(IpNet),
}

impl PoolReference {
    /// A CIDR if it parses as one, otherwise a name.
    pub fn parse(text: &str) -> PoolReference {
        match text.trim().parse::<IpNet>() {
            Ok(cidr) => PoolReference::Cidr(cidr.trunc()),
            Err(_) => PoolReference::Name(text.trim().to_string()),
        }
    }

    pub fn matches(&self, pool: &IpPool) -> bool {
        match self {
            PoolReference::Name(name) => pool.name == *name,
            PoolReference::Cidr(cidr) => pool.cidr == *cidr,
        }
    }
}

impl std::fmt::Display for PoolReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolReference::Name(name) => f.write_str(name),
            PoolReference::Cidr(cidr) => write!(f, "{cidr}"),
        }
    }
}

/// Why no pool could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("requested IP pool {0} does not exist")]
    NotFound(String),
    #[error("requested IP pool {0} is disabled or being deleted")]
    Disabled(String),
    #[error("requested IP pool {pool} is an IPv{actual} pool, but IPv{wanted} was asked for")]
    WrongFamily {
        pool: String,
        actual: u8,
        wanted: u8,
    },
    #[error("no IPv{version} pool allows use {usage:?} for node {node}{}", namespace_note(.namespace))]
    NoneUsable {
        version: u8,
        usage: AllowedUse,
        node: String,
        namespace: Option<String>,
    },
}

fn namespace_note(namespace: &Option<String>) -> String {
    namespace
        .as_ref()
        .map(|n| format!(" and namespace {n}"))
        .unwrap_or_default()
}

/// The namespace a workload lives in, for namespaceSelector matching.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Chooses the pools of `family` for one allocation, in pool-name order.
pub fn select_pools(
    all_pools: &[IpPool],
    requested: &[PoolReference],
    family: IpFamily,
    node: &CalicoNode,
    namespace: Option<&NamespaceInfo>,
    usage: AllowedUse,
) -> Result<Vec<IpPool>, PoolError> {
    let mut sorted: Vec<&IpPool> = all_pools.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut chosen = Vec::new();
    if !requested.is_empty() {
        for reference in requested {
            let pool = sorted
                .iter()
                .find(|p| reference.matches(p))
                .ok_or_else(|| PoolError::NotFound(reference.to_string()))?;
            if !pool.is_active() {
                return Err(PoolError::Disabled(reference.to_string()));
            }
            let actual = IpFamily::of_net(&pool.cidr);
            if actual != family {
                return Err(PoolError::WrongFamily {
                    pool: reference.to_string(),
                    actual: actual.version(),
                    wanted: family.version(),
                });
            }
            if pool.allows(usage) && !chosen.iter().any(|c: &IpPool| c.name == pool.name) {
                chosen.push((*pool).clone());
            }
        }
    } else {
        chosen = sorted
            .into_iter()
            .filter(|p| p.is_active() && IpFamily::of_net(&p.cidr) == family)
            .filter(|p| p.assignment_mode == AssignmentMode::Automatic)
            .filter(|p| p.node_selector.matches(&node.labels))
            .filter(|p| match namespace {
                Some(ns) => p.namespace_selector.matches(&ns.labels),
                None => true,
            })
            .filter(|p| p.allows(usage))
            .cloned()
            .collect();
    }
    if chosen.is_empty() {
        return Err(PoolError::NoneUsable {
            version: family.version(),
            usage,
            node: node.name.clone(),
            namespace: namespace.map(|n| n.name.clone()),
        });
    }
    Ok(chosen)
}

/// The active pool containing `address`, if any (used for specific-address requests).
pub fn pool_containing(pools: &[IpPool], address: IpAddr) -> Option<&IpPool> {
    pools.iter().find(|p| p.is_active() && p.contains(address))
}

/// FNV-1 (not 1a) 32-bit hash; Calico seeds its block search order from it so each host starts
/// its search at a different place in the pool.
pub fn fnv1_32(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.as_bytes() {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(*byte);
    }
    hash
}
