//! The kernel-facing view of the RIB: best learned routes that Calico's kernel policy accepts,
//! kept up to date incrementally from the prefixes whose best path changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::watch;

use starling_bgp::kernel::LearnedRoute;
use starling_bgp::policy::{CalicoPolicy, KernelDecision};
use starling_bgp::rib::{Rib, RouteSource};

/// Learned routes for the dataplane, with a dirty flag so bursts publish once.
#[derive(Debug, Default)]
pub struct LearnedTable {
    routes: BTreeMap<IpNet, LearnedRoute>,
    dirty: bool,
}

impl LearnedTable {
    /// Re-evaluates the given prefixes against the RIB's best paths.
    pub fn refresh(&mut self, rib: &Rib, policy: &CalicoPolicy, prefixes: &[IpNet]) {
        for prefix in prefixes {
            let route = rib.best(prefix).and_then(|best| {
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
            });
            let changed = match route {
                Some(route) => self.routes.insert(*prefix, route.clone()).as_ref() != Some(&route),
                None => self.routes.remove(prefix).is_some(),
            };
            self.dirty |= changed;
        }
    }

    /// Re-evaluates every best path (after a policy change).
    pub fn refresh_all(&mut self, rib: &Rib, policy: &CalicoPolicy) {
        let mut prefixes: Vec<IpNet> = rib.best_routes().map(|(prefix, _)| *prefix).collect();
        prefixes.extend(self.routes.keys().copied());
        prefixes.sort();
        prefixes.dedup();
        self.refresh(rib, policy, &prefixes);
    }

    /// Whether the table changed since the last publication.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Publishes the table when it changed since the last publication.
    pub fn publish(&mut self, sender: &watch::Sender<Arc<Vec<LearnedRoute>>>) {
        if self.dirty {
            self.dirty = false;
            sender.send_replace(Arc::new(self.routes.values().cloned().collect()));
        }
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
    fn publishes_accepted_learned_routes_once_per_change() {
        let rib = rib_with_route("10.244.3.0/26");
        let policy = CalicoPolicy::default();
        let mut table = LearnedTable::default();
        let (sender, mut receiver) = watch::channel(Arc::new(Vec::new()));
        table.refresh_all(&rib, &policy);
        table.publish(&sender);
        assert_eq!(
            **receiver.borrow_and_update(),
            vec![LearnedRoute {
                prefix: "10.244.3.0/26".parse().unwrap(),
                next_hop: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                via_ipip: false,
            }]
        );
        // Nothing changed: no new publication.
        table.refresh_all(&rib, &policy);
        assert!(!receiver.has_changed().unwrap());
        table.publish(&sender);
        assert!(!receiver.has_changed().unwrap());
        // A policy that rejects the prefix removes it.
        let rejecting = CalicoPolicy {
            reject_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
            ..CalicoPolicy::default()
        };
        table.refresh_all(&rib, &rejecting);
        table.publish(&sender);
        assert!(receiver.borrow().is_empty());
    }
}
