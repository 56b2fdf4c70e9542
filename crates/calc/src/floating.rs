//! Floating IPs (reference §2.2, §4.5, §5.9): which NATs this node programs for its own
//! workload endpoints' `ipNATs` and which /32 (/128) it originates over BGP (pure, no I/O).
//!
//! Contract, as Felix's floating IP manager behaves:
//! - Nothing at all unless FelixConfiguration `floatingIPs` is `Enabled` (default `Disabled`).
//! - DNAT: traffic to an external (floating) IP goes to the endpoint's internal IP. Two
//!   endpoints claiming one floating IP is a misconfiguration; the lowest internal IP wins, so
//!   every node decides the same way.
//! - SNAT only for the hairpin: a pod that reaches its own floating IP would otherwise see a
//!   packet from itself to itself, so traffic from an internal IP to the same internal IP
//!   leaves with the floating IP (the lowest one when an endpoint has several). Ordinary pod
//!   traffic keeps its own source (Felix does not SNAT it either: replies to DNATed flows are
//!   reversed by conntrack).
//! - Sources: in etcd mode the WorkloadEndpoints whose `spec.node` is this node; with the
//!   Kubernetes datastore the local pods' `cni.projectcalico.org/floatingIPs` annotation
//!   (already paired with the pod's addresses by the watcher).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::spec::FloatingIps;
use crate::state::ClusterState;
use starling_model::IpNat;

/// Builds the NAT maps from `nats` (any order; the result does not depend on it).
pub fn floating_ips(nats: impl IntoIterator<Item = IpNat>) -> FloatingIps {
    let mut dnat: BTreeMap<IpAddr, IpAddr> = BTreeMap::new();
    for nat in nats {
        if nat.internal.is_ipv4() != nat.external.is_ipv4() {
            continue;
        }
        dnat.entry(nat.external)
            .and_modify(|internal| *internal = (*internal).min(nat.internal))
            .or_insert(nat.internal);
    }
    let mut snat: BTreeMap<IpAddr, IpAddr> = BTreeMap::new();
    // `dnat` iterates in external order, so the first external seen per internal is the lowest.
    for (external, internal) in &dnat {
        snat.entry(*internal).or_insert(*external);
    }
    FloatingIps { dnat, snat }
}

/// The floating IPs of `node_name`'s endpoints, or none when `enabled` is false.
pub fn local_floating_ips(state: &ClusterState, node_name: &str, enabled: bool) -> FloatingIps {
    if !enabled {
        return FloatingIps::default();
    }
    let from_endpoints = state
        .workload_endpoints()
        .filter(|endpoint| endpoint.node == node_name)
        // An endpoint of a finished pod has no address; its NATs would point nowhere.
        .filter(|endpoint| !endpoint.networks.is_empty())
        .flat_map(|endpoint| endpoint.ip_nats.iter().copied());
    let from_pods = state
        .pods()
        .filter(|pod| !pod.addresses.is_empty())
        .flat_map(|pod| pod.ip_nats.iter().copied());
    floating_ips(from_endpoints.chain(from_pods))
}

/// The host prefixes this node originates for its floating IPs.
pub fn originated(floating: &FloatingIps) -> impl Iterator<Item = IpNet> + '_ {
    floating.dnat.keys().map(|external| IpNet::from(*external))
}

