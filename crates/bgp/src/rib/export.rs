//! Adj-RIB-Out: which best paths each peer gets and with which attributes.
//!
//! Rules, in order: never back to the peer it came from; only negotiated families; iBGP-learned
//! paths go to other iBGP peers only through route reflection (RFC 4456 §6: client paths to
//! everyone, non-client paths to clients only, ORIGINATOR_ID set and our CLUSTER_ID prepended,
//! nothing reflected to its originator); then the session rewrite — towards eBGP our AS is
//! prepended, LOCAL_PREF, MED of learned paths, ORIGINATOR_ID and CLUSTER_LIST are dropped and the next hop is ours unless `Keep`; towards iBGP LOCAL_PREF
//! is filled in and the next hop is ours for local paths or with `SelfAddress`, else unchanged;
//! finally the caller's [`ExportPolicy`], which sees the attributes as they will be sent.
//!
//! The rewrite is computed once per shared attribute set (paths from one UPDATE share an `Arc`),
//! so exporting a large table allocates per attribute set, not per prefix.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::codec::{
    pack_announcements, pack_withdrawals, CodecOptions, EncodeError, Family, Message, NextHop,
    Update,
};
use starling_model::NextHopMode;

use super::decision::DEFAULT_LOCAL_PREF;
use super::route::{Candidate, PeerId, RouteAttributes, RouteSource};
use super::{PeerConfig, PeerState, Rib};

/// Decides whether a best path is advertised to a peer and may change the attributes it is
/// sent with (e.g. add communities). It sees the attributes after the session rewrite; call
/// `attributes.to_mut()` only to change them, so unchanged routes keep sharing one copy.
pub trait ExportPolicy {
    fn export(
        &self,
        peer: &PeerConfig,
        prefix: &IpNet,
        candidate: &Candidate,
        attributes: &mut Cow<'_, RouteAttributes>,
    ) -> bool;
}

impl<F: Fn(&PeerConfig, &IpNet, &Candidate, &mut Cow<'_, RouteAttributes>) -> bool> ExportPolicy
    for F
{
    fn export(
        &self,
        peer: &PeerConfig,
        prefix: &IpNet,
        candidate: &Candidate,
        attributes: &mut Cow<'_, RouteAttributes>,
    ) -> bool {
        self(peer, prefix, candidate, attributes)
    }
}

/// Export everything the standard rules allow.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl ExportPolicy for AcceptAll {
    fn export(
        &self,
        _: &PeerConfig,
        _: &IpNet,
        _: &Candidate,
        _: &mut Cow<'_, RouteAttributes>,
    ) -> bool {
        true
    }
}

/// Changes to send to one peer: announcements grouped by identical attributes (one group packs
/// into as few UPDATEs as possible), withdrawals per family, and End-of-RIB markers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExportBatch {
    pub announce: BTreeMap<(Family, Arc<RouteAttributes>), Vec<IpNet>>,
    pub withdraw: BTreeMap<Family, Vec<IpNet>>,
    pub end_of_rib: Vec<Family>,
}

impl ExportBatch {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty() && self.withdraw.is_empty() && self.end_of_rib.is_empty()
    }

    /// Encodes the batch: withdrawals, then announcements, then End-of-RIB.
    pub fn encode(&self, options: &CodecOptions) -> Result<Vec<Vec<u8>>, EncodeError> {
        let mut messages = Vec::new();
        for (family, prefixes) in &self.withdraw {
            messages.extend(pack_withdrawals(*family, prefixes)?);
        }
        for ((family, attributes), prefixes) in &self.announce {
            let next_hop = match attributes.next_hop {
                Some(IpAddr::V4(address)) if *family == Family::IPV4_UNICAST => {
                    NextHop::V4(address)
                }
                Some(IpAddr::V6(global)) => NextHop::V6 {
                    global,
                    link_local: attributes.link_local_next_hop,
                },
                _ => return Err(EncodeError::NextHopFamilyMismatch { family: *family }),
            };
            messages.extend(pack_announcements(
                *family,
                next_hop,
                &attributes.to_path_attributes(),
                prefixes,
                options,
            )?);
        }
        for family in &self.end_of_rib {
            messages.push(Message::from(Update::end_of_rib(*family)).encode(options)?);
        }
        Ok(messages)
    }
}

