//! A deliberately simple allocator that answers the IPAM protocol: a test double for the plugin
//! (in process through [`IpamBackend`], or behind a socket with `control::serve`), not IPAM.
//!
//! It counts up through one IPv4 pool (and optionally one IPv6 pool), honours requested
//! addresses exactly, refuses taken ones, fails when a pool is exhausted, and releases by handle
//! idempotently. It ignores pools and annotations, which the daemon's real IPAM owns; it keeps
//! the node/namespace/pod attributes GC reads, and GC follows the daemon's rule (`gc::plan`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::backend::IpamBackend;
use super::gc;
use super::ipam_protocol::{
    AssignRequest, GcRequest, IpamErrorKind, IpamRequest, IpamResponse, ReleasedHandle,
};
use super::result::CniError;
use starling_ipam::block::{ATTRIBUTE_NAMESPACE, ATTRIBUTE_NODE, ATTRIBUTE_POD};

/// The node the allocator serves unless told otherwise.
pub const FAKE_NODE: &str = "node-a";

#[derive(Debug)]
pub struct CountingAllocator {
    ipv4_pool: Ipv4Net,
    ipv6_pool: Option<Ipv6Net>,
    /// `hwAddr` annotations by pod name.
    pod_macs: BTreeMap<String, String>,
    node: String,
    state: Mutex<AllocatorState>,
}

#[derive(Debug, Default)]
struct AllocatorState {
    by_address: BTreeMap<IpAddr, String>,
    /// node/namespace/pod of each address, as the daemon records them.
    attributes: BTreeMap<IpAddr, BTreeMap<String, String>>,
    requests: Vec<IpamRequest>,
}

