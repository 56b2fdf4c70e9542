//! Filtering a peer's routes again after its import policy changed (a BGPFilter edit).
//!
//! Only the accepted routes' attributes are kept (the refused ones are remembered by prefix
//! alone, to keep memory per refused route at one set entry), so a stricter policy takes
//! effect here at once, while routes a looser policy would now accept must be sent again by
//! the peer: the caller asks for them with a ROUTE-REFRESH (RFC 2918), whose answer passes
//! through [`Rib::apply_update`] and the new policy like any UPDATE.

use std::borrow::Cow;

use ipnet::IpNet;

use super::{ImportPolicy, PeerId, Rib};

impl Rib {
    /// Runs `policy` again over the routes the peer gave us; those it now refuses leave the
    /// Loc-RIB (and count as received, not accepted). Returns prefixes whose best route changed.
    pub fn reimport(&mut self, id: PeerId, policy: &dyn ImportPolicy) -> Vec<IpNet> {
        let Some(state) = self.peers.get(&id) else {
            return Vec::new();
        };
        let refused: Vec<IpNet> = state
            .adj_rib_in
            .iter()
            .filter(|(prefix, attributes)| {
                let mut attributes = Cow::Borrowed(&***attributes);
                !policy.import(&state.config, prefix, &mut attributes)
            })
            .map(|(prefix, _)| *prefix)
            .collect();
        for prefix in &refused {
            self.set_rejected(id, *prefix, true);
        }
        self.remove_peer_routes(id, refused)
    }
}
