//! Per-peer counters and targeted re-export: what the metrics report and what a policy change
//! that touches only some prefixes needs.

use ipnet::IpNet;

use super::{PeerId, Rib, CHANGE_LOG_COMPACTION};

impl Rib {
    /// Prefixes the peer currently announces, accepted or refused by import checks and policy.
    pub fn received_count(&self, id: PeerId) -> usize {
        self.peers
            .get(&id)
            .map_or(0, |state| state.adj_rib_in.len() + state.rejected.len())
    }

    /// Prefixes the peer announces that we accepted (Adj-RIB-In size).
    pub fn accepted_count(&self, id: PeerId) -> usize {
        self.peers
            .get(&id)
            .map_or(0, |state| state.adj_rib_in.len())
    }

    /// Number of prefixes advertised to the peer (Adj-RIB-Out size).
    pub fn advertised_count(&self, id: PeerId) -> usize {
        self.peers
            .get(&id)
            .map_or(0, |state| state.adj_rib_out.len())
    }

    /// Refuses new prefixes from this peer once it has `limit` accepted ones (the `block`
    /// action of an import limit); `None` lifts it.
    pub fn set_import_block(&mut self, id: PeerId, limit: Option<usize>) {
        if let Some(state) = self.peers.get_mut(&id) {
            state.import_block = limit;
        }
    }

    /// Whether a new prefix from the peer would go past its import block.
    pub(super) fn blocked_by_limit(&self, id: PeerId, prefix: &IpNet) -> bool {
        self.peers.get(&id).is_some_and(|state| {
            state.import_block.is_some_and(|limit| {
                state.adj_rib_in.len() >= limit && !state.adj_rib_in.contains_key(prefix)
            })
        })
    }

    pub(super) fn set_rejected(&mut self, id: PeerId, prefix: IpNet, rejected: bool) {
        if let Some(state) = self.peers.get_mut(&id) {
            if rejected {
                state.rejected.insert(prefix);
            } else {
                state.rejected.remove(&prefix);
            }
        }
    }

    /// Known prefixes inside any of `scopes` (each prefix once, in order).
    pub fn prefixes_within(&self, scopes: &[IpNet]) -> Vec<IpNet> {
        let mut prefixes: Vec<IpNet> = scopes
            .iter()
            .flat_map(|scope| {
                let scope = scope.trunc();
                let last = IpNet::new(scope.broadcast(), scope.max_prefix_len()).unwrap_or(scope);
                self.loc_rib
                    .range(scope..=last)
                    .map(|(prefix, _)| *prefix)
                    .filter(move |prefix| scope.contains(prefix))
            })
            .collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes
    }

    /// Makes the next export to every peer re-evaluate these prefixes (after a change of the
    /// export policy that concerns only them), without touching any other prefix.
    pub fn reexport(&mut self, prefixes: &[IpNet]) {
        self.change_log.extend_from_slice(prefixes);
        if self.change_log.len() >= CHANGE_LOG_COMPACTION {
            self.compact_change_log();
        }
    }
}
