//! The kernel-facing view of the RIB: best learned routes that Calico's kernel policy accepts,
//! kept up to date incrementally from the prefixes whose best path changed.

use std::collections::BTreeMap;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::sync::watch;

use crate::bgp::policy::{CalicoPolicy, KernelDecision};
use crate::bgp::rib::{Rib, RouteSource};
use crate::dataplane::spec::LearnedRoute;

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

    /// Publishes the table when it changed since the last publication.
    pub fn publish(&mut self, sender: &watch::Sender<Arc<Vec<LearnedRoute>>>) {
        if self.dirty {
            self.dirty = false;
            sender.send_replace(Arc::new(self.routes.values().cloned().collect()));
        }
    }
}
