//! The decision process (RFC 4271 §9.1.2.2 with the RFC 4456 §9 additions), written as a
//! sequence of eliminations over the whole candidate set so the result never depends on the
//! order routes arrived. Locally originated routes win over learned ones (a node's own block
//! must never be replaced by a learned copy).

use std::net::IpAddr;

use starling_model::AsNumber;

use super::route::{Candidate, RouteSource};

/// Default LOCAL_PREF for routes that carry none (RFC 4271 §5.1.5 leaves it to policy; 100 is
/// what BIRD, FRR and GoBGP use).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// Returns the index of the best candidate, or `None` when there are none.
/// `igp_cost` gives the interior cost to a next hop (step e); `local_as` is the neighbour AS of
/// paths with an empty AS_PATH (step c).
pub fn best_candidate(
    candidates: &[Candidate],
    local_as: AsNumber,
    igp_cost: &dyn Fn(IpAddr) -> u32,
) -> Option<usize> {
    let mut remaining: Vec<usize> = (0..candidates.len()).collect();
    if remaining.is_empty() {
        return None;
    }
    // Locally originated routes first.
    keep_minimum(&mut remaining, |index| {
        u8::from(candidates[index].source != RouteSource::Local)
    });
    // a) highest LOCAL_PREF.
    keep_minimum(&mut remaining, |index| {
        std::cmp::Reverse(
            candidates[index]
                .attributes
                .local_pref
                .unwrap_or(DEFAULT_LOCAL_PREF),
        )
    });
    // b) shortest AS_PATH.
    keep_minimum(&mut remaining, |index| {
        candidates[index].attributes.as_path.length()
    });
    // c) lowest ORIGIN.
    keep_minimum(&mut remaining, |index| candidates[index].attributes.origin);
    // d) lowest MED among routes from the same neighbouring AS; a missing MED is the lowest.
    let neighbour_as = |index: usize| {
        candidates[index]
            .attributes
            .as_path
            .first_asn()
            .unwrap_or(local_as)
    };
    let med = |index: usize| candidates[index].attributes.multi_exit_disc.unwrap_or(0);
    let snapshot = remaining.clone();
    remaining.retain(|&index| {
        !snapshot
            .iter()
            .any(|&other| neighbour_as(other) == neighbour_as(index) && med(other) < med(index))
    });
    // e) routes from eBGP peers over routes from iBGP peers.
    keep_minimum(&mut remaining, |index| {
        u8::from(!candidates[index].peer.is_some_and(|peer| peer.external))
    });
    // f) lowest interior cost to the next hop.
    keep_minimum(&mut remaining, |index| {
        candidates[index].attributes.next_hop.map_or(0, igp_cost)
    });
    // g) lowest BGP identifier, using ORIGINATOR_ID in its place when present (RFC 4456 §9).
    keep_minimum(&mut remaining, |index| {
        let candidate = &candidates[index];
        candidate
            .attributes
            .originator_id
            .or(candidate.peer.map(|peer| peer.router_id))
            .map_or(0, u32::from)
    });
    // RFC 4456 §9: shortest CLUSTER_LIST.
    keep_minimum(&mut remaining, |index| {
        candidates[index].attributes.cluster_list.len()
    });
    // h) lowest peer address.
    keep_minimum(&mut remaining, |index| {
        candidates[index].peer.map(|peer| peer.address)
    });
    // Only one peer can be left unless two sessions share an address; fall back to the source.
    remaining
        .into_iter()
        .min_by_key(|&index| candidates[index].source)
}

/// Keeps the candidates whose key is minimal.
fn keep_minimum<K: Ord>(remaining: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    let Some(minimum) = remaining.iter().map(|&index| key(index)).min() else {
        return;
    };
    remaining.retain(|&index| key(index) == minimum);
}
