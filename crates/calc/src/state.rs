//! `ClusterState`: the daemon's validated copy of every watched resource (pure, no I/O).
//!
//! Contract: [`ClusterState::apply`] takes one [`Update`] and says whether anything changed.
//! Objects are already validated by the watcher that produced them (an invalid object arrives
//! as a `Delete` of its key: absent, never half-applied). A [`Update::Replace`] is a (re)list:
//! it replaces the kind's content atomically, so objects that vanished while the watch was down
//! are removed and unchanged objects cause no change, and it marks the kind in sync.
//! [`Update::OutOfSync`] records a lost watch; the content is kept (the kernel and BGP keep
//! running on it) until the relist arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::services::{ServiceFacts, SliceFacts};
use starling_ipam::block::Block;
use starling_ipam::records::{Affinity, IpamConfig};
use starling_model::bgp::BgpConfigLayer;
use starling_model::felix::FelixLayer;
use starling_model::{BgpFilter, BgpPeer, CalicoNode, IpPool, IpReservation, WorkloadEndpoint};

/// Every watched kind. The name is the metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    IpPool,
    IpamBlock,
    BlockAffinity,
    Node,
    BgpConfiguration,
    BgpPeer,
    BgpFilter,
    IpReservation,
    FelixConfiguration,
    IpamConfig,
    Pod,
    Secret,
    WorkloadEndpoint,
    /// Kubernetes Services and EndpointSlices feed the service advertiser
    /// ([`crate::services`]), never this state: they change often and concern only BGP.
    Service,
    EndpointSlice,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::IpPool,
        Kind::IpamBlock,
        Kind::BlockAffinity,
        Kind::Node,
        Kind::BgpConfiguration,
        Kind::BgpPeer,
        Kind::BgpFilter,
        Kind::IpReservation,
        Kind::FelixConfiguration,
        Kind::IpamConfig,
        Kind::Pod,
        Kind::Secret,
        Kind::WorkloadEndpoint,
    ];

    /// The kinds the service advertiser consumes (outside [`Kind::ALL`]: they do not hold up
    /// the datastore's readiness or the desired state).
    pub const SERVICES: [Kind; 2] = [Kind::Service, Kind::EndpointSlice];

    /// Calico's kind name (metrics label, log field).
    pub fn name(self) -> &'static str {
        match self {
            Kind::IpPool => "IPPool",
            Kind::IpamBlock => "IPAMBlock",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::Node => "Node",
            Kind::BgpConfiguration => "BGPConfiguration",
            Kind::BgpPeer => "BGPPeer",
            Kind::BgpFilter => "BGPFilter",
            Kind::IpReservation => "IPReservation",
            Kind::FelixConfiguration => "FelixConfiguration",
            Kind::IpamConfig => "IPAMConfig",
            Kind::Pod => "Pod",
            Kind::Secret => "Secret",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
        }
    }
}

/// A pod on this node as the dataplane needs it (reference §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    pub namespace: String,
    pub name: String,
    /// Empty for finished pods.
    pub addresses: Vec<IpAddr>,
    /// Floating IPs (`cni.projectcalico.org/floatingIPs`) paired with `addresses`.
    pub ip_nats: Vec<starling_model::IpNat>,
}

/// A Secret's decoded data (BGP passwords).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretData {
    pub data: BTreeMap<String, String>,
}

/// One validated object.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    IpPool(IpPool),
    IpamBlock(Block),
    BlockAffinity(Affinity),
    Node(CalicoNode),
    /// One object's layer: the effective configuration merges `default` and `node.<name>`.
    BgpConfiguration(Box<BgpConfigLayer>),
    BgpPeer(BgpPeer),
    BgpFilter(Box<BgpFilter>),
    /// A BGPFilter that failed validation, kept (unlike other invalid objects) so that a peer
    /// naming it can say why it rejects everything.
    InvalidBgpFilter {
        name: String,
        reason: String,
    },
    IpReservation(IpReservation),
    FelixConfiguration(Box<FelixLayer>),
    IpamConfig(IpamConfig),
    Pod(LocalPod),
    Secret(SecretData),
    /// etcd mode only: the endpoints CNI plugins wrote, cluster-wide (in the Kubernetes
    /// datastore the pods are the endpoints).
    WorkloadEndpoint(Box<WorkloadEndpoint>),
    Service(Box<ServiceFacts>),
    EndpointSlice(SliceFacts),
}