impl Rib {
    /// Brings the peer's Adj-RIB-Out up to date and returns what changed. The first export
    /// after the session comes up sends the full table followed by End-of-RIB per family.
    pub fn export(&mut self, id: PeerId, policy: &dyn ExportPolicy) -> ExportBatch {
        let mut batch = ExportBatch::default();
        let Some(state) = self.peers.get(&id) else {
            return batch;
        };
        let Some(session) = &state.session else {
            return batch;
        };
        let full = state.full_export_pending;
        // A full export walks the Loc-RIB in order (plus anything still advertised that is no
        // longer in it); an incremental one looks up only the changed prefixes.
        let work: Vec<(IpNet, Option<&Candidate>)> = if full {
            let mut all: Vec<(IpNet, Option<&Candidate>)> = self
                .loc_rib
                .iter()
                .map(|(prefix, destination)| (*prefix, destination.best()))
                .collect();
            let gone: Vec<IpNet> = state
                .adj_rib_out
                .keys()
                .filter(|prefix| !self.loc_rib.contains_key(prefix))
                .copied()
                .collect();
            if !gone.is_empty() {
                all.extend(gone.into_iter().map(|prefix| (prefix, None)));
                all.sort_by_key(|(prefix, _)| *prefix);
            }
            all
        } else {
            self.changes_since(state.cursor)
                .into_iter()
                .map(|prefix| (prefix, self.best(&prefix)))
                .collect()
        };
        let families = session.families.clone();

        // Paths that arrived in one UPDATE share one `Arc`; their rewrite for this peer is the
        // same, so it is computed once per shared attribute set and family.
        let mut rewrites: HashMap<(usize, RouteSource, bool), Option<Arc<RouteAttributes>>> =
            HashMap::new();
        let mut last_changed_by_policy: Option<Arc<RouteAttributes>> = None;
        let mut decisions: Vec<(IpNet, Option<Arc<RouteAttributes>>)> =
            Vec::with_capacity(work.len());
        for (prefix, best) in work {
            if !families.contains(&Family::of_prefix(&prefix)) {
                continue;
            }
            let Some(candidate) = best else {
                decisions.push((prefix, None));
                continue;
            };
            let ipv4 = prefix.addr().is_ipv4();
            let key = (
                Arc::as_ptr(&candidate.attributes) as usize,
                candidate.source,
                ipv4,
            );
            let rewritten = rewrites
                .entry(key)
                .or_insert_with(|| self.rewrite(id, state, candidate, ipv4).map(Arc::new))
                .clone();
            let desired = rewritten.and_then(|base| {
                let mut attributes = Cow::Borrowed(&*base);
                if !policy.export(&state.config, &prefix, candidate, &mut attributes) {
                    return None;
                }
                Some(match attributes {
                    Cow::Borrowed(_) => base.clone(),
                    Cow::Owned(changed) => match &last_changed_by_policy {
                        Some(last) if **last == changed => last.clone(),
                        _ => {
                            let shared = Arc::new(changed);
                            last_changed_by_policy = Some(shared.clone());
                            shared
                        }
                    },
                })
            });
            decisions.push((prefix, desired));
        }

        let log_end = self.change_log_end();
        let Some(state) = self.peers.get_mut(&id) else {
            return batch;
        };
        // Groups by shared attributes first (pointer identity), merged by value at the end.
        let mut groups: Vec<(Family, Arc<RouteAttributes>, Vec<IpNet>)> = Vec::new();
        let mut group_of: HashMap<(usize, Family), usize> = HashMap::new();
        for (prefix, desired) in decisions {
            let family = Family::of_prefix(&prefix);
            let current = state.adj_rib_out.get(&prefix);
            let unchanged = match (current, &desired) {
                (Some(current), Some(desired)) => {
                    Arc::ptr_eq(current, desired) || **current == **desired
                }
                (None, None) => true,
                _ => false,
            };
            if unchanged {
                continue;
            }
            match desired {
                Some(attributes) => {
                    let index = *group_of
                        .entry((Arc::as_ptr(&attributes) as usize, family))
                        .or_insert_with(|| {
                            groups.push((family, attributes.clone(), Vec::new()));
                            groups.len() - 1
                        });
                    groups[index].2.push(prefix);
                    state.adj_rib_out.insert(prefix, attributes);
                }
                None => {
                    if state.adj_rib_out.remove(&prefix).is_some() {
                        batch.withdraw.entry(family).or_default().push(prefix);
                    }
                }
            }
        }
        for (family, attributes, prefixes) in groups {
            batch
                .announce
                .entry((family, attributes))
                .or_default()
                .extend(prefixes);
        }
        for prefixes in batch.announce.values_mut() {
            prefixes.sort();
        }
        state.cursor = log_end;
        if full {
            state.full_export_pending = false;
            batch.end_of_rib = families;
        }
        self.compact_change_log();
        batch
    }

    /// The attributes a path is sent to the peer with before the export policy, or `None` when
    /// the peer does not get it.
    fn rewrite(
        &self,
        id: PeerId,
        state: &PeerState,
        candidate: &Candidate,
        ipv4: bool,
    ) -> Option<RouteAttributes> {
        let target = &state.config;
        let session = state.session.as_ref()?;
        if candidate.source == RouteSource::Peer(id) {
            return None;
        }
        let mut attributes = (*candidate.attributes).clone();
        if let Some(source) = candidate.peer {
            if !source.external && !target.is_external() {
                let cluster_id = self.config.cluster_id?;
                if !source.route_reflector_client && !target.route_reflector_client {
                    return None;
                }
                let originator = attributes.originator_id.unwrap_or(source.router_id);
                if originator == session.router_id {
                    return None;
                }
                attributes.originator_id = Some(originator);
                attributes.cluster_list.insert(0, cluster_id);
            }
        }
        let local_route = candidate.source == RouteSource::Local;
        let own_next_hop = if ipv4 {
            target.local_address_v4.map(IpAddr::V4)
        } else {
            target.local_address_v6.map(IpAddr::V6)
        };
        let keep_next_hop = if target.is_external() {
            attributes.as_path.prepend(target.local_as);
            attributes.local_pref = None;
            if !local_route {
                // A MED from one neighbouring AS is not passed to another (RFC 4271 §5.1.4).
                attributes.multi_exit_disc = None;
            }
            attributes.originator_id = None;
            attributes.cluster_list.clear();
            target.next_hop_mode == NextHopMode::Keep
        } else {
            attributes.local_pref.get_or_insert(DEFAULT_LOCAL_PREF);
            !local_route && target.next_hop_mode != NextHopMode::SelfAddress
        };
        let kept = attributes
            .next_hop
            .filter(|next_hop| keep_next_hop && next_hop.is_ipv4() == ipv4);
        if kept.is_none() {
            attributes.next_hop = Some(own_next_hop?);
            attributes.link_local_next_hop = None;
        }
        Some(attributes)
    }
}