/// Pairs a floating IP annotation's addresses with the pod's addresses as Calico's
/// Kubernetes conversion does: each external IP maps to the pod's address of its family, and
/// an external IP of a family the pod has no address of is dropped.
pub fn pair_with_pod(addresses: &[IpAddr], externals: &[IpAddr]) -> Vec<IpNat> {
    externals
        .iter()
        .filter_map(|external| {
            addresses
                .iter()
                .find(|address| address.is_ipv4() == external.is_ipv4())
                .map(|internal| IpNat {
                    internal: *internal,
                    external: *external,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{LocalPod, Resource, Update};
    use starling_model::WorkloadEndpoint;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nat(internal: &str, external: &str) -> IpNat {
        IpNat {
            internal: ip(internal),
            external: ip(external),
        }
    }

    #[test]
    fn dnat_per_external_and_hairpin_snat_per_internal() {
        let nats = vec![
            nat("10.244.0.5", "10.244.200.2"),
            nat("10.244.0.5", "10.244.200.1"),
            nat("fd00::5", "fd00:200::1"),
        ];
        let forward = floating_ips(nats.clone());
        let reversed = floating_ips(nats.into_iter().rev());
        assert_eq!(forward, reversed);
        assert_eq!(
            forward.dnat,
            BTreeMap::from([
                (ip("10.244.200.1"), ip("10.244.0.5")),
                (ip("10.244.200.2"), ip("10.244.0.5")),
                (ip("fd00:200::1"), ip("fd00::5")),
            ])
        );
        // The lowest floating IP of the endpoint is its hairpin source.
        assert_eq!(
            forward.snat,
            BTreeMap::from([
                (ip("10.244.0.5"), ip("10.244.200.1")),
                (ip("fd00::5"), ip("fd00:200::1")),
            ])
        );
    }

    #[test]
    fn a_contested_floating_ip_goes_to_the_lowest_internal_ip() {
        let floating = floating_ips([
            nat("10.244.0.9", "10.244.200.1"),
            nat("10.244.0.3", "10.244.200.1"),
        ]);
        assert_eq!(floating.dnat[&ip("10.244.200.1")], ip("10.244.0.3"));
        assert_eq!(floating.snat.len(), 1);
        // Mixed families never pair.
        assert!(floating_ips([nat("10.244.0.3", "fd00::1")]).dnat.is_empty());
    }

    #[test]
    fn pairing_follows_the_pods_families() {
        let pod = [ip("10.244.0.5")];
        assert_eq!(
            pair_with_pod(&pod, &[ip("10.244.200.1"), ip("fd00::1")]),
            vec![nat("10.244.0.5", "10.244.200.1")]
        );
        assert!(pair_with_pod(&[], &[ip("10.244.200.1")]).is_empty());
    }

    fn state() -> ClusterState {
        let mut state = ClusterState::default();
        let endpoint = |name: &str, node: &str, address: &str, external: &str| WorkloadEndpoint {
            namespace: "default".into(),
            name: name.into(),
            node: node.into(),
            networks: vec![format!("{address}/32").parse().unwrap()],
            ip_nats: vec![nat(address, external)],
            ..WorkloadEndpoint::default()
        };
        state.apply(Update::Replace {
            kind: crate::state::Kind::WorkloadEndpoint,
            objects: BTreeMap::from([
                (
                    "default/a".into(),
                    Resource::WorkloadEndpoint(Box::new(endpoint(
                        "a",
                        "node-a",
                        "10.244.0.5",
                        "10.244.200.1",
                    ))),
                ),
                (
                    "default/b".into(),
                    Resource::WorkloadEndpoint(Box::new(endpoint(
                        "b",
                        "node-b",
                        "10.244.1.5",
                        "10.244.200.2",
                    ))),
                ),
            ]),
        });
        state.apply(Update::Replace {
            kind: crate::state::Kind::Pod,
            objects: BTreeMap::from([(
                "default/c".into(),
                Resource::Pod(LocalPod {
                    namespace: "default".into(),
                    name: "c".into(),
                    addresses: vec![ip("10.244.0.7")],
                    ip_nats: vec![nat("10.244.0.7", "10.244.200.3")],
                }),
            )]),
        });
        state
    }

    #[test]
    fn only_this_nodes_endpoints_and_only_when_enabled() {
        let state = state();
        let floating = local_floating_ips(&state, "node-a", true);
        assert_eq!(
            floating.dnat,
            BTreeMap::from([
                (ip("10.244.200.1"), ip("10.244.0.5")),
                (ip("10.244.200.3"), ip("10.244.0.7")),
            ])
        );
        assert_eq!(
            originated(&floating).collect::<Vec<_>>(),
            vec![
                "10.244.200.1/32".parse::<IpNet>().unwrap(),
                "10.244.200.3/32".parse().unwrap()
            ]
        );
        assert_eq!(
            local_floating_ips(&state, "node-a", false),
            FloatingIps::default()
        );
    }
}