impl Resource {
    pub fn kind(&self) -> Kind {
        match self {
            Resource::IpPool(_) => Kind::IpPool,
            Resource::IpamBlock(_) => Kind::IpamBlock,
            Resource::BlockAffinity(_) => Kind::BlockAffinity,
            Resource::Node(_) => Kind::Node,
            Resource::BgpConfiguration(_) => Kind::BgpConfiguration,
            Resource::BgpPeer(_) => Kind::BgpPeer,
            Resource::BgpFilter(_) | Resource::InvalidBgpFilter { .. } => Kind::BgpFilter,
            Resource::IpReservation(_) => Kind::IpReservation,
            Resource::FelixConfiguration(_) => Kind::FelixConfiguration,
            Resource::IpamConfig(_) => Kind::IpamConfig,
            Resource::Pod(_) => Kind::Pod,
            Resource::Secret(_) => Kind::Secret,
            Resource::WorkloadEndpoint(_) => Kind::WorkloadEndpoint,
            Resource::Service(_) => Kind::Service,
            Resource::EndpointSlice(_) => Kind::EndpointSlice,
        }
    }
}

/// A change delivered by a watcher. Keys are unique within a kind (object name, block CIDR,
/// `namespace/name` for pods and workload endpoints, name for secrets).
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The complete content of a kind (initial list or relist); marks the kind in sync.
    Replace {
        kind: Kind,
        objects: BTreeMap<String, Resource>,
    },
    Put {
        key: String,
        resource: Box<Resource>,
    },
    Delete {
        kind: Kind,
        key: String,
    },
    /// The kind's watch was lost; a `Replace` follows once it is back.
    OutOfSync {
        kind: Kind,
    },
}

/// Everything watched, keyed per kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    objects: BTreeMap<Kind, BTreeMap<String, Resource>>,
    in_sync: BTreeSet<Kind>,
}

