//! The interface a route points out of, which export `interface` rules of BGPFilters match
//! (BIRD's `ifname`): given by the caller for local routes, taken from the session for a
//! peer's routes.

use std::sync::Arc;

use ipnet::IpNet;

use super::{Candidate, PeerId, Rib, RouteAttributes, RouteSource};

impl Rib {
    /// Originates (or replaces) a local route that leaves through `interface` (a workload's
    /// veth). A changed interface alone counts as a change, so exports are re-evaluated.
    /// Returns prefixes whose best route changed.
    pub fn originate_via(
        &mut self,
        prefix: IpNet,
        attributes: RouteAttributes,
        interface: Option<&str>,
    ) -> Vec<IpNet> {
        let candidate = Candidate {
            source: RouteSource::Local,
            peer: None,
            attributes: Arc::new(attributes),
            stale: false,
            interface: interface.map(Arc::from),
        };
        self.insert_candidate(prefix.trunc(), candidate)
    }

    /// The peer's session now runs over another interface: its routes carry the new one, and
    /// those that are best are logged for re-export.
    pub(super) fn peer_interface_changed(&mut self, id: PeerId) {
        let Some(state) = self.peers.get_mut(&id) else {
            return;
        };
        let interface = state.config.interface.as_deref().map(Arc::<str>::from);
        state.interface = interface.clone();
        let prefixes: Vec<IpNet> = state.adj_rib_in.keys().copied().collect();
        for prefix in prefixes {
            self.update_destination(prefix, false, |candidates| {
                let mut changed = false;
                for candidate in candidates
                    .iter_mut()
                    .filter(|candidate| candidate.source == RouteSource::Peer(id))
                {
                    candidate.interface = interface.clone();
                    changed = true;
                }
                changed
            });
        }
    }
}
