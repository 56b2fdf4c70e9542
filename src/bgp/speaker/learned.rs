//! The kernel-facing view of the RIB: for each prefix whose best path changed, the route
//! Calico's kernel policy wants (or none), sent to the dataplane as a per-prefix delta. The
//! speaker keeps no copy of the learned table: the dataplane holds the only one.

use ipnet::IpNet;

use crate::route_deltas::DeltaSender;
use starling_bgp::kernel::LearnedRoute;
use starling_bgp::policy::{CalicoPolicy, KernelDecision};
use starling_bgp::rib::{Rib, RouteSource};

/// The kernel route the policy wants for a prefix's best path, if any.
pub fn kernel_route(rib: &Rib, policy: &CalicoPolicy, prefix: &IpNet) -> Option<LearnedRoute> {
    let best = rib.best(prefix)?;
    if !matches!(best.source, RouteSource::Peer(_)) {
        return None;
    }
    let next_hop = best.attributes.next_hop?;
    match policy.kernel(prefix, Some(next_hop), best.attributes.local_pref) {
        KernelDecision::Install {
            via_ipip_tunnel, ..
        } => Some(LearnedRoute {
            prefix: *prefix,
            next_hop,
            via_ipip: via_ipip_tunnel,
        }),
        KernelDecision::Reject => None,
    }
}

/// Sends learned-route deltas; `dirty` tells the actor that counters need refreshing.
pub struct LearnedTable {
    sender: DeltaSender,
    dirty: bool,
}

impl LearnedTable {
    pub fn new(sender: DeltaSender) -> LearnedTable {
        LearnedTable {
            sender,
            dirty: false,
        }
    }

    /// Sends the current kernel route of each given prefix.
    pub fn refresh(&mut self, rib: &Rib, policy: &CalicoPolicy, prefixes: &[IpNet]) {
        if prefixes.is_empty() {
            return;
        }
        self.sender.send(
            prefixes
                .iter()
                .map(|prefix| (*prefix, kernel_route(rib, policy, prefix))),
        );
        self.dirty = true;
    }

    /// Re-sends every best path (after a policy change that can affect any prefix).
    pub fn refresh_all(&mut self, rib: &Rib, policy: &CalicoPolicy) {
        let prefixes: Vec<IpNet> = rib.best_routes().map(|(prefix, _)| *prefix).collect();
        self.refresh(rib, policy, &prefixes);
    }

    /// Whether anything was sent since the last call; clears the flag.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_bgp::codec::{AsPath, Family, Origin, PathAttributes, Update};
    use starling_bgp::rib::{PeerConfig, PeerId, PeerSession, RibConfig, RouteAttributes};
    use starling_model::{AsNumber, NextHopMode};
    use std::net::{IpAddr, Ipv4Addr};

    fn rib_with_route(prefix: &str) -> Rib {
        let mut rib = Rib::new(RibConfig {
            local_as: AsNumber(64512),
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            cluster_id: None,
        });
        let peer = PeerId(1);
        rib.add_peer(
            peer,
            PeerConfig {
                address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                peer_as: AsNumber(64512),
                local_as: AsNumber(64512),
                route_reflector_client: false,
                next_hop_mode: NextHopMode::Auto,
                local_address_v4: Some(Ipv4Addr::new(10, 0, 0, 1)),
                local_address_v6: None,
                allowed_local_as: 0,
                interface: None,
                filters: Default::default(),
            },
        );
        rib.peer_established(
            peer,
            PeerSession {
                router_id: Ipv4Addr::new(10, 0, 0, 2),
                families: vec![Family::IPV4_UNICAST],
                graceful_restart: None,
            },
        );
        let update = Update {
            attributes: PathAttributes {
                origin: Some(Origin::Igp),
                as_path: Some(AsPath::default()),
                next_hop: Some(Ipv4Addr::new(10, 0, 0, 2)),
                ..PathAttributes::default()
            },
            nlri: vec![prefix.parse().unwrap()],
            ..Update::default()
        };
        let import =
            |_: &PeerConfig, _: &IpNet, _: &mut std::borrow::Cow<'_, RouteAttributes>| true;
        rib.apply_update(peer, &update, &import);
        rib
    }

    #[test]
    fn sends_the_kernel_route_of_each_changed_prefix() {
        let rib = rib_with_route("10.244.3.0/26");
        let policy = CalicoPolicy::default();
        let (sender, receiver) = crate::route_deltas::channel();
        let mut table = LearnedTable::new(sender);
        let prefix: IpNet = "10.244.3.0/26".parse().unwrap();
        table.refresh_all(&rib, &policy);
        assert!(table.take_dirty());
        assert_eq!(
            receiver.take().changes,
            vec![(
                prefix,
                Some(LearnedRoute {
                    prefix,
                    next_hop: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                    via_ipip: false,
                })
            )]
        );
        // Nothing to send for no prefixes.
        table.refresh(&rib, &policy, &[]);
        assert!(!table.take_dirty());
        assert!(receiver.take().changes.is_empty());
        // A policy that rejects the prefix sends its removal.
        let rejecting = CalicoPolicy {
            reject_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            ..CalicoPolicy::default()
        };
        table.refresh(&rib, &rejecting, &[prefix]);
        assert_eq!(receiver.take().changes, vec![(prefix, None)]);
    }
}