impl ClusterState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one update; true when the content or the sync state changed.
    pub fn apply(&mut self, update: Update) -> bool {
        match update {
            Update::Replace { kind, objects } => {
                let newly_in_sync = self.in_sync.insert(kind);
                let slot = self.objects.entry(kind).or_default();
                let changed = *slot != objects;
                if changed {
                    *slot = objects;
                }
                changed || newly_in_sync
            }
            Update::Put { key, resource } => {
                let slot = self.objects.entry(resource.kind()).or_default();
                if slot.get(&key) == Some(&*resource) {
                    return false;
                }
                slot.insert(key, *resource);
                true
            }
            Update::Delete { kind, key } => self
                .objects
                .get_mut(&kind)
                .is_some_and(|slot| slot.remove(&key).is_some()),
            Update::OutOfSync { kind } => self.in_sync.remove(&kind),
        }
    }

    pub fn is_in_sync(&self, kind: Kind) -> bool {
        self.in_sync.contains(&kind)
    }

    /// Every kind in `kinds` has delivered its list and not lost its watch since.
    pub fn all_in_sync(&self, kinds: &[Kind]) -> bool {
        kinds.iter().all(|kind| self.in_sync.contains(kind))
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.objects.get(&kind).map_or(0, BTreeMap::len)
    }

    fn values(&self, kind: Kind) -> impl Iterator<Item = &Resource> {
        self.objects.get(&kind).into_iter().flat_map(|m| m.values())
    }

    fn get(&self, kind: Kind, key: &str) -> Option<&Resource> {
        self.objects.get(&kind)?.get(key)
    }

    pub fn pools(&self) -> Vec<IpPool> {
        self.values(Kind::IpPool)
            .filter_map(|r| match r {
                Resource::IpPool(pool) => Some(pool.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.values(Kind::IpamBlock).filter_map(|r| match r {
            Resource::IpamBlock(block) => Some(block),
            _ => None,
        })
    }

    pub fn affinities(&self) -> impl Iterator<Item = &Affinity> {
        self.values(Kind::BlockAffinity).filter_map(|r| match r {
            Resource::BlockAffinity(affinity) => Some(affinity),
            _ => None,
        })
    }

    pub fn nodes(&self) -> Vec<CalicoNode> {
        self.values(Kind::Node)
            .filter_map(|r| match r {
                Resource::Node(node) => Some(node.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn node(&self, name: &str) -> Option<&CalicoNode> {
        match self.get(Kind::Node, name)? {
            Resource::Node(node) => Some(node),
            _ => None,
        }
    }

    pub fn bgp_configuration(&self, name: &str) -> Option<&BgpConfigLayer> {
        match self.get(Kind::BgpConfiguration, name)? {
            Resource::BgpConfiguration(config) => Some(config),
            _ => None,
        }
    }

    pub fn felix_configuration(&self, name: &str) -> Option<&FelixLayer> {
        match self.get(Kind::FelixConfiguration, name)? {
            Resource::FelixConfiguration(config) => Some(config),
            _ => None,
        }
    }

    pub fn bgp_peers(&self) -> Vec<BgpPeer> {
        self.values(Kind::BgpPeer)
            .filter_map(|r| match r {
                Resource::BgpPeer(peer) => Some(peer.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every BGPFilter by name: the valid ones, and the validation error of each invalid one
    /// (a peer naming it rejects everything and says why).
    pub fn bgp_filters(&self) -> starling_bgp::filter::FilterSet {
        self.values(Kind::BgpFilter)
            .filter_map(|r| match r {
                Resource::BgpFilter(filter) => Some((
                    filter.name.clone(),
                    Ok(std::sync::Arc::new(filter.as_ref().clone())),
                )),
                Resource::InvalidBgpFilter { name, reason } => {
                    Some((name.clone(), Err(reason.clone())))
                }
                _ => None,
            })
            .collect()
    }

    pub fn reservations(&self) -> impl Iterator<Item = &IpReservation> {
        self.values(Kind::IpReservation).filter_map(|r| match r {
            Resource::IpReservation(reservation) => Some(reservation),
            _ => None,
        })
    }

    pub fn ipam_config(&self) -> Option<&IpamConfig> {
        self.values(Kind::IpamConfig).find_map(|r| match r {
            Resource::IpamConfig(config) => Some(config),
            _ => None,
        })
    }

    pub fn pods(&self) -> impl Iterator<Item = &LocalPod> {
        self.values(Kind::Pod).filter_map(|r| match r {
            Resource::Pod(pod) => Some(pod),
            _ => None,
        })
    }

    pub fn workload_endpoints(&self) -> impl Iterator<Item = &WorkloadEndpoint> {
        self.values(Kind::WorkloadEndpoint).filter_map(|r| match r {
            Resource::WorkloadEndpoint(endpoint) => Some(&**endpoint),
            _ => None,
        })
    }

    /// The endpoint keyed `namespace/name`.
    pub fn workload_endpoint(&self, key: &str) -> Option<&WorkloadEndpoint> {
        match self.get(Kind::WorkloadEndpoint, key)? {
            Resource::WorkloadEndpoint(endpoint) => Some(endpoint),
            _ => None,
        }
    }

    /// A key of a Secret in the daemon's namespace (keyed by secret name).
    pub fn secret_value(&self, name: &str, key: &str) -> Option<&str> {
        match self.get(Kind::Secret, name)? {
            Resource::Secret(secret) => secret.data.get(key).map(String::as_str),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Resource {
        Resource::Node(CalicoNode {
            name: name.to_string(),
            ..CalicoNode::default()
        })
    }

    #[test]
    fn replace_is_atomic_and_idempotent() {
        let mut state = ClusterState::new();
        assert!(!state.all_in_sync(&[Kind::Node]));
        let list: BTreeMap<String, Resource> =
            [("a".to_string(), node("a")), ("b".to_string(), node("b"))].into();
        assert!(state.apply(Update::Replace {
            kind: Kind::Node,
            objects: list.clone()
        }));
        assert!(state.all_in_sync(&[Kind::Node]));
        // The same list again (a relist with nothing changed) is no change.
        assert!(!state.apply(Update::Replace {
            kind: Kind::Node,
            objects: list
        }));
        // Lost watch: out of sync, content kept.
        assert!(state.apply(Update::OutOfSync { kind: Kind::Node }));
        assert_eq!(state.count(Kind::Node), 2);
        // Relist after "b" vanished while disconnected: "b" is removed, sync is back.
        let relist: BTreeMap<String, Resource> = [("a".to_string(), node("a"))].into();
        assert!(state.apply(Update::Replace {
            kind: Kind::Node,
            objects: relist
        }));
        assert!(state.node("b").is_none());
        assert!(state.is_in_sync(Kind::Node));
    }

    #[test]
    fn put_and_delete_report_change_only_when_different() {
        let mut state = ClusterState::new();
        assert!(state.apply(Update::Put {
            key: "a".into(),
            resource: Box::new(node("a"))
        }));
        assert!(!state.apply(Update::Put {
            key: "a".into(),
            resource: Box::new(node("a"))
        }));
        assert!(state.apply(Update::Delete {
            kind: Kind::Node,
            key: "a".into()
        }));
        assert!(!state.apply(Update::Delete {
            kind: Kind::Node,
            key: "a".into()
        }));
    }
}
