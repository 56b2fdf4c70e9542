//! BFD for BGP sessions (RFC 5882): a session whose spec has BFD settings gets a BFD session
//! from its first Established on (the connection's local address is the source). When BFD
//! goes Down after having been Up, the path is gone: the BGP session ends with Cease "BFD Down"
//! (RFC 9384) and the peer's routes are withdrawn at once, never kept as graceful-restart stale
//! routes. A changed interval retimes the running BFD session (Poll sequence), BGP untouched.

use std::collections::BTreeMap;
use std::net::IpAddr;

use tokio::sync::mpsc;

use super::{Actor, Which};
use crate::bgp::bfd::{timing, BfdEvent, BfdHandle, BfdPeer};
use starling_bgp::bfd::SessionState;
use starling_bgp::codec::{cease_subcode, Notification};
use starling_bgp::fsm::{Input, State};

/// The speaker's side of BFD: the task (started with the first BFD session) and what each
/// BGP session's BFD session looks like.
pub(super) struct BfdLink {
    events: mpsc::UnboundedSender<BfdEvent>,
    handle: Option<BfdHandle>,
    active: BTreeMap<String, BfdPeer>,
    states: BTreeMap<String, SessionState>,
}

impl BfdLink {
    pub(super) fn new(events: mpsc::UnboundedSender<BfdEvent>) -> BfdLink {
        BfdLink {
            events,
            handle: None,
            active: BTreeMap::new(),
            states: BTreeMap::new(),
        }
    }

    /// The BFD state shown next to the BGP session, when it has BFD.
    pub(super) fn state(&self, name: &str) -> Option<SessionState> {
        self.active
            .contains_key(name)
            .then(|| self.states.get(name).copied().unwrap_or(SessionState::Down))
    }

    fn stop(&mut self, name: &str) {
        if self.active.remove(name).is_some() {
            if let Some(handle) = &self.handle {
                handle.remove(name);
            }
        }
        self.states.remove(name);
    }

    /// Says AdminDown to every BFD peer, so none reads our going away as a path failure.
    pub(super) async fn shutdown(&mut self) {
        self.active.clear();
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await;
        }
    }
}

impl Actor {
    /// Starts, retimes or stops `name`'s BFD session from its spec. `local` is the BGP
    /// connection's local address when it just became Established; before the first
    /// Established nothing starts.
    pub(super) fn sync_bfd(&mut self, name: &str, local: Option<IpAddr>) {
        let Some(state) = self.sessions.get(name) else {
            self.bfd.stop(name);
            return;
        };
        let Some(settings) = state.spec.bfd else {
            self.bfd.stop(name);
            return;
        };
        let previous = self.bfd.active.get(name);
        if previous.is_none() && local.is_none() {
            return;
        }
        let peer = BfdPeer {
            name: name.to_string(),
            peer: state.spec.peer_address,
            local: local
                .or_else(|| previous.and_then(|p| p.local))
                .or(state.spec.source_address),
            timing: timing(&settings),
        };
        if previous == Some(&peer) {
            return;
        }
        let metrics = self.metrics.clone();
        let events = self.bfd.events.clone();
        self.bfd
            .handle
            .get_or_insert_with(|| BfdHandle::spawn(metrics, events))
            .set(peer.clone());
        self.bfd.active.insert(name.to_string(), peer);
    }

    pub(super) fn stop_bfd(&mut self, name: &str) {
        self.bfd.stop(name);
    }

    pub(super) fn bfd_event(&mut self, event: BfdEvent) {
        if !self.bfd.active.contains_key(&event.name) {
            return;
        }
        self.bfd.states.insert(event.name.clone(), event.state);
        if !event.failed() {
            return;
        }
        let name = event.name.as_str();
        let Some(state) = self.sessions.get_mut(name) else {
            return;
        };
        if state.primary.fsm.state() == State::Established {
            tracing::warn!(session = %name, peer = %state.spec.peer_address, diag = %event.diag, "BFD down: ending the BGP session and withdrawing its routes");
            let notification = Notification::cease(cease_subcode::BFD_DOWN);
            self.handle(name, Which::Primary, Input::LocalError(notification));
            if let Some(state) = self.sessions.get_mut(name) {
                state.last_error = Some(format!("BFD down ({})", event.diag));
            }
        } else if state.stale_deadline.is_some() {
            // The connection dropped first and graceful restart kept the routes; BFD says
            // the peer is unreachable, so they go now.
            state.stale_deadline = None;
            let id = state.peer_id;
            tracing::warn!(session = %name, diag = %event.diag, "BFD down: stale routes of the restarting peer swept");
            let changed = self.rib.sweep_stale(id, None);
            self.learned
                .refresh(&self.rib, &self.config.policy, &changed);
            self.export_all();
        }
    }
}
