//! Domain forms of the other IPAM objects: block affinities, handles, the IPAM configuration and
//! IP reservations (reference §1.3–1.6). Their wire encodings live in the edge crate's datastore.

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

/// Lifecycle of a block affinity (§1.3, §4.3 step 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AffinityState {
    Pending,
    Confirmed,
    PendingDeletion,
}

impl AffinityState {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityState::Pending => "pending",
            AffinityState::Confirmed => "confirmed",
            AffinityState::PendingDeletion => "pendingDeletion",
        }
    }

    /// Empty means confirmed (old data); anything unknown is refused.
    pub fn parse(text: &str) -> Result<AffinityState, String> {
        match text {
            "" | "confirmed" => Ok(AffinityState::Confirmed),
            "pending" => Ok(AffinityState::Pending),
            "pendingDeletion" => Ok(AffinityState::PendingDeletion),
            other => Err(format!(
                "affinity state {other:?} is not pending, confirmed or pendingDeletion"
            )),
        }
    }
}

/// Whom a block is affine to: a node (`host`) or a virtual owner such as `load-balancer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum AffinityType {
    #[default]
    Host,
    Virtual,
}

impl AffinityType {
    pub fn as_str(self) -> &'static str {
        match self {
            AffinityType::Host => "host",
            AffinityType::Virtual => "virtual",
        }
    }
}

/// Identity of a block affinity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AffinityKey {
    pub host: String,
    pub affinity_type: AffinityType,
    pub cidr: IpNet,
}

impl fmt::Display for AffinityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "affinity {}:{} for block {}",
            self.affinity_type.as_str(),
            self.host,
            self.cidr
        )
    }
}

/// A BlockAffinity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub key: AffinityKey,
    pub state: AffinityState,
    pub deleted: bool,
}

impl Affinity {
    pub fn new(host: &str, cidr: IpNet, state: AffinityState) -> Affinity {
        Affinity {
            key: AffinityKey {
                host: host.to_string(),
                affinity_type: AffinityType::Host,
                cidr,
            },
            state,
            deleted: false,
        }
    }

    /// The value a block's `affinity` field holds for this affinity (`host:<node>`).
    pub fn block_affinity_string(&self) -> String {
        format!("{}:{}", self.key.affinity_type.as_str(), self.key.host)
    }
}

/// An IPAMHandle: how many addresses of each block belong to the handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    pub id: String,
    /// Block CIDR (Calico's string form) → address count.
    pub blocks: BTreeMap<String, u64>,
    pub deleted: bool,
}

impl Handle {
    pub fn new(id: &str) -> Handle {
        Handle {
            id: id.to_string(),
            blocks: BTreeMap::new(),
            deleted: false,
        }
    }

    pub fn total(&self) -> u64 {
        self.blocks.values().sum()
    }
}

/// Cuts a handle at the first carriage return, as Calico does (§4.1).
pub fn sanitize_handle(handle_id: &str) -> &str {
    handle_id.split('\r').next().unwrap_or(handle_id)
}

/// The effective IPAM configuration (§1.5). `Default` is what Calico uses when no object exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpamConfig {
    pub strict_affinity: bool,
    pub auto_allocate_blocks: bool,
    /// 0 = no configured limit (the allocator then applies its safeguard of 20).
    pub max_blocks_per_host: u32,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

/// The singleton key of the IPAM configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IpamConfigKey;

/// An IPReservation (§1.6).
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub name: String,
    pub reserved_cidrs: Vec<IpNet>,
    /// Metadata read from the stored object, kept so a rewrite does not lose it.
    pub metadata: Option<serde_json::Value>,
}
