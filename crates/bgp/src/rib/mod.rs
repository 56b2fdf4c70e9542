//! Routing information bases (RFC 4271 §3.2), sans-IO and deterministic (`BTreeMap` everywhere):
//!
//! * Adj-RIB-In per peer: what each peer announced and we accepted (after loop checks and the
//!   import policy).
//! * Loc-RIB: every candidate path per prefix and the best one by the decision process
//!   ([`decision::best_candidate`]).
//! * Adj-RIB-Out per peer: what we told each peer; [`Rib::export`] computes the difference
//!   against what the peer should have now (export rules of RFC 4271 §9.2, route reflection of
//!   RFC 4456, and a caller-supplied [`ExportPolicy`]) and returns it as an [`ExportBatch`]
//!   ready to be packed into UPDATEs, with End-of-RIB after the first full table.
//! * Graceful restart helper (RFC 4724 §4.2): a peer that goes down gracefully leaves its routes
//!   in place marked stale; they go when the peer sends End-of-RIB or when the caller's restart
//!   timer calls [`Rib::sweep_stale`].

mod counts;
mod decision;
mod export;
mod interface;
mod refilter;
mod route;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::IpNet;

pub use decision::{best_candidate, DEFAULT_LOCAL_PREF};
pub use export::{AcceptAll, ExportBatch, ExportPolicy};
pub use route::{Candidate, PeerFacts, PeerId, RouteAttributes, RouteSource};

use crate::codec::{Family, GracefulRestart, Update};
use starling_model::{AsNumber, NextHopMode};

/// This speaker's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RibConfig {
    pub local_as: AsNumber,
    pub router_id: Ipv4Addr,
    /// Set when this node is a route reflector (Calico `routeReflectorClusterID`).
    pub cluster_id: Option<Ipv4Addr>,
}

/// Static facts about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub peer_as: AsNumber,
    /// Our AS on this session (Calico `localASNumber`, else the node's AS).
    pub local_as: AsNumber,
    /// The peer is our route reflector client (RFC 4456 §6).
    pub route_reflector_client: bool,
    pub next_hop_mode: NextHopMode,
    /// Our addresses on this session, used as next hop when we set ourselves.
    pub local_address_v4: Option<Ipv4Addr>,
    pub local_address_v6: Option<Ipv6Addr>,
    /// How often our own AS may appear in a received AS_PATH (Calico `numAllowedLocalASNumbers`).
    pub allowed_local_as: u32,
    /// The peer's BGPFilters (`BGPPeer.spec.filters`), applied by the Calico policy.
    pub filters: crate::filter::FilterChain,
    /// The interface the session runs over, where the peer's next hops are reached: what an
    /// import filter's `interface` rule matches for routes from this peer.
    pub interface: Option<String>,
}

impl PeerConfig {
    pub fn is_external(&self) -> bool {
        self.peer_as != self.local_as
    }
}

/// What the session negotiated that the RIB needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSession {
    pub router_id: Ipv4Addr,
    pub families: Vec<Family>,
    pub graceful_restart: Option<GracefulRestart>,
}

/// Decides whether a received route is accepted. Call `attributes.to_mut()` only to change
/// them, so unchanged routes keep sharing the copy every prefix of the UPDATE uses.
pub trait ImportPolicy {
    fn import(
        &self,
        peer: &PeerConfig,
        prefix: &IpNet,
        attributes: &mut Cow<'_, RouteAttributes>,
    ) -> bool;
}

impl<F: Fn(&PeerConfig, &IpNet, &mut Cow<'_, RouteAttributes>) -> bool> ImportPolicy for F {
    fn import(
        &self,
        peer: &PeerConfig,
        prefix: &IpNet,
        attributes: &mut Cow<'_, RouteAttributes>,
    ) -> bool {
        self(peer, prefix, attributes)
    }
}

#[derive(Debug, Clone)]
struct PeerState {
    config: PeerConfig,
    /// `config.interface`, shared by every candidate of this peer.
    interface: Option<Arc<str>>,
    session: Option<PeerSession>,
    adj_rib_in: BTreeMap<IpNet, Arc<RouteAttributes>>,
    /// Prefixes the peer announces that import checks or policy refused (counted as received,
    /// not accepted; forgotten when the peer withdraws them or the session goes down).
    rejected: BTreeSet<IpNet>,
    /// Accepted prefixes beyond this many are refused (an import limit's `block` action).
    import_block: Option<usize>,
    stale: BTreeSet<IpNet>,
    adj_rib_out: BTreeMap<IpNet, Arc<RouteAttributes>>,
    /// Position in the change log up to which this peer has been exported.
    cursor: u64,
    /// The next export sends the whole table and End-of-RIB.
    full_export_pending: bool,
}