fn attributes(node: &str, namespace: &str, pod: &str) -> BTreeMap<String, String> {
    [
        (ATTRIBUTE_NODE, node),
        (ATTRIBUTE_NAMESPACE, namespace),
        (ATTRIBUTE_POD, pod),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

impl CountingAllocator {
    pub fn new(ipv4_pool: Ipv4Net, ipv6_pool: Option<Ipv6Net>) -> CountingAllocator {
        CountingAllocator {
            ipv4_pool,
            ipv6_pool,
            pod_macs: BTreeMap::new(),
            node: FAKE_NODE.to_string(),
            state: Mutex::new(AllocatorState::default()),
        }
    }

    /// Records an allocation as if made elsewhere (another node, network or daemon run).
    pub fn insert(&self, address: IpAddr, handle: &str, node: &str, namespace: &str, pod: &str) {
        let mut state = self.lock();
        state.by_address.insert(address, handle.to_string());
        state
            .attributes
            .insert(address, attributes(node, namespace, pod));
    }

    /// Answers assignments for `pod` with `mac`, as the daemon does for an `hwAddr` annotation.
    pub fn with_pod_mac(mut self, pod: &str, mac: &str) -> CountingAllocator {
        self.pod_macs.insert(pod.to_string(), mac.to_string());
        self
    }

    /// Addresses currently assigned, with their handles.
    pub fn allocations(&self) -> BTreeMap<IpAddr, String> {
        self.lock().by_address.clone()
    }

    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<IpamRequest> {
        self.lock().requests.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AllocatorState> {
        // A panic in another test thread must not hide this allocator's state.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn handle(&self, request: IpamRequest) -> IpamResponse {
        let mut state = self.lock();
        state.requests.push(request.clone());
        match request {
            IpamRequest::Assign(assign) => self.assign(&mut state, &assign),
            IpamRequest::ReleaseByHandle(release) => IpamResponse::Released {
                addresses: release_handle(&mut state, &release.handle),
            },
            IpamRequest::GarbageCollect(request) => self.garbage_collect(&mut state, &request),
            IpamRequest::Check(check) => {
                let mut held: Vec<IpNet> = state
                    .by_address
                    .iter()
                    .filter(|(_, handle)| **handle == check.handle)
                    .map(|(address, _)| host_network(*address))
                    .collect();
                let mut expected: Vec<IpNet> = check
                    .addresses
                    .iter()
                    .map(|network| host_network(network.addr()))
                    .collect();
                held.sort();
                expected.sort();
                if held == expected {
                    IpamResponse::Checked
                } else {
                    IpamResponse::error(
                        IpamErrorKind::Mismatch,
                        format!("handle {} holds {held:?}, not {expected:?}", check.handle),
                    )
                }
            }
            // No datastore here: like the Kubernetes datastore, nothing is stored.
            IpamRequest::EndpointAdd(_) => IpamResponse::EndpointRecorded { name: None },
            IpamRequest::Status => IpamResponse::Ready,
        }
    }

    fn assign(&self, state: &mut AllocatorState, request: &AssignRequest) -> IpamResponse {
        let existing: Vec<IpNet> = state
            .by_address
            .iter()
            .filter(|(_, handle)| **handle == request.handle)
            .map(|(address, _)| host_network(*address))
            .collect();
        if !existing.is_empty() {
            return IpamResponse::Assigned {
                addresses: existing,
                pod_mac: None,
                floating_ips: Vec::new(),
            };
        }
        let mut chosen = Vec::new();
        if !request.requested_addresses.is_empty() {
            for address in &request.requested_addresses {
                if !self.in_pool(*address) {
                    return IpamResponse::error(
                        IpamErrorKind::AddressInUse,
                        format!("{address} is not in any pool"),
                    );
                }
                if let Some(owner) = state.by_address.get(address) {
                    return IpamResponse::error(
                        IpamErrorKind::AddressInUse,
                        format!("{address} is already assigned to {owner}"),
                    );
                }
                chosen.push(*address);
            }
        } else {
            if request.ipam.assign_ipv4 {
                let free = self
                    .ipv4_pool
                    .hosts()
                    .map(IpAddr::V4)
                    .find(|address| !state.by_address.contains_key(address));
                match free {
                    Some(address) => chosen.push(address),
                    None => {
                        return IpamResponse::error(
                            IpamErrorKind::Exhausted,
                            format!("pool {} has no free address", self.ipv4_pool),
                        )
                    }
                }
            }
            if request.ipam.assign_ipv6 {
                let Some(pool) = self.ipv6_pool else {
                    return IpamResponse::error(IpamErrorKind::Invalid, "no IPv6 pool");
                };
                let free = pool
                    .hosts()
                    .skip(1)
                    .map(IpAddr::V6)
                    .find(|address| !state.by_address.contains_key(address));
                match free {
                    Some(address) => chosen.push(address),
                    None => {
                        return IpamResponse::error(
                            IpamErrorKind::Exhausted,
                            format!("pool {pool} has no free address"),
                        )
                    }
                }
            }
        }
        for address in &chosen {
            state.by_address.insert(*address, request.handle.clone());
            state.attributes.insert(
                *address,
                attributes(&self.node, &request.pod_namespace, &request.pod_name),
            );
        }
        IpamResponse::Assigned {
            addresses: chosen.into_iter().map(host_network).collect(),
            pod_mac: self.pod_macs.get(&request.pod_name).cloned(),
            floating_ips: Vec::new(),
        }
    }

    fn garbage_collect(&self, state: &mut AllocatorState, request: &GcRequest) -> IpamResponse {
        let empty = BTreeMap::new();
        let plan = gc::plan(
            request,
            &self.node,
            chrono::Utc::now(),
            state
                .by_address
                .iter()
                .map(|(address, handle)| gc::Allocation {
                    handle,
                    attributes: state.attributes.get(address).unwrap_or(&empty),
                    block_host: None,
                }),
        );
        let released: Vec<(String, Vec<IpNet>)> = plan
            .stale
            .keys()
            .map(|handle| (handle.clone(), release_handle(state, handle)))
            .collect();
        IpamResponse::GarbageCollected {
            stale_pods: plan.stale_pods(&released),
            released: released
                .into_iter()
                .map(|(handle, addresses)| ReleasedHandle { handle, addresses })
                .collect(),
            problems: Vec::new(),
        }
    }

    fn in_pool(&self, address: IpAddr) -> bool {
        match address {
            IpAddr::V4(address) => self.ipv4_pool.contains(&address),
            IpAddr::V6(address) => self.ipv6_pool.is_some_and(|pool| pool.contains(&address)),
        }
    }
}

fn host_network(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

fn release_handle(state: &mut AllocatorState, handle: &str) -> Vec<IpNet> {
    let released: Vec<IpAddr> = state
        .by_address
        .iter()
        .filter(|(_, held)| *held == handle)
        .map(|(address, _)| *address)
        .collect();
    for address in &released {
        state.by_address.remove(address);
        state.attributes.remove(address);
    }
    released.into_iter().map(host_network).collect()
}

impl IpamBackend for CountingAllocator {
    async fn exchange(&self, request: IpamRequest) -> Result<IpamResponse, CniError> {
        Ok(self.handle(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::config::{FeatureControl, IpamSection};
    use crate::cni::ipam_protocol::ReleaseRequest;

    fn assign(handle: &str, requested: Vec<IpAddr>) -> IpamRequest {
        IpamRequest::Assign(AssignRequest {
            handle: handle.into(),
            network_name: "net".into(),
            container_id: handle.into(),
            pod_namespace: "default".into(),
            pod_name: handle.into(),
            interface_name: "eth0".into(),
            ipam: IpamSection::default(),
            feature_control: FeatureControl::default(),
            requested_addresses: requested,
            pod_annotations: Default::default(),
        })
    }

    #[test]
    fn counts_up_honours_requests_and_exhausts() {
        let allocator = CountingAllocator::new("10.1.0.0/30".parse().unwrap(), None);
        let first = allocator.handle(assign("a", vec![]));
        assert_eq!(
            first,
            IpamResponse::Assigned {
                addresses: vec!["10.1.0.1/32".parse().unwrap()],
                pod_mac: None,
                floating_ips: Vec::new(),
            }
        );
        // Same handle again: the same address.
        assert_eq!(allocator.handle(assign("a", vec![])), first);
        let taken = allocator.handle(assign("b", vec!["10.1.0.1".parse().unwrap()]));
        assert!(matches!(taken, IpamResponse::Error(e) if e.kind == IpamErrorKind::AddressInUse));
        allocator.handle(assign("b", vec![]));
        let full = allocator.handle(assign("c", vec![]));
        assert!(
            matches!(full, IpamResponse::Error(e) if e.kind == IpamErrorKind::Exhausted && e.message.contains("10.1.0.0/30"))
        );
        let released = allocator.handle(IpamRequest::ReleaseByHandle(ReleaseRequest {
            handle: "a".into(),
            network_name: "net".into(),
            container_id: "a".into(),
            pod_namespace: None,
            pod_name: None,
            interface_name: None,
        }));
        assert_eq!(
            released,
            IpamResponse::Released {
                addresses: vec!["10.1.0.1/32".parse().unwrap()]
            }
        );
        assert_eq!(allocator.allocations().len(), 1);
    }
}
