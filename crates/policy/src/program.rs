//! The compiled policy of one node: what each local endpoint's traffic goes through, per
//! direction, and the selector sets those rules match against. Produced by the compiler, read
//! by the renderer; both sides treat these types as the contract.
//!
//! Semantics (reference policy.md §2.5, §3.4): for one endpoint and direction, tiers run in
//! order; inside a tier its policies in order, each policy's rules in order, the first rule with
//! a terminal action (Allow, Deny, Pass) decides for the tier: Allow ends evaluation with accept
//! (the other endpoint's program still applies), Deny drops, Pass leaves the tier. A tier whose
//! policies all missed ends with its default action (Deny unless Pass). After the tiers, the
//! profiles' rules in order; when no profile rule allows, the packet is dropped. A direction with
//! no tiers and no profiles drops everything (fail closed); Kubernetes pods always have their
//! namespace profile `kns.<ns>`, which allows.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Traffic into the endpoint (to the workload) or out of it (from the workload).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    Ingress,
    Egress,
}

/// IP family of a set, a rule or a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: &IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub fn of_net(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Action {
    Allow,
    Deny,
    /// Skip the rest of this tier (Calico's `Pass`, backend `next-tier`).
    Pass,
    /// Log and go on to the next rule.
    Log,
}

/// The kind of a policy, as Felix names it in policy IDs (`np`, `gnp`, `knp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PolicyKind {
    /// `projectcalico.org/v3` NetworkPolicy (namespaced).
    NetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    GlobalNetworkPolicy,
    /// `networking.k8s.io/v1` NetworkPolicy, converted.
    KubernetesNetworkPolicy,
}

impl PolicyKind {
    pub fn short(self) -> &'static str {
        match self {
            PolicyKind::NetworkPolicy => "np",
            PolicyKind::GlobalNetworkPolicy => "gnp",
            PolicyKind::KubernetesNetworkPolicy => "knp",
        }
    }
}

/// One policy: kind, namespace (none for global ones) and name. Orders as Felix's ID
/// `<kind>/<namespace>/<name>` would.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PolicyId {
    pub kind: PolicyKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for PolicyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{}/{}", self.kind.short(), namespace, self.name),
            None => write!(f, "{}/{}", self.kind.short(), self.name),
        }
    }
}

/// A set of addresses a rule matches against, named by what it stands for. Its members are
/// maintained by the compiler; the renderer derives a legal nftables name from the ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SetId {
    /// Addresses of the endpoints (cluster-wide) matching a selector, in canonical text.
    Selector(String),
    /// (address, protocol, port) of the endpoints matching a selector that have a named port of
    /// that name and protocol.
    NamedPort {
        selector: String,
        protocol: u8,
        name: String,
    },
}

/// The members of one set, one family (a set used by rules of both families exists twice).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetMembers {
    /// Addresses (single hosts as /32 or /128). The renderer coalesces overlaps.
    #[default]
    Empty,
    Nets(BTreeSet<IpNet>),
    /// (address, IP protocol number, port).
    AddressPorts(BTreeSet<(IpAddr, u8, u16)>),
}

/// An inclusive port range (a single port has `first == last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// ICMP type and optional code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Icmp {
    pub icmp_type: u8,
    pub code: Option<u8>,
}

/// What one side (source or destination) of a rule must match. Every present criterion must
/// hold (AND); inside `nets`, `ports` and `named_ports` any one item is enough (OR), with ports
/// and named ports together forming one OR list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Side {
    pub nets: Vec<IpNet>,
    pub not_nets: Vec<IpNet>,
    /// The address is in this set (endpoints matching a selector).
    pub set: Option<SetId>,
    /// The address is not in this set.
    pub not_set: Option<SetId>,
    pub ports: Vec<PortRange>,
    /// Named ports: address, protocol and port in one of these sets (only on the side whose
    /// endpoint defines the name; always `SetId::NamedPort`).
    pub named_ports: Vec<SetId>,
    pub not_ports: Vec<PortRange>,
    pub not_named_ports: Vec<SetId>,
}

/// One compiled rule of a policy or profile, for one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Index of the source rule inside its policy's direction (stable for counters and explain).
    pub index: usize,
    pub action: Action,
    /// IP protocol number.
    pub protocol: Option<u8>,
    pub not_protocol: Option<u8>,
    pub icmp: Option<Icmp>,
    pub not_icmp: Option<Icmp>,
    pub source: Side,
    pub destination: Side,
}

/// The rules of one policy or profile in one direction, per family (a rule limited to one
/// family by `ipVersion` or its CIDRs appears only there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleList {
    pub v4: Vec<Rule>,
    pub v6: Vec<Rule>,
}

impl RuleList {
    pub fn family(&self, family: Family) -> &[Rule] {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

/// A compiled policy: its rules per direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyProgram {
    pub ingress: RuleList,
    pub egress: RuleList,
}

impl PolicyProgram {
    pub fn direction(&self, direction: Direction) -> &RuleList {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// What a tier does with a packet none of its (applicable) policies decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TierDefault {
    Deny,
    Pass,
}

/// The policies of one tier that apply to an endpoint in one direction, in evaluation order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierStep {
    pub tier: String,
    pub default_action: TierDefault,
    pub policies: Vec<PolicyId>,
}

/// One endpoint's pipeline in one direction: tiers with at least one applicable policy, in
/// order, then the endpoint's profiles (names) in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    pub tiers: Vec<TierStep>,
    pub profiles: Vec<String>,
}

/// A local workload endpoint: its host-side interface and its pipelines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointProgram {
    /// `<namespace>/<endpoint name>`, for explain and counters.
    pub key: String,
    /// Host-side interface (`cali...`), the dispatch key.
    pub interface: String,
    pub addresses: Vec<IpAddr>,
    pub ingress: Pipeline,
    pub egress: Pipeline,
}

impl EndpointProgram {
    pub fn pipeline(&self, direction: Direction) -> &Pipeline {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// Everything the node's dataplane needs. Only policies, profiles and sets referenced by local
/// endpoints are here. Keys: endpoints by interface, sets by (ID, family).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub endpoints: BTreeMap<String, EndpointProgram>,
    pub policies: BTreeMap<PolicyId, PolicyProgram>,
    pub profiles: BTreeMap<String, PolicyProgram>,
    pub sets: BTreeMap<(SetId, Family), SetMembers>,
}

/// What changed in a [`Program`] since the last `take_changes`: the renderer rewrites exactly
/// these (a key present here and absent from the program was removed). Set member changes are
/// found by the renderer diffing old and new members of the listed sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub endpoints: BTreeSet<String>,
    pub policies: BTreeSet<PolicyId>,
    pub profiles: BTreeSet<String>,
    pub sets: BTreeSet<(SetId, Family)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
            && self.policies.is_empty()
            && self.profiles.is_empty()
            && self.sets.is_empty()
    }

    /// Adds `other`'s keys to these.
    pub fn merge(&mut self, other: Changes) {
        self.endpoints.extend(other.endpoints);
        self.policies.extend(other.policies);
        self.profiles.extend(other.profiles);
        self.sets.extend(other.sets);
    }
}