/// Every path for one prefix and which one is best.
#[derive(Debug, Clone, Default)]
struct Destination {
    candidates: Vec<Candidate>,
    best: Option<usize>,
}

impl Destination {
    fn best(&self) -> Option<&Candidate> {
        self.candidates.get(self.best?)
    }
}

/// Whether two paths are the same for the peers (cheap when they share attributes).
fn same_path(left: &Candidate, right: &Candidate) -> bool {
    left.source == right.source
        && left.peer == right.peer
        && left.stale == right.stale
        && left.interface == right.interface
        && (Arc::ptr_eq(&left.attributes, &right.attributes) || left.attributes == right.attributes)
}

/// Change-log length at which entries every exporting peer has seen are dropped.
const CHANGE_LOG_COMPACTION: usize = 1 << 16;

/// The RIBs of one speaker.
pub struct Rib {
    config: RibConfig,
    peers: BTreeMap<PeerId, PeerState>,
    loc_rib: BTreeMap<IpNet, Destination>,
    /// Prefixes whose best path changed, in order; peers export from their cursor onwards.
    /// One shared log instead of a set per peer keeps a best-path change O(1).
    change_log: Vec<IpNet>,
    /// Absolute position of `change_log[0]`.
    change_log_start: u64,
    igp_cost: Box<dyn Fn(IpAddr) -> u32 + Send + Sync>,
}

impl std::fmt::Debug for Rib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rib")
            .field("config", &self.config)
            .field("peers", &self.peers.len())
            .field("prefixes", &self.loc_rib.len())
            .finish()
    }
}

impl Rib {
    pub fn new(config: RibConfig) -> Rib {
        Rib {
            config,
            peers: BTreeMap::new(),
            loc_rib: BTreeMap::new(),
            change_log: Vec::new(),
            change_log_start: 0,
            igp_cost: Box::new(|_| 0),
        }
    }

    /// Sets the interior cost to a next hop used by the decision process (default: all 0).
    pub fn set_igp_cost(&mut self, igp_cost: impl Fn(IpAddr) -> u32 + Send + Sync + 'static) {
        self.igp_cost = Box::new(igp_cost);
        let prefixes: Vec<IpNet> = self.loc_rib.keys().copied().collect();
        for prefix in prefixes {
            self.update_destination(prefix, false, |_| true);
        }
    }

    pub fn config(&self) -> &RibConfig {
        &self.config
    }

    /// Registers a peer (session down). Replaces the configuration of a known peer.
    pub fn add_peer(&mut self, id: PeerId, config: PeerConfig) {
        match self.peers.get_mut(&id) {
            Some(state) => {
                let interface_changed = state.config.interface != config.interface;
                state.config = config;
                state.full_export_pending = true;
                if interface_changed {
                    self.peer_interface_changed(id);
                }
            }
            None => {
                self.peers.insert(
                    id,
                    PeerState {
                        interface: config.interface.as_deref().map(Arc::from),
                        config,
                        session: None,
                        adj_rib_in: BTreeMap::new(),
                        rejected: BTreeSet::new(),
                        import_block: None,
                        stale: BTreeSet::new(),
                        adj_rib_out: BTreeMap::new(),
                        cursor: 0,
                        full_export_pending: true,
                    },
                );
            }
        }
    }

    /// Forgets a peer and every route it gave us. Returns prefixes whose best route changed.
    pub fn remove_peer(&mut self, id: PeerId) -> Vec<IpNet> {
        let Some(state) = self.peers.remove(&id) else {
            return Vec::new();
        };
        let prefixes: Vec<IpNet> = state.adj_rib_in.keys().copied().collect();
        self.remove_candidates(id, prefixes)
    }

    /// The session came up. Stale routes of families the peer no longer preserves are swept
    /// (RFC 4724 §4.2). Returns prefixes whose best route changed.
    pub fn peer_established(&mut self, id: PeerId, session: PeerSession) -> Vec<IpNet> {
        let Some(state) = self.peers.get_mut(&id) else {
            return Vec::new();
        };
        let preserved = |family: Family| {
            session.graceful_restart.as_ref().is_some_and(|restart| {
                restart
                    .families
                    .iter()
                    .any(|entry| entry.family == family && entry.forwarding_preserved)
            })
        };
        let sweep: Vec<IpNet> = state
            .stale
            .iter()
            .filter(|prefix| !preserved(Family::of_prefix(prefix)))
            .copied()
            .collect();
        state.session = Some(session);
        state.adj_rib_out.clear();
        state.full_export_pending = true;
        self.remove_peer_routes(id, sweep)
    }

    /// The session went down. With `graceful` (the peer advertised graceful restart) its routes
    /// stay, marked stale; otherwise they are removed. Returns prefixes whose best route changed.
    pub fn peer_down(&mut self, id: PeerId, graceful: bool) -> Vec<IpNet> {
        let Some(state) = self.peers.get_mut(&id) else {
            return Vec::new();
        };
        state.session = None;
        state.rejected.clear();
        state.adj_rib_out.clear();
        state.full_export_pending = true;
        let prefixes: Vec<IpNet> = state.adj_rib_in.keys().copied().collect();
        if graceful {
            state.stale.extend(prefixes.iter().copied());
            for prefix in &prefixes {
                if let Some(destination) = self.loc_rib.get_mut(prefix) {
                    for candidate in destination
                        .candidates
                        .iter_mut()
                        .filter(|c| c.source == RouteSource::Peer(id))
                    {
                        candidate.stale = true;
                    }
                }
            }
            Vec::new()
        } else {
            self.remove_peer_routes(id, prefixes)
        }
    }

    /// Removes a peer's stale routes: all of them (`None`, restart timer expired) or one
    /// family's (End-of-RIB). Returns prefixes whose best route changed.
    pub fn sweep_stale(&mut self, id: PeerId, family: Option<Family>) -> Vec<IpNet> {
        let Some(state) = self.peers.get_mut(&id) else {
            return Vec::new();
        };
        let sweep: Vec<IpNet> = state
            .stale
            .iter()
            .filter(|prefix| family.is_none_or(|family| Family::of_prefix(prefix) == family))
            .copied()
            .collect();
        self.remove_peer_routes(id, sweep)
    }

    /// Forgets what the peer was sent so the next export resends the whole table followed by
    /// End-of-RIB (the answer to a ROUTE-REFRESH, RFC 2918).
    pub fn request_full_export(&mut self, id: PeerId) {
        if let Some(state) = self.peers.get_mut(&id) {
            state.adj_rib_out.clear();
            state.full_export_pending = true;
        }
    }

    /// Number of stale routes kept for a peer.
    pub fn stale_count(&self, id: PeerId) -> usize {
        self.peers.get(&id).map_or(0, |state| state.stale.len())
    }

    /// Applies a received UPDATE: withdrawals (including treat-as-withdraw), announcements
    /// after loop prevention and `policy`, and End-of-RIB (sweeps that family's stale routes).
    /// Returns prefixes whose best route changed.
    pub fn apply_update(
        &mut self,
        id: PeerId,
        update: &Update,
        policy: &dyn ImportPolicy,
    ) -> Vec<IpNet> {
        let Some(state) = self.peers.get(&id) else {
            return Vec::new();
        };
        if let Some(family) = update.end_of_rib_family() {
            return self.sweep_stale(id, Some(family));
        }
        let Some(session) = &state.session else {
            return Vec::new();
        };
        let facts = PeerFacts {
            address: state.config.address,
            router_id: session.router_id,
            external: state.config.is_external(),
            route_reflector_client: state.config.route_reflector_client,
        };
        let config = state.config.clone();
        let interface = state.interface.clone();
        let mut changed = Vec::new();
        for prefix in update.withdrawn() {
            self.set_rejected(id, prefix, false);
            changed.extend(self.remove_peer_routes(id, vec![prefix]));
        }
        let announced = update.announced();
        if announced.is_empty() {
            return changed;
        }
        // Loop checks and the LOCAL_PREF rule depend only on the attributes: decide them once
        // per UPDATE, and let every prefix share the result unless the policy changes it.
        let prepare = |shared: Option<Arc<RouteAttributes>>| {
            let shared = shared?;
            if !self.import_checks(&config, &shared) {
                return None;
            }
            if config.is_external() && shared.local_pref.is_some() {
                // LOCAL_PREF from another AS is ignored (RFC 4271 §5.1.5).
                let mut stripped = (*shared).clone();
                stripped.local_pref = None;
                return Some(Arc::new(stripped));
            }
            Some(shared)
        };
        let (ipv4_attributes, multiprotocol_attributes) = RouteAttributes::from_update(update);
        let ipv4_attributes = prepare(ipv4_attributes);
        let multiprotocol_attributes = prepare(multiprotocol_attributes);
        let multiprotocol_prefixes = update.attributes.multiprotocol_announced().len();
        let ipv4_count = announced.len() - multiprotocol_prefixes;
        for (position, prefix) in announced.into_iter().enumerate() {
            let shared = if position < ipv4_count {
                &ipv4_attributes
            } else {
                &multiprotocol_attributes
            };
            let accepted = shared.as_ref().and_then(|shared| {
                let mut attributes = Cow::Borrowed(&**shared);
                if !policy.import(&config, &prefix, &mut attributes) {
                    return None;
                }
                Some(match attributes {
                    Cow::Borrowed(_) => shared.clone(),
                    Cow::Owned(changed) => Arc::new(changed),
                })
            });
            let accepted = accepted.filter(|_| !self.blocked_by_limit(id, &prefix));
            self.set_rejected(id, prefix, accepted.is_none());
            match accepted {
                Some(attributes) => changed.extend(self.insert_peer_route(
                    id,
                    facts,
                    prefix,
                    attributes,
                    interface.clone(),
                )),
                None => changed.extend(self.remove_peer_routes(id, vec![prefix])),
            }
        }
        changed
    }

    /// Loop prevention: our AS in the path too often, our router ID as originator, or our
    /// cluster ID in the cluster list (RFC 4271 §9.1.2, RFC 4456 §8).
    fn import_checks(&self, config: &PeerConfig, attributes: &RouteAttributes) -> bool {
        let own_as_count = attributes
            .as_path
            .segments
            .iter()
            .flat_map(|segment| segment.asns.iter())
            .filter(|asn| **asn == config.local_as)
            .count();
        if config.is_external() && own_as_count > config.allowed_local_as as usize {
            return false;
        }
        if attributes.originator_id == Some(self.config.router_id) {
            return false;
        }
        if let Some(cluster_id) = self.config.cluster_id {
            if attributes.cluster_list.contains(&cluster_id) {
                return false;
            }
        }
        true
    }

    /// Originates (or replaces) a local route without an interface. Returns prefixes whose
    /// best route changed.
    pub fn originate(&mut self, prefix: IpNet, attributes: RouteAttributes) -> Vec<IpNet> {
        self.originate_via(prefix, attributes, None)
    }

    /// Stops originating a local route. Returns prefixes whose best route changed.
    pub fn withdraw_local(&mut self, prefix: IpNet) -> Vec<IpNet> {
        self.remove_candidate(prefix.trunc(), RouteSource::Local)
    }

    /// The best path for a prefix.
    pub fn best(&self, prefix: &IpNet) -> Option<&Candidate> {
        self.loc_rib.get(prefix)?.best()
    }

    /// Every prefix with its best path, in prefix order.
    pub fn best_routes(&self) -> impl Iterator<Item = (&IpNet, &Candidate)> {
        self.loc_rib
            .iter()
            .filter_map(|(prefix, destination)| Some((prefix, destination.best()?)))
    }

    /// All candidate paths for a prefix.
    pub fn candidates(&self, prefix: &IpNet) -> &[Candidate] {
        self.loc_rib
            .get(prefix)
            .map_or(&[], |destination| destination.candidates.as_slice())
    }

    fn insert_peer_route(
        &mut self,
        id: PeerId,
        facts: PeerFacts,
        prefix: IpNet,
        attributes: Arc<RouteAttributes>,
        interface: Option<Arc<str>>,
    ) -> Vec<IpNet> {
        if let Some(state) = self.peers.get_mut(&id) {
            state.adj_rib_in.insert(prefix, attributes.clone());
            state.stale.remove(&prefix);
        }
        let candidate = Candidate {
            source: RouteSource::Peer(id),
            peer: Some(facts),
            attributes,
            stale: false,
            interface,
        };
        self.insert_candidate(prefix, candidate)
    }

    fn remove_peer_routes(&mut self, id: PeerId, prefixes: Vec<IpNet>) -> Vec<IpNet> {
        if let Some(state) = self.peers.get_mut(&id) {
            for prefix in &prefixes {
                state.adj_rib_in.remove(prefix);
                state.stale.remove(prefix);
            }
        }
        self.remove_candidates(id, prefixes)
    }

    fn remove_candidates(&mut self, id: PeerId, prefixes: Vec<IpNet>) -> Vec<IpNet> {
        let mut changed = Vec::new();
        for prefix in prefixes {
            changed.extend(self.remove_candidate(prefix, RouteSource::Peer(id)));
        }
        changed
    }

    fn insert_candidate(&mut self, prefix: IpNet, candidate: Candidate) -> Vec<IpNet> {
        self.update_destination(prefix, true, |candidates| {
            match candidates
                .iter_mut()
                .find(|existing| existing.source == candidate.source)
            {
                Some(existing) => *existing = candidate,
                None => {
                    // Most prefixes have one or two paths: grow one at a time instead of to
                    // the default four (a spare candidate costs more than the rest of a route).
                    if candidates.len() == candidates.capacity() && candidates.len() < 4 {
                        candidates.reserve_exact(1);
                    }
                    candidates.push(candidate)
                }
            }
            true
        })
    }

    fn remove_candidate(&mut self, prefix: IpNet, source: RouteSource) -> Vec<IpNet> {
        self.update_destination(prefix, false, |candidates| {
            let before = candidates.len();
            candidates.retain(|candidate| candidate.source != source);
            candidates.len() != before
        })
    }

    /// Applies `change` to a prefix's candidates (creating the entry when `create`), re-runs
    /// the decision when it reports a change, and logs the prefix when its best path changed.
    /// One map lookup per change.
    fn update_destination(
        &mut self,
        prefix: IpNet,
        create: bool,
        change: impl FnOnce(&mut Vec<Candidate>) -> bool,
    ) -> Vec<IpNet> {
        let destination = if create {
            self.loc_rib.entry(prefix).or_default()
        } else {
            match self.loc_rib.get_mut(&prefix) {
                Some(destination) => destination,
                None => return Vec::new(),
            }
        };
        let old = destination.best().cloned();
        if !change(&mut destination.candidates) {
            return Vec::new();
        }
        destination.best = best_candidate(
            &destination.candidates,
            self.config.local_as,
            &*self.igp_cost,
        );
        let changed = match (&old, destination.best()) {
            (Some(old), Some(new)) => !same_path(old, new),
            (None, None) => false,
            _ => true,
        };
        if destination.candidates.is_empty() {
            self.loc_rib.remove(&prefix);
        }
        if !changed {
            return Vec::new();
        }
        self.change_log.push(prefix);
        if self.change_log.len() >= CHANGE_LOG_COMPACTION {
            self.compact_change_log();
        }
        vec![prefix]
    }

    fn change_log_end(&self) -> u64 {
        self.change_log_start + self.change_log.len() as u64
    }

    /// Drops change-log entries that every peer waiting for incremental exports has seen
    /// (peers down or due a full export do not need the log).
    fn compact_change_log(&mut self) {
        let end = self.change_log_end();
        let oldest_needed = self
            .peers
            .values()
            .filter(|state| state.session.is_some() && !state.full_export_pending)
            .map(|state| state.cursor)
            .min()
            .unwrap_or(end);
        let drop = (oldest_needed.saturating_sub(self.change_log_start) as usize)
            .min(self.change_log.len());
        self.change_log.drain(..drop);
        self.change_log_start += drop as u64;
    }

    /// Prefixes changed since `cursor`, sorted and without repeats.
    fn changes_since(&self, cursor: u64) -> Vec<IpNet> {
        let skip =
            (cursor.saturating_sub(self.change_log_start) as usize).min(self.change_log.len());
        let mut changed: Vec<IpNet> = self.change_log[skip..].to_vec();
        changed.sort();
        changed.dedup();
        changed
    }
}
